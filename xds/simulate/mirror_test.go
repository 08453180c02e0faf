package simulate

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/crossgate-io/crossgate/xds/resources"
)

// A mirrored copy's Host gets "-shadow" before its port unless the policy disables it, every
// request is copied without a runtime fraction, and nothing is copied when the primary cluster
// does not exist (route_components.proto RequestMirrorPolicy; shadow_writer_impl.cc).
func TestMirrorPolicy(t *testing.T) {
	load := func(primary string, disable bool) *Proxy {
		vh := routeTo(primary, "*")
		vh.Routes[0].GetRoute().RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{{Cluster: "shadow", DisableShadowHostSuffixAppend: disable}}
		return Load(&resources.Resources{
			Clusters: []*clusterv3.Cluster{staticCluster("a"), staticCluster("shadow")},
			Listeners: []*listenerv3.Listener{{Name: "l", Address: addr("0.0.0.0", 80), FilterChains: []*listenerv3.FilterChain{
				hcmChain("http", &routev3.RouteConfiguration{Name: "rc", VirtualHosts: []*routev3.VirtualHost{vh}}),
			}}},
		}, Envoy)
	}
	req := Request{Port: 80, Host: "web.example:8080", Method: "GET", Path: "/"}
	for _, tc := range []struct {
		disable bool
		host    string
	}{{false, "web.example-shadow:8080"}, {true, "web.example:8080"}} {
		r := load("a", tc.disable).Simulate(req)
		if len(r.Mirrors) != 1 || r.Mirrors[0].Host != tc.host || r.Mirrors[0].PerMillion != 1_000_000 || r.Mirrors[0].Cluster.Name != "shadow" {
			t.Errorf("disable=%v: mirrors %+v, want one to shadow with Host %s, every request", tc.disable, r.Mirrors, tc.host)
		}
	}
	vh := routeTo("missing", "*")
	vh.Routes[0].GetRoute().RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{{Cluster: "shadow"}}
	q := Load(&resources.Resources{
		Clusters: []*clusterv3.Cluster{staticCluster("shadow")},
		Listeners: []*listenerv3.Listener{{Name: "l", Address: addr("0.0.0.0", 80), FilterChains: []*listenerv3.FilterChain{
			hcmChain("http", &routev3.RouteConfiguration{Name: "rc", ValidateClusters: wrapperspb.Bool(false), VirtualHosts: []*routev3.VirtualHost{vh}}),
		}}},
	}, Envoy)
	if r := q.Simulate(req); len(r.Mirrors) != 0 {
		t.Errorf("the primary cluster does not exist and %d copies are sent", len(r.Mirrors))
	}
}

// An upgrade the connection manager does not enable gets a 403 before any filter, one it enables
// is routed, and a route's own upgrade config overrides the connection manager's
// (conn_manager_impl.cc; http_connection_manager.proto UpgradeConfig).
func TestUpgrade(t *testing.T) {
	load := func(hcm []*hcmv3.HttpConnectionManager_UpgradeConfig, route []*routev3.RouteAction_UpgradeConfig) *Proxy {
		vh := routeTo("a", "*")
		vh.Routes[0].GetRoute().UpgradeConfigs = route
		chain := hcmChain("http", &routev3.RouteConfiguration{Name: "rc", VirtualHosts: []*routev3.VirtualHost{vh}})
		m := &hcmv3.HttpConnectionManager{}
		if err := chain.Filters[0].GetTypedConfig().UnmarshalTo(m); err != nil {
			t.Fatal(err)
		}
		m.UpgradeConfigs = hcm
		chain.Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(m)}
		return Load(&resources.Resources{
			Clusters:  []*clusterv3.Cluster{staticCluster("a")},
			Listeners: []*listenerv3.Listener{{Name: "l", Address: addr("0.0.0.0", 80), FilterChains: []*listenerv3.FilterChain{chain}}},
		}, Envoy)
	}
	ws := Request{Port: 80, Host: "web", Method: "GET", Path: "/ws", Headers: map[string]string{"upgrade": "websocket", "connection": "keep-alive, Upgrade"}}
	websocket := []*hcmv3.HttpConnectionManager_UpgradeConfig{{UpgradeType: "WebSocket"}}
	off := []*routev3.RouteAction_UpgradeConfig{{UpgradeType: "websocket", Enabled: wrapperspb.Bool(false)}}
	for _, tc := range []struct {
		name   string
		p      *Proxy
		req    Request
		denied bool
	}{
		{"no upgrade_configs", load(nil, nil), ws, true},
		{"websocket enabled", load(websocket, nil), ws, false},
		{"disabled by the route", load(websocket, off), ws, true},
		{"an Upgrade header without Connection: upgrade is no upgrade", load(nil, nil), Request{Port: 80, Host: "web", Method: "GET", Path: "/", Headers: map[string]string{"upgrade": "websocket"}}, false},
	} {
		r := tc.p.Simulate(tc.req)
		if r.Denied != tc.denied || (tc.denied && r.Status != 403) {
			t.Errorf("%s: denied %v status %d (%s), want denied %v", tc.name, r.Denied, r.Status, r.DenyReason, tc.denied)
		}
	}
}
