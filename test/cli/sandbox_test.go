//go:build integration

// Package cli runs the crossgate command as a user would: built binaries, separate processes.
package cli

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/inject"
	"github.com/crossgate-io/crossgate/sandbox"
	"github.com/crossgate-io/crossgate/test/internal/sbtest"
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
	// up holds the gateway ports from its start, long before the set is up.
	upDone := make(chan struct{})
	var out string
	go func() {
		defer close(upDone)
		out, err = run(t, bin, dir, "sandbox", "up", "--gateway-port", strconv.Itoa(base))
	}()
	held := false
	for !held {
		select {
		case <-upDone:
			t.Fatalf("sandbox up ended before the gateway ports were held (or without holding them): %v\n%s", err, out)
		case <-time.After(20 * time.Millisecond):
		}
		if l, lerr := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(base+2)); lerr != nil {
			held = true
		} else {
			_ = l.Close()
		}
	}
	t.Logf("the gateway ports held %v after up started", time.Since(start))
	<-upDone
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
	// The members joined as `crossgate cluster join` joins them: the control plane holds a
	// ServiceAccount token for each, not the admin's credentials.
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(&clientcmd.ClientConfigLoadingRules{ExplicitPath: st.Kubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: "control-plane"}).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	cp, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"cluster-1", "cluster-2", "cluster-3"} {
		var sec corev1.Secret
		if err := cp.Get(context.Background(), client.ObjectKey{Namespace: sandbox.SystemNamespace, Name: "kubeconfig-" + m}, &sec); err != nil {
			t.Fatal(err)
		}
		kc, err := clientcmd.Load(sec.Data["kubeconfig"])
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range kc.AuthInfos {
			if a.Token == "" || len(a.ClientCertificateData) > 0 {
				t.Errorf("%s's kubeconfig on the control plane is not a ServiceAccount token's", m)
			}
		}
	}
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

	// proxy config and status as a user runs them against the sandbox's cluster-1, whose gateway
	// is a stand-in proxy holding a delta stream.
	c1 := st.Clusters[1]
	ctl := "http://" + c1.Metrics
	gw := "gateway~" + sandbox.SystemNamespace + "/" + sandbox.GatewayName
	var pc string
	deadline := time.Now().Add(10 * time.Second)
	for {
		pc, err = run(t, bin, dir, "proxy", "config", "ignored", "--node", gw, "--controller-url", "http://"+c1.Debug, "--kubeconfig", st.Kubeconfig, "--context", c1.Name)
		if err == nil && regexp.MustCompile(`gateway~\S+\s+delta\s+Listener\s+\d+\s+up to date`).MatchString(pc) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, want := range []string{`(?m)^Listener\s+\S+`, `(?m)^RouteConfiguration\s+\S+`, `Open streams`, `gateway~\S+\s+delta\s+Cluster\s+\d+\s+up to date`} {
		if !regexp.MustCompile(want).MatchString(pc) {
			t.Errorf("proxy config of cluster-1's gateway lacks %s: %v\n%s", want, err, pc)
		}
	}
	if out, err := run(t, bin, dir, "status", "--controller-url", ctl, "--kubeconfig", st.Kubeconfig, "--context", c1.Name); err != nil ||
		!regexp.MustCompile(`Proxies:\s+[1-9]\d* xDS streams connected`).MatchString(out) ||
		!regexp.MustCompile(`Publishes:\s+[1-9]\d* full, \d+ incremental, \d+ rebuild`).MatchString(out) {
		t.Errorf("status of cluster-1: %v\n%s", err, out)
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

// TestNamespaceAndClusterCommands: namespace add labels a namespace so the webhook injects, and
// remove undoes it; cluster join with the CLI creates the Cluster and its Secret.
func TestNamespaceAndClusterCommands(t *testing.T) {
	bin := build(t)
	sb := sbtest.Start(t, "control-plane", "cluster-1")
	cli := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, append(args, "--kubeconfig", sb.Kubeconfig)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("crossgate %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	ctx := context.Background()
	c := sb.Cluster("cluster-1").Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "httpbin"}}); err != nil {
		t.Fatal(err)
	}
	label := func() string {
		var ns corev1.Namespace
		if err := c.Get(ctx, client.ObjectKey{Name: "httpbin"}, &ns); err != nil {
			t.Fatal(err)
		}
		return ns.Labels[inject.NamespaceLabel]
	}
	cli("namespace", "add", "httpbin", "--context", "cluster-1")
	if got := label(); got != inject.NamespaceLabelValue {
		t.Errorf("after namespace add: label %q", got)
	}
	cli("namespace", "remove", "httpbin", "--context", "cluster-1")
	if got := label(); got != "" {
		t.Errorf("after namespace remove: label %q", got)
	}

	out := cli("cluster", "join", "cluster-1", "--context", "control-plane", "--gateway-host", "127.0.0.1", "--gateway-port", "81")
	var cl flomeshv1alpha1.Cluster
	if err := sb.Cluster("control-plane").Client.Get(ctx, client.ObjectKey{Name: "cluster-1"}, &cl); err != nil {
		t.Fatalf("no Cluster after join: %v\n%s", err, out)
	}
	if r := cl.Spec.KubeconfigSecretRef; r == nil || r.Name != "kubeconfig-cluster-1" || cl.Spec.GatewayPort != 81 || cl.Spec.Kubeconfig != "" {
		t.Errorf("the joined Cluster: %+v", cl.Spec)
	}
}
