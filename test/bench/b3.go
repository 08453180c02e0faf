package bench

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachetypes "github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/crossgate-io/crossgate/xds/cache"
	"github.com/crossgate-io/crossgate/xds/translate"
)

// FanOut is the shape of B3: clients delta-subscribed to resources EDS resources each.
type FanOut struct {
	Clients   int
	Resources int
	Changes   int
	// SeparateProcess runs the clients in a second process.
	SeparateProcess bool
}

// FullFanOut is B3 as performance.md gives it.
var FullFanOut = FanOut{Clients: 1000, Resources: 10000, Changes: 5, SeparateProcess: true}

// SmallFanOut runs with the tests.
var SmallFanOut = FanOut{Clients: 20, Resources: 200, Changes: 3, SeparateProcess: true}

func endpoints(n, version int) []*endpointv3.ClusterLoadAssignment {
	out := make([]*endpointv3.ClusterLoadAssignment, n)
	for i := range out {
		cla := &endpointv3.ClusterLoadAssignment{ClusterName: fmt.Sprintf("outbound/ns-%d/svc-%d:8080", i%100, i)}
		le := &endpointv3.LocalityLbEndpoints{LoadBalancingWeight: wrapperspb.UInt32(100)}
		for e := range 10 {
			addr := fmt.Sprintf("10.%d.%d.%d", 1+i>>8&255, i&255, e+1)
			if i == 0 {
				addr = fmt.Sprintf("10.200.%d.%d", version>>8&255, version&255+e) // the resource that changes
			}
			le.LbEndpoints = append(le.LbEndpoints, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
				Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8080}}}}}}})
		}
		cla.Endpoints = []*endpointv3.LocalityLbEndpoints{le}
		out[i] = cla
	}
	return out
}

// publisher sets a version of the world in one cache implementation.
type publisher func(version int) error

// fanOut serves cacheImpl, connects the clients, and measures each change's arrival at every
// client: latencies and bytes per client.
func fanOut(s FanOut, impl serverv3.Server, publish publisher) (lat []time.Duration, maxBytes int, syncs []time.Duration, err error) {
	if err := publish(0); err != nil {
		return nil, 0, nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, 0, nil, err
	}
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(64 << 20))
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, impl)
	go gs.Serve(lis)
	defer gs.Stop()

	names := make([]string, s.Resources)
	for i, e := range endpoints(s.Resources, 0) {
		names[i] = e.ClusterName
	}
	conns := make([]*grpc.ClientConn, (s.Clients+99)/100)
	for i := range conns {
		if conns[i], err = grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20))); err != nil {
			return nil, 0, nil, err
		}
		defer conns[i].Close()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	type arrival struct {
		d     time.Duration
		bytes int
	}
	var mu sync.Mutex
	var changeAt time.Time
	arrivals := make(chan arrival, s.Clients*s.Changes)
	var synced, done sync.WaitGroup
	syncCh := make(chan time.Duration, s.Clients)
	synced.Add(s.Clients)
	done.Add(s.Clients)
	errs := make(chan error, s.Clients)
	start := time.Now()
	for c := range s.Clients {
		go func() {
			defer done.Done()
			st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conns[c/100]).DeltaAggregatedResources(ctx)
			if err != nil {
				errs <- err
				synced.Done()
				return
			}
			node := &corev3.Node{Id: "bench"}
			if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: names}); err != nil {
				errs <- err
				synced.Done()
				return
			}
			got := 0
			for got < s.Resources { // the initial state may come in several responses
				r, err := st.Recv()
				if err != nil {
					errs <- err
					synced.Done()
					return
				}
				got += len(r.GetResources())
				_ = st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.EndpointType, ResponseNonce: r.GetNonce()})
			}
			syncCh <- time.Since(start)
			synced.Done()
			for range s.Changes {
				r, err := st.Recv()
				if err != nil {
					return
				}
				mu.Lock()
				d := time.Since(changeAt)
				mu.Unlock()
				arrivals <- arrival{d, proto.Size(r)}
				_ = st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.EndpointType, ResponseNonce: r.GetNonce()})
			}
		}()
	}
	synced.Wait()
	select {
	case err := <-errs:
		return nil, 0, nil, err
	default:
	}
	for range s.Clients {
		syncs = append(syncs, <-syncCh)
	}
	for v := 1; v <= s.Changes; v++ {
		mu.Lock()
		changeAt = time.Now()
		mu.Unlock()
		if err := publish(v); err != nil {
			return nil, 0, nil, err
		}
		for range s.Clients {
			select {
			case a := <-arrivals:
				lat = append(lat, a.d)
				maxBytes = max(maxBytes, a.bytes)
			case <-time.After(60 * time.Second):
				return nil, 0, nil, fmt.Errorf("change %d did not reach every client within 60s", v)
			}
		}
	}
	cancel()
	return lat, maxBytes, syncs, nil
}

// RunB3 is B3 on crossgate's cache, then the same workload on go-control-plane's stock
// SnapshotCache, with the ratio of their p99s. Each run also yields a B10 line: every client
// connecting at once (a cold start: a reconnect with initial_resource_versions has less to send)
// and syncing the whole state, as percentiles of the per-client time to sync.
func RunB3(s FanOut) (ours, stock, ours10, stock10 *Line, err error) {
	run := func(name, impl10 string, srv serverv3.Server, publish publisher) (*Line, *Line, error) {
		cpu0 := cpuSeconds()
		measure := fanOut
		if s.SeparateProcess {
			measure = fanOutProcess
		}
		lat, maxBytes, syncs, err := measure(s, srv, publish)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		params := map[string]any{"clients": s.Clients, "resources_per_client": s.Resources, "changes": s.Changes, "clients_in_own_process": s.SeparateProcess}
		l := &Line{Name: name, Params: map[string]any{"max_bytes_per_client_per_change": maxBytes},
			CoreS: cpuSeconds() - cpu0, HeapInuseMiB: heapInuseMiB(), RSSMiB: rssMiB()}
		for k, v := range params {
			l.Params[k] = v
		}
		l.percentiles(lat)
		b10 := &Line{Name: "B10 all clients connect at once and sync (" + impl10 + ")", Params: params, RSSMiB: l.RSSMiB}
		b10.percentiles(syncs)
		return l, b10, nil
	}
	ctx := context.Background()
	ours0 := cache.New(cache.NodeIDResolver, nil)
	ours, ours10, err = run("B3 fan-out to delta clients (crossgate cache)", "crossgate cache", serverv3.NewServer(ctx, ours0, nil), func(v int) error {
		if v == 0 {
			return ours0.Set("bench", &translate.Resources{Endpoints: endpoints(s.Resources, v)})
		}
		// The change an incremental publisher makes: the one resource that changed.
		changed := endpoints(1, v)[0]
		return ours0.Upsert("bench", resourcev3.EndpointType, changed.ClusterName, changed)
	})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	snap := cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)
	stock, stock10, err = run("B3 fan-out to delta clients (go-control-plane SnapshotCache)", "go-control-plane SnapshotCache", serverv3.NewServer(ctx, snap, nil), func(v int) error {
		res := make([]cachetypes.Resource, 0, s.Resources)
		for _, e := range endpoints(s.Resources, v) {
			res = append(res, e)
		}
		sn, err := cachev3.NewSnapshot(fmt.Sprint(v), map[resourcev3.Type][]cachetypes.Resource{resourcev3.EndpointType: res})
		if err != nil {
			return err
		}
		return snap.SetSnapshot(ctx, "bench", sn)
	})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	ours.Params["stock_p99_over_ours"] = stock.P99 / ours.P99
	ours10.Params["stock_p99_over_ours"] = stock10.P99 / ours10.P99
	return ours, stock, ours10, stock10, nil
}
