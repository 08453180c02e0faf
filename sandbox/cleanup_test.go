//go:build integration

package sandbox_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
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

const helperEnv = "CROSSGATE_SANDBOX_HELPER_DIR"

// TestHelperSandboxThenHang is not a test of its own: TestNoProcessOutlivesTheTestBinary runs
// the test binary with it selected. It starts a sandbox, prints the pids and its directory, and
// then hangs until the binary's -test.timeout panics it, or until it is killed.
func TestHelperSandboxThenHang(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		t.Skip("helper process only")
	}
	s, err := sandbox.Start(context.Background(), sandbox.Options{Clusters: []string{"one", "two"}, Dir: dir, SkipCRDs: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop) // never reached: the timeout panic skips cleanups
	fmt.Printf("PIDS %s\n", strings.Trim(fmt.Sprint(s.Pids()), "[]"))
	select {}
}

func TestNoProcessOutlivesTheTestBinary(t *testing.T) {
	// The helper must have its sandbox up before its -test.timeout fires. How long that takes
	// depends on the machine's load, so the timeout is derived from the SIGKILL run's start,
	// measured first in this same run (three times it, at least 15 s).
	var started time.Duration
	for _, how := range []string{"SIGKILL", "timeout"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			args := []string{"-test.run=^TestHelperSandboxThenHang$", "-test.v"}
			if how == "timeout" {
				timeout := max(15*time.Second, 3*started)
				t.Logf("helper timeout %v (its sandbox started in %v in the SIGKILL run)", timeout, started)
				args = append(args, "-test.timeout="+timeout.String())
			}
			begin := time.Now()
			cmd := exec.Command(os.Args[0], args...)
			cmd.Env = append(os.Environ(), helperEnv+"="+dir)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = cmd.Stdout
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var pids []int
			var transcript []string
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				line := sc.Text()
				transcript = append(transcript, line)
				if rest, ok := strings.CutPrefix(line, "PIDS "); ok {
					for _, f := range strings.Fields(rest) {
						p, _ := strconv.Atoi(f)
						pids = append(pids, p)
					}
					break
				}
			}
			if how == "SIGKILL" {
				started = time.Since(begin)
			}
			if len(pids) != 3 {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatalf("helper did not report etcd and two kube-apiservers:\n%s", strings.Join(transcript, "\n"))
			}
			for _, p := range pids {
				if !alive(p) {
					t.Fatalf("process %d is not running while the helper is", p)
				}
			}
			if how == "SIGKILL" {
				_ = cmd.Process.Kill()
			}
			go func() {
				for sc.Scan() {
				}
			}()
			_ = cmd.Wait()

			deadline := time.Now().Add(10 * time.Second)
			for {
				left := leftovers(pids, dir)
				if len(left) == 0 {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("processes left after the test binary ended (%s): %v", how, left)
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}

// alive reports whether pid is a running process (a zombie is not running).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// leftovers lists the live processes among pids, and any live etcd or kube-apiserver whose
// command line names dir.
func leftovers(pids []int, dir string) []string {
	var left []string
	for _, p := range pids {
		if alive(p) {
			left = append(left, fmt.Sprintf("pid %d", p))
		}
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil || !alive(p) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		c := strings.ReplaceAll(string(cmdline), "\x00", " ")
		if strings.Contains(c, dir) && (strings.Contains(c, "etcd") || strings.Contains(c, "kube-apiserver")) {
			left = append(left, fmt.Sprintf("pid %d: %s", p, c))
		}
	}
	return left
}
