package server

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/crossgate-io/crossgate/xds/cache"
	"github.com/crossgate-io/crossgate/xds/resources"
)

func clusters(timeouts map[string]int64) *resources.Resources {
	r := &resources.Resources{}
	for name, s := range timeouts {
		r.Clusters = append(r.Clusters, &clusterv3.Cluster{Name: name, ConnectTimeout: durationpb.New(time.Duration(s) * time.Second)})
	}
	return r
}

// TestDelta: a delta client gets every cluster, then only what changed, then the removal; a
// NACKed version is not sent again.
func TestDelta(t *testing.T) {
	c := cache.New(cache.NodeIDResolver, nil)
	if err := c.Set("a/a", clusters(map[string]int64{"c1": 1, "c2": 1})); err != nil {
		t.Fatal(err)
	}
	st := deltaStream(t, c)
	node := &corev3.Node{Id: "a/a"}
	recv := func() *discoveryv3.DeltaDiscoveryResponse {
		t.Helper()
		got := make(chan *discoveryv3.DeltaDiscoveryResponse, 1)
		go func() {
			r, err := st.Recv()
			if err != nil {
				close(got)
				return
			}
			got <- r
		}()
		select {
		case r := <-got:
			return r
		case <-time.After(5 * time.Second):
			t.Fatal("no delta response")
			return nil
		}
	}
	ack := func(r *discoveryv3.DeltaDiscoveryResponse, nack bool) {
		req := &discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType, ResponseNonce: r.GetNonce()}
		if nack {
			req.ErrorDetail = &status.Status{Message: "rejected by the test"}
		}
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
	}

	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	r := recv()
	if got := names(r); !slices.Equal(got, []string{"c1", "c2"}) {
		t.Fatalf("first response: %v, want c1 and c2", got)
	}
	ack(r, false)

	if err := c.Set("a/a", clusters(map[string]int64{"c1": 2, "c2": 1, "c3": 1})); err != nil {
		t.Fatal(err)
	}
	r = recv()
	if got := names(r); !slices.Equal(got, []string{"c1", "c3"}) || len(r.GetRemovedResources()) != 0 {
		t.Fatalf("after changing c1 and adding c3: %v removed %v, want only c1 and c3", got, r.GetRemovedResources())
	}
	ack(r, false)

	if err := c.Set("a/a", clusters(map[string]int64{"c1": 2, "c2": 1})); err != nil {
		t.Fatal(err)
	}
	r = recv()
	if len(r.GetResources()) != 0 || !slices.Equal(r.GetRemovedResources(), []string{"c3"}) {
		t.Fatalf("after removing c3: %v removed %v", names(r), r.GetRemovedResources())
	}
	ack(r, false)

	pushes := c.PushCount("a/a", resourcev3.ClusterType)
	if err := c.Set("a/a", clusters(map[string]int64{"c1": 3, "c2": 1})); err != nil {
		t.Fatal(err)
	}
	r = recv()
	ack(r, true) // the client rejects c1 version 3
	time.Sleep(500 * time.Millisecond)
	if n := c.PushCount("a/a", resourcev3.ClusterType) - pushes; n != 1 {
		t.Errorf("the rejected version was sent %d times, want once", n)
	}
	if c.NACKs.Load() != 1 {
		t.Errorf("%d NACKs counted, want 1", c.NACKs.Load())
	}
}

// TestDeltaSubscriptions: a client subscribed to some names is told of those only; a name it
// subscribes to later, on a synced stream, is sent alone; a change of another type wakes no one.
func TestDeltaSubscriptions(t *testing.T) {
	c := cache.New(cache.NodeIDResolver, nil)
	if err := c.Set("a/a", clusters(map[string]int64{"c1": 1, "c2": 1, "c3": 1})); err != nil {
		t.Fatal(err)
	}
	send, next, responses := openClusterStream(t, c, "a/a")
	none := func(what string) {
		select {
		case r := <-responses:
			t.Errorf("%s: unexpected response with %d resources", what, len(r.GetResources()))
		case <-time.After(300 * time.Millisecond):
		}
	}
	send(&discoveryv3.DeltaDiscoveryRequest{ResourceNamesSubscribe: []string{"c1"}})
	r := next()
	if len(r.GetResources()) != 1 || r.GetResources()[0].GetName() != "c1" {
		t.Fatalf("subscribed to c1, got %v", r.GetResources())
	}
	send(&discoveryv3.DeltaDiscoveryRequest{ResponseNonce: r.GetNonce()})
	// c2 changes: not subscribed, nothing to send.
	if err := c.Set("a/a", clusters(map[string]int64{"c1": 1, "c2": 2, "c3": 1})); err != nil {
		t.Fatal(err)
	}
	none("a change of an unsubscribed cluster")
	// Subscribing to c3 later sends c3 alone.
	send(&discoveryv3.DeltaDiscoveryRequest{ResourceNamesSubscribe: []string{"c3"}})
	r = next()
	if len(r.GetResources()) != 1 || r.GetResources()[0].GetName() != "c3" {
		t.Fatalf("subscribing to c3, got %v", r.GetResources())
	}
	send(&discoveryv3.DeltaDiscoveryRequest{ResponseNonce: r.GetNonce()})
	// A change of another type wakes no cluster watch.
	if err := c.Set("a/a", &resources.Resources{
		Clusters:  clusters(map[string]int64{"c1": 1, "c2": 2, "c3": 1}).Clusters,
		Listeners: []*listenerv3.Listener{{Name: "l"}},
	}); err != nil {
		t.Fatal(err)
	}
	none("a change of listeners")
	// c1 changes: sent alone.
	if err := c.Set("a/a", clusters(map[string]int64{"c1": 5, "c2": 2, "c3": 1})); err != nil {
		t.Fatal(err)
	}
	r = next()
	if len(r.GetResources()) != 1 || r.GetResources()[0].GetName() != "c1" {
		t.Fatalf("after c1 changed, got %v", r.GetResources())
	}
}

// serveInsecure serves c over plaintext loopback for the test and returns a connection to it
// and a context that ends with the test.
// deltaStream opens a delta ADS stream to a server of c (serveInsecure).
func deltaStream(t *testing.T, c *cache.Cache) discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient {
	t.Helper()
	conn, ctx := serveInsecure(t, c)
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func serveInsecure(t *testing.T, c *cache.Cache) (*grpc.ClientConn, context.Context) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(GRPCOptions(c)...)
	ctx, cancel := context.WithCancel(context.Background())
	Register(ctx, s, c, Options{})
	go s.Serve(lis)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); s.Stop(); cancel() })
	return conn, ctx
}

// TestDeltaReconnectAfterRestart: a client that synced with one control plane reconnects, with
// the versions it holds, to a restarted one (a new cache, the same configuration but one changed
// cluster and one removed): it is sent the changed cluster and the removal, nothing else.
func TestDeltaReconnectAfterRestart(t *testing.T) {
	before := map[string]int64{"c1": 1, "c2": 1, "c3": 1, "c4": 1}
	c := cache.New(cache.NodeIDResolver, nil)
	if err := c.Set("a/a", clusters(before)); err != nil {
		t.Fatal(err)
	}
	node := &corev3.Node{Id: "a/a"}
	first := func(c *cache.Cache, req *discoveryv3.DeltaDiscoveryRequest) (*discoveryv3.DeltaDiscoveryResponse, error) {
		conn, ctx := serveInsecure(t, c)
		st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
		if err != nil {
			return nil, err
		}
		req.Node, req.TypeUrl = node, resourcev3.ClusterType
		if err := st.Send(req); err != nil {
			return nil, err
		}
		got := make(chan *discoveryv3.DeltaDiscoveryResponse, 1)
		go func() {
			r, _ := st.Recv()
			got <- r
		}()
		select {
		case r := <-got:
			return r, nil
		case <-time.After(5 * time.Second):
			return nil, nil
		}
	}
	r, err := first(c, &discoveryv3.DeltaDiscoveryRequest{ResourceNamesSubscribe: []string{"c1", "c2", "c3", "c4"}})
	if err != nil || len(r.GetResources()) != 4 {
		t.Fatalf("first sync: %v %v", r, err)
	}
	held := map[string]string{}
	for _, x := range r.GetResources() {
		held[x.GetName()] = x.GetVersion()
	}

	restarted := cache.New(cache.NodeIDResolver, nil)
	if err := restarted.Set("a/a", clusters(map[string]int64{"c1": 1, "c2": 2, "c3": 1})); err != nil {
		t.Fatal(err)
	}
	r, err = first(restarted, &discoveryv3.DeltaDiscoveryRequest{ResourceNamesSubscribe: []string{"c1", "c2", "c3", "c4"}, InitialResourceVersions: held})
	if err != nil || r == nil {
		t.Fatalf("no response after reconnecting: %v", err)
	}
	if got := names(r); !slices.Equal(got, []string{"c2"}) || !slices.Equal(r.GetRemovedResources(), []string{"c4"}) {
		t.Errorf("after reconnecting: sent %v removed %v, want only c2 sent and c4 removed", got, r.GetRemovedResources())
	}
}

func names(r *discoveryv3.DeltaDiscoveryResponse) []string {
	var out []string
	for _, x := range r.GetResources() {
		out = append(out, x.GetName())
	}
	slices.Sort(out)
	return out
}

// TestDeltaLateACK: changes made between a response and its ACK are sent when the ACK comes,
// exactly those of subscribed names, whether the change log still holds them (a few changes)
// or not (more than it keeps).
func TestDeltaLateACK(t *testing.T) {
	for _, between := range []int{1, 100} {
		c := cache.New(cache.NodeIDResolver, nil)
		world := map[string]int64{"c1": 1, "c2": 1, "c3": 1}
		if err := c.Set("a/a", clusters(world)); err != nil {
			t.Fatal(err)
		}
		send, next, responses := openClusterStream(t, c, "a/a")
		send(&discoveryv3.DeltaDiscoveryRequest{ResourceNamesSubscribe: []string{"c1", "c2"}})
		send(&discoveryv3.DeltaDiscoveryRequest{ResponseNonce: next().GetNonce()})
		world["c1"]++
		if err := c.Set("a/a", clusters(world)); err != nil {
			t.Fatal(err)
		}
		r := next()
		if got := names(r); !slices.Equal(got, []string{"c1"}) {
			t.Fatalf("after c1 changed: %v", got)
		}
		for range between { // not yet ACKed: nothing is sent
			world["c2"]++
			world["c3"]++
			if err := c.Set("a/a", clusters(world)); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case r := <-responses:
			t.Fatalf("a response before the ACK: %v", names(r))
		case <-time.After(100 * time.Millisecond):
		}
		send(&discoveryv3.DeltaDiscoveryRequest{ResponseNonce: r.GetNonce()})
		if got := names(next()); !slices.Equal(got, []string{"c2"}) {
			t.Errorf("%d changes before the ACK: sent %v, want c2 only", between, got)
		}
	}
}

// openClusterStream opens a delta stream to c as node for clusters: send fills in the node and
// type URL; next waits up to 3 s for a response; responses is what arrives.
func openClusterStream(t *testing.T, c *cache.Cache, node string) (send func(*discoveryv3.DeltaDiscoveryRequest), next func() *discoveryv3.DeltaDiscoveryResponse, responses <-chan *discoveryv3.DeltaDiscoveryResponse) {
	t.Helper()
	st := deltaStream(t, c)
	ch := make(chan *discoveryv3.DeltaDiscoveryResponse, 10)
	go func() {
		defer close(ch)
		for {
			r, err := st.Recv()
			if err != nil {
				return
			}
			ch <- r
		}
	}()
	send = func(req *discoveryv3.DeltaDiscoveryRequest) {
		req.Node, req.TypeUrl = &corev3.Node{Id: node}, resourcev3.ClusterType
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	next = func() *discoveryv3.DeltaDiscoveryResponse {
		select {
		case r := <-ch:
			return r
		case <-time.After(3 * time.Second):
			t.Fatal("no response")
			return nil
		}
	}
	return send, next, ch
}
