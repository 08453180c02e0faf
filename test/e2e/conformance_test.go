//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"

	"github.com/crossgate-io/crossgate/sandbox"
	"github.com/crossgate-io/crossgate/test/internal/gwconformance"
)

// conformanceCluster is the kind cluster of the conformance run.
const conformanceCluster = "crossgate-conformance"

// TestConformance runs the Gateway API conformance suite's GATEWAY-HTTP profile, with the same
// harness as the sandbox (test/internal/gwconformance), against crossgate on a kind cluster:
// real Envoy gateways, and the suite's own backend images. kind has no load balancer: the run
// needs cloud-provider-kind (sigs.k8s.io/cloud-provider-kind) on the PATH, which it starts to
// give the gateways' LoadBalancer Services their addresses. `make conformance-kind` runs it; the
// report (bin/conformance-report-kind.yaml) is the one to submit upstream.
func TestConformance(t *testing.T) {
	for _, bin := range []string{"docker", "cloud-provider-kind"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("the kind conformance run needs %s on the PATH (cloud-provider-kind: go install sigs.k8s.io/cloud-provider-kind@latest)", bin)
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Clean(filepath.Join(wd, "..", ".."))
	dir := t.TempDir()
	crossgateBin, err := sandbox.BuildCommands(filepath.Join(dir, "bin"))
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"build", "-t", controllerImage, "."}, {"build", "-t", initImage, "images/init"}} {
		cmd := exec.Command("docker", args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("docker %v: %v\n%s", args, err, out)
		}
	}
	provider := cluster.NewProvider(cluster.ProviderWithDocker())
	existing, err := provider.List()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(existing, conformanceCluster) {
		if err := provider.Create(conformanceCluster, cluster.CreateWithWaitForReady(3*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if os.Getenv("CROSSGATE_E2E_KEEP") != "1" {
		t.Cleanup(func() { _ = provider.Delete(conformanceCluster, "") })
	}
	nodes, err := provider.ListNodes(conformanceCluster)
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range []string{controllerImage, initImage} {
		for _, n := range nodes {
			save := exec.Command("docker", "save", img)
			pipe, err := save.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := save.Start(); err != nil {
				t.Fatal(err)
			}
			if err := nodeutils.LoadImageArchive(n, pipe); err != nil {
				t.Fatalf("loading %s into %s: %v", img, n, err)
			}
			if err := save.Wait(); err != nil {
				t.Fatal(err)
			}
		}
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := provider.ExportKubeConfig(conformanceCluster, kubeconfig, false); err != nil {
		t.Fatal(err)
	}
	install := exec.Command(crossgateBin, "install", "--kubeconfig", kubeconfig, "--context", "kind-"+conformanceCluster, "--timeout", "5m",
		"--set", "clusterSet.name=cluster-1", "--set", "gateway.enabled=false",
		"--set", "controller.image.repository=crossgate-controller", "--set", "controller.image.tag=e2e", "--set", "controller.image.pullPolicy=Never",
		"--set", "proxy.initImage="+initImage)
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("crossgate install: %v\n%s", err, out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel) // not deferred: the suite's parallel tests run after this function returns
	lb := exec.CommandContext(ctx, "cloud-provider-kind")
	lb.Stdout, lb.Stderr = os.Stderr, os.Stderr
	if err := lb.Start(); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: "kind-" + conformanceCluster}).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: sandbox.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, gwconformance.GatewayClass()); err != nil {
		t.Fatal(err)
	}
	gwconformance.Run(t, cfg, "kind")
}
