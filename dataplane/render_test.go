package dataplane

import (
	"strings"
	"testing"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/encoding/protojson"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/crossgate-io/crossgate/wellknown"
)

func gw(annotations map[string]string, ports ...int32) *gatewayv1.Gateway {
	g := &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "crossgate-system", Name: "crossgate-gateway", Annotations: annotations}}
	for _, p := range ports {
		g.Spec.Listeners = append(g.Spec.Listeners, gatewayv1.Listener{Name: gatewayv1.SectionName("l" + string(rune('a'+len(g.Spec.Listeners)))), Port: p, Protocol: gatewayv1.HTTPProtocolType})
	}
	return g
}

func TestServicePorts(t *testing.T) {
	ports, err := ServicePorts(gw(map[string]string{LBPortAnnotation: "81"}, 80, 8443, 80))
	if err != nil {
		t.Fatal(err)
	}
	if len(ports) != 2 || ports[0].Port != 81 || ports[0].TargetPort.IntVal != 80 || ports[1].Port != 8443 || ports[1].TargetPort.IntVal != 8443 {
		t.Errorf("ports %+v: want 81->80 and 8443->8443", ports)
	}
	for _, bad := range []string{"eighty", "0", "70000", ""} {
		_, err := ServicePorts(gw(map[string]string{LBPortAnnotation: bad}, 80))
		if err == nil || !strings.Contains(err.Error(), LBPortAnnotation) || !strings.Contains(err.Error(), "1-65535") {
			t.Errorf("annotation %q: error %v, want one naming the annotation and the allowed range", bad, err)
		}
	}
}

func TestServicePortsNodePort(t *testing.T) {
	ports, err := ServicePorts(gw(map[string]string{LBPortAnnotation: "81", NodePortAnnotation: "30080"}, 80, 8443))
	if err != nil {
		t.Fatal(err)
	}
	if ports[0].Port != 81 || ports[0].NodePort != 30080 || ports[1].NodePort != 0 {
		t.Errorf("ports %+v: want 81->80 on node port 30080 and 8443 on an allocated one", ports)
	}
	if _, err := ServicePorts(gw(map[string]string{NodePortAnnotation: "x"}, 80)); err == nil || !strings.Contains(err.Error(), NodePortAnnotation) {
		t.Errorf("a bad node port: error %v, want one naming the annotation", err)
	}
}

func TestRender(t *testing.T) {
	r, err := Render(gw(map[string]string{LBPortAnnotation: "82"}, 80), RenderOptions{Image: "envoy:test"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Service.Spec.Type != "LoadBalancer" || r.Service.Spec.Ports[0].Port != 82 || r.Service.Spec.Selector[wellknown.GatewayLabel] != "crossgate-gateway" {
		t.Errorf("service %+v", r.Service.Spec)
	}
	pod := r.Deployment.Spec.Template
	if pod.Labels[wellknown.GatewayLabel] != "crossgate-gateway" || pod.Spec.ServiceAccountName != r.ServiceAccount.Name {
		t.Errorf("pod labels %v, sa %q vs %q", pod.Labels, pod.Spec.ServiceAccountName, r.ServiceAccount.Name)
	}
	args := strings.Join(pod.Spec.Containers[0].Args, " ")
	if !strings.Contains(args, "--service-node gateway~crossgate-system/crossgate-gateway") {
		t.Errorf("args %q: the node ID must name the gateway", args)
	}
	if c := pod.Spec.Containers[0]; c.Image != "envoy:test" || c.SecurityContext == nil || *c.SecurityContext.AllowPrivilegeEscalation {
		t.Errorf("container %+v", c)
	}
}

// The Gateway's infrastructure labels and annotations go on every object rendered for it (the
// pods too); crossgate's own labels win a clash, and keys of crossgate's domain are not copied.
func TestRenderInfrastructure(t *testing.T) {
	g := gw(nil, 80)
	g.Spec.Infrastructure = &gatewayv1.GatewayInfrastructure{
		Labels:      map[gatewayv1.LabelKey]gatewayv1.LabelValue{"team": "web", gatewayv1.LabelKey(wellknown.GatewayLabel): "other", "crossgate.io/inject": "enabled"},
		Annotations: map[gatewayv1.AnnotationKey]gatewayv1.AnnotationValue{"cost-center": "42", gatewayv1.AnnotationKey(wellknown.ProxylessAnnotation): "true"},
	}
	r, err := Render(g, RenderOptions{Image: "envoy:test"})
	if err != nil {
		t.Fatal(err)
	}
	for name, m := range map[string]metav1.ObjectMeta{
		"ServiceAccount": r.ServiceAccount.ObjectMeta, "Deployment": r.Deployment.ObjectMeta, "Service": r.Service.ObjectMeta,
		"pod": r.Deployment.Spec.Template.ObjectMeta,
	} {
		if m.Labels["team"] != "web" || m.Labels[wellknown.GatewayLabel] != "crossgate-gateway" || m.Annotations["cost-center"] != "42" ||
			m.Labels["crossgate.io/inject"] != "" || m.Annotations[wellknown.ProxylessAnnotation] != "" {
			t.Errorf("%s: labels %v, annotations %v", name, m.Labels, m.Annotations)
		}
	}
}

// Annotations crossgate set are replaced and removed as the Gateway's change; others' stay.
func TestMergeAnnotations(t *testing.T) {
	first, changed := mergeAnnotations(map[string]string{"deployment.kubernetes.io/revision": "3"}, map[string]string{"a": "1", "b": "2"})
	if !changed || first["a"] != "1" || first["b"] != "2" || first["deployment.kubernetes.io/revision"] != "3" || first[renderedAnnotations] != "a,b" {
		t.Fatalf("first: %v (changed %v)", first, changed)
	}
	if _, changed := mergeAnnotations(first, map[string]string{"a": "1", "b": "2"}); changed {
		t.Errorf("the same annotations again: changed")
	}
	second, changed := mergeAnnotations(first, map[string]string{"a": "9"})
	if !changed || second["a"] != "9" || second["b"] != "" || second["deployment.kubernetes.io/revision"] != "3" || second[renderedAnnotations] != "a" {
		t.Errorf("second: %v", second)
	}
	third, _ := mergeAnnotations(second, nil)
	if len(third) != 1 || third["deployment.kubernetes.io/revision"] != "3" {
		t.Errorf("none wanted: %v", third)
	}
}

func TestBootstrap(t *testing.T) {
	files, err := Bootstrap("crossgate-controller.crossgate-system.svc", 15010)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseBootstrap([]byte(files[BootstrapFile]))
	if err != nil {
		t.Fatal(err)
	}
	if err := back.ValidateAll(); err != nil {
		t.Fatal(err)
	}
	ads := back.GetDynamicResources().GetAdsConfig()
	if ads.GetApiType().String() != "DELTA_GRPC" || ads.GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName() != "xds" {
		t.Errorf("ads %v", ads)
	}
	xds := back.GetStaticResources().GetClusters()[0]
	addr := xds.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if addr.GetAddress() != "crossgate-controller.crossgate-system.svc" || addr.GetPortValue() != 15010 {
		t.Errorf("xds address %v", addr)
	}
	if xds.GetTransportSocket() == nil {
		t.Fatal("the xDS connection must be TLS")
	}
	up := &tlsv3.UpstreamTlsContext{}
	if err := xds.GetTransportSocket().GetTypedConfig().UnmarshalTo(up); err != nil {
		t.Fatal(err)
	}
	common := up.GetCommonTlsContext()
	// Envoy reads static TLS files once: the certificate must come by SDS from files, with the
	// identity Secret's directory watched, or it is never rotated inside Envoy.
	if len(common.GetTlsCertificates()) != 0 || len(common.GetTlsCertificateSdsSecretConfigs()) != 1 {
		t.Fatalf("client certificate %v: want file-based SDS only", common)
	}
	sds := common.GetTlsCertificateSdsSecretConfigs()[0]
	if p := sds.GetSdsConfig().GetPathConfigSource(); p.GetPath() != BootstrapDir+"/"+XDSCertificateFile {
		t.Errorf("certificate SDS source %v", p)
	}
	combined := common.GetCombinedValidationContext()
	if p := combined.GetValidationContextSdsSecretConfig().GetSdsConfig().GetPathConfigSource(); p.GetPath() != BootstrapDir+"/"+XDSTrustedCAFile {
		t.Errorf("trusted CA SDS source %v", p)
	}
	if m := combined.GetDefaultValidationContext().GetMatchTypedSubjectAltNames(); len(m) != 1 || m[0].GetMatcher().GetExact() != "crossgate-controller.crossgate-system.svc" || m[0].GetSanType() != tlsv3.SubjectAltNameMatcher_DNS {
		t.Errorf("the xDS server's name is not checked: %v", m)
	}
	for name, want := range map[string]string{XDSCertificateFile: xdsCertificateSecret, XDSTrustedCAFile: xdsTrustedCASecret} {
		resp := &discoveryv3.DiscoveryResponse{}
		if err := protojson.Unmarshal([]byte(files[name]), resp); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		secret := &tlsv3.Secret{}
		if len(resp.GetResources()) != 1 || resp.GetResources()[0].UnmarshalTo(secret) != nil || secret.GetName() != want {
			t.Fatalf("%s holds %v, want secret %s", name, resp, want)
		}
		dir := secret.GetTlsCertificate().GetWatchedDirectory().GetPath() + secret.GetValidationContext().GetWatchedDirectory().GetPath()
		if dir != IdentityDir {
			t.Errorf("%s: watched directory %q, want %s", name, dir, IdentityDir)
		}
	}
	if back.GetOverloadManager() == nil {
		t.Error("no overload manager: Envoy accepts unlimited downstream connections")
	}
}
