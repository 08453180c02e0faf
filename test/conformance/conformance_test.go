//go:build integration

// Package conformance runs the Gateway API conformance suite (sigs.k8s.io/gateway-api/conformance,
// the version go.mod pins) against crossgate in a sandbox cluster: a kube-apiserver,
// kube-controller-manager and the sandbox node (which runs the suite's echo servers and CoreDNS,
// and the stand-in for each Gateway's Envoy), crossgate-controller, and the loopback load
// balancer. The GatewayClass is crossgate's, running Gateways in every namespace (the suite's
// live in gateway-conformance-infra). The suite's report is written to $CONFORMANCE_REPORT when
// set; $CONFORMANCE_RUN_TEST runs one test of the suite. In the sandbox the proxies are the stand-in driven by crossgate's Envoy model
// (xds/simulate); a report for upstream comes from the kind run against real Envoy.
package conformance

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/gateway-api/apis/v1alpha2"
	"sigs.k8s.io/gateway-api/apis/v1alpha3"
	"sigs.k8s.io/gateway-api/apis/v1beta1"
	"sigs.k8s.io/gateway-api/conformance"
	confv1 "sigs.k8s.io/gateway-api/conformance/apis/v1"
	"sigs.k8s.io/gateway-api/conformance/utils/config"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"

	"github.com/crossgate-io/crossgate/sandbox"
	"github.com/crossgate-io/crossgate/wellknown"
	"github.com/crossgate-io/crossgate/xds/identity"
)

// GatewayClassName is the class the suite's Gateways name.
const GatewayClassName = "crossgate-conformance"

// loadBalancerIndex puts the load balancer addresses at 127.0.9.x, apart from a sandbox set's.
const loadBalancerIndex = 9

// skipped are the tests of the profile not run, each with its reason.
var skipped = map[string]string{}

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
	class := &gatewayv1.GatewayClass{
		ObjectMeta: metav1.ObjectMeta{Name: GatewayClassName, Annotations: map[string]string{
			wellknown.GatewayNamespacesAnnotation: wellknown.GatewayNamespacesAll,
		}},
		Spec: gatewayv1.GatewayClassSpec{ControllerName: wellknown.ControllerName},
	}
	if err := c.Client.Create(sctx, class); err != nil {
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

	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme,
		gatewayv1.Install, v1beta1.Install, v1alpha2.Install, v1alpha3.Install,
	} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	cl, err := client.New(c.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	kube, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	var skip []string
	for name, why := range skipped {
		t.Logf("skipping %s: %s", name, why)
		skip = append(skip, name)
	}
	opts := suite.ConformanceOptions{
		ConfigurableOptions: suite.ConfigurableOptions{
			GatewayClassName:     GatewayClassName,
			CleanupBaseResources: true,
			CleanupTestResources: true,
			TimeoutConfig:        config.DefaultTimeoutConfig(),
			SkipTests:            skip,
			ConformanceProfiles:  []suite.ConformanceProfileName{suite.GatewayHTTPConformanceProfileName},
			ReportOutputPath:     os.Getenv("CONFORMANCE_REPORT"),
			RunTest:              os.Getenv("CONFORMANCE_RUN_TEST"), // one test, when debugging
			Mode:                 "sandbox",
			Implementation: confv1.Implementation{
				Organization: "crossgate-io", Project: "crossgate", URL: "https://github.com/crossgate-io/crossgate",
				Version: "main", Contact: []string{"@crossgate-io/maintainers"},
			},
		},
		Client: cl, ClientOptions: client.Options{Scheme: scheme}, Clientset: kube, RestConfig: c.Config,
	}
	conformance.RunConformanceWithOptions(t, opts)
}
