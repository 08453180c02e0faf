// Package security is crossgate's threat model as a list of tests: each threat (who, what they
// could do, what stops them) names the tests that hold it. The tests live beside the harness they
// need (real API servers, the federation, the Envoy model, grpc-go); this list is the one place
// that gathers them. Run as a unit test it checks that every named test exists and that the
// README's threat model names it; `make test-security` runs them all.
package security

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

type threat struct {
	who, could, held string
	// tests by package directory (relative to the module root).
	tests map[string][]string
}

var threats = []threat{
	{
		"a Cluster's author on the control plane", "run a command, read or send the controller's files or another namespace's Secrets through a kubeconfig",
		"inline credentials only; the Secret in the controller's namespace; no key listed",
		map[string][]string{"controllers/federation": {"TestKubeconfigInlineOnly"}, "test/federation": {"TestKubeconfigExecRefused", "TestManagedReasons"}},
	},
	{
		"a leaked member token (the federation's ServiceAccount)", "take over kube-system Leases, plant ServiceImports in system namespaces",
		"RBAC by resourceNames, an admission policy on ServiceImport namespaces, exports there invalid",
		map[string][]string{"test/membership": {"TestJoinWithAScopedServiceAccount"}, "translator": {"TestExportConditionSystemNamespace"}},
	},
	{
		"a namespace user", "mint a trusted identity with a Gateway of crossgate's class",
		"only the operator's Gateways are peers; others run, with an identity of their own, only when the operator's GatewayClass says so (crossgate.io/gateway-namespaces: All)",
		map[string][]string{"test/scenarios": {"TestUntrustedGatewayIsNotAPeer", "TestIngressGatewayIsNotAPeer"}, "test/member": {"TestGatewayRendered"}},
	},
	{
		"a route's author", "send a gateway's traffic to a Service of another namespace without its owner's consent",
		"a backend in another namespace only with a ReferenceGrant there; otherwise RefNotPermitted and no traffic",
		map[string][]string{"test/member": {"TestReferenceGrant"}},
	},
	{
		"a caller in another cluster", "bypass TrafficTarget rules, or pass where a rule resolves to nothing",
		"the same rules at the caller (Envoy and grpc-go); nothing allowed when a rule resolves to nothing",
		map[string][]string{
			"test/scenarios": {"TestCrossClusterRules", "TestCurlToExtHTTPBin"}, "test/proxyless": {"TestRemoteRulesInGRPC"},
			"test/member": {"TestTrafficTargetAllowsNothingWarning"},
		},
	},
	{
		"a workload in another cluster of the set", "pass the exporting cluster's TrafficTargets as the gateway's identity",
		"mTLS from the caller's proxy to the workload's, passed through the gateway by server name: the destination sees the caller",
		map[string][]string{"test/scenarios": {"TestProducerSidePolicy"}, "test/proxyless": {"TestCallThroughPassthroughGateway"}, "test/demo": {"TestWalkthrough"}},
	},
	{
		"whoever reaches a gateway's LoadBalancer port", "reach every exported service with a mesh Host header, or with TLS from outside the set",
		"plaintext serves the exports' direct paths only; TLS needs an exported port's server name and a certificate of the set's CA at the workload",
		map[string][]string{"test/scenarios": {"TestNoAnonymousWayIn"}},
	},
	{
		"a client of an application that terminates its own TLS", "have its TLS taken for the mesh's, or reach the application without identity in policy mode",
		"the workload's proxy terminates only TLS marked as the mesh's (a service's mesh server name, crossgate's ALPN) and passes other TLS through untouched, in permissive mode only",
		map[string][]string{"test/scenarios": {"TestApplicationTLSPassesThrough", "TestCallersMarkMeshTLS"}, "test/proxyless": {"TestSidecarPassesApplicationTLSThrough"}},
	},
	{
		"a member's namespace user", "keep a cluster advertised for a Service it deleted",
		"an export of crossgate's placeholder is invalid",
		map[string][]string{
			"translator": {"TestExportConditionPlaceholder"}, "test/member": {"TestExportOfDeletedServiceWithImport"},
			"test/federation": {"TestPlaceholderIsNotExported"},
		},
	},
	{
		"whoever labels namespaces or creates pods", "capture a node's traffic (hostNetwork), block the controller's own pods, or be blocked by a webhook outage",
		"never injected: hostNetwork pods, Kubernetes' and crossgate's namespaces; an objectSelector opt-out; a Secret for every ServiceAccount name",
		map[string][]string{"test/member": {"TestSidecarInjection"}, "test/install": {"TestInstallRunStatusUninstall"}},
	},
	{
		"a workload with a certificate", "read another identity's configuration, use another trust domain, flood logs and metric labels",
		"identity and trust domain enforced; NACK logs rate-limited and cut; type URL labels bounded",
		map[string][]string{"xds/server": {"TestIdentityIsEnforced", "TestClientCannotFloodLogsOrMetrics"}},
	},
	{
		"whoever reaches the controller's pod network", "read every identity's configuration from /debug/config",
		"served on loopback only; the metrics port serves none",
		map[string][]string{"xds/server": {"TestConfigDumpIsLoopbackOnly"}, "test/install": {"TestInstallRunStatusUninstall"}},
	},
	{
		"an outage of an API server", "take xDS down with leadership, leave a stale Managed=True",
		"xDS outlives leadership; status.lastProbeTime moves while the member is reached",
		map[string][]string{"test/member": {"TestXDSOutlivesLeadership"}, "test/federation": {"TestLastProbeTimeMoves"}},
	},
	{
		"a long or hostile error", "make a condition or an Event unwritable",
		"condition messages and Event notes cut to the API's limits",
		map[string][]string{"test/federation": {"TestLongErrorFitsTheCondition"}},
	},
	{
		"a careless user", "create objects that route nothing, or half a join, or ignored values",
		"refused at admission, before anything is created, or by the chart's schema",
		map[string][]string{
			"test/integration": {"TestInvalidObjectsAreRejected"}, "charts": {"TestTemplateRefusesBadValues"},
			"cmd/crossgate": {"TestSandboxUpRefusesBadGatewayPorts"}, "cmd/crossgate-controller": {"TestLibraryLogsReachTheControllerLog"},
			"sandbox/kubelet": {"TestAppPods", "TestPodsTheNodeCannotRun"}, "test/cli": {"TestSandboxUpStatusDown"},
		},
	},
}

func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// Every named test exists in its package, and the README's threat model names it.
func TestEveryThreatIsHeldByATest(t *testing.T) {
	dir := root(t)
	readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	section := string(readme)
	if i := strings.Index(section, "## Threat model"); i >= 0 {
		section = section[i:]
		if j := strings.Index(section[3:], "\n## "); j >= 0 {
			section = section[:j+3]
		}
	} else {
		t.Fatal("README has no threat model section")
	}
	for _, th := range threats {
		for pkg, names := range th.tests {
			files, _ := filepath.Glob(filepath.Join(dir, pkg, "*_test.go"))
			var src strings.Builder
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				src.Write(b)
			}
			for _, n := range names {
				if !regexp.MustCompile(`(?m)^func ` + n + `\(t \*testing\.T\)`).MatchString(src.String()) {
					t.Errorf("%s: no test %s in %s", th.who, n, pkg)
				}
				if !strings.Contains(section, n) && !strings.Contains(section, "`"+pkg+"`") {
					t.Errorf("%s: the README's threat model names neither %s nor %s", th.who, n, pkg)
				}
			}
		}
	}
}

// TestThreatModel runs every test of the list, package by package (make test-security sets
// CROSSGATE_SECURITY=run; the integration packages need `make bins`).
func TestThreatModel(t *testing.T) {
	if os.Getenv("CROSSGATE_SECURITY") != "run" {
		t.Skip("CROSSGATE_SECURITY=run (make test-security) runs the threat model's tests")
	}
	// Tests a package's listed ones build on (they run first, in source order).
	byPkg := map[string][]string{"test/federation": {"TestWalkthroughImports"}}
	for _, th := range threats {
		for pkg, names := range th.tests {
			byPkg[pkg] = append(byPkg[pkg], names...)
		}
	}
	for pkg, names := range byPkg {
		t.Run(pkg, func(t *testing.T) {
			cmd := exec.Command("go", "test", "-tags", "integration", "-count=1", "-timeout", "30m", "-run", "^("+strings.Join(names, "|")+")$", "./"+pkg)
			cmd.Dir = root(t)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			t.Logf("%s", strings.TrimSpace(string(out)))
			fmt.Fprintf(os.Stderr, "%s: %s\n", pkg, strings.Join(names, ", "))
		})
	}
}
