package controllers

import (
	"maps"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/crossgate-io/crossgate/translator"
	"github.com/crossgate-io/crossgate/translator/ir"
	"github.com/crossgate-io/crossgate/wellknown"
	"github.com/crossgate-io/crossgate/xds/cache"
	"github.com/crossgate-io/crossgate/xds/resources"
	"github.com/crossgate-io/crossgate/xds/translate"
)

// The publisher's two paths. Most events in a running cluster are endpoint changes (pods
// starting, stopping, turning ready): they change EndpointSlices and Pods and nothing else the
// translator reads. Those go the incremental path: the kept translation (translator.Incremental)
// applies each changed slice and pod (a pod of a new identity, or with probes, excepted) and says
// which outbound entries and gateway backends changed; the clusters
// and endpoints of those are rebuilt alone and replaced in the keys that hold them
// (cache.Patch). Any other event, or an endpoint change whose effect reaches beyond clusters and
// endpoints (a service port gains its first endpoint or loses its last, a route changes, the
// identities serving a port change), takes the full path: the first re-reads and re-translates
// the cluster; the second (a "rebuild") builds every proxy's resources again from the kept
// translation, without reading or translating.

// Publish paths, as counted by PublishObserver and the crossgate_publishes_total metric.
const (
	PathFull        = "full"
	PathIncremental = "incremental"
	PathRebuild     = "rebuild"
)

// SliceEvent is the latest version of an EndpointSlice the informer delivered, or its deletion.
type SliceEvent struct {
	Slice   *translator.EndpointSlice
	Deleted bool
}

// PodEvent is the latest version of a Pod the informer delivered, or its deletion.
type PodEvent struct {
	Pod     *corev1.Pod
	Deleted bool
}

// EndpointEvents are what the incremental path takes, each by namespace/name: EndpointSlices,
// and Pods (created, deleted, or changed in what the translator reads of them).
type EndpointEvents struct {
	Slices map[string]SliceEvent
	Pods   map[string]PodEvent
}

func (e *EndpointEvents) empty() bool { return len(e.Slices) == 0 && len(e.Pods) == 0 }

// pending is what happened since the last publish (under Publisher.mu).
type pending struct {
	full bool // something other than endpoints changed
	EndpointEvents
}

func (p *pending) take() pending {
	out := *p
	*p = pending{}
	return out
}

// objectOf is the object of an informer event (a tombstone's included), nil when it is not a T.
func objectOf[T any](obj any) *T {
	if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	o, _ := obj.(*T)
	return o
}

// record adds an endpoint event (an EndpointSlice's or a Pod's) to the pending ones; an object
// of another kind asks for a full publish.
func (p *Publisher) record(obj any, deleted bool) {
	s, pod := objectOf[translator.EndpointSlice](obj), objectOf[corev1.Pod](obj)
	if s == nil && pod == nil {
		p.triggerFull()
		return
	}
	p.mu.Lock()
	if s != nil {
		if p.pending.Slices == nil {
			p.pending.Slices = map[string]SliceEvent{}
		}
		p.pending.Slices[s.Namespace+"/"+s.Name] = SliceEvent{Slice: s, Deleted: deleted}
	} else {
		if p.pending.Pods == nil {
			p.pending.Pods = map[string]PodEvent{}
		}
		p.pending.Pods[pod.Namespace+"/"+pod.Name] = PodEvent{Pod: pod, Deleted: deleted}
	}
	p.mu.Unlock()
	p.deb.Trigger()
}

// podUnchanged reports whether a Pod update leaves what the translator reads of a Pod as it was:
// its ServiceAccount (the identity of its endpoints) and its annotations (proxyless, probes). Its
// readiness reaches the translation through its EndpointSlices, not through the Pod.
func podUnchanged(oldObj, newObj any) bool {
	o, ok1 := oldObj.(*corev1.Pod)
	n, ok2 := newObj.(*corev1.Pod)
	return ok1 && ok2 && o.Spec.ServiceAccountName == n.Spec.ServiceAccountName && maps.Equal(o.Annotations, n.Annotations)
}

// PatchEndpoints is the incremental path: it applies endpoint events to the kept translation x
// and replaces, in the keys of c that published lists, the clusters and endpoints they change.
// It returns the path taken: PathIncremental when it did; PathRebuild when the change reaches
// beyond clusters and endpoints (x has applied it: the caller rebuilds every proxy's resources
// from x.Result()); PathFull when a Pod change is one x does not apply (a new identity, probes:
// the caller translates in full). An error is the cache's: the caller then publishes in full.
func PatchEndpoints(x *translator.Incremental, c *cache.Cache, published map[string]bool, ev EndpointEvents) (path string, err error) {
	var all translator.Changes
	add := func(ch translator.Changes) {
		all.Outbound = append(all.Outbound, ch.Outbound...)
		all.Backends = append(all.Backends, ch.Backends...)
		all.Inbound = append(all.Inbound, ch.Inbound...)
	}
	// In the order of names: the result does not depend on the order of events.
	for _, k := range slices.Sorted(maps.Keys(ev.Pods)) {
		ch, ok := x.SetPod(ev.Pods[k].Pod, ev.Pods[k].Deleted)
		if !ok {
			return PathFull, nil
		}
		add(ch)
	}
	for _, k := range slices.Sorted(maps.Keys(ev.Slices)) {
		add(x.SetEndpointSlice(ev.Slices[k].Slice, ev.Slices[k].Deleted))
	}
	rs, ok := patchFor(&x.Result().IR, all, published)
	if !ok {
		return PathRebuild, nil
	}
	return PathIncremental, c.Patch(rs)
}

// patchFor turns the translator's changes into replacements of single resources in the keys
// that hold them. ok is false when a change reaches beyond clusters and endpoints: then the
// caller rebuilds. published says which keys the cache has.
func patchFor(snap *ir.Snapshot, ch translator.Changes, published map[string]bool) (rs []cache.Replacement, ok bool) {
	if len(ch.Inbound) > 0 {
		return nil, false
	}
	withSet := map[ir.Identity]bool{}
	for i := range snap.Sidecars {
		if snap.Sidecars[i].Outbound != "" {
			withSet[snap.Sidecars[i].Identity] = true
		}
	}
	for i := range ch.Outbound {
		oc := &ch.Outbound[i]
		if oc.Removed || oc.Old == nil {
			return nil, false // a service port appears or goes: listeners and routes change
		}
		side, pl, err := translate.OutboundService(snap.TrustDomain, &oc.Service)
		if err != nil {
			return nil, false // Build reports and leaves out what fails validation
		}
		oldSide, oldPl, err := translate.OutboundService(snap.TrustDomain, oc.Old)
		if err != nil || !sameShape(side, oldSide) || !sameShape(pl, oldPl) {
			return nil, false
		}
		ids := oc.Identities
		if ids == nil { // every identity that has a set: one set, shared, in permissive mode
			ids = slices.Collect(maps.Keys(withSet))
		}
		var sideKeys, plKeys []string
		for _, id := range ids {
			if !withSet[id] {
				continue
			}
			if k := wellknown.Sidecar(id.Namespace, id.ServiceAccount).String(); published[k] {
				sideKeys = append(sideKeys, k)
			}
			if k := wellknown.Proxyless(id.Namespace, id.ServiceAccount).String(); published[k] {
				plKeys = append(plKeys, k)
			}
		}
		rs = replacements(rs, side, sideKeys)
		rs = replacements(rs, pl, plKeys)
	}
	for i := range ch.Backends {
		bc := &ch.Backends[i]
		build := translate.GatewayBackend
		if bc.Passthrough {
			build = translate.PassthroughBackend
		}
		r, err := build(snap.TrustDomain, &bc.Backend)
		if err != nil {
			return nil, false
		}
		ns, name, _ := strings.Cut(bc.Gateway, "/")
		if k := wellknown.Gateway(ns, name).String(); published[k] {
			rs = replacements(rs, r, []string{k})
		}
	}
	return rs, true
}

// sameShape reports whether two builds of one service differ at most in their clusters' and
// endpoints' contents: the same listeners and route configurations, the same cluster and
// endpoint names. Only then are clusters and endpoints all that changes in a proxy.
func sameShape(a, b *resources.Resources) bool {
	return slices.EqualFunc(a.Listeners, b.Listeners, func(x, y *listenerv3.Listener) bool { return proto.Equal(x, y) }) &&
		slices.EqualFunc(a.Routes, b.Routes, func(x, y *routev3.RouteConfiguration) bool { return proto.Equal(x, y) }) &&
		slices.EqualFunc(a.Clusters, b.Clusters, func(x, y *clusterv3.Cluster) bool { return x.Name == y.Name }) &&
		slices.EqualFunc(a.Endpoints, b.Endpoints, func(x, y *endpointv3.ClusterLoadAssignment) bool { return x.ClusterName == y.ClusterName })
}

// replacements appends the replacement of r's clusters and endpoints in keys.
func replacements(rs []cache.Replacement, r *resources.Resources, keys []string) []cache.Replacement {
	if len(keys) == 0 {
		return rs
	}
	slices.Sort(keys)
	for _, c := range r.Clusters {
		rs = append(rs, cache.Replacement{Keys: keys, TypeURL: resourcev3.ClusterType, Name: c.Name, Resource: c})
	}
	for _, e := range r.Endpoints {
		rs = append(rs, cache.Replacement{Keys: keys, TypeURL: resourcev3.EndpointType, Name: e.ClusterName, Resource: e})
	}
	return rs
}
