// Package scenarios asserts the walkthrough's behaviour on the translated configuration, by
// pushing requests through it with xds/simulate: Envoy sidecars, gateways and the proxyless gRPC
// form, built from the walkthrough's own objects (the translator's golden inputs).
package scenarios

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/crossgate-io/crossgate/translator"
	"github.com/crossgate-io/crossgate/xds/simulate"
	"github.com/crossgate-io/crossgate/xds/translate"
)

const (
	c1 = "default/default/default/cluster-1"
	c2 = "default/default/default/cluster-2"
	c3 = "default/default/default/cluster-3"
)

// world translates and builds one of the translator's golden inputs.
func world(t *testing.T, name string) *translate.Output {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "translator", "testdata", name+".in.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	in, err := translator.ParseInput(b)
	if err != nil {
		t.Fatal(err)
	}
	res := translator.Translate(in)
	out, err := translate.Build(&res.IR)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return out
}

// curl sends the walkthrough's request, curl http://httpbin.httpbin:8080/, from curl/curl's
// sidecar, and the same call through grpc-go's xDS client (xds:///httpbin.httpbin:8080).
func curl(t *testing.T, out *translate.Output) (sidecar, grpc *simulate.Result) {
	t.Helper()
	sc, ok := out.Sidecars["curl/curl"]
	if !ok {
		t.Fatal("no configuration for curl/curl")
	}
	sidecar = simulate.Simulate(sc, simulate.Request{Port: 8080, Host: "httpbin.httpbin:8080", Path: "/", Method: "GET"})
	grpc = simulate.Simulate(out.Proxyless["curl/curl"], simulate.Request{
		Listener: "httpbin.httpbin:8080", Host: "httpbin.httpbin:8080", Path: "/hello.Greeter/SayHello", Method: "POST",
	})
	return sidecar, grpc
}

func wantDenied(t *testing.T, r *simulate.Result) {
	t.Helper()
	if !r.Denied {
		t.Errorf("request reached %+v, want it to fail", r.Clusters)
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

func both(t *testing.T, name string, check func(t *testing.T, r *simulate.Result)) {
	sc, grpc := curl(t, world(t, name))
	t.Run("sidecar", func(t *testing.T) { check(t, sc) })
	t.Run("proxyless", func(t *testing.T) { check(t, grpc) })
}

// Behaviour 1: cluster-1's gateway serves the export's direct path, and the mesh hostnames.
func TestGatewayServesTheExport(t *testing.T) {
	gw := world(t, "gateway-export-routes").Gateways["crossgate-system/crossgate-gateway"]
	for path, rewritten := range map[string]string{"/cluster-1/httpbin-mesh": "/", "/cluster-1/httpbin-mesh/get": "/get"} {
		r := simulate.Simulate(gw, simulate.Request{Port: 80, Host: "192.168.1.110:81", Path: path, Method: "GET"})
		if r.Denied || len(r.Clusters) != 1 || r.Clusters[0].Name != "gateway/httpbin/httpbin:8080" || r.Path != rewritten {
			t.Fatalf("GET %s at the gateway: %+v", path, r)
		}
		if eps := r.Clusters[0].Priorities[0].Localities[0].Endpoints; len(eps) != 1 || eps[0] != "10.1.2.7:8080" {
			t.Errorf("endpoints %v, want cluster-1's httpbin pod", eps)
		}
	}
	if r := simulate.Simulate(gw, simulate.Request{Port: 80, Host: "192.168.1.110:81", Path: "/cluster-1/httpbin-meshx", Method: "GET"}); !r.Denied {
		t.Errorf("a prefix must match whole path elements: /cluster-1/httpbin-meshx reached %+v", r.Clusters)
	}
	// A caller's sidecar in another cluster crosses with mTLS and the original Host.
	r := simulate.Simulate(gw, simulate.Request{Port: 80, TLS: true, Host: "httpbin.httpbin:8080", Path: "/", Method: "GET"})
	if r.Denied || r.Clusters[0].Name != "gateway/httpbin/httpbin:8080" || r.FilterChain != "mtls" {
		t.Errorf("mesh request at the gateway: %+v", r)
	}
}

// Behaviour 2: the imports in cluster-2 put cluster-1's and cluster-3's gateways behind httpbin.
func TestImportsAreRemoteLocalities(t *testing.T) {
	sc, _ := curl(t, world(t, "gtp-activeactive-all-clusters"))
	eps := map[string][]string{}
	for _, l := range sc.Clusters[0].Priorities[0].Localities {
		eps[l.Name] = l.Endpoints
	}
	if got := eps[c1]; len(got) != 1 || got[0] != "192.168.1.110:81" {
		t.Errorf("cluster-1 endpoints %v", got)
	}
	if got := eps[c3]; len(got) != 1 || got[0] != "192.168.1.110:83" {
		t.Errorf("cluster-3 endpoints %v", got)
	}
}

// Behaviour 3: no GlobalTrafficPolicy and no local httpbin: the request fails.
func TestNoPolicyFails(t *testing.T) {
	both(t, "walkthrough-1-no-policy", wantDenied)
}

// Behaviour 4: FailOver with no local httpbin alternates between cluster-1 and cluster-3.
func TestFailOverWithoutLocal(t *testing.T) {
	both(t, "walkthrough-2-failover-no-local", func(t *testing.T, r *simulate.Result) {
		wantShares(t, r, map[string]float64{c1: 0.5, c3: 0.5})
		if len(r.Clusters[0].Priorities) != 1 {
			t.Errorf("priorities %+v, want one (contiguous from 0)", r.Clusters[0].Priorities)
		}
	})
}

// Behaviour 5: with httpbin deployed in cluster-2, every request stays local; the targets wait
// at priority 1, and a failed request is retried there.
func TestFailOverPrefersLocal(t *testing.T) {
	both(t, "walkthrough-3-failover-local", func(t *testing.T, r *simulate.Result) {
		wantShares(t, r, map[string]float64{c2: 1})
		ps := r.Clusters[0].Priorities
		if len(ps) != 2 || ps[1].Priority != 1 || len(ps[1].Localities) != 2 {
			t.Errorf("priorities %+v, want cluster-1 and cluster-3 at priority 1", ps)
		}
	})
	sc, _ := curl(t, world(t, "walkthrough-3-failover-local"))
	if sc.Retry == "" {
		t.Error("FailOver must retry on the next priority")
	}
}

// Behaviour 6: ActiveActive spreads requests over the three clusters equally.
func TestActiveActive(t *testing.T) {
	both(t, "walkthrough-4-activeactive", func(t *testing.T, r *simulate.Result) {
		wantShares(t, r, map[string]float64{c1: 1.0 / 3, c2: 1.0 / 3, c3: 1.0 / 3})
	})
}

// Behaviour 7: policy mode without a TrafficTarget: the request fails.
func TestPolicyModeFails(t *testing.T) {
	both(t, "walkthrough-5-policy-mode", wantDenied)
}

// Behaviour 8: curl-to-httpbin names the default ServiceAccount: only cluster-2 answers.
func TestCurlToHTTPBin(t *testing.T) {
	both(t, "walkthrough-6-curl-to-httpbin", func(t *testing.T, r *simulate.Result) {
		wantShares(t, r, map[string]float64{c2: 1})
	})
}

// Behaviour 9: curl-to-ext-httpbin adds the imports' ServiceAccount: all three answer.
func TestCurlToExtHTTPBin(t *testing.T) {
	both(t, "walkthrough-7-curl-to-ext-httpbin", func(t *testing.T, r *simulate.Result) {
		wantShares(t, r, map[string]float64{c1: 1.0 / 3, c2: 1.0 / 3, c3: 1.0 / 3})
	})
}
