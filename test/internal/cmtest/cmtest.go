// Package cmtest runs cert-manager for integration tests: its CRDs as its module ships them, and
// its own CA, self-signed and approver controllers (bin/cert-manager-controller, built by make
// bins from the cert-manager module).
package cmtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/crossgate-io/crossgate/sandbox"
)

// InstallCRDs creates cert-manager's CRDs and waits until they are served.
func InstallCRDs(t *testing.T, ctx context.Context, c client.Client) {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager").Output()
	if err != nil {
		t.Fatalf("locating the cert-manager module: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds")
	files, err := filepath.Glob(filepath.Join(dir, "cert-manager.io_*.yaml"))
	if err != nil || len(files) < 4 {
		t.Fatalf("cert-manager's CRDs in %s: %v %v", dir, files, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(b, &u.Object); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if err := c.Create(ctx, u); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("%s: %v", f, err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := c.List(ctx, &unstructured.UnstructuredList{Object: map[string]any{"apiVersion": "cert-manager.io/v1", "kind": "CertificateRequestList"}})
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cert-manager's CRDs not served: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// StartController runs cert-manager's controllers against the API server of kubeconfig until
// the test ends; its log goes to dir/cert-manager.log.
func StartController(t *testing.T, kubeconfig, dir string) {
	t.Helper()
	bin, err := sandbox.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(bin, "cert-manager-controller")
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s: %v (make bins builds it)", path, err)
	}
	logf, err := os.Create(filepath.Join(dir, "cert-manager.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, "--kubeconfig", kubeconfig, "--cluster-resource-namespace", "cert-manager")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("cert-manager's log:\n%s", b)
		}
	})
}
