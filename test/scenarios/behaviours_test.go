package scenarios

import (
	"strings"
	"testing"
	"time"

	"github.com/crossgate-io/crossgate/wellknown"
	"github.com/crossgate-io/crossgate/xds/simulate"
)

// What the mesh does with the traffic of real pods beyond the walkthrough: each test names the
// finding of the Envoy review it holds (shared/reference/envoy-review.md).

func scopeMesh(t *testing.T) (*mesh, *world) {
	t.Helper()
	w := loadWorld(t, "outbound-scope-and-protocols")
	c1w := loadWorld(t, "gateway-export-routes")
	return &mesh{
		worlds:   []*world{w, c1w},
		gateways: map[string]gatewayAt{gatewayC1: {c1w, "crossgate-system/crossgate-gateway", 80}},
		apps:     map[string]string{},
	}, w
}

// W3: a meshed pod reaches the API server on 443 and an HTTPS site outside with its own TLS
// untouched: neither is a mesh service, and 443 is not parsed as HTTP.
func TestHTTPSEgressPassesThrough(t *testing.T) {
	m, w := scopeMesh(t)
	for dst, server := range map[string]string{
		"10.96.0.1:443":     "server at 172.18.0.2:6443", // KUBERNETES_SERVICE_HOST
		"93.184.216.34:443": "server at 93.184.216.34:443",
	} {
		p := m.send(t, call{from: w, pod: "curl/curl-5b8d6", dst: dst, tls: true, sni: "kubernetes.default.svc"})
		if p.reached != server || !p.tls {
			t.Errorf("TLS to %s: want %s to get the client's own TLS, got:\n%s", dst, server, p)
		}
	}
	// A mesh service's https port: forwarded by ClusterIP as TCP, inside the mesh's mTLS, and
	// the application gets its client's TLS.
	m.apps["sidecar shop/web of outbound-scope-and-protocols (inbound)"] = "tls"
	p := m.send(t, call{from: w, pod: "curl/curl-5b8d6", dst: "10.97.1.10:443", tls: true, sni: "web.shop"})
	wantReached(t, p, "shop/web")
	if r := first(p); r.Clusters[0].Name != "outbound/shop/web:443" || r.Clusters[0].Upstream.Protocol != simulate.TCP {
		t.Errorf("https port of a mesh service: %+v, want it forwarded as TCP by its ClusterIP", r.Clusters)
	}
}

// W3: DNS over TCP to kube-dns passes through.
func TestDNSOverTCP(t *testing.T) {
	m, w := scopeMesh(t)
	p := m.send(t, call{from: w, pod: "curl/curl-5b8d6", dst: "10.96.0.10:53", proto: simulate.TCP})
	wantReached(t, p, "outbound-scope-and-protocols kube-system/coredns-1")
	if r := first(p); r.Clusters[0].Name != "passthrough" {
		t.Errorf("DNS over TCP went to %s", r.Clusters[0].Name)
	}
}

// W2: a connection to any address the sidecar does not route passes through unchanged, whatever
// its port; a request to a mesh Service's address is that Service's, whatever its Host (the
// address decides, as kube-proxy's would).
func TestUnknownHostsAndAddresses(t *testing.T) {
	m, w := scopeMesh(t)
	p := m.send(t, call{from: w, pod: "curl/curl-5b8d6", dst: "10.97.1.10:8080", host: "example.com", pick: endpointIn("cluster-2")})
	wantReached(t, p, "shop/web")
	if r := first(p); r.Clusters[0].Name != "outbound/shop/web:8080" {
		t.Errorf("unknown Host to web's address went to %+v", r.Clusters)
	}
	p = m.send(t, call{from: w, pod: "curl/curl-5b8d6", dst: "203.0.113.7:8080", host: "api.example.org"})
	wantReached(t, p, "server at 203.0.113.7:8080")
	if r := first(p); r.Clusters[0].Name != "passthrough" {
		t.Errorf("an external address on a mesh port went to %+v", r.Clusters)
	}
	p = m.send(t, call{from: w, pod: "curl/curl-5b8d6", dst: "10.97.1.12:8080", host: "legacy.shop"}) // a Service without selector
	wantReached(t, p, "server at 10.50.0.9:8080")
}

// K11: appProtocol and port names decide: gRPC is HTTP/2 upstream, redis and tcp-* are TCP, a
// WebSocket port is HTTP.
func TestProtocolsFromAppProtocolAndNames(t *testing.T) {
	m, w := scopeMesh(t)
	for dst, want := range map[string]string{"10.97.1.10:9000": simulate.HTTP2, "10.97.1.10:8081": simulate.HTTP1, "10.97.1.10:9001": simulate.HTTP1, "10.97.1.10:6379": simulate.TCP, "10.97.1.10:5432": simulate.TCP, "10.97.1.10:9443": simulate.TCP} {
		proto := simulate.HTTP1
		if want == simulate.TCP {
			proto = simulate.TCP
		}
		r := first(m.send(t, call{from: w, pod: "curl/curl-5b8d6", dst: dst, proto: proto, host: "web.shop"}))
		if r.Denied || len(r.Clusters) == 0 || r.Clusters[0].Upstream.Protocol != want || !strings.HasPrefix(r.Clusters[0].Name, "outbound/shop/web:") {
			t.Errorf("%s: %+v, want a web cluster over %s", dst, r, want)
		}
	}
}

// W11: a TCP port of a service that another cluster exports stays local; its HTTP port spreads.
func TestRemoteClustersServeHTTPOnly(t *testing.T) {
	m, w := scopeMesh(t)
	r := first(m.send(t, call{from: w, pod: "curl/curl-5b8d6", dst: "10.97.1.10:5432", proto: simulate.TCP}))
	for _, pr := range r.Clusters[0].Priorities {
		for _, l := range pr.Localities {
			if l.Name != c2 {
				t.Errorf("the TCP port has a locality of %s", l.Name)
			}
		}
	}
	r = first(m.send(t, call{from: w, pod: "curl/curl-5b8d6", dst: "10.97.1.10:8080", host: "web.shop:8080"}))
	if len(r.Clusters[0].Priorities[0].Localities) != 2 {
		t.Errorf("the HTTP port: localities %+v, want this cluster and cluster-1", r.Clusters[0].Priorities[0].Localities)
	}
}

// R2: a Service on a port the sidecar listens on itself is not routed, does not collide with
// the capture listeners (Load would refuse the duplicate address), and its connections pass
// through.
func TestServiceOnSidecarPort(t *testing.T) {
	m, w := scopeMesh(t)
	p := m.send(t, call{from: w, pod: "curl/curl-5b8d6", dst: "10.97.1.11:15001", host: "sidecar-ports.shop:15001"})
	wantReached(t, p, "shop/web")
	if r := first(p); r.Listener != "outbound-virtual" || r.Clusters[0].Name != "passthrough" {
		t.Errorf("port 15001: listener %s cluster %+v", r.Listener, r.Clusters)
	}
}

// W12: a caller in the service's namespace uses its short name, and a request by ClusterIP
// crosses a remote gateway: the gateway routes the connection by its server name, so the
// remote workload gets whatever Host the caller sent, as a local workload does.
func TestShortNamesAndClusterIPHosts(t *testing.T) {
	m, w := walkthrough(t, "walkthrough-4-activeactive")
	for _, c := range []call{
		{from: w, pod: "httpbin/httpbin-7c9f4", dst: "10.97.0.30:8080", host: "httpbin:8080"},
		{from: w, pod: "curl/curl-5b8d6", dst: "10.97.0.30:8080", host: "10.97.0.30:8080"},
		{from: w, pod: "curl/curl-5b8d6", dst: "10.97.0.30:8080", host: "httpbin.httpbin.svc.cluster.local"},
	} {
		c.pick = endpointIn("cluster-1")
		p := m.send(t, c)
		wantReached(t, p, "httpbin/httpbin of gateway-export-routes")
		if p.host != c.host {
			t.Errorf("Host %s arrives as %q", c.host, p.host)
		}
	}
	// Whatever name resolved to httpbin's address, the connection is httpbin's.
	if r := first(m.send(t, call{from: w, pod: "curl/curl-5b8d6", dst: "10.97.0.30:8080", host: "some-alias:8080"})); r.Clusters[0].Name != "outbound/httpbin/httpbin:8080" {
		t.Errorf("another name for httpbin's address: %+v", r.Clusters)
	}
}

// W9: a pod calls its own Service and its sidecar picks the pod itself: the connection goes
// through the pod's inbound listener (mTLS terminated) to the application.
func TestPodCallsItsOwnService(t *testing.T) {
	m, w := walkthrough(t, "walkthrough-3-failover-local")
	p := m.send(t, call{from: w, pod: "httpbin/httpbin-7c9f4", dst: "10.97.0.30:8080", host: "httpbin.httpbin:8080"})
	wantReached(t, p, "httpbin/default of walkthrough-3")
	if len(p.hops) < 3 || !strings.Contains(p.hops[1].at, "(inbound)") || p.hops[1].result.Listener != "inbound" {
		t.Errorf("the self-call does not go through the inbound listener:\n%s", p)
	}
}

// W1, W6: gRPC from a sidecar caller reaches a gRPC server of another cluster through that
// cluster's gateway and the server's sidecar, HTTP/2 at every hop.
func TestGRPCAcrossGatewayFromSidecar(t *testing.T) {
	m, w := walkthrough(t, "walkthrough-4-activeactive")
	m.apps = map[string]string{"sidecar httpbin/httpbin of gateway-export-routes (inbound)": "grpc", "sidecar httpbin/default of walkthrough-4-activeactive (inbound)": "grpc"}
	for _, where := range []string{"cluster-1", "cluster-2"} {
		p := m.send(t, call{from: w, pod: "curl/curl-5b8d6", dst: "10.97.0.30:8080", proto: simulate.HTTP2, host: "httpbin.httpbin:8080", method: "POST", urlPath: "/hello.Greeter/SayHello", pick: endpointIn(where)})
		wantReached(t, p, "httpbin/")
		if p.proto != simulate.HTTP2 {
			t.Errorf("to %s the gRPC server got %s", where, p.proto)
		}
	}
	// grpc-go's client crosses the same way.
	p := m.send(t, call{from: w, pod: "curl/curl-5b8d6", grpc: true, host: "httpbin.httpbin:8080", urlPath: "/hello.Greeter/SayHello", method: "POST", pick: endpointIn("cluster-1")})
	wantReached(t, p, "httpbin/httpbin of gateway-export-routes")
}

// W6: an Envoy sidecar and a gateway call a proxyless gRPC server with HTTP/2 over mTLS.
func TestEnvoyCallsProxylessGRPCServer(t *testing.T) {
	w := loadWorld(t, "proxyless-grpc-server")
	m := &mesh{worlds: []*world{w}, gateways: map[string]gatewayAt{"192.168.1.110:81": {w, "crossgate-system/crossgate-gateway", 80}}}
	for _, dst := range []string{"10.96.2.10:9000", "10.96.2.11:9000"} { // the port named grpc, and an unnamed one
		p := m.send(t, call{from: w, pod: "grpc/client-1", dst: dst, proto: simulate.HTTP2, host: "echo.grpc:9000", method: "POST", urlPath: "/grpc.testing.TestService/UnaryCall"})
		wantReached(t, p, "proxyless-grpc-server grpc/echo-1")
	}
	// A gRPC caller of another cluster, through the gateway, which passes its mTLS through by
	// the server name to the server, which sees the caller.
	p := &path{}
	m.toAddress(t, p, w, mustAddrPort("192.168.1.110:81"), simulate.Request{
		TLS: true, ALPN: []string{"h2"}, SNI: wellknown.MeshSNI("grpc", "echo", 9000), Source: "spiffe://cluster.local/ns/curl/sa/curl",
		Protocol: simulate.HTTP2, Host: "echo.grpc:9000", Method: "POST", Path: "/grpc.testing.TestService/UnaryCall",
	})
	wantReached(t, p, "proxyless-grpc-server grpc/echo-1")
}

// W8: kubelet's probes in policy mode: the rewritten ones reach the application through the
// probe port; one that was not rewritten is refused by the inbound policy; one on a port no
// Service exposes passes through; the sidecar's own readiness answers.
func TestKubeletProbesInPolicyMode(t *testing.T) {
	w := loadWorld(t, "inbound-probes-policy-mode")
	m := &mesh{worlds: []*world{w}}
	kubelet := func(port uint16, urlPath string) *path {
		p := &path{}
		return m.toAddress(t, p, w, netipAddrPort("10.2.2.7", port), simulate.Request{Protocol: simulate.HTTP1, Host: "10.2.2.7", Method: "GET", Path: urlPath})
	}
	p := kubelet(15020, "/crossgate-probe/8080/status/200")
	wantReached(t, p, "httpbin/default")
	if p.urlPath != "/status/200" {
		t.Errorf("the application got %s", p.urlPath)
	}
	if p = kubelet(15020, "/crossgate-probe/9090/healthz?full=1"); p.urlPath != "/healthz?full=1" || p.failed != "" {
		t.Errorf("probe with a query:\n%s (path %s)", p, p.urlPath)
	}
	wantFailed(t, kubelet(15020, "/crossgate-probe/8080/admin"), "404") // only the declared probes
	wantFailed(t, kubelet(8080, "/status/200"), "403")                  // not rewritten: the policy refuses it
	wantReached(t, kubelet(9090, "/healthz"), "httpbin/default")        // no Service exposes 9090
	if r := kubelet(15020, "/crossgate-ready").hops[0].result; r.DirectResponse != 200 {
		t.Errorf("readiness: %+v", r)
	}
}

// W4: ActiveActive weights 3 (cluster-1) and 1 (local, three pods) share requests 3:1 by
// locality, not by host.
func TestActiveActiveWeightsByLocality(t *testing.T) {
	m, w := walkthrough(t, "gtp-activeactive-local-weight")
	sc, grpc := curl(w)
	for _, c := range []call{sc, grpc} {
		wantShares(t, first(m.send(t, c)), map[string]float64{c1: 0.75, c2: 0.25})
	}
}

// R1: a route attached to a wildcard and a specific listener of one port is served once per
// hostname (Load refuses a domain twice in a route configuration).
func TestGatewayListenersShareAPort(t *testing.T) {
	w := loadWorld(t, "gateway-listeners-share-a-port")
	gw := w.out.Gateways["crossgate-system/crossgate-gateway"]
	for _, c := range []struct {
		port       uint32
		host, path string
		ok         bool
	}{
		{80, "foo.example.com", "/", true},
		{80, "other.example.com", "/", false},
		{8000, "bar.example.com", "/bar/x", true},
		{8000, "bar.example.com", "/baz", false},
	} {
		r := simulate.Simulate(gw, simulate.Request{Port: c.port, Protocol: simulate.HTTP1, Host: c.host, Path: c.path, Method: "GET"})
		if ok := !r.Denied && len(r.Clusters) == 1 && r.Clusters[0].Name == "gateway/httpbin/httpbin:8080"; ok != c.ok {
			t.Errorf("%s%s on %d: routed=%v, want %v (%s)", c.host, c.path, c.port, ok, c.ok, r.DenyReason)
		}
	}
}

// K7: a client that waits for the server to speak first (a database) reaches a TCP port of a
// permissive pod once tls_inspector gives up.
func TestServerFirstProtocol(t *testing.T) {
	m, w := scopeMesh(t)
	m.apps["sidecar shop/web of outbound-scope-and-protocols (inbound)"] = "tcp"
	p := &path{}
	m.toAddress(t, p, w, netipAddrPort("10.2.3.4", 5432), simulate.Request{Protocol: simulate.TCP, ServerFirst: true})
	wantReached(t, p, "shop/web")
}

// K3: paths are normalised before RBAC: the route group allows GET /status/.* with an X-Team
// header, and /status/../secret is /secret, which it does not allow.
func TestPathNormalisedBeforeRBAC(t *testing.T) {
	w := loadWorld(t, "inbound-rbac-methods-headers")
	res := w.out.Sidecars["httpbin/httpbin"]
	send := func(path string) *simulate.Result {
		return simulate.Simulate(res, simulate.Request{
			Inbound: true, PodIP: "10.1.2.7", Port: 8080, TLS: true, ALPN: []string{wellknown.MeshALPN}, Source: "spiffe://cluster.local/ns/curl/sa/curl",
			Protocol: simulate.HTTP1, Host: "httpbin", Method: "GET", Path: path, Headers: map[string]string{"x-team": "blue"},
		})
	}
	if r := send("/status/200"); r.Denied {
		t.Fatalf("the allowed request is denied: %s", r.DenyReason)
	}
	for _, path := range []string{"/status/../secret", "/status//..//secret", "/status/./../secret"} {
		if r := send(path); !r.Denied || r.Status != 403 {
			t.Errorf("%s reached the application as %s", path, r.Path)
		}
	}
}

// K5: no route cuts long requests or streams at Envoy's default 15 s.
func TestNoRouteTimeout(t *testing.T) {
	m, w := walkthrough(t, "walkthrough-4-activeactive")
	sc, _ := curl(w)
	p := m.send(t, sc)
	for _, h := range p.hops {
		if r := h.result; r != nil && len(r.Clusters) > 0 && r.Route != "" && r.Timeout != time.Duration(0) {
			t.Errorf("%s: route %s times out after %s", h.at, r.Route, r.Timeout)
		}
	}
}
