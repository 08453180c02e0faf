package translator

import (
	"cmp"
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	accessv1alpha3 "github.com/crossgate-io/crossgate/api/smi/access/v1alpha3"
	specsv1alpha4 "github.com/crossgate-io/crossgate/api/smi/specs/v1alpha4"
	"github.com/crossgate-io/crossgate/translator/ir"
	"github.com/crossgate-io/crossgate/wellknown"
)

type nsName struct{ ns, name string }

func (n nsName) String() string { return n.ns + "/" + n.name }

func cmpNsName(a, b nsName) int {
	if c := cmp.Compare(a.ns, b.ns); c != 0 {
		return c
	}
	return cmp.Compare(a.name, b.name)
}

// translation holds the indexes built once from an Input. Nothing in it is written after
// newTranslation returns, except the memoised permissive outbound list.
type translation struct {
	in          *Input
	cluster     string
	domain      string
	trustDomain string
	permissive  bool

	namespaces  map[string]*corev1.Namespace
	services    map[nsName]*corev1.Service
	pods        map[nsName]*corev1.Pod
	imports     map[nsName]*flomeshv1alpha1.ServiceImport
	gtps        map[nsName]*flomeshv1alpha1.GlobalTrafficPolicy
	exports     map[nsName]*flomeshv1alpha1.ServiceExport
	routeGroups map[nsName]*specsv1alpha4.HTTPRouteGroup
	slicesBySvc map[nsName][]*EndpointSlice

	// views are every service a caller can reach (local Services and ServiceImports), sorted.
	views []*serviceView
	// viewsByNS indexes views by namespace.
	viewsByNS map[string][]*serviceView

	// access: for each caller identity, the destinations TrafficTargets allow it to reach.
	access map[ir.Identity]*allowSet
	// ttByDest indexes TrafficTargets by destination identity, sorted by namespace/name.
	ttByDest map[ir.Identity][]*accessv1alpha3.TrafficTarget
	// gateways are the identities of this cluster's Gateways of our class.
	gateways []ir.Identity

	// groups are the callers' outbound groups, made by sidecars().
	groups *outboundIndex

	// warned are the warnings met while translating.
	warned []ObjectWarning
}

// allowSet is what one caller may reach in policy mode: the TrafficTargets naming it as a
// source, by destination identity. A TrafficTarget whose rules resolve to nothing (no rules, a
// missing HTTPRouteGroup, match names it does not define) grants nothing, here as on the
// destination's sidecar (translation.rbac).
type allowSet struct {
	grants     map[ir.Identity][]grant
	namespaces map[string]bool
}

// grant is one TrafficTarget's permission: the requests of rules, on port (nil: every port).
type grant struct {
	port  *int
	rules []ir.HTTPRule
}

func (a *allowSet) allows(dst ir.Identity) bool {
	if a == nil {
		return false
	}
	if dst.Any() {
		return a.namespaces[dst.Namespace]
	}
	return len(a.grants[dst]) > 0
}

// requests returns the requests the caller may send to dst's workloads on service port port,
// as a request match list: nil with all true when any request is allowed, nil with all false
// when none is. The remote clusters' workloads admit whatever their gateway forwards, so these
// rules are what keeps a cross-cluster call to the TrafficTargets (issue 16, defect 3). An
// identity "*" (an import that declares no service account) takes the rules of every
// destination of its namespace.
func (a *allowSet) requests(dst ir.Identity, port int32) (rules []ir.HTTPRule, all bool) {
	if a == nil {
		return nil, false
	}
	var grants []grant
	if dst.Any() {
		ids := make([]ir.Identity, 0, len(a.grants))
		for id := range a.grants {
			if id.Namespace == dst.Namespace {
				ids = append(ids, id)
			}
		}
		slices.SortFunc(ids, func(x, y ir.Identity) int {
			return cmpNsName(nsName{x.Namespace, x.ServiceAccount}, nsName{y.Namespace, y.ServiceAccount})
		})
		for _, id := range ids {
			grants = append(grants, a.grants[id]...)
		}
	} else {
		grants = a.grants[dst]
	}
	for _, g := range grants {
		if g.port != nil && int32(*g.port) != port {
			continue
		}
		for _, r := range g.rules {
			if r.MatchesAll() {
				return nil, true
			}
			if !slices.ContainsFunc(rules, r.Equal) {
				rules = append(rules, r)
			}
		}
	}
	return rules, false
}

func newTranslation(in *Input) *translation {
	t := &translation{
		in:          in,
		cluster:     in.Cluster,
		domain:      cmp.Or(in.DNSDomain, wellknown.DefaultDNSDomain),
		trustDomain: wellknown.DefaultTrustDomain,
		permissive:  true,
		namespaces:  map[string]*corev1.Namespace{},
		services:    map[nsName]*corev1.Service{},
		pods:        map[nsName]*corev1.Pod{},
		imports:     map[nsName]*flomeshv1alpha1.ServiceImport{},
		gtps:        map[nsName]*flomeshv1alpha1.GlobalTrafficPolicy{},
		exports:     map[nsName]*flomeshv1alpha1.ServiceExport{},
		routeGroups: map[nsName]*specsv1alpha4.HTTPRouteGroup{},
		slicesBySvc: map[nsName][]*EndpointSlice{},
		viewsByNS:   map[string][]*serviceView{},
		access:      map[ir.Identity]*allowSet{},
		ttByDest:    map[ir.Identity][]*accessv1alpha3.TrafficTarget{},
	}
	if mc := in.MeshConfig; mc != nil {
		t.permissive = mc.PermissiveMode()
		t.trustDomain = cmp.Or(mc.Spec.Certificate.TrustDomain, wellknown.DefaultTrustDomain)
	}
	for i := range in.Namespaces {
		t.namespaces[in.Namespaces[i].Name] = &in.Namespaces[i]
	}
	for i := range in.Services {
		s := &in.Services[i]
		t.services[nsName{s.Namespace, s.Name}] = s
	}
	for i := range in.Pods {
		p := &in.Pods[i]
		t.pods[nsName{p.Namespace, p.Name}] = p
	}
	for i := range in.ServiceImports {
		s := &in.ServiceImports[i]
		t.imports[nsName{s.Namespace, s.Name}] = s
	}
	for i := range in.GlobalTrafficPolicies {
		g := &in.GlobalTrafficPolicies[i]
		t.gtps[nsName{g.Namespace, g.Name}] = g
	}
	for i := range in.ServiceExports {
		e := &in.ServiceExports[i]
		t.exports[nsName{e.Namespace, e.Name}] = e
	}
	for i := range in.HTTPRouteGroups {
		g := &in.HTTPRouteGroups[i]
		t.routeGroups[nsName{g.Namespace, g.Name}] = g
	}
	for i := range in.EndpointSlices {
		s := &in.EndpointSlices[i]
		if s.Service == "" {
			continue
		}
		k := nsName{s.Namespace, s.Service}
		t.slicesBySvc[k] = append(t.slicesBySvc[k], s)
	}
	for i := range in.TrafficTargets {
		tt := &in.TrafficTargets[i]
		if d := tt.Spec.Destination; d.Kind == "ServiceAccount" {
			id := ir.Identity{Namespace: cmp.Or(d.Namespace, tt.Namespace), ServiceAccount: d.Name}
			t.ttByDest[id] = append(t.ttByDest[id], tt)
		}
		dst := tt.Spec.Destination
		if dst.Kind != "ServiceAccount" {
			continue
		}
		rules := t.trafficTargetRules(tt)
		if len(rules) == 0 {
			// Its rules name nothing that exists: it allows nothing, to any cluster.
			t.warn(ObjectWarning{
				Kind: "TrafficTarget", Namespace: tt.Namespace, Name: tt.Name, Reason: flomeshv1alpha1.ReasonAllowsNothing,
				Message: "This TrafficTarget allows no request: " + t.whyNoRules(tt) + ".",
			})
			continue
		}
		ns := cmp.Or(dst.Namespace, tt.Namespace)
		dstID := ir.Identity{Namespace: ns, ServiceAccount: dst.Name}
		for _, src := range tt.Spec.Sources {
			if src.Kind != "ServiceAccount" {
				continue
			}
			caller := ir.Identity{Namespace: cmp.Or(src.Namespace, tt.Namespace), ServiceAccount: src.Name}
			a := t.access[caller]
			if a == nil {
				a = &allowSet{grants: map[ir.Identity][]grant{}, namespaces: map[string]bool{}}
				t.access[caller] = a
			}
			a.grants[dstID] = append(a.grants[dstID], grant{port: dst.Port, rules: rules})
			a.namespaces[ns] = true
		}
	}
	for _, list := range t.ttByDest {
		slices.SortFunc(list, func(a, b *accessv1alpha3.TrafficTarget) int {
			return cmpNsName(nsName{a.Namespace, a.Name}, nsName{b.Namespace, b.Name})
		})
	}
	t.gateways = t.ourGatewayIdentities()
	t.buildViews()
	return t
}

// buildViews joins local Services and ServiceImports into one view per ns/name.
func (t *translation) buildViews() {
	keys := map[nsName]bool{}
	for k, s := range t.services {
		if s.Spec.Type != corev1.ServiceTypeExternalName {
			keys[k] = true
		}
	}
	for k := range t.imports {
		keys[k] = true
	}
	sorted := make([]nsName, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	slices.SortFunc(sorted, cmpNsName)
	for _, k := range sorted {
		v := t.newView(k)
		t.views = append(t.views, v)
		t.viewsByNS[k.ns] = append(t.viewsByNS[k.ns], v)
	}
}

// view is the view of ns/name, or nil.
func (t *translation) view(k nsName) *serviceView {
	i, found := slices.BinarySearchFunc(t.views, k, func(v *serviceView, k nsName) int { return cmpNsName(v.key, k) })
	if !found {
		return nil
	}
	return t.views[i]
}

// key is a canonical form of the allow set: two callers with equal keys see the same outbound
// list (which depends on the caller only through its access), so they share one ir.OutboundSet.
func (a *allowSet) key() string {
	var b strings.Builder
	nss := make([]string, 0, len(a.namespaces))
	for ns := range a.namespaces {
		nss = append(nss, ns)
	}
	slices.Sort(nss)
	b.WriteString(strings.Join(nss, ","))
	dsts := make([]ir.Identity, 0, len(a.grants))
	for d := range a.grants {
		dsts = append(dsts, d)
	}
	slices.SortFunc(dsts, func(x, y ir.Identity) int {
		return cmp.Or(cmp.Compare(x.Namespace, y.Namespace), cmp.Compare(x.ServiceAccount, y.ServiceAccount))
	})
	for _, d := range dsts {
		b.WriteString("|" + d.String())
		for _, g := range a.grants[d] {
			if g.port != nil {
				b.WriteString(":" + strconv.Itoa(*g.port))
			}
			rules, _ := json.Marshal(g.rules)
			b.Write(rules)
		}
	}
	return b.String()
}
