// Package cli runs the crossgate command as a user would: built binaries, separate processes.
package cli

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crossgate-io/crossgate/sandbox"
)

// build compiles crossgate and crossgate-controller side by side into a temporary directory.
func build(t *testing.T) string {
	t.Helper()
	bin, err := sandbox.BuildCommands(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func run(t *testing.T, bin, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	binDir, err := sandbox.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(os.Environ(), "CROSSGATE_SANDBOX_DIR="+dir, "CROSSGATE_BIN_DIR="+binDir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	return out.String(), err
}

func alive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

// TestSandboxUpStatusDown: up starts the set in the background and returns; a second up says it
// is already up; status shows every cluster with its controller ready and the members Managed;
// down leaves no process behind.
func TestSandboxUpStatusDown(t *testing.T) {
	bin := build(t)
	dir := filepath.Join(t.TempDir(), "sandbox")
	base, err := sandbox.FreeGatewayPorts(3)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, err := run(t, bin, dir, "sandbox", "up", "--gateway-port", strconv.Itoa(base))
	if err != nil {
		t.Fatalf("sandbox up: %v\n%s", err, out)
	}
	t.Logf("sandbox up took %v", time.Since(start))
	st, err := sandbox.ReadState(dir)
	if err != nil {
		t.Fatalf("no state after up: %v\n%s", err, out)
	}
	pids := st.Pids()
	defer func() {
		for _, p := range pids {
			if alive(p) {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		}
	}()
	if !strings.Contains(out, "export KUBECONFIG="+st.Kubeconfig) {
		t.Errorf("up does not say how to use the kubeconfig:\n%s", out)
	}
	for _, p := range pids {
		if !alive(p) {
			t.Errorf("process %d of %v is not running after up", p, pids)
		}
	}

	out, err = run(t, bin, dir, "sandbox", "up")
	if err != nil || !strings.Contains(out, "already up") {
		t.Errorf("a second up: %v\n%s", err, out)
	}
	if again, _ := sandbox.ReadState(dir); again == nil || again.Pid != st.Pid {
		t.Errorf("a second up replaced the sandbox: %+v", again)
	}

	out, err = run(t, bin, dir, "sandbox", "status")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	for _, c := range sandbox.SetClusters {
		line := ""
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, c+" ") {
				line = l
			}
		}
		if !strings.Contains(line, "ready, xDS") {
			t.Errorf("status of %s: %q\n%s", c, line, out)
		}
		if c != "control-plane" && (!strings.Contains(line, "True (Connected)") || !strings.Contains(line, "127.0.0.1:") || strings.Contains(line, "down")) {
			t.Errorf("%s is not Managed or its gateway not up: %q", c, line)
		}
	}

	out, err = run(t, bin, dir, "sandbox", "down")
	if err != nil {
		t.Fatalf("down: %v\n%s", err, out)
	}
	for _, p := range pids {
		if alive(p) {
			t.Errorf("process %d is still running after down", p)
		}
	}
	if _, err := os.Stat(sandbox.StatePath(dir)); !os.IsNotExist(err) {
		t.Errorf("the state file stays after down: %v", err)
	}
	if out, err := run(t, bin, dir, "sandbox", "status"); err == nil || !strings.Contains(out, "not up") {
		t.Errorf("status after down: %v\n%s", err, out)
	}
}
