package simulate

import (
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/crossgate-io/crossgate/xds/resources"
)

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}

func addr(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

func tcpChain(name, cluster string, m *listenerv3.FilterChainMatch) *listenerv3.FilterChain {
	return &listenerv3.FilterChain{Name: name, FilterChainMatch: m, Filters: []*listenerv3.Filter{{
		Name:       "envoy.filters.network.tcp_proxy",
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(&tcpproxyv3.TcpProxy{StatPrefix: name, ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster}})},
	}}}
}

func hcmChain(name string, rc *routev3.RouteConfiguration, filters ...*hcmv3.HttpFilter) *listenerv3.FilterChain {
	if len(filters) == 0 {
		filters = []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}}}
	}
	m := &hcmv3.HttpConnectionManager{StatPrefix: name, HttpFilters: filters, RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc}}
	return &listenerv3.FilterChain{Name: name, Filters: []*listenerv3.Filter{{
		Name:       "envoy.filters.network.http_connection_manager",
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(m)},
	}}}
}

func routeTo(cluster string, domains ...string) *routev3.VirtualHost {
	return &routev3.VirtualHost{Name: strings.Join(domains, ","), Domains: domains, Routes: []*routev3.Route{{
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}},
	}}}
}

func staticCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{Name: name, ConnectTimeout: durationpb.New(time.Second), ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}}
}

// TestLoadRefusesWhatEnvoyRefuses: each configuration is one Envoy (or grpc-go) refuses, and
// Load must refuse it naming the rule; the same configuration without the fault loads.
func TestLoadRefusesWhatEnvoyRefuses(t *testing.T) {
	ok := func() *resources.Resources {
		return &resources.Resources{Clusters: []*clusterv3.Cluster{staticCluster("a")}, Listeners: []*listenerv3.Listener{{
			Name: "l", Address: addr("0.0.0.0", 80),
			FilterChains: []*listenerv3.FilterChain{hcmChain("http", &routev3.RouteConfiguration{Name: "rc", VirtualHosts: []*routev3.VirtualHost{routeTo("a", "a.example")}})},
		}}}
	}
	if err := Load(ok(), Envoy).Err(); err != nil {
		t.Fatalf("the sound configuration is refused: %v", err)
	}
	cases := map[string]struct {
		change func(r *resources.Resources)
		rule   string
	}{
		"a second listener on an address, not binding": {func(r *resources.Resources) {
			r.Listeners = append(r.Listeners, &listenerv3.Listener{
				Name: "m", Address: addr("0.0.0.0", 80), BindToPort: wrapperspb.Bool(false),
				FilterChains: []*listenerv3.FilterChain{tcpChain("t", "a", nil)},
			})
		}, "duplicate address"},
		"two filter chains with the same match": {func(r *resources.Resources) {
			r.Listeners[0].FilterChains = append(r.Listeners[0].FilterChains, tcpChain("t", "a", nil))
		}, "overlapping filter chain"},
		"overlapping prefix ranges": {func(r *resources.Resources) {
			pr := []*corev3.CidrRange{{AddressPrefix: "10.0.0.1", PrefixLen: wrapperspb.UInt32(32)}}
			r.Listeners[0].FilterChains = []*listenerv3.FilterChain{tcpChain("x", "a", &listenerv3.FilterChainMatch{PrefixRanges: pr}), tcpChain("y", "a", &listenerv3.FilterChainMatch{PrefixRanges: append(pr, &corev3.CidrRange{AddressPrefix: "10.0.0.2", PrefixLen: wrapperspb.UInt32(32)})})}
		}, "overlapping filter chain"},
		"a domain twice in a route configuration": {func(r *resources.Resources) {
			r.Listeners[0].FilterChains = []*listenerv3.FilterChain{hcmChain("http", &routev3.RouteConfiguration{Name: "rc", VirtualHosts: []*routev3.VirtualHost{routeTo("a", "a.example"), routeTo("a", "b.example", "a.example")}})}
		}, "unique values for domains"},
		"a route removing the host header": {func(r *resources.Resources) {
			vh := routeTo("a", "a.example")
			vh.Routes[0].RequestHeadersToRemove = []string{"Host"}
			r.Listeners[0].FilterChains = []*listenerv3.FilterChain{hcmChain("http", &routev3.RouteConfiguration{Name: "rc", VirtualHosts: []*routev3.VirtualHost{vh}})}
		}, "may not be removed"},
		"a route setting a pseudo-header": {func(r *resources.Resources) {
			vh := routeTo("a", "a.example")
			vh.Routes[0].ResponseHeadersToAdd = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: ":status", Value: "200"}}}
			r.Listeners[0].FilterChains = []*listenerv3.FilterChain{hcmChain("http", &routev3.RouteConfiguration{Name: "rc", VirtualHosts: []*routev3.VirtualHost{vh}})}
		}, "may not be modified"},
		"a header value with a lone %": {func(r *resources.Resources) {
			vh := routeTo("a", "a.example")
			vh.Routes[0].RequestHeadersToAdd = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-a", Value: "100%"}}}
			r.Listeners[0].FilterChains = []*listenerv3.FilterChain{hcmChain("http", &routev3.RouteConfiguration{Name: "rc", VirtualHosts: []*routev3.VirtualHost{vh}})}
		}, "header_parser.cc"},
		"two wildcard domains": {func(r *resources.Resources) {
			r.Routes = []*routev3.RouteConfiguration{{Name: "rds", VirtualHosts: []*routev3.VirtualHost{routeTo("a", "*"), routeTo("a", "*")}}}
		}, "single wildcard"},
		"an inline route configuration naming an unknown cluster": {func(r *resources.Resources) {
			r.Listeners[0].FilterChains = []*listenerv3.FilterChain{hcmChain("http", &routev3.RouteConfiguration{Name: "rc", VirtualHosts: []*routev3.VirtualHost{routeTo("nope", "a.example")}})}
		}, "validate_clusters"},
		"an HTTP filter after the router": {func(r *resources.Resources) {
			router := &hcmv3.HttpFilter{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}}
			r.Listeners[0].FilterChains = []*listenerv3.FilterChain{hcmChain("http", &routev3.RouteConfiguration{Name: "rc"}, router, &hcmv3.HttpFilter{Name: "envoy.filters.http.rbac"})}
		}, "validateTerminalFilters"},
		"a network filter after tcp_proxy": {func(r *resources.Resources) {
			fc := tcpChain("t", "a", nil)
			fc.Filters = append(fc.Filters, &listenerv3.Filter{Name: "envoy.filters.network.rbac"})
			r.Listeners[0].FilterChains = []*listenerv3.FilterChain{fc}
		}, "validateTerminalFilters"},
		"an ORIGINAL_DST cluster balanced round robin": {func(r *resources.Resources) {
			r.Clusters = append(r.Clusters, &clusterv3.Cluster{Name: "o", ConnectTimeout: durationpb.New(time.Second), ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}})
		}, "original_dst_cluster.cc"},
		"weighted clusters weighing nothing": {func(r *resources.Resources) {
			vh := routeTo("a", "w.example")
			vh.Routes[0].GetRoute().ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{{Name: "a", Weight: wrapperspb.UInt32(0)}}}}
			r.Routes = []*routev3.RouteConfiguration{{Name: "rds", VirtualHosts: []*routev3.VirtualHost{vh}}}
		}, "sum to 0"},
		"a gap in priorities": {func(r *resources.Resources) {
			r.Endpoints = []*endpointv3.ClusterLoadAssignment{{ClusterName: "e", Endpoints: []*endpointv3.LocalityLbEndpoints{
				{Priority: 0, Locality: &corev3.Locality{Zone: "a"}}, {Priority: 2, Locality: &corev3.Locality{Zone: "b"}},
			}}}
		}, "priority 1 missing"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			r := ok()
			c.change(r)
			p := Load(r, Envoy)
			if err := p.Err(); err == nil || !strings.Contains(err.Error(), c.rule) {
				t.Errorf("want a refusal naming %q, got %v", c.rule, err)
			}
		})
	}
	// grpc-go refuses an SDS certificate, which Envoy takes.
	r := ok()
	r.Listeners = nil
	r.Clusters[0].ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}
	if err := Load(r, GRPC).Err(); err != nil {
		t.Errorf("grpc-go refuses an EDS cluster: %v", err)
	}
	r.Clusters[0].ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
	if err := Load(r, GRPC).Err(); err == nil {
		t.Error("grpc-go takes a STATIC cluster")
	}
}

// TestPriorityLoad is Envoy's arithmetic (load_balancer_impl.cc): overprovisioning 1.4, load
// spilling to the next priority, panic below 50% when the total is short.
func TestPriorityLoad(t *testing.T) {
	c := &Cluster{PanicThreshold: 50, Overprovisioning: 140, Priorities: []Priority{
		{Priority: 0, Localities: []Locality{{Name: "a", Endpoints: []string{"a1", "a2", "a3", "a4", "a5"}}}},
		{Priority: 1, Localities: []Locality{{Name: "b", Endpoints: []string{"b1"}}}},
	}}
	down := func(eps ...string) func(string) bool {
		return func(e string) bool {
			for _, d := range eps {
				if d == e {
					return false
				}
			}
			return true
		}
	}
	for _, tc := range []struct {
		down       []string
		want       []float64
		wantPanic0 bool
	}{
		{nil, []float64{100, 0}, false},
		{[]string{"a1"}, []float64{100, 0}, false},       // 80% × 1.4 = 112: still 100
		{[]string{"a1", "a2"}, []float64{84, 16}, false}, // 60% × 1.4 = 84, the rest spills
		{[]string{"a1", "a2", "a3", "a4"}, []float64{28, 72}, false},
		{[]string{"a1", "a2", "a3", "a4", "a5", "b1"}, []float64{500.0 / 6, 100.0 / 6}, true}, // total panic: by hosts
	} {
		load, panic := c.PriorityLoad(down(tc.down...))
		for i := range tc.want {
			if diff := load[i] - tc.want[i]; diff > 0.01 || diff < -0.01 {
				t.Errorf("down %v: load %v, want %v", tc.down, load, tc.want)
				break
			}
		}
		if panic[0] != tc.wantPanic0 {
			t.Errorf("down %v: panic %v", tc.down, panic)
		}
	}
}

// TestLocalityWeights: locality weights count only with locality weighted balancing.
func TestLocalityWeights(t *testing.T) {
	c := &Cluster{Overprovisioning: 140, Priorities: []Priority{{Localities: []Locality{
		{Name: "local", Weight: 1, Endpoints: []string{"p1", "p2", "p3"}},
		{Name: "remote", Weight: 3, Endpoints: []string{"g1"}},
	}}}}
	if w := c.LocalityWeights(0, nil); w[0] != 3 || w[1] != 1 {
		t.Errorf("without locality weighting: %v, want every host alike (3, 1)", w)
	}
	c.LocalityWeighted = true
	if w := c.LocalityWeights(0, nil); w[0] != 1 || w[1] != 3 {
		t.Errorf("with locality weighting: %v, want the weights (1, 3)", w)
	}
}
