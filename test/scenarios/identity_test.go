package scenarios

import (
	"maps"
	"strings"
	"testing"

	"github.com/crossgate-io/crossgate/translator"
	"github.com/crossgate-io/crossgate/wellknown"
	"github.com/crossgate-io/crossgate/xds/simulate"
	"github.com/crossgate-io/crossgate/xds/translate"
)

// Identity end to end (issue 18): a caller's proxy opens mTLS, as the caller, to the workload of
// another cluster; that cluster's gateway passes it through by its server name; the workload's
// proxy terminates it and applies its own cluster's TrafficTargets to the caller.

// producerPolicy is cluster-2 of policy-remote-rules (policy mode: curl/curl may GET or HEAD
// /status/.*, curl/admin anything) calling cluster-1 of export-policy-mode (policy mode: curl/curl
// may GET anything), whose gateway is 192.168.1.110:81.
func producerPolicy(t *testing.T) (*mesh, *world) {
	t.Helper()
	c2w := loadWorld(t, "policy-remote-rules")
	c1w := loadWorld(t, "export-policy-mode")
	return &mesh{
		worlds:   []*world{c2w, c1w},
		gateways: map[string]gatewayAt{gatewayC1: {c1w, "crossgate-system/crossgate-gateway", 80}},
	}, c2w
}

// hopAt is the first hop whose description starts with prefix.
func hopAt(p *path, prefix string) *hop {
	for i := range p.hops {
		if strings.HasPrefix(p.hops[i].at, prefix) {
			return &p.hops[i]
		}
	}
	return nil
}

// The destination's proxy sees the caller, not the gateway: the exporting cluster's TrafficTarget
// admits curl/curl of cluster-2 and refuses curl/admin of cluster-2, which its own cluster allows
// everything. A call passes only when both clusters' policies allow it.
func TestProducerSidePolicy(t *testing.T) {
	m, w := producerPolicy(t)
	to := func(pod, method, urlPath string) call {
		return call{from: w, pod: pod, dst: "10.97.0.30:8080", host: "httpbin.httpbin:8080", method: method, urlPath: urlPath, pick: endpointIn("cluster-1")}
	}
	const inbound = "sidecar httpbin/httpbin of export-policy-mode (inbound)"
	for _, tc := range []struct {
		name     string
		c        call
		ok       bool
		deniedBy string // the hop that refuses
	}{
		{"both clusters allow curl GET /status/200", to("curl/curl-1", "GET", "/status/200"), true, ""},
		{"the caller's cluster allows HEAD, the exporter's does not", to("curl/curl-1", "HEAD", "/status/418"), false, inbound},
		{"the caller's cluster allows admin anything, the exporter admits curl only", to("curl/admin-1", "GET", "/status/200"), false, inbound},
		{"the caller's cluster refuses before the request leaves", to("curl/curl-1", "POST", "/status/200"), false, "sidecar curl/curl of policy-remote-rules"},
		{"a gRPC call of curl/admin through grpc-go is refused by the exporter", call{from: w, pod: "curl/admin-1", grpc: true, host: "httpbin.httpbin:8080", method: "POST", urlPath: "/hello.Greeter/SayHello", pick: endpointIn("cluster-1")}, false, inbound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := m.send(t, tc.c)
			if tc.ok {
				wantReached(t, p, "httpbin/httpbin of export-policy-mode")
			} else {
				wantFailed(t, p, "403")
				if h := hopAt(p, tc.deniedBy); h == nil || h.result == nil || (!h.result.Denied && h.result.DirectResponse == 0) {
					t.Errorf("want %s to refuse, got:\n%s", tc.deniedBy, p)
				}
			}
			if tc.deniedBy == inbound || tc.ok {
				// The gateway passed the caller's TLS through, untouched, by its server name.
				g := hopAt(p, "gateway crossgate-system/crossgate-gateway")
				if g == nil || g.result.FilterChain != "tlsroute/httpbin/httpbin.mesh-8080" {
					t.Errorf("the gateway did not pass the connection through:\n%s", p)
				}
			}
		})
	}
}

// Nothing reaches a mesh service through a gateway's LoadBalancer port without being a workload
// of the set: plaintext with a mesh Host finds no route (only the export's direct paths are
// served in plaintext), TLS without the server name of an exported port finds no filter chain,
// and TLS with one is passed through to the workload's proxy, which refuses a client without a
// certificate of the set's CA. Both in permissive mode (gateway-export-routes) and in policy mode.
func TestNoAnonymousWayIn(t *testing.T) {
	for _, exporter := range []string{"gateway-export-routes", "export-policy-mode"} {
		t.Run(exporter, func(t *testing.T) {
			w := loadWorld(t, exporter)
			m := &mesh{worlds: []*world{w}, gateways: map[string]gatewayAt{gatewayC1: {w, "crossgate-system/crossgate-gateway", 80}}}
			send := func(req simulate.Request) *path {
				p := &path{}
				if req.Method == "" {
					req.Method, req.Path = "GET", "/get"
				}
				return m.toAddress(t, p, w, mustAddrPort(gatewayC1), req)
			}
			sni := wellknown.MeshSNI("httpbin", "httpbin", 8080)
			for _, tc := range []struct {
				name string
				req  simulate.Request
				why  string
			}{
				{"plaintext with a mesh Host", simulate.Request{Host: "httpbin.httpbin:8080"}, "404"},
				{"plaintext with the full mesh name", simulate.Request{Host: "httpbin.httpbin.svc.cluster.local"}, "404"},
				{"TLS without a server name", simulate.Request{TLS: true, ALPN: []string{"http/1.1"}, Source: "spiffe://cluster.local/ns/curl/sa/curl"}, "no filter chain"},
				{"TLS to a port that is not exported", simulate.Request{TLS: true, SNI: wellknown.MeshSNI("httpbin", "httpbin", 9999), Source: "spiffe://cluster.local/ns/curl/sa/curl"}, "no filter chain"},
				{"TLS to a service that is not exported", simulate.Request{TLS: true, SNI: wellknown.MeshSNI("kube-system", "kube-dns", 53), Source: "spiffe://cluster.local/ns/curl/sa/curl"}, "no filter chain"},
				{"TLS with the server name and no certificate", simulate.Request{TLS: true, SNI: sni, ALPN: []string{"http/1.1"}}, "presents none"},
				{"TLS with the server name and another CA's certificate", simulate.Request{TLS: true, SNI: sni, ALPN: []string{"http/1.1"}, Source: "spiffe://cluster.local/ns/curl/sa/curl", ForeignCA: true}, "does not trust the issuer"},
			} {
				p := send(tc.req)
				if p.failed == "" || !strings.Contains(p.String(), tc.why) {
					t.Errorf("%s: want it refused (%s), got:\n%s", tc.name, tc.why, p)
				}
			}
			// The export's direct path is its declared plaintext entry.
			p := send(simulate.Request{Host: "192.168.1.110:81", Method: "GET", Path: "/cluster-1/httpbin-mesh/get"})
			wantReached(t, p, "httpbin/httpbin of "+exporter)
		})
	}
}

// TLSRoutes on a gateway: the older route keeps a name two routes claim, a wildcard takes the
// names below it, connections are shared by weight (an unresolved backend's share is closed), a
// name no route takes is closed, and a port with TLS listeners only takes no plaintext.
func TestTLSRoutesPassThrough(t *testing.T) {
	w := loadWorld(t, "gateway-tls-routes")
	gw := w.out.Gateways["crossgate-system/crossgate-gateway"]
	send := func(port uint32, tls bool, sni string) *simulate.Result {
		return simulate.Simulate(gw, simulate.Request{Port: port, TLS: tls, SNI: sni, Protocol: simulate.TCP})
	}
	for _, tc := range []struct {
		sni, chain string
		clusters   map[string]uint32 // name: weight; missing clusters have weight 0 here
	}{
		{"db.example.com", "tlsroute/shop/db", map[string]uint32{"passthrough/shop/db:5432": 90, "passthrough/shop/db-canary:5432": 10}},
		{"eu.db.example.com", "tlsroute/shop/db", map[string]uint32{"passthrough/shop/db:5432": 90, "passthrough/shop/db-canary:5432": 10}},
		{"late.example.org", "tlsroute/shop/db-late", map[string]uint32{"passthrough/shop/db:5432": 1, "invalid-backend": 0}},
	} {
		r := send(80, true, tc.sni)
		if r.Denied || r.FilterChain != tc.chain {
			t.Errorf("%s: chain %q denied=%v (%s), want %s", tc.sni, r.FilterChain, r.Denied, r.DenyReason, tc.chain)
			continue
		}
		got := map[string]uint32{}
		for _, c := range r.Clusters {
			if c.Missing {
				got[c.Name] = 0
			} else {
				got[c.Name] = c.Weight
			}
			if !c.Missing && (c.Upstream.TLS || c.Upstream.Protocol != simulate.TCP) {
				t.Errorf("%s: cluster %s does not pass the bytes through: %+v", tc.sni, c.Name, c.Upstream)
			}
		}
		if !maps.Equal(got, tc.clusters) {
			t.Errorf("%s: clusters %v, want %v", tc.sni, got, tc.clusters)
		}
	}
	// The 443 listener (*.example.com) takes db's names under it, its wildcard too: two
	// wildcards meet in the more specific one.
	for _, sni := range []string{"db.example.com", "eu.db.example.com"} {
		if r := send(443, true, sni); r.Denied || r.FilterChain != "tlsroute/shop/db" {
			t.Errorf("port 443 %s: chain %q denied=%v (%s), want tlsroute/shop/db", sni, r.FilterChain, r.Denied, r.DenyReason)
		}
	}
	for _, tc := range []struct {
		port uint32
		tls  bool
		sni  string
	}{
		{80, true, "nope.example.org"},
		{80, true, ""},
		{443, true, "db.example.org"}, // the 443 listener takes *.example.com only
		{443, false, ""},
	} {
		if r := send(tc.port, tc.tls, tc.sni); !r.Denied {
			t.Errorf("port %d tls=%v %q: reached %+v, want the connection closed", tc.port, tc.tls, tc.sni, r.Clusters)
		}
	}
}

// A caller accepts as the server only the identities expected behind the service (finding K9):
// through the gateway, the remote workload must run as the import's serviceAccountName. A
// workload of the exporting cluster that runs as another identity (here httpbin's pod as
// impostor, where the export declares httpbin) is refused by the caller's proxy and by grpc-go.
func TestCallerVerifiesTheServer(t *testing.T) {
	c2w := loadWorld(t, "policy-remote-rules")
	impostor := loadWorldWith(t, "gateway-export-routes", func(in *translator.Input) {
		for i := range in.Pods {
			in.Pods[i].Spec.ServiceAccountName = "impostor"
		}
	})
	m := &mesh{worlds: []*world{c2w, impostor}, gateways: map[string]gatewayAt{gatewayC1: {impostor, "crossgate-system/crossgate-gateway", 80}}}
	for _, c := range []call{
		{from: c2w, pod: "curl/curl-1", dst: "10.97.0.30:8080", host: "httpbin.httpbin:8080", method: "GET", urlPath: "/status/200", pick: endpointIn("cluster-1")},
		{from: c2w, pod: "curl/admin-1", grpc: true, host: "httpbin.httpbin:8080", method: "POST", urlPath: "/hello.Greeter/SayHello", pick: endpointIn("cluster-1")},
	} {
		wantFailed(t, m.send(t, c), "refuses the server's certificate")
	}
	// The same calls reach the workload that runs as the declared identity.
	m, _ = producerPolicy(t)
	p := m.send(t, call{from: c2w, pod: "curl/curl-1", dst: "10.97.0.30:8080", host: "httpbin.httpbin:8080", method: "GET", urlPath: "/status/200", pick: endpointIn("cluster-1")})
	wantReached(t, p, "httpbin/httpbin of export-policy-mode")
}

// HTTPRoute filters at a gateway: RequestHeaderModifier (removals first, then set and add), the
// Host rewritten by URLRewrite's hostname, a "%" kept literally, and ResponseHeaderModifier's
// changes for the answer.
func TestHeaderModifiers(t *testing.T) {
	w := loadWorld(t, "gateway-header-modifiers")
	r := simulate.Simulate(w.out.Gateways["crossgate-system/crossgate-gateway"], simulate.Request{
		Port: 80, Host: "gw.example", Method: "GET", Path: "/headers",
		Headers: map[string]string{"x-set": "old", "x-add": "first", "x-remove": "gone", "x-keep": "kept"},
	})
	if r.Denied || len(r.Clusters) != 1 {
		t.Fatalf("denied %v (%s), clusters %+v", r.Denied, r.DenyReason, r.Clusters)
	}
	want := map[string]string{"x-set": "set-value", "x-add": "first,100%", "x-keep": "kept"}
	if !maps.Equal(r.Headers, want) {
		t.Errorf("headers upstream %v, want %v", r.Headers, want)
	}
	if r.Host != "echo.internal" {
		t.Errorf("Host upstream %q, want echo.internal", r.Host)
	}
	resp := map[string]string{"server": "app", "x-served-by": "app", "cache-control": "max-age=60"}
	r.ResponseHeaderOps.Apply(resp)
	if want := map[string]string{"x-served-by": "app,crossgate", "cache-control": "no-store"}; !maps.Equal(resp, want) {
		t.Errorf("response headers %v, want %v", resp, want)
	}
	// The route that would change Host is not attached: its path finds no route.
	if r := simulate.Simulate(w.out.Gateways["crossgate-system/crossgate-gateway"], simulate.Request{Port: 80, Host: "gw.example", Method: "GET", Path: "/host"}); r.Status != 404 {
		t.Errorf("the route changing Host: status %d (%s), want 404", r.Status, r.DenyReason)
	}
}

// RequestRedirect at a gateway: the status code and the Location Envoy builds
// (http/utility.cc newUri): the scheme changed and the port derived from it (none for https's
// 443), a request host's default port dropped when the scheme changes and a non-default one
// kept, a hostname and port replaced, a path prefix replaced with the query kept.
func TestRedirects(t *testing.T) {
	w := loadWorld(t, "gateway-header-modifiers")
	gw := w.out.Gateways["crossgate-system/crossgate-gateway"]
	for _, tc := range []struct {
		host, path string
		status     uint32
		location   string
	}{
		{"gw.example", "/to-https/a?x=1", 302, "https://gw.example/to-https/a?x=1"},
		{"gw.example:80", "/to-https", 302, "https://gw.example/to-https"},
		{"gw.example:81", "/to-https", 302, "https://gw.example:81/to-https"},
		{"gw.example", "/elsewhere/x", 301, "http://example.org:8443/elsewhere/x"},
		{"gw.example", "/old/page?q=1", 308, "http://gw.example/new/page?q=1"},
	} {
		r := simulate.Simulate(gw, simulate.Request{Port: 80, Host: tc.host, Method: "GET", Path: tc.path})
		if r.DirectResponse != tc.status || r.Location != tc.location {
			t.Errorf("GET %s%s: %d %q (%s), want %d %q", tc.host, tc.path, r.DirectResponse, r.Location, r.DenyReason, tc.status, tc.location)
		}
	}
	// The rule with an unknown status code is not attached.
	if r := simulate.Simulate(gw, simulate.Request{Port: 80, Host: "gw.example", Method: "GET", Path: "/bad"}); r.Status != 404 {
		t.Errorf("the redirect with status 399: %d %d (%s), want 404", r.Status, r.DirectResponse, r.DenyReason)
	}
}

// RequestMirror at a gateway: the request goes to its backend, and copies to the mirror's, for
// the share asked, with the request's own Host; a mirror whose Service does not exist mirrors
// nothing.
func TestRequestMirror(t *testing.T) {
	w := loadWorld(t, "gateway-header-modifiers")
	r := simulate.Simulate(w.out.Gateways["crossgate-system/crossgate-gateway"], simulate.Request{Port: 80, Host: "gw.example:81", Method: "GET", Path: "/mirrored"})
	if r.Denied || len(r.Clusters) != 1 || r.Clusters[0].Name != "gateway/web/echo:8080" {
		t.Fatalf("denied %v (%s), clusters %+v", r.Denied, r.DenyReason, r.Clusters)
	}
	if len(r.Mirrors) != 2 {
		t.Fatalf("mirrors %+v, want two", r.Mirrors)
	}
	for i, share := range []uint32{1_000_000, 333_333} {
		m := r.Mirrors[i]
		if m.Cluster.Name != "gateway/web/echo-canary:8080" || m.Cluster.Missing || m.PerMillion != share || m.Host != "gw.example:81" {
			t.Errorf("mirror %d: %s missing=%v %d/1e6 Host %q, want echo-canary %d/1e6 Host gw.example:81", i, m.Cluster.Name, m.Cluster.Missing, m.PerMillion, m.Host, share)
		}
	}
}

// K8: a workload's proxy terminates only the mesh's TLS, known by a server name of the port's
// services (every crossgate caller sends one; grpc-go can send nothing else) or by crossgate's
// ALPN (every Envoy caller offers it). Any other TLS is the application's own: it passes through
// to the application untouched in permissive mode and is closed in policy mode, where a caller
// without a mesh identity has no access.
func TestApplicationTLSPassesThrough(t *testing.T) {
	const curlID = "spiffe://cluster.local/ns/curl/sa/curl"
	mesh := wellknown.MeshSNI("httpbin", "httpbin", 8080)
	for _, tc := range []struct {
		name  string
		req   simulate.Request
		chain string
		mesh  bool // terminated by the proxy; otherwise the application's own TLS
	}{
		{"an application's client with its own server name and h2", simulate.Request{SNI: "httpbin.example.com", ALPN: []string{"h2", "http/1.1"}}, "inbound/8080/tls", false},
		{"an application's client without server name or ALPN", simulate.Request{}, "inbound/8080/tls", false},
		{"an application's client naming the service without the port label", simulate.Request{SNI: "httpbin.httpbin.svc.clusterset.local", ALPN: []string{"http/1.1"}}, "inbound/8080/tls", false},
		{"an Envoy caller: the server name and crossgate's ALPN", simulate.Request{SNI: mesh, ALPN: []string{wellknown.MeshALPN}, Source: curlID}, "inbound/8080", true},
		{"an Envoy caller of another service name: crossgate's ALPN", simulate.Request{SNI: wellknown.MeshSNI("httpbin", "other", 8080), ALPN: []string{wellknown.MeshALPN}, Source: curlID}, "inbound/8080/mesh", true},
		{"grpc-go: the server name, h2", simulate.Request{SNI: mesh, ALPN: []string{"h2"}, Protocol: simulate.HTTP2, Source: curlID}, "inbound/8080", true},
		{"grpc-go without GRPC_EXPERIMENTAL_XDS_SNI: no mark, taken for the application's TLS", simulate.Request{ALPN: []string{"h2"}, Protocol: simulate.HTTP2, Source: curlID}, "inbound/8080/tls", false},
	} {
		for _, world := range []string{"inbound-permissive", "inbound-policy-rbac"} {
			t.Run(world+"/"+tc.name, func(t *testing.T) {
				req := tc.req
				req.Inbound, req.PodIP, req.Port, req.TLS = true, "10.1.2.7", 8080, true
				req.Host, req.Method, req.Path = "httpbin.httpbin:8080", "GET", "/"
				if !tc.mesh {
					req.Protocol = simulate.TCP // TLS the proxy does not read
				}
				r := simulate.Simulate(loadWorld(t, world).out.Sidecars["httpbin/httpbin"], req)
				if r.FilterChain != tc.chain {
					t.Fatalf("chain %q, want %q (%s)", r.FilterChain, tc.chain, r.DenyReason)
				}
				policy := world == "inbound-policy-rbac"
				switch {
				case tc.mesh || !policy:
					// The mesh's TLS reaches the workload as the caller (curl/curl GET / is
					// allowed in policy mode); the application's own, bytes untouched, in
					// permissive mode.
					if r.Denied || len(r.Clusters) != 1 || r.Clusters[0].Name != "inbound/8080" {
						t.Errorf("want the workload, got %+v (%s)", r.Clusters, r.DenyReason)
					}
					if !tc.mesh && r.DownstreamProtocol != "" {
						t.Errorf("the proxy decoded the application's TLS as %s", r.DownstreamProtocol)
					}
				default:
					if !r.Denied || !strings.Contains(r.DenyReason, "RBAC (network)") {
						t.Errorf("policy mode: the application's TLS from a caller without identity got %+v (%s)", r.Clusters, r.DenyReason)
					}
				}
			})
		}
	}
}

// The mark is in every caller's configuration: a call of the walkthrough, by Envoy and by
// grpc-go, to another cluster (through its gateway) and to a local workload, is terminated at
// httpbin's proxy by its server name.
func TestCallersMarkMeshTLS(t *testing.T) {
	for state, at := range map[string]string{
		"walkthrough-2-failover-no-local": "gateway-export-routes",        // cluster-1's httpbin
		"walkthrough-3-failover-local":    "walkthrough-3-failover-local", // the caller's own
	} {
		t.Run(state, func(t *testing.T) {
			both(t, state, func(t *testing.T, m *mesh, c call, _ *simulate.Result) { //nolint:thelper // a subtest's body, not a helper
				p := m.send(t, c)
				var h *hop
				for i := range p.hops {
					if strings.HasPrefix(p.hops[i].at, "sidecar httpbin/") && strings.HasSuffix(p.hops[i].at, " of "+at+" (inbound)") {
						h = &p.hops[i]
					}
				}
				if h == nil || h.result.FilterChain != "inbound/8080" || p.reached == "" {
					t.Errorf("httpbin's proxy of %s did not take the mesh TLS by its server name:\n%s", at, p)
				}
			})
		})
	}
}

// Go's TLS server refuses a client that offers only protocols it does not support, so a caller
// of a proxyless gRPC server must offer h2 beside crossgate's protocol: Envoy's clusters of a
// proxyless workload do (they always speak HTTP/2).
func TestProxylessServerNeedsH2Offered(t *testing.T) {
	out := loadWorld(t, "inbound-policy-rbac").out
	req := simulate.Request{
		Listener: translate.ServerListenerName("10.1.2.7", 8080), PodIP: "10.1.2.7", Port: 8080, TLS: true,
		Source: "spiffe://cluster.local/ns/curl/sa/curl", Protocol: simulate.HTTP2, Host: "httpbin.httpbin:8080", Method: "GET", Path: "/",
	}
	req.ALPN = []string{wellknown.MeshALPN}
	if r := simulate.Simulate(out.Proxyless["httpbin/httpbin"], req); !r.Denied || !strings.Contains(r.DenyReason, "supports none") {
		t.Errorf("crossgate's protocol alone: %+v (%s), want the handshake refused", r.Clusters, r.DenyReason)
	}
	req.ALPN = []string{wellknown.MeshALPN, "h2"}
	if r := simulate.Simulate(out.Proxyless["httpbin/httpbin"], req); r.Denied {
		t.Errorf("crossgate's protocol and h2: %s", r.DenyReason)
	}
	// Envoy's clusters of proxyless endpoints offer both: TestEnvoyCallsProxylessGRPCServer.
}
