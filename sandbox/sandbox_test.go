//go:build integration

package sandbox_test

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/crossgate-io/crossgate/sandbox"
)

// Four API servers start and serve. How fast is a figure, not an assertion (a loaded 2-core
// machine is slow): it is logged here.
func TestFourClustersStart(t *testing.T) {
	s := sandbox.StartForTest(t, "control-plane", "cluster-1", "cluster-2", "cluster-3")
	t.Logf("4 API servers with CRDs served in %s", s.StartupTime())
	ctx := context.Background()
	for _, c := range s.Clusters {
		ns, err := c.Kube.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
		if err != nil || ns.Name != "default" {
			t.Errorf("%s: reading namespace default: %v", c.Name, err)
		}
	}
}
