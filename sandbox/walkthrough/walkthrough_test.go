package walkthrough

import (
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// seedPath finds shared/seed/multi-cluster-walkthrough.txt beside the repository.
func seedPath() string {
	if p := os.Getenv("CROSSGATE_SEED"); p != "" {
		return p
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "shared", "seed", "multi-cluster-walkthrough.txt")
}

func normalized(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if l = strings.Join(strings.Fields(l), " "); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func containsRun(hay, needle []string) bool {
	for i := 0; i+len(needle) <= len(hay); i++ {
		match := true
		for j := range needle {
			if hay[i+j] != needle[j] {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}

// TestManifestsAreTheWalkthroughs guards against drift: every manifest file, indentation aside,
// must be a run of lines of the walkthrough itself.
func TestManifestsAreTheWalkthroughs(t *testing.T) {
	seed, err := os.ReadFile(seedPath())
	if err != nil {
		t.Skipf("walkthrough not found beside the repository (%v); set CROSSGATE_SEED to check the manifests against it", err)
	}
	hay := normalized(string(seed))
	entries, err := fs.ReadDir(Manifests, "manifests")
	if err != nil || len(entries) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	for _, e := range entries {
		b, _ := Manifests.ReadFile("manifests/" + e.Name())
		if !containsRun(hay, normalized(string(b))) {
			t.Errorf("%s is not, indentation aside, a passage of the walkthrough", e.Name())
		}
	}
}

func TestRender(t *testing.T) {
	out, err := Render("cluster.yaml", map[string]string{
		"CLUSTER_NAME": "cluster-1", "HOST_IP": "127.0.0.1", "PORT": "81", "FSM_NAMESPACE": "fsm-system",
	}, "apiVersion: v1\nkind: Config\n")
	if err != nil {
		t.Fatal(err)
	}
	want := `apiVersion: flomesh.io/v1alpha1
kind: Cluster
metadata:
  name: cluster-1
spec:
  gatewayHost: 127.0.0.1
  gatewayPort: 81
  fsmMeshConfigName: fsm-system
  kubeconfig: |+
    apiVersion: v1
    kind: Config
`
	if out != want {
		t.Errorf("rendered:\n%s\nwant:\n%s", out, want)
	}
	if _, err := Render("serviceexport-any.yaml", map[string]string{"CLUSTER_NAME": "cluster-1"}, ""); err == nil ||
		!strings.Contains(err.Error(), "${NAMESPACE_MESH}") {
		t.Errorf("a missing variable must be an error naming it, got %v", err)
	}
}
