package translator

import (
	"cmp"
	"maps"
	"reflect"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"github.com/crossgate-io/crossgate/translator/ir"
	"github.com/crossgate-io/crossgate/wellknown"
)

// Incremental keeps a translation and applies endpoint changes to it, returning only what they
// change, so that a change costs work proportional to the service it touches, not to the world.
// It owns its Result: the caller reads it between changes, never during one.
type Incremental struct {
	t   *translation
	res *Result
	// sliceOwner maps an EndpointSlice (ns/name) to the service it belongs to.
	sliceOwner map[nsName]nsName
	// backends index the gateways' backends by cluster (ns/name:port); the backends of one rule
	// share their array, so updating through these pointers updates every route that uses it.
	backends map[string][]gatewayBackend
	// byNamespace lists, in policy mode, the outbound groups whose TrafficTargets open a
	// namespace.
	byNamespace map[string][]*outboundGroup
	// podRefs maps a pod to the slices whose endpoints point to it, and those to their service.
	podRefs map[nsName]map[nsName]nsName
	// accounts are the identities of the ServiceAccount objects.
	accounts map[ir.Identity]bool
}

type gatewayBackend struct {
	gateway string
	b       *ir.Backend
	// passthrough is set for a TLS route's backend (its cluster passes connections through).
	passthrough bool
}

// OutboundChange is a new version of one service port as some callers see it.
type OutboundChange struct {
	// Identities that see this version; nil means every identity (permissive mode).
	Identities []ir.Identity
	// Service is the new version; Removed means the callers no longer reach it at all.
	Service ir.OutboundService
	Removed bool
	// Old is the version the callers had, nil when they did not reach it before.
	Old *ir.OutboundService
}

// BackendChange is a new version of a gateway backend's endpoints.
type BackendChange struct {
	Gateway string // namespace/name
	Backend ir.Backend
	// Passthrough is set for the backend of a TLS route (translate.PassthroughBackend builds
	// it), unset for an HTTP route's (translate.GatewayBackend).
	Passthrough bool
}

// Changes is what one change to the input changed in the Result.
type Changes struct {
	Outbound []OutboundChange
	Backends []BackendChange
	// Inbound lists the identities whose inbound ports changed (their Sidecar.Inbound is new).
	Inbound []ir.Identity
}

// NewIncremental translates in and keeps the translation for incremental changes. The Input's
// slices are not modified later; changed objects are held by the Incremental.
func NewIncremental(in *Input) *Incremental {
	cp := *in
	cp.EndpointSlices = slices.Clone(in.EndpointSlices) // ours to index; the objects are not changed
	t := newTranslation(&cp)
	res := &Result{IR: ir.Snapshot{TrustDomain: t.trustDomain}}
	res.IR.Gateways = t.translateGateways(&res.Statuses)
	res.IR.OutboundSets, res.IR.Sidecars = t.sidecars()
	res.Statuses.ServiceExports = t.exportStatuses()
	res.Statuses.GlobalTrafficPolicies = t.policyStatuses()
	res.Statuses.Warnings = t.allWarnings()
	x := &Incremental{
		t: t, res: res, sliceOwner: map[nsName]nsName{}, backends: map[string][]gatewayBackend{}, byNamespace: map[string][]*outboundGroup{},
		podRefs: map[nsName]map[nsName]nsName{}, accounts: map[ir.Identity]bool{},
	}
	for svc, list := range t.slicesBySvc {
		for _, s := range list {
			x.sliceOwner[nsName{s.Namespace, s.Name}] = svc
			x.indexPods(s, svc, true)
		}
	}
	for _, sa := range in.ServiceAccounts {
		x.accounts[ir.Identity{Namespace: sa.Namespace, ServiceAccount: sa.Name}] = true
	}
	for gi := range res.IR.Gateways {
		g := &res.IR.Gateways[gi]
		index := func(b *ir.Backend, passthrough bool) {
			gb := gatewayBackend{g.Namespace + "/" + g.Name, b, passthrough}
			if !b.Invalid && !slices.Contains(x.backends[b.Cluster], gb) {
				x.backends[b.Cluster] = append(x.backends[b.Cluster], gb)
			}
		}
		routes := func(vhs []ir.VirtualHost) {
			for vi := range vhs {
				for ri := range vhs[vi].Routes {
					rt := &vhs[vi].Routes[ri]
					for bi := range rt.Backends {
						index(&rt.Backends[bi], false)
					}
					for mi := range rt.Mirrors {
						index(&rt.Mirrors[mi].Backend, false) // a mirror's cluster is a gateway cluster too
					}
				}
			}
		}
		for li := range g.Listeners {
			l := &g.Listeners[li]
			routes(l.VirtualHosts)
			for ti := range l.Terminate {
				routes(l.Terminate[ti].VirtualHosts) // an HTTPS listener's
			}
			for pi := range l.Passthrough {
				for bi := range l.Passthrough[pi].Backends {
					index(&l.Passthrough[pi].Backends[bi], true)
				}
			}
		}
	}
	for _, g := range t.groups.ordered {
		if g.access != nil {
			for ns := range g.access.namespaces {
				x.byNamespace[ns] = append(x.byNamespace[ns], g)
			}
		}
	}
	return x
}

// Result is the current translation.
func (x *Incremental) Result() *Result { return x.res }

// SetEndpointSlice applies a new version of an EndpointSlice, or its deletion, and returns what
// changed. The slice is not modified and must not be modified by the caller afterwards.
func (x *Incremental) SetEndpointSlice(s *EndpointSlice, deleted bool) Changes {
	t := x.t
	key := nsName{s.Namespace, s.Name}
	affected := []nsName{}
	if old, ok := x.sliceOwner[key]; ok {
		t.slicesBySvc[old] = slices.DeleteFunc(t.slicesBySvc[old], func(o *EndpointSlice) bool {
			if o.Namespace == s.Namespace && o.Name == s.Name {
				x.indexPods(o, old, false)
				return true
			}
			return false
		})
		delete(x.sliceOwner, key)
		affected = append(affected, old)
	}
	if !deleted && s.Service != "" {
		k := nsName{s.Namespace, s.Service}
		t.slicesBySvc[k] = append(t.slicesBySvc[k], s)
		x.sliceOwner[key] = k
		x.indexPods(s, k, true)
		if !slices.Contains(affected, k) {
			affected = append(affected, k)
		}
	}
	var ch Changes
	for _, k := range affected {
		x.refreshService(k, &ch)
	}
	return ch
}

// indexPods adds (or removes) the references of a slice of service svc to its endpoints' pods.
func (x *Incremental) indexPods(s *EndpointSlice, svc nsName, add bool) {
	slice := nsName{s.Namespace, s.Name}
	for i := range s.Endpoints {
		ns, name := s.Endpoints[i].PodOf(s.Namespace)
		if name == "" {
			continue
		}
		pod := nsName{ns, name}
		switch {
		case add && x.podRefs[pod] == nil:
			x.podRefs[pod] = map[nsName]nsName{slice: svc}
		case add:
			x.podRefs[pod][slice] = svc
		default:
			delete(x.podRefs[pod], slice)
			if len(x.podRefs[pod]) == 0 {
				delete(x.podRefs, pod)
			}
		}
	}
}

// SetPod applies a new version of a Pod, or its deletion, when it changes no identity and no
// probe: its ServiceAccount's object exists (so the set of identities stays as it is) and it
// declares no probes (wellknown.ProbesAnnotation), before and after. Then only the endpoints
// that point to it can change (their identity, whether they are proxyless), and it returns what
// changed. ok is false otherwise, and nothing is applied: the caller translates in full. The pod
// is not modified and must not be modified by the caller afterwards.
func (x *Incremental) SetPod(p *corev1.Pod, deleted bool) (ch Changes, ok bool) {
	t := x.t
	key := nsName{p.Namespace, p.Name}
	for _, q := range []*corev1.Pod{t.pods[key], p} {
		if q == nil {
			continue
		}
		if _, probes := q.Annotations[wellknown.ProbesAnnotation]; probes {
			return Changes{}, false
		}
		if !x.accounts[ir.Identity{Namespace: q.Namespace, ServiceAccount: cmp.Or(q.Spec.ServiceAccountName, "default")}] {
			return Changes{}, false
		}
	}
	if deleted {
		delete(t.pods, key)
	} else {
		t.pods[key] = p
	}
	svcs := map[nsName]bool{}
	for _, svc := range x.podRefs[key] {
		svcs[svc] = true
	}
	for _, svc := range slices.SortedFunc(maps.Keys(svcs), cmpNsName) {
		x.refreshService(svc, &ch)
	}
	return ch, true
}

// refreshService recomputes one service's view and splices its new outbound entries into every
// list that holds them.
func (x *Incremental) refreshService(k nsName, ch *Changes) {
	t := x.t
	i, found := slices.BinarySearchFunc(t.views, k, func(v *serviceView, k nsName) int { return cmpNsName(v.key, k) })
	if !found {
		return // a slice of a Service that does not exist: nothing routes to it
	}
	old := t.views[i]
	v := t.refreshLocal(old)
	if !x.sameServing(old, v) {
		defer x.refreshInbound(ch)
	}
	t.views[i] = v
	nsViews := t.viewsByNS[k.ns]
	if j := slices.Index(nsViews, old); j >= 0 {
		nsViews[j] = v
	}
	ports := map[int32]bool{}
	for _, p := range old.ports {
		ports[p.port] = true
	}
	for _, p := range v.ports {
		ports[p.port] = true
	}

	groups := x.byNamespace[k.ns]
	if t.permissive {
		groups = t.groups.ordered // one group, every caller
	}
	for _, g := range groups {
		fresh := t.appendOutbound(nil, v, g.access)
		users := g.users
		if g.access == nil {
			users = nil // every identity
		}
		wasEmpty := len(g.list) == 0
		g.list = splice(g.list, k, ports, fresh, users, &ch.Outbound)
		x.store(g, wasEmpty)
	}

	for _, p := range v.ports {
		for _, sp := range v.svcPorts() {
			if sp.Port != p.port {
				continue
			}
			cluster := ir.ServiceKey(k.ns, k.name, p.port)
			eps := t.localEndpoints(k, sp)
			type clusterOf struct {
				gateway     string
				passthrough bool
			}
			reported := map[clusterOf]bool{}
			for _, gb := range x.backends[cluster] {
				gb.b.Endpoints = eps
				// One cluster per gateway and kind, however many routes use it.
				if k := (clusterOf{gb.gateway, gb.passthrough}); !reported[k] {
					reported[k] = true
					ch.Backends = append(ch.Backends, BackendChange{Gateway: gb.gateway, Backend: *gb.b, Passthrough: gb.passthrough})
				}
			}
		}
	}
}

// store puts g's list, spliced, back into the Result: into its set, or, when the list became
// empty or stopped being empty, by rebuilding the sets and the sidecars' references to them.
func (x *Incremental) store(g *outboundGroup, wasEmpty bool) {
	if len(g.users) == 0 {
		return
	}
	if wasEmpty != (len(g.list) == 0) {
		x.res.IR.OutboundSets = x.t.groups.sets()
		x.t.groups.name(x.res.IR.Sidecars)
		return
	}
	name := g.users[0].String()
	if i, ok := slices.BinarySearchFunc(x.res.IR.OutboundSets, name, func(o ir.OutboundSet, n string) int { return cmp.Compare(o.Name, n) }); ok {
		x.res.IR.OutboundSets[i].Services = g.list
	}
}

// splice replaces, in a list sorted by port, namespace and name, the entries of service k on the
// given ports with fresh ones, recording each change.
func splice(list []ir.OutboundService, k nsName, ports map[int32]bool, fresh []ir.OutboundService, ids []ir.Identity, out *[]OutboundChange) []ir.OutboundService {
	cmpKey := func(o ir.OutboundService, t ir.OutboundService) int {
		return cmp.Or(cmp.Compare(o.Port, t.Port), cmp.Compare(o.Namespace, t.Namespace), cmp.Compare(o.Name, t.Name))
	}
	sortedPorts := make([]int32, 0, len(ports))
	for p := range ports {
		sortedPorts = append(sortedPorts, p)
	}
	slices.Sort(sortedPorts)
	for _, port := range sortedPorts {
		probe := ir.OutboundService{Namespace: k.ns, Name: k.name, Port: port}
		i, found := slices.BinarySearchFunc(list, probe, cmpKey)
		var nu *ir.OutboundService
		for fi := range fresh {
			if fresh[fi].Port == port {
				nu = &fresh[fi]
			}
		}
		switch {
		case nu != nil && found:
			old := list[i]
			list[i] = *nu
			*out = append(*out, OutboundChange{Identities: ids, Service: *nu, Old: &old})
		case nu != nil:
			list = slices.Insert(list, i, *nu)
			*out = append(*out, OutboundChange{Identities: ids, Service: *nu})
		case found:
			old := list[i]
			*out = append(*out, OutboundChange{Identities: ids, Service: old, Removed: true, Old: &old})
			list = slices.Delete(list, i, i+1)
		}
	}
	return list
}

// sameServing reports whether two versions of a service are served by the same identities on
// the same ports with the same proxyless addresses: then no inbound configuration changes. The
// common case (one identity, no proxyless pod) is decided without allocating.
func (x *Incremental) sameServing(a, b *serviceView) bool {
	if len(a.ports) != len(b.ports) {
		return false
	}
	simple := true
	var id *ir.Identity
	for _, v := range []*serviceView{a, b} {
		for _, p := range v.ports {
			for i := range p.local {
				e := &p.local[i]
				if e.Proxyless || (id != nil && e.Identity != *id) {
					simple = false
				}
				id = &e.Identity
			}
		}
	}
	if simple {
		for i := range a.ports {
			pa, uniformA := targetPort(a.ports[i].local)
			pb, uniformB := targetPort(b.ports[i].local)
			if !uniformA || !uniformB {
				simple = false // the endpoints of one service port listen on several ports
				break
			}
			if a.ports[i].port != b.ports[i].port || (len(a.ports[i].local) == 0) != (len(b.ports[i].local) == 0) || pa != pb {
				return false
			}
		}
		if simple {
			return true
		}
	}
	return x.inboundSignature(a) == x.inboundSignature(b)
}

// targetPort returns the port the endpoints listen on, and whether they all listen on it (two
// EndpointSlices of one Service may resolve a named targetPort differently).
func targetPort(local []ir.Endpoint) (uint32, bool) {
	if len(local) == 0 {
		return 0, true
	}
	for i := range local {
		if local[i].Port != local[0].Port {
			return 0, false
		}
	}
	return local[0].Port, true
}

// inboundSignature summarises what of a service the inbound configuration depends on: which
// identity serves which service port on which port of its own, and which proxyless addresses
// there are.
func (x *Incremental) inboundSignature(v *serviceView) string {
	var parts []string
	for _, p := range v.ports {
		for _, e := range p.local {
			if e.Proxyless {
				parts = append(parts, "proxyless|"+e.Address+"|"+strconv.FormatUint(uint64(e.Port), 10))
			}
			parts = append(parts, e.Identity.String()+"|"+strconv.FormatUint(uint64(e.Port), 10)+"|"+strconv.FormatInt(int64(p.port), 10))
		}
	}
	slices.Sort(parts)
	parts = slices.Compact(parts)
	out := ""
	for _, p := range parts {
		out += p + ";"
	}
	return out
}

// refreshInbound recomputes the inbound ports of every identity (a rare change: a service's
// serving identities or ports changed) and records the identities whose ports differ.
func (x *Incremental) refreshInbound(ch *Changes) {
	inbound := x.t.inboundIndex()
	for i := range x.res.IR.Sidecars {
		sc := &x.res.IR.Sidecars[i]
		nu := inbound[sc.Identity]
		if !equalInbound(sc.Inbound, nu) {
			sc.Inbound = nu
			ch.Inbound = append(ch.Inbound, sc.Identity)
		}
	}
}

func equalInbound(a, b []ir.InboundPort) bool { return reflect.DeepEqual(a, b) }
