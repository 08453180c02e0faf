package scenarios

import (
	"slices"
	"strings"
	"testing"

	"github.com/crossgate-io/crossgate/xds/simulate"
)

// HTTPS listeners (Gateway API core): the gateway terminates TLS with the certificate of the
// listener whose hostname takes the server name, and routes the HTTP inside by that listener's
// routes alone; plaintext is served by the HTTP listener's routes (here a redirect to https).
func TestHTTPSListeners(t *testing.T) {
	gw := loadWorld(t, "gateway-https-listeners").out.Gateways["crossgate-system/crossgate-gateway"]
	for _, tc := range []struct {
		name     string
		req      simulate.Request
		chain    string
		cert     string // the SDS secret presented
		cluster  string // where the request goes
		status   uint32 // or the proxy's own answer
		location string
		why      string // or why the connection is refused
	}{
		{
			"foo's server name: foo's certificate and routes",
			simulate.Request{Port: 443, TLS: true, SNI: "foo.example.com", ALPN: []string{"h2", "http/1.1"}, Protocol: simulate.HTTP2, Host: "foo.example.com", Path: "/index"},
			"https/443/https-foo", "certificate/crossgate-system/foo-cert", "gateway/web/web:8080", 0, "", "",
		},
		{
			"a name under *.bar.example.com: bar's certificate (another namespace's, granted) and routes",
			simulate.Request{Port: 443, TLS: true, SNI: "shop.bar.example.com", ALPN: []string{"http/1.1"}, Host: "shop.bar.example.com", Path: "/"},
			"https/443/https-bar", "certificate/certs/bar-cert", "gateway/web/shop:8080", 0, "", "",
		},
		{
			"foo's TLS does not serve bar's routes: a Host bar's listener takes is misdirected",
			simulate.Request{Port: 443, TLS: true, SNI: "foo.example.com", Host: "shop.bar.example.com", Path: "/"},
			"https/443/https-foo", "certificate/crossgate-system/foo-cert", "", 421, "", "",
		},
		{
			"foo's TLS with a Host no listener takes: foo's own 404",
			simulate.Request{Port: 443, TLS: true, SNI: "foo.example.com", Host: "elsewhere.example.org", Path: "/"},
			"https/443/https-foo", "certificate/crossgate-system/foo-cert", "", 404, "", "",
		},
		{
			"a redirect behind TLS keeps https",
			simulate.Request{Port: 443, TLS: true, SNI: "foo.example.com", Host: "foo.example.com", Path: "/old/page?x=1"},
			"https/443/https-foo", "certificate/crossgate-system/foo-cert", "", 302, "https://foo.example.com/new/page?x=1", "",
		},
		{
			"a server name no listener takes",
			simulate.Request{Port: 443, TLS: true, SNI: "other.example.com", Host: "other.example.com", Path: "/"},
			"", "", "", 0, "", "no filter chain",
		},
		{
			"plaintext on 443",
			simulate.Request{Port: 443, Host: "foo.example.com", Path: "/"},
			"", "", "", 0, "", "no filter chain",
		},
		{
			"plaintext foo.example.com is sent to https",
			simulate.Request{Port: 80, Host: "foo.example.com", Path: "/a"},
			"plaintext", "", "", 301, "https://foo.example.com/a", "",
		},
		{
			"plaintext serves the routes of the HTTP listener only",
			simulate.Request{Port: 80, Host: "shop.bar.example.com", Path: "/"},
			"plaintext", "", "gateway/web/shop:8080", 0, "", "",
		},
		{
			"the listeners whose certificates do not resolve serve nothing",
			simulate.Request{Port: 8443, TLS: true, SNI: "missing.example.com", Host: "missing.example.com", Path: "/"},
			"", "", "", 0, "", "no listener",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.req
			req.Method = "GET"
			r := simulate.Simulate(gw, req)
			if tc.why != "" {
				if !r.Denied || !strings.Contains(r.DenyReason, tc.why) {
					t.Fatalf("want it refused (%s), got %+v", tc.why, r)
				}
				return
			}
			if r.FilterChain != tc.chain {
				t.Errorf("chain %q, want %q (%s)", r.FilterChain, tc.chain, r.DenyReason)
			}
			if tc.cert != "" && !slices.Equal(r.Certificates, []string{tc.cert}) {
				t.Errorf("certificates %v, want %s", r.Certificates, tc.cert)
			}
			switch {
			case tc.cluster != "":
				if r.Denied || len(r.Clusters) != 1 || r.Clusters[0].Name != tc.cluster {
					t.Errorf("went to %+v (%s), want %s", r.Clusters, r.DenyReason, tc.cluster)
				}
			case tc.location != "":
				if r.DirectResponse != tc.status || r.Location != tc.location {
					t.Errorf("answered %d %q (%s), want %d %q", r.DirectResponse, r.Location, r.DenyReason, tc.status, tc.location)
				}
			default:
				got := r.Status
				if r.DirectResponse != 0 {
					got = r.DirectResponse
				}
				if got != tc.status {
					t.Errorf("answered %d (%s), want %d", got, r.DenyReason, tc.status)
				}
			}
		})
	}
}

// A gateway speaks mTLS, as itself, to the workloads of the mesh, and plaintext to a Service
// outside it (its namespace not added), whose pods have no proxy to terminate mTLS: Gateway
// API's backends need not be in the mesh. To a workload of the mesh it keeps an HTTP/2 client's
// protocol (the sidecar takes both); to a Service outside it, whose port does not declare HTTP/2,
// it speaks HTTP/1.1 whatever the client spoke, as h2c would reach an HTTP/1.1 server.
func TestGatewayBackendsInAndOutOfTheMesh(t *testing.T) {
	for _, tc := range []struct {
		world, path, cluster string
		tls                  bool
		h2Upstream           string
	}{
		{"gateway-export-routes", "/cluster-1/httpbin-mesh/get", "gateway/httpbin/httpbin:8080", true, simulate.HTTP2},
		{"gateway-reference-grant", "/cart", "gateway/shop/cart:8080", false, simulate.HTTP1},
	} {
		gw := loadWorld(t, tc.world).out.Gateways["crossgate-system/crossgate-gateway"]
		r := simulate.Simulate(gw, simulate.Request{Port: 80, Host: "example.com", Method: "GET", Path: tc.path})
		if r.Denied || len(r.Clusters) != 1 || r.Clusters[0].Name != tc.cluster {
			t.Fatalf("%s %s: %+v (%s)", tc.world, tc.path, r.Clusters, r.DenyReason)
		}
		if up := r.Clusters[0].Upstream; up.TLS != tc.tls {
			t.Errorf("%s: the gateway opens TLS=%v to %s, want %v", tc.world, up.TLS, tc.cluster, tc.tls)
		}
		h2 := simulate.Simulate(gw, simulate.Request{Port: 80, Host: "example.com", Method: "GET", Path: tc.path, Protocol: simulate.HTTP2})
		if len(h2.Clusters) != 1 || h2.Clusters[0].Upstream.Protocol != tc.h2Upstream {
			t.Errorf("%s: an HTTP/2 client's request goes on as %+v, want %s", tc.world, h2.Clusters, tc.h2Upstream)
		}
	}
}
