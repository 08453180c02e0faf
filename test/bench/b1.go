package bench

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/crossgate-io/crossgate/translator"
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

// RunB1 is B1: the full translation of a world into marshaled xDS resources, samples times.
// It returns the JSON line and the last output (kept as bytes only).
func RunB1(size Size, samples int) (*Line, *Marshaled, error) {
	in := World(size)
	base := heapInuseMiB()
	var times []time.Duration
	var kept *Marshaled
	cpu0 := cpuSeconds()
	for range samples {
		kept = nil
		t0 := time.Now()
		res := translator.Translate(in)
		out, err := translate.Build(&res.IR)
		if err != nil {
			return nil, nil, fmt.Errorf("build: %w", err)
		}
		m, err := marshalAll(out)
		if err != nil {
			return nil, nil, err
		}
		times = append(times, time.Since(t0))
		kept = m
	}
	cpu := (cpuSeconds() - cpu0) / float64(samples)
	l := &Line{
		Name: "B1 full translate",
		Params: map[string]any{
			"services": size.Services, "endpoints_per_service": size.EndpointsPerSvc, "clusters": size.Clusters,
			"httproutes": size.HTTPRoutes, "traffictargets": size.TrafficTargets,
			"identities": size.Namespaces * size.AccountsPerNS, "permissive": size.Permissive, "samples": samples,
			"resources": len(kept.Resources), "output_mib": float64(kept.Bytes) / (1 << 20),
			"output_mib_by_type": mib(kept.ByKind),
		},
		CoreS:  cpu,
		RSSMiB: rssMiB(),
	}
	l.percentiles(times)
	// The live heap holds the input and the kept output (bytes only); output_mib is the output.
	l.HeapInuseMiB = heapInuseMiB()
	l.Params["input_heap_mib"] = base
	return l, kept, nil
}

func mib(byKind map[string]int) map[string]float64 {
	out := map[string]float64{}
	for k, v := range byKind {
		out[k] = float64(v) / (1 << 20)
	}
	return out
}
