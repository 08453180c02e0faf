//go:build integration

// Package integration tests crossgate against real kube-apiservers started by package sandbox.
package integration

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/crossgate-io/crossgate/sandbox"
	"github.com/crossgate-io/crossgate/test/internal/sbtest"
)

// sb is the package's sandbox: the walkthrough's four clusters.
var sb *sandbox.Sandbox

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	s, err := sandbox.Start(ctx, sandbox.Options{Clusters: []string{"control-plane", "cluster-1", "cluster-2", "cluster-3"}})
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "starting the sandbox: %v\n", err)
		os.Exit(1)
	}
	sb = s
	code := m.Run()
	s.Stop()
	os.Exit(code)
}

// kubectl runs kubectl against a sandbox cluster and fails the test if it fails.
func kubectl(t *testing.T, cluster, stdin string, args ...string) string {
	t.Helper()
	return sbtest.Kubectl(t, sb, cluster, stdin, args...)
}
