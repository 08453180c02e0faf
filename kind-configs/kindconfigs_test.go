// Package kindconfigs checks the kind cluster definitions of the end-to-end suite: kind's own
// loader accepts them, and the set's invariants hold (gateway ports 81-83 on the host, pod and
// Service ranges that never overlap).
package kindconfigs

import (
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/yaml"
)

var files = []string{"control-plane.yaml", "cluster-1.yaml", "cluster-2.yaml", "cluster-3.yaml"}

// TestKindLoadsThem runs each file through kind's own loader (cluster.CreateWithConfigFile),
// which decodes strictly and applies kind's defaults before anything needs a container runtime.
// Without Docker, creation then stops at the runtime: any other error is the file's. With Docker
// running the check is skipped, so that a unit test never creates clusters (make e2e-kind does).
func TestKindLoadsThem(t *testing.T) {
	if exec.Command("docker", "info").Run() == nil {
		t.Skip("a Docker engine runs here: loading the files would create clusters; make e2e-kind uses them")
	}
	for _, f := range files {
		err := cluster.NewProvider(cluster.ProviderWithDocker()).Create("crossgate-config-check", cluster.CreateWithConfigFile(f))
		if err == nil || !strings.Contains(err.Error(), "docker") {
			t.Errorf("%s: kind's loader: %v", f, err)
		}
	}
	// The check can fail: a misspelt field is refused by the loader.
	bad := t.TempDir() + "/bad.yaml"
	if err := os.WriteFile(bad, []byte("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodez: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cluster.NewProvider(cluster.ProviderWithDocker()).Create("x", cluster.CreateWithConfigFile(bad)); err == nil || strings.Contains(err.Error(), "docker info") {
		t.Errorf("a misspelt field passed kind's loader: %v", err)
	}
}

func TestSetInvariants(t *testing.T) {
	var nets []*net.IPNet
	hostPorts := map[string]int32{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var c v1alpha4.Cluster
		if err := yaml.UnmarshalStrict(b, &c); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if c.Name+".yaml" != f {
			t.Errorf("%s names cluster %q", f, c.Name)
		}
		for _, s := range []string{c.Networking.PodSubnet, c.Networking.ServiceSubnet} {
			_, n, err := net.ParseCIDR(s)
			if err != nil {
				t.Fatalf("%s: %q: %v", f, s, err)
			}
			for _, o := range nets {
				if o.Contains(n.IP) || n.Contains(o.IP) {
					t.Errorf("%s: %s overlaps %s", f, n, o)
				}
			}
			nets = append(nets, n)
		}
		for _, node := range c.Nodes {
			for _, m := range node.ExtraPortMappings {
				hostPorts[c.Name] = m.HostPort
			}
		}
	}
	for name, want := range map[string]int32{"cluster-1": 81, "cluster-2": 82, "cluster-3": 83} {
		if hostPorts[name] != want {
			t.Errorf("%s's gateway is on host port %d, want %d (the walkthrough's)", name, hostPorts[name], want)
		}
	}
	if _, ok := hostPorts["control-plane"]; ok {
		t.Error("the control plane maps a gateway port: it is not a member in the walkthrough")
	}
}
