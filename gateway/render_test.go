package gateway

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
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
	if r.Service.Spec.Type != "LoadBalancer" || r.Service.Spec.Ports[0].Port != 82 || r.Service.Spec.Selector[GatewayLabel] != "crossgate-gateway" {
		t.Errorf("service %+v", r.Service.Spec)
	}
	pod := r.Deployment.Spec.Template
	if pod.Labels[GatewayLabel] != "crossgate-gateway" || pod.Spec.ServiceAccountName != r.ServiceAccount.Name {
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

func TestBootstrap(t *testing.T) {
	b, err := Bootstrap("crossgate-controller.crossgate-system.svc", 15010)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseBootstrap(b)
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
		t.Error("the xDS connection must be TLS")
	}
}
