package translator

import (
	"cmp"
	"slices"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/translator/ir"
	"github.com/crossgate-io/crossgate/wellknown"
)

// outbound returns what caller may reach. It is computed once per outbound group (see
// outboundGroup): in permissive mode once for every caller; in policy mode only the namespaces
// the caller's TrafficTargets open are visited, so the work is proportional to what it may reach.
func (t *translation) outbound(caller ir.Identity) []ir.OutboundService {
	if t.permissive {
		var out []ir.OutboundService
		for _, v := range t.views {
			out = t.appendOutbound(out, v, nil)
		}
		sortOutbound(out)
		return out
	}
	a := t.access[caller]
	if a == nil {
		return nil
	}
	nss := make([]string, 0, len(a.namespaces))
	for ns := range a.namespaces {
		nss = append(nss, ns)
	}
	slices.Sort(nss)
	var out []ir.OutboundService
	for _, ns := range nss {
		for _, v := range t.viewsByNS[ns] {
			out = t.appendOutbound(out, v, a)
		}
	}
	sortOutbound(out)
	return out
}

func sortOutbound(out []ir.OutboundService) {
	slices.SortFunc(out, func(a, b ir.OutboundService) int {
		return cmp.Or(cmp.Compare(a.Port, b.Port), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
}

// appendOutbound adds v's ports that keep at least one endpoint once the caller's access (nil:
// permissive) and the GlobalTrafficPolicy apply. A port with none left gets no entry: requests
// to it fail, as the walkthrough shows. Services outside the mesh, and ports the sidecar itself
// listens on (ir.ReservedPorts), get none either: their connections pass through unchanged.
func (t *translation) appendOutbound(out []ir.OutboundService, v *serviceView, access *allowSet) []ir.OutboundService {
	if !v.mesh {
		return out
	}
	gtp := t.gtps[v.key]
	for _, p := range v.ports {
		if ir.Reserved(uint32(p.port)) {
			continue // reported by reservedPortWarnings
		}
		// The server name goes with every connection, local ones too: remote gateways route
		// by it, and a workload's proxy knows by it that the TLS is the mesh's (grpc-go cannot
		// offer wellknown.MeshALPN).
		o := ir.OutboundService{
			Namespace: v.key.ns, Name: v.key.name, Port: p.port, Protocol: p.protocol,
			Hostnames: v.hostnames, SNI: wellknown.MeshSNI(v.key.ns, v.key.name, p.port),
		}
		o.Localities, o.Policy, o.RetryOtherPriority = t.localities(p, gtp, access)
		for _, l := range o.Localities {
			if !l.Local {
				// The remote gateways pass the connection through to their workloads, whose
				// proxies see the caller's identity and apply their cluster's TrafficTargets;
				// this cluster's own rules for the import's identity are applied here, before
				// the request leaves: a call passes only when both allow it.
				o.RemoteRules, _ = access.requests(l.Endpoints[0].Identity, p.port)
			}
		}
		if len(o.Localities) > 0 {
			out = append(out, o)
		}
	}
	return out
}

type weightedCluster struct {
	key    string
	weight uint32
}

// localities applies a GlobalTrafficPolicy to one port's endpoints (DESIGN §4).
func (t *translation) localities(p *portView, gtp *flomeshv1alpha1.GlobalTrafficPolicy, access *allowSet) ([]ir.Locality, string, bool) {
	allowed := func(eps []ir.Endpoint) []ir.Endpoint {
		if access == nil {
			return eps
		}
		var out []ir.Endpoint
		for _, e := range eps {
			if access.allows(e.Identity) {
				out = append(out, e)
			}
		}
		return out
	}
	local := allowed(p.local)
	remote := func(key string) []ir.Endpoint {
		if !p.protocol.Routed() {
			// Gateways route HTTP only: a TCP or TLS port is served by local endpoints alone.
			return nil
		}
		if access == nil {
			return p.remote[key]
		}
		// A remote endpoint is reached when some request on this port is allowed to its
		// identity; which requests is the outbound service's RemoteRules.
		var out []ir.Endpoint
		for _, e := range p.remote[key] {
			if rules, all := access.requests(e.Identity, p.port); all || len(rules) > 0 {
				out = append(out, e)
			}
		}
		return out
	}

	lbType := flomeshv1alpha1.Locality
	var targets []weightedCluster
	localWeight := uint32(flomeshv1alpha1.DefaultTargetWeight)
	if gtp != nil {
		lbType = cmp.Or(gtp.Spec.LbType, flomeshv1alpha1.Locality)
		for _, tg := range gtp.Spec.Targets {
			w := uint32(flomeshv1alpha1.DefaultTargetWeight)
			if tg.Weight != nil && *tg.Weight >= 0 {
				w = uint32(*tg.Weight)
			}
			if string(tg.ClusterKey) == t.cluster {
				localWeight = w
				continue
			}
			targets = append(targets, weightedCluster{string(tg.ClusterKey), w})
		}
	}
	loc := func(key string, isLocal bool, prio, weight uint32, eps []ir.Endpoint) ir.Locality {
		return ir.Locality{Cluster: key, Local: isLocal, Priority: prio, Weight: weight, Endpoints: eps}
	}
	var out []ir.Locality
	switch lbType {
	case flomeshv1alpha1.FailOver:
		prio := uint32(0)
		if len(local) > 0 {
			out = append(out, loc(t.cluster, true, 0, localWeight, local))
			prio = 1
		}
		for _, tg := range targets {
			if eps := remote(tg.key); len(eps) > 0 && tg.weight > 0 {
				out = append(out, loc(tg.key, false, prio, tg.weight, eps))
			}
		}
		return sortLocalities(out), string(lbType), len(out) > 0
	case flomeshv1alpha1.ActiveActive:
		if len(local) > 0 && localWeight > 0 {
			out = append(out, loc(t.cluster, true, 0, localWeight, local))
		}
		if len(targets) == 0 && (gtp == nil || len(gtp.Spec.Targets) == 0) {
			for _, key := range p.remoteKeys {
				targets = append(targets, weightedCluster{key, flomeshv1alpha1.DefaultTargetWeight})
			}
		}
		for _, tg := range targets {
			if eps := remote(tg.key); len(eps) > 0 && tg.weight > 0 {
				out = append(out, loc(tg.key, false, 0, tg.weight, eps))
			}
		}
		return sortLocalities(out), string(lbType), false
	default: // Locality: the caller's own cluster, or the one target it is pinned to.
		if len(targets) == 1 {
			if eps := remote(targets[0].key); len(eps) > 0 {
				out = append(out, loc(targets[0].key, false, 0, flomeshv1alpha1.DefaultTargetWeight, eps))
			}
		} else if len(local) > 0 {
			out = append(out, loc(t.cluster, true, 0, flomeshv1alpha1.DefaultTargetWeight, local))
		}
		return out, string(flomeshv1alpha1.Locality), false
	}
}

func sortLocalities(ls []ir.Locality) []ir.Locality {
	slices.SortStableFunc(ls, func(a, b ir.Locality) int {
		return cmp.Or(cmp.Compare(a.Priority, b.Priority), cmp.Compare(a.Cluster, b.Cluster))
	})
	return ls
}
