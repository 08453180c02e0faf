package bench

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/crossgate-io/crossgate/translator"
	"github.com/crossgate-io/crossgate/wellknown"
	"github.com/crossgate-io/crossgate/xds/cache"
	"github.com/crossgate-io/crossgate/xds/resources"
	"github.com/crossgate-io/crossgate/xds/translate"
)

// Marshaled is a configuration kept as bytes: one entry per distinct resource.
type Marshaled struct {
	Resources map[string][]byte // "proxy|kind|name" -> bytes
	Bytes     int
	// ByKind is the number of bytes per xDS type (lds, rds, cds, eds).
	ByKind map[string]int
}

// marshalAll marshals every distinct resource of an Output once (identities that share
// resources share their bytes).
func marshalAll(out *resources.Output) (*Marshaled, error) {
	m := &Marshaled{Resources: map[string][]byte{}, ByKind: map[string]int{}}
	seen := map[proto.Message]bool{}
	seenPart := map[*resources.Resources]bool{}
	add := func(proxy, kind, name string, msg proto.Message) error {
		if seen[msg] {
			return nil
		}
		seen[msg] = true
		b, err := proto.Marshal(msg)
		if err != nil {
			return err
		}
		m.Resources[proxy+"|"+kind+"|"+name] = b
		m.Bytes += len(b)
		m.ByKind[kind] += len(b)
		return nil
	}
	for _, group := range []struct {
		kind string
		m    map[string]*resources.Resources
	}{{"sidecar", out.Sidecars}, {"proxyless", out.Proxyless}, {"gateway", out.Gateways}} {
		for proxy, whole := range group.m {
			p := group.kind + " " + proxy
			for r := range whole.Parts() {
				if seenPart[r] {
					continue // a shared part: marshaled once, with the first proxy that has it
				}
				seenPart[r] = true
				for _, x := range r.Listeners {
					if err := add(p, "lds", x.Name, x); err != nil {
						return nil, err
					}
				}
				for _, x := range r.Routes {
					if err := add(p, "rds", x.Name, x); err != nil {
						return nil, err
					}
				}
				for _, x := range r.Clusters {
					if err := add(p, "cds", x.Name, x); err != nil {
						return nil, err
					}
				}
				for _, x := range r.Endpoints {
					if err := add(p, "eds", x.ClusterName, x); err != nil {
						return nil, err
					}
				}
			}
		}
	}
	return m, nil
}

// RunB1 is B1: the full translation of a world and its publication, as the controller runs it on
// a full publish: translator.Translate, translate.Build, and every proxy's resources set into an
// xDS cache (cache.Set marshals each distinct resource once and keeps its bytes), samples times,
// each into a fresh cache. It returns the JSON line and the last output as bytes (measured after
// the timings, for its size by type). A sample that takes longer than budget is stopped and the
// line reports a timeout (timed_out, and how many keys were published in the budget).
func RunB1(size Size, samples int, budget time.Duration) (*Line, *Marshaled, error) {
	in := World(size)
	base := heapInuseMiB()
	var times []time.Duration
	var out *resources.Output
	var c *cache.Cache
	cpu0 := cpuSeconds()
	for range samples {
		out, c = nil, nil //nolint:ineffassign // the last sample's output and cache are garbage before this one starts
		t0 := time.Now()
		res := translator.Translate(in)
		var err error
		if out, err = translate.Build(&res.IR); err != nil {
			return nil, nil, fmt.Errorf("build: %w", err)
		}
		c = cache.New(cache.NodeIDResolver, nil)
		published, err := publish(c, out, t0.Add(budget))
		if errors.Is(err, errBudget) {
			l := &Line{
				Name: "B1 full translate and publish",
				Params: map[string]any{
					"services": size.Services, "endpoints_per_service": size.EndpointsPerSvc, "clusters": size.Clusters,
					"identities": size.Namespaces * size.AccountsPerNS, "permissive": size.Permissive,
					"timed_out": true, "budget_s": budget.Seconds(), "keys_published": len(published),
					"keys": len(out.Sidecars) + len(out.Proxyless) + len(out.Gateways),
				},
				CoreS: cpuSeconds() - cpu0, HeapInuseMiB: heapInuseMiB(), RSSMiB: rssMiB(),
			}
			l.percentiles([]time.Duration{time.Since(t0)})
			return l, nil, nil
		}
		if err != nil {
			return nil, nil, err
		}
		times = append(times, time.Since(t0))
	}
	cpu := (cpuSeconds() - cpu0) / float64(samples)
	rss := rssMiB()
	kept, err := marshalAll(out)
	if err != nil {
		return nil, nil, err
	}
	out = nil
	l := &Line{
		Name: "B1 full translate and publish",
		Params: map[string]any{
			"services": size.Services, "endpoints_per_service": size.EndpointsPerSvc, "clusters": size.Clusters,
			"httproutes": size.HTTPRoutes, "traffictargets": size.TrafficTargets,
			"identities": size.Namespaces * size.AccountsPerNS, "permissive": size.Permissive, "samples": samples,
			"resources": len(kept.Resources), "output_mib": float64(kept.Bytes) / (1 << 20),
			"output_mib_by_type": mib(kept.ByKind),
		},
		CoreS:  cpu,
		RSSMiB: rss,
	}
	l.percentiles(times)
	// The live heap holds the input and the cache of the last sample (bytes, interned).
	l.HeapInuseMiB = heapInuseMiB()
	l.Params["input_heap_mib"] = base
	runtime.KeepAlive(c)
	return l, kept, nil
}

// errBudget is publish's error when its deadline passed.
var errBudget = errors.New("the time budget passed")

// publish sets every proxy's resources of out into c under its node ID with SetAll, as the
// controller's publisher does (without the certificates it adds), and returns the keys it set.
// It stops with errBudget once deadline has passed (a zero deadline is none).
func publish(c *cache.Cache, out *resources.Output, deadline time.Time) (map[string]bool, error) {
	var updates []cache.Update
	for _, group := range []struct {
		m   map[string]*resources.Resources
		key func(ns, name string) wellknown.NodeID
	}{{out.Sidecars, wellknown.Sidecar}, {out.Proxyless, wellknown.Proxyless}, {out.Gateways, wellknown.Gateway}} {
		for id, r := range group.m {
			ns, name, _ := strings.Cut(id, "/")
			updates = append(updates, cache.Update{Key: group.key(ns, name).String(), Resources: r})
		}
	}
	if deadline.IsZero() {
		published := map[string]bool{}
		for _, u := range updates {
			published[u.Key] = true
		}
		return published, c.SetAll(updates)
	}
	// With a budget, in batches, so that a sample over it stops: each batch marshals the shared
	// parts that no earlier batch did, as the publisher's one SetAll does over every key.
	published := map[string]bool{}
	for len(updates) > 0 {
		if time.Now().After(deadline) {
			return published, errBudget
		}
		n := min(len(updates), publishBatch)
		if err := c.SetAll(updates[:n]); err != nil {
			return nil, err
		}
		for _, u := range updates[:n] {
			published[u.Key] = true
		}
		updates = updates[n:]
	}
	return published, nil
}

// publishBatch is how many keys publish sets at once under a budget.
const publishBatch = 250

func mib(byKind map[string]int) map[string]float64 {
	out := map[string]float64{}
	for k, v := range byKind {
		out[k] = float64(v) / (1 << 20)
	}
	return out
}
