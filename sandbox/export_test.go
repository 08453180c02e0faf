package sandbox

import (
	"context"
	"testing"
	"time"
)

// StartForTest starts a sandbox for sandbox's own tests (the others use test/internal/sbtest), fails the test if it cannot, and stops it when the
// test ends. Data and logs live in the test's temporary directory.
func StartForTest(t testing.TB, clusters ...string) *Sandbox {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := Start(ctx, Options{Clusters: clusters, Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("starting the sandbox: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}
