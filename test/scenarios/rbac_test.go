package scenarios

import (
	"strings"
	"testing"

	"github.com/crossgate-io/crossgate/wellknown"
	"github.com/crossgate-io/crossgate/xds/simulate"
	"github.com/crossgate-io/crossgate/xds/translate"
)

// TestInboundRBAC sends requests to cluster-1's httpbin (ServiceAccount httpbin) in policy mode,
// where curl-to-ext-httpbin allows curl/curl to GET "/", through the Envoy sidecar's inbound
// listener and through the proxyless gRPC server's listener.
func TestInboundRBAC(t *testing.T) {
	out := loadWorld(t, "inbound-policy-rbac").out
	const curl = "spiffe://cluster.local/ns/curl/sa/curl"
	const gateway = "spiffe://cluster.local/ns/crossgate-system/sa/crossgate-gateway"
	cases := []struct {
		name, source, method, path string
		allowed                    bool
	}{
		{"curl GET / is allowed", curl, "GET", "/", true},
		{"curl POST / is denied: the route group allows GET only", curl, "POST", "/", false},
		{"curl GET /headers is denied: pathRegex / matches / only", curl, "GET", "/headers", false},
		{"an identity no TrafficTarget names is denied", "spiffe://cluster.local/ns/default/sa/intruder", "GET", "/", false},
		{"the same name in another trust domain is denied", "spiffe://other.domain/ns/curl/sa/curl", "GET", "/", false},
		{"no client certificate is denied", "", "GET", "/", false},
		{"the local gateway is admitted: httpbin is exported", gateway, "POST", "/anything", true},
	}
	sidecar := out.Sidecars["httpbin/httpbin"]
	proxyless := out.Proxyless["httpbin/httpbin"]
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := simulate.Request{Inbound: true, PodIP: "10.1.2.7", Port: 8080, TLS: true, ALPN: []string{wellknown.MeshALPN}, Host: "httpbin.httpbin:8080", Method: tc.method, Path: tc.path, Source: tc.source}
			r := simulate.Simulate(sidecar, req)
			if r.Denied == tc.allowed {
				t.Errorf("sidecar: denied=%v (%s), want allowed=%v", r.Denied, r.DenyReason, tc.allowed)
			}
			if tc.allowed && (len(r.Clusters) != 1 || r.Clusters[0].Name != "inbound/8080") {
				t.Errorf("sidecar: allowed request went to %+v, want the workload", r.Clusters)
			}
			// A caller offers h2 to a proxyless server, whose cluster always speaks HTTP/2.
			req.Listener = translate.ServerListenerName("10.1.2.7", 8080)
			req.Inbound, req.ALPN, req.Protocol = false, []string{wellknown.MeshALPN, "h2"}, simulate.HTTP2
			g := simulate.Simulate(proxyless, req)
			if g.Denied == tc.allowed {
				t.Errorf("proxyless server: denied=%v (%s), want allowed=%v", g.Denied, g.DenyReason, tc.allowed)
			}
		})
	}
	// Without TLS no identity is known: in policy mode the port refuses plaintext.
	r := simulate.Simulate(sidecar, simulate.Request{Inbound: true, PodIP: "10.1.2.7", Port: 8080, Host: "httpbin.httpbin:8080", Method: "GET", Path: "/", Source: curl})
	if !r.Denied || r.Status != 403 {
		t.Errorf("plaintext reached %+v in policy mode (%s)", r.Clusters, r.DenyReason)
	}
	// In permissive mode plaintext and any identity get through.
	perm := loadWorld(t, "inbound-permissive").out.Sidecars["httpbin/httpbin"]
	for _, tls := range []bool{false, true} {
		r := simulate.Simulate(perm, simulate.Request{Inbound: true, PodIP: "10.1.2.7", Port: 8080, TLS: tls, Host: "x", Method: "DELETE", Path: "/x", Source: "spiffe://cluster.local/ns/a/sa/b"})
		if r.Denied {
			t.Errorf("permissive, tls=%v: %s", tls, r.DenyReason)
		}
	}
}

// A Gateway of crossgate's class that a namespace user created is no trusted peer: httpbin's
// policy admits the controller's gateway, not it, and it gets no configuration.
func TestUntrustedGatewayIsNotAPeer(t *testing.T) {
	w := loadWorld(t, "gateway-untrusted")
	if _, ok := w.out.Gateways["team-a/rogue"]; ok {
		t.Error("the untrusted Gateway got a configuration")
	}
	send := func(source string) *simulate.Result { return toExportedHTTPBin(w, source) }
	if r := send("spiffe://cluster.local/ns/team-a/sa/rogue"); !r.Denied {
		t.Error("the untrusted Gateway's identity is admitted")
	}
	if r := send("spiffe://cluster.local/ns/crossgate-system/sa/crossgate-gateway"); r.Denied {
		t.Errorf("the controller's gateway is refused: %s", r.DenyReason)
	}
}

// toExportedHTTPBin is a mesh request from source arriving at the exported httpbin's proxy (its
// inbound side), as a gateway passes it through.
func toExportedHTTPBin(w *world, source string) *simulate.Result {
	return simulate.Simulate(w.out.Sidecars["httpbin/httpbin"], simulate.Request{
		Inbound: true, PodIP: "10.1.2.7", Port: 8080, TLS: true, ALPN: []string{wellknown.MeshALPN},
		Source: source, Protocol: simulate.HTTP1, Host: "httpbin.httpbin:8080", Method: "POST", Path: "/anything",
	})
}

// TestCrossClusterRules: the caller applies its TrafficTarget rules to the remote clusters'
// endpoints before a request leaves (issue 16, defect 3); cluster-1 here is permissive, so its
// workloads admit any caller of the set (TestProducerSidePolicy has it in policy mode). In
// policy-remote-rules, curl/curl may GET or HEAD /status/.* of httpbin/httpbin, which only
// cluster-1 and cluster-3 serve; curl/admin may send anything; curl/ops's TrafficTarget is for
// another port and curl/broken's name a route group, or a match, that does not exist.
func TestCrossClusterRules(t *testing.T) {
	m, w := walkthrough(t, "policy-remote-rules")
	to := func(pod, method, path string) call {
		return call{from: w, pod: pod, dst: "10.97.0.30:8080", host: "httpbin.httpbin:8080", method: method, urlPath: path}
	}
	grpcTo := func(pod string) call {
		return call{from: w, pod: pod, grpc: true, host: "httpbin.httpbin:8080", method: "POST", urlPath: "/hello.Greeter/SayHello"}
	}
	for _, tc := range []struct {
		name string
		c    call
		want string // the application reached, or why it fails
		ok   bool
	}{
		{"an allowed request crosses", to("curl/curl-1", "GET", "/status/200"), "httpbin/httpbin", true},
		{"HEAD is allowed too", to("curl/curl-1", "HEAD", "/status/418"), "httpbin/httpbin", true},
		{"another method is refused at the caller", to("curl/curl-1", "POST", "/status/200"), "403", false},
		{"another path is refused at the caller", to("curl/curl-1", "GET", "/anything"), "403", false},
		{"a path that leaves the allowed one once normalised is refused", to("curl/curl-1", "GET", "/status/../anything"), "403", false},
		{"an escaped dot segment is normalised too", to("curl/curl-1", "GET", "/status/%2e%2e/anything"), "403", false},
		{"a gRPC call (a POST) is refused by grpc-go with PERMISSION_DENIED", grpcTo("curl/curl-1"), "gRPC status 7", false},
		{"a TrafficTarget for any request lets everything cross", to("curl/admin-1", "DELETE", "/anything"), "httpbin/httpbin", true},
		{"and gRPC too", grpcTo("curl/admin-1"), "httpbin/httpbin", true},
		{"a TrafficTarget for another port allows nothing on this one", to("curl/ops-1", "GET", "/status/200"), "kube-proxy", false},
		{"a missing route group or match allows nothing", to("curl/broken-1", "GET", "/status/200"), "kube-proxy", false},
		{"nor to a gRPC caller", grpcTo("curl/broken-1"), "no listener", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := m.send(t, tc.c)
			if tc.ok {
				wantReached(t, p, tc.want+" of gateway-export-routes")
				return
			}
			if p.failed == "" || !strings.Contains(p.String(), tc.want) {
				t.Errorf("want the request to fail (%s), got:\n%s", tc.want, p)
			}
		})
	}
}

// TestIngressGatewayIsNotAPeer: with its class running Gateways in every namespace, a namespace
// user's Gateway is configured (an ingress gateway with its own identity), and still not
// admitted by exported workloads as a gateway peer; the controller's own Gateway is.
func TestIngressGatewayIsNotAPeer(t *testing.T) {
	w := loadWorld(t, "gateway-all-namespaces")
	if _, ok := w.out.Gateways["team-a/rogue"]; !ok {
		t.Error("the ingress Gateway got no configuration")
	}
	if _, ok := w.out.Gateways["team-b/other"]; ok {
		t.Error("the Gateway of a class whose annotation is invalid got a configuration")
	}
	send := func(source string) *simulate.Result { return toExportedHTTPBin(w, source) }
	if r := send("spiffe://cluster.local/ns/team-a/sa/rogue"); !r.Denied {
		t.Error("the ingress Gateway's identity is admitted as a peer")
	}
	if r := send("spiffe://cluster.local/ns/crossgate-system/sa/crossgate-gateway"); r.Denied {
		t.Errorf("the controller's gateway is refused: %s", r.DenyReason)
	}
}
