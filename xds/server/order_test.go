package server

import (
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/crossgate-io/crossgate/xds/cache"
	"github.com/crossgate-io/crossgate/xds/resources"
)

// config is a proxy whose listener and route use cluster name.
func config(name string) *resources.Resources {
	return &resources.Resources{
		Listeners: []*listenerv3.Listener{{Name: "l"}},
		Routes: []*routev3.RouteConfiguration{{Name: "r", VirtualHosts: []*routev3.VirtualHost{{
			Name: "v", Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name}}},
			}},
		}}}},
		Clusters:  []*clusterv3.Cluster{{Name: name, ConnectTimeout: durationpb.New(time.Second)}},
		Endpoints: []*endpointv3.ClusterLoadAssignment{{ClusterName: name}},
	}
}

// TestPushIsMakeBeforeBreak: one change that replaces cluster a by cluster b, and the listener and
// route that use it, reaches a delta (ADS) client as the xDS protocol's eventual consistency
// considerations ask: the new cluster and its endpoints before the listener and route that name
// it, and the removal of the old cluster after them.
func TestPushIsMakeBeforeBreak(t *testing.T) {
	c := cache.New(cache.NodeIDResolver, nil)
	if err := c.Set("a/a", config("a")); err != nil {
		t.Fatal(err)
	}
	st := deltaStream(t, c)
	node := &corev3.Node{Id: "a/a"}
	types := []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType}
	for _, typ := range types {
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: typ}); err != nil {
			t.Fatal(err)
		}
	}
	recv := func() *discoveryv3.DeltaDiscoveryResponse {
		t.Helper()
		r, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for range types { // the first sync, each acknowledged
		r := recv()
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond) // the acknowledgements are in
	if err := c.Set("a/a", config("b")); err != nil {
		t.Fatal(err)
	}
	var seq []string
	for len(seq) < 5 {
		r := recv()
		short := map[string]string{resourcev3.ClusterType: "CDS", resourcev3.EndpointType: "EDS", resourcev3.ListenerType: "LDS", resourcev3.RouteType: "RDS"}[r.GetTypeUrl()]
		for _, res := range r.GetResources() {
			seq = append(seq, short+"+"+res.GetName())
		}
		for _, name := range r.GetRemovedResources() {
			seq = append(seq, short+"-"+name)
		}
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()}); err != nil {
			t.Fatal(err)
		}
	}
	pos := map[string]int{}
	for i, s := range seq {
		pos[s] = i
	}
	for _, before := range [][2]string{{"CDS+b", "RDS+r"}, {"EDS+b", "RDS+r"}, {"RDS+r", "CDS-a"}, {"CDS+b", "CDS-a"}} {
		a, okA := pos[before[0]]
		b, okB := pos[before[1]]
		if !okA || !okB || a > b {
			t.Errorf("%s must come before %s: got %v", before[0], before[1], seq)
		}
	}
}
