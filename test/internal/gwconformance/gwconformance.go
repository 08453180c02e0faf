// Package gwconformance is the harness both runs of the Gateway API conformance suite share (the
// sandbox's, test/conformance, and kind's, test/e2e): crossgate's GatewayClass for the suite, and
// the suite's options, profile and skips.
package gwconformance

import (
	"os"
	"slices"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/gateway-api/apis/v1alpha2"
	"sigs.k8s.io/gateway-api/apis/v1alpha3"
	"sigs.k8s.io/gateway-api/apis/v1beta1"
	"sigs.k8s.io/gateway-api/conformance"
	confv1 "sigs.k8s.io/gateway-api/conformance/apis/v1"
	"sigs.k8s.io/gateway-api/conformance/utils/config"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"

	"github.com/crossgate-io/crossgate/wellknown"
)

// GatewayClassName is the class the suite's Gateways name.
const GatewayClassName = "crossgate-conformance"

// GatewayClass is crossgate's GatewayClass for the suite: it runs Gateways in every namespace
// (the suite's are in gateway-conformance-infra), as ingress gateways without mesh trust. The
// suite's own objects carry no annotation of crossgate's.
func GatewayClass() *gatewayv1.GatewayClass {
	return &gatewayv1.GatewayClass{
		ObjectMeta: metav1.ObjectMeta{Name: GatewayClassName, Annotations: map[string]string{
			wellknown.GatewayNamespacesAnnotation: wellknown.GatewayNamespacesAll,
		}},
		Spec: gatewayv1.GatewayClassSpec{ControllerName: wellknown.ControllerName},
	}
}

// Skipped are the suite's tests of the profile not run, each with its reason (none today: every
// test of GATEWAY-HTTP whose features the GatewayClass claims runs).
var Skipped = map[string]string{}

// Run runs the suite's GATEWAY-HTTP profile against the cluster of cfg, the features claimed
// read from the GatewayClass's status (translator.SupportedFeatures), and writes its report to
// $CONFORMANCE_REPORT when set. mode names the run in the report ("sandbox", "kind").
// $CONFORMANCE_RUN_TEST runs one test of the suite, when debugging.
func Run(t *testing.T, cfg *rest.Config, mode string) {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme,
		gatewayv1.Install, v1beta1.Install, v1alpha2.Install, v1alpha3.Install,
	} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var skip []string
	for name, why := range Skipped {
		t.Logf("skipping %s: %s", name, why)
		skip = append(skip, name)
	}
	slices.Sort(skip)
	conformance.RunConformanceWithOptions(t, suite.ConformanceOptions{
		ConfigurableOptions: suite.ConfigurableOptions{
			GatewayClassName:     GatewayClassName,
			CleanupBaseResources: true,
			CleanupTestResources: true,
			TimeoutConfig:        config.DefaultTimeoutConfig(),
			SkipTests:            skip,
			ConformanceProfiles:  []suite.ConformanceProfileName{suite.GatewayHTTPConformanceProfileName},
			ReportOutputPath:     os.Getenv("CONFORMANCE_REPORT"),
			RunTest:              os.Getenv("CONFORMANCE_RUN_TEST"),
			Mode:                 mode,
			Implementation: confv1.Implementation{
				Organization: "crossgate-io", Project: "crossgate", URL: "https://github.com/crossgate-io/crossgate",
				Version: "main", Contact: []string{"@crossgate-io/maintainers"},
			},
		},
		Client: cl, ClientOptions: client.Options{Scheme: scheme}, Clientset: kube, RestConfig: cfg,
	})
}
