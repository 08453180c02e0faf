// Package scenarios asserts the walkthrough's behaviour, and what the mesh does with the traffic
// of real pods, on the translated configuration: requests are pushed hop by hop through Envoy
// sidecars, gateways and the proxyless gRPC form with xds/simulate, which models what Envoy (and
// grpc-go) does with a configuration, built from the translator's golden inputs.
package scenarios

import (
	"math"
	"strings"
	"testing"

	"github.com/crossgate-io/crossgate/xds/simulate"
)

const (
	c1 = "default/default/default/cluster-1"
	c2 = "default/default/default/cluster-2"
	c3 = "default/default/default/cluster-3"

	gatewayC1 = "192.168.1.110:81"
	gatewayC3 = "192.168.1.110:83"
)

// walkthrough is cluster-2 in one state of the walkthrough (a translator input) with cluster-1,
// whose gateway (192.168.1.110:81) serves httpbin with a sidecar.
func walkthrough(t *testing.T, state string) (*mesh, *world) {
	t.Helper()
	c2w := loadWorld(t, state)
	c1w := loadWorld(t, "gateway-export-routes")
	return &mesh{
		worlds:   []*world{c2w, c1w},
		gateways: map[string]gatewayAt{gatewayC1: {c1w, "crossgate-system/crossgate-gateway", 80}},
	}, c2w
}

// curl is the walkthrough's request, curl http://httpbin.httpbin:8080/, from the curl pod of
// cluster-2 (DNS gives httpbin's ClusterIP, 10.97.0.30), and the same call through grpc-go's xDS
// client (xds:///httpbin.httpbin:8080).
func curl(w *world) (sidecar, grpc call) {
	sidecar = call{from: w, pod: "curl/curl-5b8d6", dst: "10.97.0.30:8080", host: "httpbin.httpbin:8080"}
	grpc = call{from: w, pod: "curl/curl-5b8d6", grpc: true, host: "httpbin.httpbin:8080", method: "POST", urlPath: "/hello.Greeter/SayHello"}
	return sidecar, grpc
}

// first is the first hop's decision: the caller's proxy.
func first(p *path) *simulate.Result { return p.hops[0].result }

func wantReached(t *testing.T, p *path, app string) {
	t.Helper()
	if p.failed != "" || !strings.HasPrefix(p.reached, app) {
		t.Errorf("want the request to reach %s, got:\n%s", app, p)
	}
}

func wantFailed(t *testing.T, p *path, why string) {
	t.Helper()
	if p.failed == "" || !strings.Contains(p.failed, why) {
		t.Errorf("want the request to fail (%s), got:\n%s", why, p)
	}
}

// wantShares checks the first priority's localities and their shares of requests.
func wantShares(t *testing.T, r *simulate.Result, want map[string]float64) {
	t.Helper()
	if r.Denied {
		t.Fatalf("request denied: %s", r.DenyReason)
	}
	got := r.Shares()
	if len(got) != len(want) {
		t.Fatalf("priority 0 has localities %v, want %v", got, want)
	}
	for k, w := range want {
		if math.Abs(got[k]-w) > 1e-9 {
			t.Errorf("locality %s gets %.3f of requests, want %.3f (all: %v)", k, got[k], w, got)
		}
	}
}

// both runs check on the sidecar's and grpc-go's decision for the walkthrough's request.
func both(t *testing.T, state string, check func(t *testing.T, m *mesh, c call, r *simulate.Result)) {
	t.Helper()
	m, w := walkthrough(t, state)
	sc, grpc := curl(w)
	t.Run("sidecar", func(t *testing.T) { p := m.send(t, sc); check(t, m, sc, first(p)) })
	t.Run("proxyless", func(t *testing.T) { p := m.send(t, grpc); check(t, m, grpc, first(p)) })
}

// Behaviour 1: cluster-1's gateway serves the export's direct path, and the mesh hostnames, to
// httpbin through its sidecar.
func TestGatewayServesTheExport(t *testing.T) {
	m, _ := walkthrough(t, "walkthrough-4-activeactive")
	c1w := m.worlds[1]
	for urlPath, rewritten := range map[string]string{"/cluster-1/httpbin-mesh": "/", "/cluster-1/httpbin-mesh/get": "/get"} {
		p := &path{}
		m.toAddress(t, p, c1w, mustAddrPort(gatewayC1), simulate.Request{Protocol: simulate.HTTP1, Host: "192.168.1.110:81", Path: urlPath, Method: "GET"})
		wantReached(t, p, "httpbin/httpbin of "+c1w.name)
		if r := p.hops[0].result; r.Path != rewritten || r.Clusters[0].Name != "gateway/httpbin/httpbin:8080" {
			t.Errorf("GET %s at the gateway went to %s as %s", urlPath, r.Clusters[0].Name, r.Path)
		}
	}
	p := &path{}
	m.toAddress(t, p, c1w, mustAddrPort(gatewayC1), simulate.Request{Protocol: simulate.HTTP1, Host: "192.168.1.110:81", Path: "/cluster-1/httpbin-meshx", Method: "GET"})
	wantFailed(t, p, "404") // a prefix matches whole path elements
}

// Behaviour 2: the imports in cluster-2 put cluster-1's and cluster-3's gateways behind httpbin.
func TestImportsAreRemoteLocalities(t *testing.T) {
	m, w := walkthrough(t, "gtp-activeactive-all-clusters")
	sc, _ := curl(w)
	r := first(m.send(t, sc))
	eps := map[string][]string{}
	for _, l := range r.Clusters[0].Priorities[0].Localities {
		eps[l.Name] = l.Endpoints
	}
	if got := eps[c1]; len(got) != 1 || got[0] != gatewayC1 {
		t.Errorf("cluster-1 endpoints %v", got)
	}
	if got := eps[c3]; len(got) != 1 || got[0] != gatewayC3 {
		t.Errorf("cluster-3 endpoints %v", got)
	}
}

// Behaviour 3: no GlobalTrafficPolicy and no local httpbin: the request fails. The sidecar does
// not route httpbin (it has no endpoint this caller may use), so the connection passes through
// to the placeholder Service, which has no endpoints.
func TestNoPolicyFails(t *testing.T) {
	m, w := walkthrough(t, "walkthrough-1-no-policy")
	sc, grpc := curl(w)
	wantFailed(t, m.send(t, sc), "no endpoints")
	wantFailed(t, m.send(t, grpc), "no listener")
}

// Behaviour 4: FailOver with no local httpbin alternates between cluster-1 and cluster-3, and a
// request crosses cluster-1's gateway to its httpbin.
func TestFailOverWithoutLocal(t *testing.T) {
	both(t, "walkthrough-2-failover-no-local", func(t *testing.T, m *mesh, c call, r *simulate.Result) { //nolint:thelper // a subtest's body, not a helper
		wantShares(t, r, map[string]float64{c1: 0.5, c3: 0.5})
		if len(r.Clusters[0].Priorities) != 1 {
			t.Errorf("priorities %+v, want one (contiguous from 0)", r.Clusters[0].Priorities)
		}
		c.pick = endpointIn("cluster-1")
		wantReached(t, m.send(t, c), "httpbin/httpbin of gateway-export-routes")
	})
}

// Behaviour 5: with httpbin deployed in cluster-2, every request stays local, through httpbin's
// sidecar; the targets wait at priority 1, and a failed request is retried there.
func TestFailOverPrefersLocal(t *testing.T) {
	both(t, "walkthrough-3-failover-local", func(t *testing.T, m *mesh, c call, r *simulate.Result) { //nolint:thelper // a subtest's body, not a helper
		wantShares(t, r, map[string]float64{c2: 1})
		ps := r.Clusters[0].Priorities
		if len(ps) != 2 || ps[1].Priority != 1 || len(ps[1].Localities) != 2 {
			t.Errorf("priorities %+v, want cluster-1 and cluster-3 at priority 1", ps)
		}
		if r.Retry == "" {
			t.Error("FailOver must retry on the next priority")
		}
		wantReached(t, m.send(t, c), "httpbin/default of walkthrough-3")
	})
}

// Behaviour 6: ActiveActive spreads requests over the three clusters equally; local requests
// reach httpbin through its sidecar, the others cross cluster-1's gateway.
func TestActiveActive(t *testing.T) {
	both(t, "walkthrough-4-activeactive", func(t *testing.T, m *mesh, c call, r *simulate.Result) { //nolint:thelper // a subtest's body, not a helper
		wantShares(t, r, map[string]float64{c1: 1.0 / 3, c2: 1.0 / 3, c3: 1.0 / 3})
		c.pick = endpointIn("cluster-2")
		wantReached(t, m.send(t, c), "httpbin/default of walkthrough-4")
		c.pick = endpointIn("cluster-1")
		wantReached(t, m.send(t, c), "httpbin/httpbin of gateway-export-routes")
	})
}

// Behaviour 7: policy mode without a TrafficTarget: the request fails. The caller's sidecar does
// not route httpbin, the connection passes through, and httpbin's sidecar refuses plaintext.
func TestPolicyModeFails(t *testing.T) {
	m, w := walkthrough(t, "walkthrough-5-policy-mode")
	sc, grpc := curl(w)
	wantFailed(t, m.send(t, sc), "403")
	wantFailed(t, m.send(t, grpc), "no listener")
}

// Behaviour 8: curl-to-httpbin names the default ServiceAccount: only cluster-2 answers, through
// httpbin's sidecar, whose RBAC admits curl's GET / (the route group "all" allows GET of "/";
// a gRPC call, a POST of another path, is refused there).
func TestCurlToHTTPBin(t *testing.T) {
	both(t, "walkthrough-6-curl-to-httpbin", func(t *testing.T, m *mesh, c call, r *simulate.Result) { //nolint:thelper // a subtest's body, not a helper
		wantShares(t, r, map[string]float64{c2: 1})
		if c.grpc {
			wantFailed(t, m.send(t, c), "403")
			return
		}
		wantReached(t, m.send(t, c), "httpbin/default of walkthrough-6")
	})
}

// Behaviour 9: curl-to-ext-httpbin adds the imports' ServiceAccount: all three answer the
// walkthrough's GET /. The same rules hold everywhere: a request the route group does not allow
// (a POST, another path, a gRPC call) is kept to cluster-2, whose httpbin refuses it, and never
// reaches the other clusters, whose workloads admit what their gateway forwards.
func TestCurlToExtHTTPBin(t *testing.T) {
	both(t, "walkthrough-7-curl-to-ext-httpbin", func(t *testing.T, m *mesh, c call, r *simulate.Result) { //nolint:thelper // a subtest's body, not a helper
		if c.grpc {
			wantShares(t, r, map[string]float64{c2: 1})
			wantFailed(t, m.send(t, c), "403")
			return
		}
		wantShares(t, r, map[string]float64{c1: 1.0 / 3, c2: 1.0 / 3, c3: 1.0 / 3})
		for _, other := range []struct{ method, path string }{{"POST", "/"}, {"GET", "/headers"}} {
			o := c
			o.method, o.urlPath = other.method, other.path
			p := m.send(t, o)
			wantShares(t, first(p), map[string]float64{c2: 1})
			wantFailed(t, p, "403")
		}
	})
}
