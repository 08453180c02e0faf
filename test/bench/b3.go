package bench

import (
	"context"
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	cachetypes "github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/crossgate-io/crossgate/xds/cache"
	"github.com/crossgate-io/crossgate/xds/resources"
	"github.com/crossgate-io/crossgate/xds/server"
)

// FanOut is the shape of B3 and B10: clients delta-subscribed to resources EDS resources each.
type FanOut struct {
	Clients   int
	Resources int
	Changes   int
}

// FullFanOut is B3 as performance.md gives it.
var FullFanOut = FanOut{Clients: 1000, Resources: 10000, Changes: 5}

// SmallFanOut runs with the tests.
var SmallFanOut = FanOut{Clients: 20, Resources: 200, Changes: 3}

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
					Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8080},
				}}}},
			}})
		}
		cla.Endpoints = []*endpointv3.LocalityLbEndpoints{le}
		out[i] = cla
	}
	return out
}

// publisher sets a version of the world in one cache implementation.
type publisher func(version int) error

// RunB3 is B3 on crossgate's cache, then the same workload on go-control-plane's stock
// SnapshotCache, with the ratio of their p99s. Each run also yields two B10 lines, as
// percentiles of the per-client time to sync: every client reconnecting at once to a restarted
// server with the versions it holds (B10 as performance.md gives it), and every client
// connecting at once with nothing (the cold start, which sends the whole state to everyone).
func RunB3(s FanOut) (ours, stock *Line, ours10, stock10 []*Line, err error) {
	run := func(name, impl10 string, fresh func() (serverv3.Server, publisher, []grpc.ServerOption)) (*Line, []*Line, error) {
		r, err := fanOut(s, fresh)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		params := map[string]any{"clients": s.Clients, "resources_per_client": s.Resources, "changes": s.Changes, "clients_in_own_process": true}
		l := &Line{
			Name: name, Params: map[string]any{"max_bytes_per_client_per_change": r.maxBytes},
			CoreS: r.changesCore, HeapInuseMiB: heapInuseMiB(), RSSMiB: rssMiB(),
		}
		for k, v := range params {
			l.Params[k] = v
		}
		l.percentiles(r.lat)
		reconnect := &Line{
			Name:   "B10 all clients reconnect at once after a restart and resync (" + impl10 + ")",
			Params: map[string]any{"max_bytes_per_client": r.resyncB, "changed_while_away": 1}, CoreS: r.resyncCore, HeapInuseMiB: l.HeapInuseMiB, RSSMiB: l.RSSMiB,
		}
		cold := &Line{
			Name:   "B10-cold all clients connect at once with nothing and sync the whole state (" + impl10 + ")",
			Params: map[string]any{}, CoreS: r.coldCore, HeapInuseMiB: l.HeapInuseMiB, RSSMiB: l.RSSMiB,
		}
		for k, v := range params {
			reconnect.Params[k], cold.Params[k] = v, v
		}
		reconnect.percentiles(r.resync)
		cold.percentiles(r.cold)
		return l, []*Line{reconnect, cold}, nil
	}
	ctx := context.Background()
	ours, ours10, err = run("B3 fan-out to delta clients (crossgate cache)", "crossgate cache", func() (serverv3.Server, publisher, []grpc.ServerOption) {
		c := cache.New(cache.NodeIDResolver, nil)
		set := false
		return serverv3.NewServer(ctx, c, nil), func(v int) error {
			if !set {
				set = true
				return c.Set("bench", &resources.Resources{Endpoints: endpoints(s.Resources, v)})
			}
			// The change an incremental publisher makes: the one resource that changed.
			changed := endpoints(1, v)[0]
			return c.Upsert("bench", resourcev3.EndpointType, changed.ClusterName, changed)
		}, server.GRPCOptions(c)
	})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	stock, stock10, err = run("B3 fan-out to delta clients (go-control-plane SnapshotCache)", "go-control-plane SnapshotCache", func() (serverv3.Server, publisher, []grpc.ServerOption) {
		snap := cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)
		return serverv3.NewServer(ctx, snap, nil), func(v int) error {
			res := make([]cachetypes.Resource, 0, s.Resources)
			for _, e := range endpoints(s.Resources, v) {
				res = append(res, e)
			}
			sn, err := cachev3.NewSnapshot(fmt.Sprint(v), map[resourcev3.Type][]cachetypes.Resource{resourcev3.EndpointType: res})
			if err != nil {
				return err
			}
			return snap.SetSnapshot(ctx, "bench", sn)
		}, nil // go-control-plane as shipped: gRPC's own codec
	})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	ours.Params["stock_p99_over_ours"] = stock.P99 / ours.P99
	for i := range ours10 {
		ours10[i].Params["stock_p99_over_ours"] = stock10[i].P99 / ours10[i].P99
	}
	return ours, stock, ours10, stock10, nil
}
