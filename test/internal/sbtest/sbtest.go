// Package sbtest is the tests' way to start a sandbox and run kubectl in it, failing the test
// when either fails. (It lives here, not in package sandbox, so that the crossgate binary does
// not link the testing package; sandbox's own tests have a copy in its export_test.go.)
package sbtest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/crossgate-io/crossgate/sandbox"
)

// Start starts a sandbox of the named clusters for a test, fails the test if it cannot, and
// stops it when the test ends. Data and logs live in the test's temporary directory.
func Start(t testing.TB, clusters ...string) *sandbox.Sandbox {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := sandbox.Start(ctx, sandbox.Options{Clusters: clusters, Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("starting the sandbox: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Kubectl runs kubectl against a cluster of sb with stdin and returns its output; it fails the
// test with kubectl's error output when kubectl fails.
func Kubectl(t testing.TB, sb *sandbox.Sandbox, cluster, stdin string, args ...string) string {
	t.Helper()
	out, stderr, err := sb.Kubectl(context.Background(), sb.Cluster(cluster), stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s on %s: %v\n%s", strings.Join(args, " "), cluster, err, stderr)
	}
	return out
}
