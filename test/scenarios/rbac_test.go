package scenarios

import (
	"testing"

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
			req := simulate.Request{Inbound: true, PodIP: "10.1.2.7", Port: 8080, TLS: true, ALPN: []string{"http/1.1"}, Host: "httpbin.httpbin:8080", Method: tc.method, Path: tc.path, Source: tc.source}
			r := simulate.Simulate(sidecar, req)
			if r.Denied == tc.allowed {
				t.Errorf("sidecar: denied=%v (%s), want allowed=%v", r.Denied, r.DenyReason, tc.allowed)
			}
			if tc.allowed && (len(r.Clusters) != 1 || r.Clusters[0].Name != "inbound/8080") {
				t.Errorf("sidecar: allowed request went to %+v, want the workload", r.Clusters)
			}
			req.Listener = translate.ServerListenerName("10.1.2.7", 8080)
			req.Inbound = false
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
	send := func(source string) *simulate.Result {
		return simulate.Simulate(w.out.Sidecars["httpbin/httpbin"], simulate.Request{Inbound: true, PodIP: "10.1.2.7", Port: 8080, TLS: true,
			Source: source, Protocol: simulate.HTTP1, Host: "httpbin.httpbin:8080", Method: "POST", Path: "/anything"})
	}
	if r := send("spiffe://cluster.local/ns/team-a/sa/rogue"); !r.Denied {
		t.Error("the untrusted Gateway's identity is admitted")
	}
	if r := send("spiffe://cluster.local/ns/crossgate-system/sa/crossgate-gateway"); r.Denied {
		t.Errorf("the controller's gateway is refused: %s", r.DenyReason)
	}
}
