package translator

import (
	"fmt"
	"slices"

	"github.com/crossgate-io/crossgate/translator/ir"
)

// invariants checks what every Result must satisfy whatever the Input: the rules the xDS
// builder and the data planes rely on (gRPC, for one, needs contiguous priorities and weights).
func invariants(res *Result) error {
	if !slices.IsSortedFunc(res.IR.OutboundSets, func(a, b ir.OutboundSet) int { return compareStrings(a.Name, b.Name) }) {
		return fmt.Errorf("outbound sets not sorted by name")
	}
	used := map[string]bool{}
	for i := range res.IR.Sidecars {
		sc := &res.IR.Sidecars[i]
		if sc.Outbound != "" {
			if res.IR.Outbound(sc) == nil {
				return fmt.Errorf("%s: names outbound set %q, which does not exist or is empty", sc.Identity, sc.Outbound)
			}
			used[sc.Outbound] = true
		}
	}
	for _, set := range res.IR.OutboundSets {
		if !used[set.Name] {
			return fmt.Errorf("outbound set %s: no sidecar names it", set.Name)
		}
	}
	for _, set := range res.IR.OutboundSets {
		s := struct{ Identity string }{set.Name}
		for _, o := range set.Services {
			if len(o.Localities) == 0 {
				return fmt.Errorf("%s: outbound %s has no locality", s.Identity, o.Key())
			}
			want := uint32(0)
			for i, l := range o.Localities {
				if l.Weight == 0 || len(l.Endpoints) == 0 {
					return fmt.Errorf("%s: %s locality %s has weight %d and %d endpoints", s.Identity, o.Key(), l.Cluster, l.Weight, len(l.Endpoints))
				}
				if l.Priority != want && l.Priority != want+1 || (i == 0 && l.Priority != 0) {
					return fmt.Errorf("%s: %s priorities are not contiguous from 0", s.Identity, o.Key())
				}
				want = l.Priority
			}
		}
		if !slices.IsSortedFunc(set.Services, func(a, b ir.OutboundService) int {
			if a.Port != b.Port {
				return int(a.Port) - int(b.Port)
			}
			if a.Namespace != b.Namespace {
				return compareStrings(a.Namespace, b.Namespace)
			}
			return compareStrings(a.Name, b.Name)
		}) {
			return fmt.Errorf("%s: outbound not sorted", s.Identity)
		}
	}
	for _, g := range res.IR.Gateways {
		for _, l := range g.Listeners {
			for _, vh := range l.VirtualHosts {
				for _, r := range vh.Routes {
					answers := 0
					for _, yes := range []bool{r.DirectResponse != 0, len(r.Backends) > 0, r.Redirect != nil} {
						if yes {
							answers++
						}
					}
					if answers != 1 {
						return fmt.Errorf("gateway %s/%s route %s must either forward, answer directly or redirect", g.Namespace, g.Name, r.Name)
					}
				}
			}
		}
	}
	return nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
