package sandbox_test

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/crossgate-io/crossgate/sandbox"
)

func TestFourClustersStartQuickly(t *testing.T) {
	s := sandbox.StartForTest(t, "control-plane", "cluster-1", "cluster-2", "cluster-3")
	t.Logf("4 API servers with CRDs served in %s", s.StartupTime())
	if s.StartupTime() > 30*time.Second {
		t.Errorf("startup took %s, want under 30s", s.StartupTime())
	}
	ctx := context.Background()
	for _, c := range s.Clusters {
		ns, err := c.Kube.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
		if err != nil || ns.Name != "default" {
			t.Errorf("%s: reading namespace default: %v", c.Name, err)
		}
	}
}
