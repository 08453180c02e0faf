package bench

import (
	"fmt"
	"runtime"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/crossgate-io/crossgate/translator"
	"github.com/crossgate-io/crossgate/xds/translate"
)

// RunB2 is B2: in the B1 world, one endpoint of one service moves; the time from the change to
// the new marshaled resources, over samples changes (each to another service). It also checks
// that exactly the affected resources are re-marshaled: the service's EDS resource (one per
// distinct view of it) and the EDS resource of each gateway that routes to it.
func RunB2(size Size, samples int) (*Line, error) {
	in := World(size)
	x := translator.NewIncremental(in)
	var times []time.Duration
	remarshaled := 0
	cpu0 := cpuSeconds()
	for n := range samples {
		i := (n * 7919) % len(in.EndpointSlices) // spread over services, those behind HTTPRoutes included
		s := in.EndpointSlices[i].DeepCopy()
		s.Endpoints[0].Addresses = []string{fmt.Sprintf("10.200.%d.%d", n>>8&255, n&255)}
		in.EndpointSlices[i] = *s

		t0 := time.Now()
		ch := x.SetEndpointSlice(s, false)
		count := 0
		for k := range ch.Outbound {
			cla, err := translate.OutboundEndpoints(&ch.Outbound[k].Service)
			if err != nil {
				return nil, err
			}
			if _, err := proto.Marshal(cla); err != nil {
				return nil, err
			}
			count++
		}
		for k := range ch.Backends {
			cla, err := translate.GatewayEndpoints(&ch.Backends[k].Backend)
			if err != nil {
				return nil, err
			}
			if _, err := proto.Marshal(cla); err != nil {
				return nil, err
			}
			count++
		}
		times = append(times, time.Since(t0))

		want := 0
		if size.Permissive {
			want = 1 // one shared view of the service
		} else {
			want = len(ch.Outbound) // one per identity that reaches it, nothing else
		}
		behindRoute := i < size.HTTPRoutes
		if behindRoute {
			want++
		}
		if count != want || len(ch.Inbound) != 0 || (size.Permissive && len(ch.Outbound) != 1) {
			return nil, fmt.Errorf("change %d re-marshaled %d resources (outbound %d, backends %d, inbound %d), want %d",
				n, count, len(ch.Outbound), len(ch.Backends), len(ch.Inbound), want)
		}
		remarshaled += count
	}
	l := &Line{
		Name: "B2 one endpoint change",
		Params: map[string]any{
			"services": size.Services, "endpoints_per_service": size.EndpointsPerSvc, "clusters": size.Clusters,
			"identities": size.Namespaces * size.AccountsPerNS, "permissive": size.Permissive, "samples": samples,
			"remarshaled_per_change": float64(remarshaled) / float64(samples),
		},
		CoreS:        cpuSeconds() - cpu0,
		HeapInuseMiB: heapInuseMiB(), // the world and its kept translation
		RSSMiB:       rssMiB(),
	}
	l.percentiles(times)
	runtime.KeepAlive(x)
	runtime.KeepAlive(in)
	return l, nil
}
