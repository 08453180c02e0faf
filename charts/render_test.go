package charts

import (
	"context"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/crossgate-io/crossgate/inject"
	"github.com/crossgate-io/crossgate/translator"
)

func render(t *testing.T, sets ...string) []*unstructured.Unstructured {
	t.Helper()
	vals, err := Values(sets)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Template(context.Background(), "crossgate-system", vals, false)
	if err != nil {
		t.Fatalf("rendering with %v: %v", sets, err)
	}
	objs, err := Objects(m)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func kinds(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	slices.Sort(out)
	return out
}

func find[T any](t *testing.T, objs []*unstructured.Unstructured, kind, name string) *T {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			v := new(T)
			if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, v, true); err != nil {
				t.Fatalf("%s %s: %v", kind, name, err)
			}
			return v
		}
	}
	t.Fatalf("no %s %s in the rendered chart (%v)", kind, name, kinds(objs))
	return nil
}

func TestTemplateDefault(t *testing.T) {
	got := kinds(render(t))
	want := []string{
		"ClusterRole/crossgate-controller", "ClusterRoleBinding/crossgate-controller", "Deployment/crossgate-controller",
		"Gateway/crossgate-gateway", "GatewayClass/crossgate", "MeshConfig/fsm-mesh-config", "Namespace/fsm-system",
		"Role/crossgate-controller", "RoleBinding/crossgate-controller", "Service/crossgate-controller", "ServiceAccount/crossgate-controller",
	}
	if !slices.Equal(got, want) {
		t.Errorf("objects:\n got %v\nwant %v", got, want)
	}
}

// TestNoWildcards: the controller's roles name every verb, resource and group.
func TestNoWildcards(t *testing.T) {
	objs := render(t)
	cr := find[rbacv1.ClusterRole](t, objs, "ClusterRole", "crossgate-controller")
	role := find[rbacv1.Role](t, objs, "Role", "crossgate-controller")
	if role.Namespace != "crossgate-system" {
		t.Errorf("the Role is in %q, want the release's namespace", role.Namespace)
	}
	for _, r := range append(cr.Rules, role.Rules...) {
		if slices.Contains(r.Verbs, "*") || slices.Contains(r.Resources, "*") || slices.Contains(r.APIGroups, "*") || len(r.NonResourceURLs) > 0 {
			t.Errorf("a wildcard or non-resource rule: %+v", r)
		}
		if slices.Contains(r.Verbs, "escalate") || slices.Contains(r.Verbs, "bind") || slices.Contains(r.Verbs, "impersonate") {
			t.Errorf("a privilege-granting verb: %+v", r)
		}
	}
	if len(cr.Rules) < 10 {
		t.Errorf("the ClusterRole has %d rules: is files/rbac/role.yaml generated (make manifests)?", len(cr.Rules))
	}
}

// TestTemplateCertManager: cert-manager issues the webhook's certificate, the chart registers
// the webhook exactly as the controller would, and the controller reads the mounted files.
func TestTemplateCertManager(t *testing.T) {
	objs := render(t, "certManager.enabled=true")
	got := kinds(objs)
	for _, k := range []string{"Certificate/crossgate-webhook", "Issuer/crossgate-selfsigned", "Certificate/crossgate-ca", "Issuer/crossgate-ca", "MutatingWebhookConfiguration/crossgate-sidecar-injector"} {
		if !slices.Contains(got, k) {
			t.Errorf("no %s in %v", k, got)
		}
	}
	mwc := find[admissionregistrationv1.MutatingWebhookConfiguration](t, objs, "MutatingWebhookConfiguration", inject.ConfigurationName)
	if mwc.Annotations["cert-manager.io/inject-ca-from"] != "crossgate-system/crossgate-webhook" {
		t.Errorf("annotations %v: want cert-manager's CA injection from the Certificate", mwc.Annotations)
	}
	path, port := inject.Path, int32(443)
	want := inject.Configuration(admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{
		Namespace: "crossgate-system", Name: "crossgate-controller", Path: &path, Port: &port,
	}}, "crossgate-system")
	if !equality.Semantic.DeepEqual(mwc.Webhooks, want.Webhooks) {
		t.Errorf("the chart's webhook differs from the controller's own registration:\n got %+v\nwant %+v", mwc.Webhooks, want.Webhooks)
	}
	dep := strings.Join(find[appsv1.Deployment](t, objs, "Deployment", "crossgate-controller").Spec.Template.Spec.Containers[0].Args, " ")
	for _, a := range []string{"--webhook-cert-dir=/etc/crossgate/webhook", "--webhook-registration=external", "--cert-manager-issuer=Issuer/crossgate-ca"} {
		if !strings.Contains(dep, a) {
			t.Errorf("the controller's args %q lack %s", dep, a)
		}
	}

	objs = render(t, "certManager.enabled=true", "certManager.issuerRef.name=corp-ca", "certManager.issuerRef.kind=ClusterIssuer")
	if slices.Contains(kinds(objs), "Issuer/crossgate-selfsigned") || slices.Contains(kinds(objs), "Issuer/crossgate-ca") {
		t.Error("an Issuer is created although an issuer is named")
	}
	if dep := find[appsv1.Deployment](t, objs, "Deployment", "crossgate-controller"); !slices.Contains(dep.Spec.Template.Spec.Containers[0].Args, "--cert-manager-issuer=ClusterIssuer/corp-ca") {
		t.Errorf("the controller's args %v: want the named issuer", dep.Spec.Template.Spec.Containers[0].Args)
	}
	cert := find[unstructured.Unstructured](t, objs, "Certificate", "crossgate-webhook")
	if ref, _, _ := unstructured.NestedStringMap(cert.Object, "spec", "issuerRef"); ref["name"] != "corp-ca" || ref["kind"] != "ClusterIssuer" {
		t.Errorf("issuerRef %v", ref)
	}
}

func TestTemplateGatewayPorts(t *testing.T) {
	gw := find[unstructured.Unstructured](t, render(t, "gateway.lbPort=81", "gateway.nodePort=30080"), "Gateway", "crossgate-gateway")
	if a := gw.GetAnnotations(); a["crossgate.io/lb-port"] != "81" || a["crossgate.io/node-port"] != "30080" {
		t.Errorf("annotations %v", a)
	}
	// The listeners the sandbox and the tests declare: direct HTTP, and TLS passthrough for the
	// exports' TLSRoutes.
	typed := find[gatewayv1.Gateway](t, render(t), "Gateway", "crossgate-gateway")
	if want := translator.GatewayListeners(80); !equality.Semantic.DeepEqual(typed.Spec.Listeners, want) {
		t.Errorf("listeners %+v, want %+v", typed.Spec.Listeners, want)
	}
}

// TestTemplateRefusesBadValues: each bad value fails rendering with a message naming it and what
// is allowed.
func TestTemplateRefusesBadValues(t *testing.T) {
	for set, want := range map[string]string{
		"clusterSet.name=Cluster_1":                      `clusterSet.name "Cluster_1": want empty or a DNS label`,
		"clusterSet.region=":                             `clusterSet.region "": want a DNS label`,
		"logLevel=loud":                                  `logLevel "loud": want debug, info, warn or error`,
		"gateway.lbPort=70000":                           "gateway.lbPort 70000: want 1-65535",
		"gateway.nodePort=-1":                            "gateway.nodePort -1",
		"controller.federation=maybe":                    `controller.federation "maybe": want auto, on or off`,
		"certManager.issuerRef.kind=CA":                  `certManager.issuerRef.kind "CA": want Issuer or ClusterIssuer`,
		"webhook.enabled=false,certManager.enabled=true": "certManager.enabled: cert-manager issues the webhook's certificate; it needs webhook.enabled",
	} {
		vals, err := Values([]string{set})
		if err != nil {
			t.Fatal(err)
		}
		_, err = Template(context.Background(), "crossgate-system", vals, false)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--set %s: error %v, want one saying %q", set, err, want)
		}
	}
	// values.schema.json: an unknown key (a typo) or a wrong type is refused, naming the key.
	for set, want := range map[string]string{
		"gatway.lbPort=81":         "gatway",
		"controller.replica=2":     "replica",
		"controller.replicas=none": "/controller/replicas",
		"webhook.enabled=maybe":    "/webhook/enabled",
	} {
		vals, err := Values([]string{set})
		if err != nil {
			t.Fatal(err)
		}
		_, err = Template(context.Background(), "crossgate-system", vals, false)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--set %s: error %v, want one naming %q", set, err, want)
		}
	}
	if _, err := Values([]string{"novalue"}); err == nil || !strings.Contains(err.Error(), "key=value") {
		t.Errorf("a --set without '=': %v", err)
	}
}

// TestHelmLint runs helm's own linter (as `helm lint --strict` does) over the chart directory,
// with default and with cert-manager values: no warning or error (helm lint --strict fails on
// warnings); INFO messages (the chart has no icon) are logged.
func TestHelmLint(t *testing.T) {
	for _, sets := range [][]string{nil, {"certManager.enabled=true"}} {
		vals, err := Values(sets)
		if err != nil {
			t.Fatal(err)
		}
		l := lint.All("crossgate", vals, "crossgate-system", true)
		for _, m := range l.Messages {
			if m.Severity > support.InfoSev {
				t.Errorf("helm lint %v: %s", sets, m.Error())
			} else {
				t.Logf("helm lint %v: %s", sets, m.Error())
			}
		}
		if len(l.Messages) > 0 && l.HighestSeverity > support.InfoSev {
			t.Errorf("helm lint %v: highest severity %d", sets, l.HighestSeverity)
		}
	}
}
