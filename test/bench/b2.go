package bench

import (
	"fmt"
	"runtime"
	"slices"
	"time"

	"github.com/crossgate-io/crossgate/controllers"
	"github.com/crossgate-io/crossgate/translator"
	"github.com/crossgate-io/crossgate/xds/cache"
	"github.com/crossgate-io/crossgate/xds/translate"
)

// RunB2 is B2: in the B1 world, published in an xDS cache as the controller publishes it, one
// endpoint of one service moves; the time from the changed EndpointSlice to the new resources in
// every key that holds them, over samples changes (each to another service), through the
// controller's incremental step (controllers.PatchEndpoints: the kept translation, the rebuilt
// clusters and endpoints, cache.Patch). Every sample must take the incremental path: an
// endpoint's move changes nothing but endpoints. B2e measures the same from the API server's
// write to a client.
func RunB2(size Size, samples int) (*Line, error) {
	in := World(size)
	x := translator.NewIncremental(in)
	out, err := translate.Build(&x.Result().IR)
	if err != nil {
		return nil, err
	}
	c := cache.New(cache.NodeIDResolver, nil)
	published, err := publish(c, out, time.Time{})
	if err != nil {
		return nil, err
	}
	runtime.GC()
	var times []time.Duration
	cpu0 := cpuSeconds()
	for n := range samples {
		i := (n * 7919) % len(in.EndpointSlices) // spread over services, those behind HTTPRoutes included
		s := in.EndpointSlices[i]                // a new version: the translation holds the old one
		s.Endpoints = slices.Clone(s.Endpoints)
		s.Endpoints[0].Address = fmt.Sprintf("10.200.%d.%d", n>>8&255, n&255)
		in.EndpointSlices = slices.Clone(in.EndpointSlices)
		in.EndpointSlices[i] = s

		t0 := time.Now()
		path, err := controllers.PatchEndpoints(x, c, published, controllers.EndpointEvents{Slices: map[string]controllers.SliceEvent{s.Namespace + "/" + s.Name: {Slice: &s}}})
		times = append(times, time.Since(t0))
		if err != nil {
			return nil, err
		}
		if path != controllers.PathIncremental {
			return nil, fmt.Errorf("change %d (slice %s/%s) did not take the incremental path", n, s.Namespace, s.Name)
		}
	}
	l := &Line{
		Name: "B2 one endpoint change",
		Params: map[string]any{
			"services": size.Services, "endpoints_per_service": size.EndpointsPerSvc, "clusters": size.Clusters,
			"identities": size.Namespaces * size.AccountsPerNS, "permissive": size.Permissive, "samples": samples,
			"path": "controllers.PatchEndpoints into the xDS cache",
		},
		CoreS:        cpuSeconds() - cpu0,
		HeapInuseMiB: heapInuseMiB(), // the world, its kept translation and the cache
		RSSMiB:       rssMiB(),
	}
	l.percentiles(times)
	runtime.KeepAlive(x)
	runtime.KeepAlive(in)
	return l, nil
}
