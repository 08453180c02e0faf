//go:build integration

// Package conformance runs the Gateway API conformance suite (sigs.k8s.io/gateway-api/conformance,
// the version go.mod pins; its GATEWAY-HTTP profile) against crossgate in a sandbox cluster: a
// kube-apiserver, kube-controller-manager and the sandbox node (which runs the suite's echo
// servers and CoreDNS, and the stand-in for each Gateway's Envoy), crossgate-controller, and the
// loopback load balancer. The GatewayClass is crossgate's, running Gateways in every namespace
// (test/internal/gwconformance). The suite's report goes to $CONFORMANCE_REPORT when set (`make
// conformance`: bin/conformance-report.yaml). In the sandbox the proxies are the stand-in driven
// by crossgate's Envoy model (xds/simulate); a report for upstream comes from the kind run
// against real Envoy (`make conformance-kind`).
package conformance

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/crossgate-io/crossgate/sandbox"
	"github.com/crossgate-io/crossgate/test/internal/gwconformance"
	"github.com/crossgate-io/crossgate/xds/identity"
)

// loadBalancerIndex puts the load balancer addresses at 127.0.9.x, apart from a sandbox set's.
const loadBalancerIndex = 9

func TestGatewayHTTPConformance(t *testing.T) {
	// Not deferred: the suite's parallel tests run after this function returns, before its
	// cleanups.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	dir := t.TempDir()
	crossgate, err := sandbox.BuildCommands(dir)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sctx, scancel := context.WithTimeout(ctx, 3*time.Minute)
	defer scancel()
	sb, err := sandbox.Start(sctx, sandbox.Options{Clusters: []string{"cluster-1"}, Dir: filepath.Join(dir, "data"), Node: true, NodeLog: log, Crossgate: crossgate})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sb.Stop)
	c := sb.Clusters[0]
	root, err := identity.NewCA(sandbox.TrustDomain)
	if err != nil {
		t.Fatal(err)
	}
	if err := sandbox.Install(sctx, c, root, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Client.Create(sctx, gwconformance.GatewayClass()); err != nil {
		t.Fatal(err)
	}
	ctl, err := sandbox.StartController(sctx, c, filepath.Join(dir, "crossgate-controller"), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ctl.Stop)
	if _, err := sandbox.NewLoadBalancer(ctx, c.Config, loadBalancerIndex, log); err != nil {
		t.Fatal(err)
	}
	t.Logf("sandbox in %s (pod logs in %s)", dir, c.PodLogs)
	gwconformance.Run(t, c.Config, "sandbox")
}
