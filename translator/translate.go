package translator

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/translator/ir"
	"github.com/crossgate-io/crossgate/wellknown"
)

// Translate computes the IR of one cluster's proxies and the statuses to write. It never
// modifies in.
func Translate(in *Input) *Result {
	t := newTranslation(in)
	res := &Result{IR: ir.Snapshot{TrustDomain: t.trustDomain}}
	res.IR.Gateways = t.translateGateways(&res.Statuses)
	res.IR.OutboundSets, res.IR.Sidecars = t.sidecars()
	res.Statuses.ServiceExports = t.exportStatuses()
	res.Statuses.GlobalTrafficPolicies = t.policyStatuses()
	res.Statuses.Warnings = t.allWarnings()
	return res
}

// allWarnings are the warnings of the translation, sorted.
func (t *translation) allWarnings() []ObjectWarning {
	out := append(t.warnings(), t.warned...)
	slices.SortFunc(out, func(a, b ObjectWarning) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Reason, b.Reason))
	})
	return out
}

func (t *translation) warn(w ObjectWarning) { t.warned = append(t.warned, w) }

// warnings reports mesh services on a port the sidecar listens on itself: callers' sidecars
// cannot route them (the outbound listener would take the capture listener's address), so their
// connections pass through unrouted.
func (t *translation) warnings() []ObjectWarning {
	var out []ObjectWarning
	for _, v := range t.views {
		if !v.mesh {
			continue
		}
		var ports []string
		for _, p := range v.ports {
			if ir.Reserved(uint32(p.port)) {
				ports = append(ports, fmt.Sprint(p.port))
			}
		}
		if len(ports) == 0 {
			continue
		}
		kind := "Service"
		if v.svc == nil {
			kind = "ServiceImport"
		}
		out = append(out, ObjectWarning{
			Kind: kind, Namespace: v.key.ns, Name: v.key.name, Reason: flomeshv1alpha1.ReasonReservedPort,
			Message: fmt.Sprintf("Port %s is one the mesh's sidecar listens on itself (%d, %d, %d, %d): callers' sidecars do not route it, and its connections pass through unchanged; use another port.",
				strings.Join(ports, ", "), ir.AdminPort, ir.OutboundCapturePort, ir.InboundCapturePort, ir.ProbePort),
		})
	}
	return out
}

// identities are the workload identities of this cluster: every ServiceAccount and every pod's.
func (t *translation) identities() []ir.Identity {
	seen := map[ir.Identity]bool{}
	for _, sa := range t.in.ServiceAccounts {
		seen[ir.Identity{Namespace: sa.Namespace, ServiceAccount: sa.Name}] = true
	}
	for _, p := range t.in.Pods {
		seen[ir.Identity{Namespace: p.Namespace, ServiceAccount: cmp.Or(p.Spec.ServiceAccountName, "default")}] = true
	}
	for _, gw := range t.gateways {
		delete(seen, gw) // a gateway is configured as a Gateway, not as a sidecar
	}
	out := make([]ir.Identity, 0, len(seen))
	for id := range seen {
		out = append(out, id)
	}
	slices.SortFunc(out, func(a, b ir.Identity) int {
		return cmpNsName(nsName{a.Namespace, a.ServiceAccount}, nsName{b.Namespace, b.ServiceAccount})
	})
	return out
}

func (t *translation) sidecars() ([]ir.OutboundSet, []ir.Sidecar) {
	inbound := t.inboundIndex()
	probes := t.probes()
	var out []ir.Sidecar
	groups := t.outboundGroups()
	t.groups = groups
	for _, id := range t.identities() {
		sc := ir.Sidecar{Identity: id, Inbound: inbound[id], Probes: probes[id]}
		if g := groups.of(id); g != nil {
			g.users = append(g.users, id)
		}
		out = append(out, sc)
	}
	sets := groups.sets()
	groups.name(out)
	return sets, out
}

// outboundGroup is the callers whose outbound lists are built from the same access (all callers
// in permissive mode), and that list: one ir.OutboundSet when not empty, named after its first
// user. Callers with different access are kept apart even when their lists are equal today: an
// endpoint change can make them differ, and the incremental path splices one list per group.
type outboundGroup struct {
	access *allowSet // nil: permissive
	users  []ir.Identity
	list   []ir.OutboundService
}

// outboundIndex finds the group of each caller.
type outboundIndex struct {
	t       *translation
	byKey   map[string]*outboundGroup
	ordered []*outboundGroup // in the order of their first user
}

func (t *translation) outboundGroups() *outboundIndex {
	return &outboundIndex{t: t, byKey: map[string]*outboundGroup{}}
}

// of is the group of caller id, computing its list on first use; nil for a caller that may call
// nothing (policy mode without a TrafficTarget naming it).
func (x *outboundIndex) of(id ir.Identity) *outboundGroup {
	key := "permissive"
	var access *allowSet
	if !x.t.permissive {
		if access = x.t.access[id]; access == nil {
			return nil
		}
		key = access.key()
	}
	g := x.byKey[key]
	if g == nil {
		g = &outboundGroup{access: access, list: x.t.outbound(id)}
		x.byKey[key] = g
		x.ordered = append(x.ordered, g)
	}
	return g
}

// sets are the groups' non-empty lists, sorted by name (their first user's identity: identities
// come sorted, so this is the order of first use).
func (x *outboundIndex) sets() []ir.OutboundSet {
	var out []ir.OutboundSet
	for _, g := range x.ordered {
		if len(g.list) > 0 && len(g.users) > 0 {
			out = append(out, ir.OutboundSet{Name: g.users[0].String(), Services: g.list})
		}
	}
	slices.SortFunc(out, func(a, b ir.OutboundSet) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// name points each sidecar at its group's set ("" when the list is empty).
func (x *outboundIndex) name(scs []ir.Sidecar) {
	for _, g := range x.ordered {
		name := ""
		if len(g.list) > 0 && len(g.users) > 0 {
			name = g.users[0].String()
		}
		for _, u := range g.users {
			i, ok := slices.BinarySearchFunc(scs, u, func(sc ir.Sidecar, id ir.Identity) int {
				return cmp.Or(cmp.Compare(sc.Identity.Namespace, id.Namespace), cmp.Compare(sc.Identity.ServiceAccount, id.ServiceAccount))
			})
			if ok {
				scs[i].Outbound = name
			}
		}
	}
}

// probes gathers, per identity, the rewritten HTTP probes its pods declare (wellknown.ProbesAnnotation).
// A malformed annotation declares none: the pod's probes then fail, and the warning says why.
func (t *translation) probes() map[ir.Identity][]ir.Probe {
	out := map[ir.Identity][]ir.Probe{}
	for i := range t.in.Pods {
		pod := &t.in.Pods[i]
		v, ok := pod.Annotations[wellknown.ProbesAnnotation]
		if !ok {
			continue
		}
		var ps []ir.Probe
		if err := json.Unmarshal([]byte(v), &ps); err != nil {
			t.warn(ObjectWarning{
				Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, Reason: flomeshv1alpha1.ReasonProbesAnnotationInvalid,
				Message: fmt.Sprintf("Annotation %s is not a JSON list of {\"port\": N, \"path\": \"/...\"}: %v; the sidecar forwards none of its probes.", wellknown.ProbesAnnotation, err),
			})
			continue
		}
		id := ir.Identity{Namespace: pod.Namespace, ServiceAccount: cmp.Or(pod.Spec.ServiceAccountName, "default")}
		for _, p := range ps {
			if p.Port == 0 || p.Port > 65535 || !strings.HasPrefix(p.Path, "/") {
				continue
			}
			if !slices.Contains(out[id], p) {
				out[id] = append(out[id], p)
			}
		}
	}
	for id := range out {
		slices.SortFunc(out[id], func(a, b ir.Probe) int { return cmp.Or(cmp.Compare(a.Port, b.Port), cmp.Compare(a.Path, b.Path)) })
	}
	return out
}

// exportStatuses checks each ServiceExport against its Service (see ExportCondition).
func (t *translation) exportStatuses() []ObjectConditions {
	var out []ObjectConditions
	exports := slices.Clone(t.in.ServiceExports)
	slices.SortFunc(exports, func(a, b flomeshv1alpha1.ServiceExport) int {
		return cmpNsName(nsName{a.Namespace, a.Name}, nsName{b.Namespace, b.Name})
	})
	for i := range exports {
		e := &exports[i]
		c := ExportCondition(e, t.services[nsName{e.Namespace, e.Name}])
		out = append(out, ObjectConditions{Namespace: e.Namespace, Name: e.Name, Conditions: []metav1.Condition{c}})
	}
	return out
}

// ExportCondition is the Valid condition of a ServiceExport given its Service (nil when the
// Service does not exist): False when the Service is missing, is crossgate's placeholder for an
// import (which has no endpoints in this cluster: exporting it would advertise a gateway that
// answers 503), is in one of the wellknown.SystemNamespaces, or a rule's port is not one of its ports;
// True otherwise.
func ExportCondition(e *flomeshv1alpha1.ServiceExport, svc *corev1.Service) metav1.Condition {
	if wellknown.IsSystemNamespace(e.Namespace) {
		return cond(flomeshv1alpha1.ConditionValid, false, flomeshv1alpha1.ReasonNamespaceNotAllowed,
			fmt.Sprintf("metadata.namespace %s: Services of %s are not exported (no cluster imports into these namespaces); export from another namespace.", e.Namespace, strings.Join(wellknown.SystemNamespaces, ", ")), e.Generation)
	}
	if svc == nil {
		return cond(flomeshv1alpha1.ConditionValid, false, flomeshv1alpha1.ReasonServiceNotFound,
			fmt.Sprintf("Service %s/%s does not exist; a ServiceExport exports the Service of its own namespace and name.", e.Namespace, e.Name), e.Generation)
	}
	if isPlaceholder(svc) {
		return cond(flomeshv1alpha1.ConditionValid, false, flomeshv1alpha1.ReasonServiceNotFound,
			fmt.Sprintf("Service %s/%s is crossgate's placeholder for the import of this name, not a Service of this cluster; a ServiceExport exports the Service of its own namespace and name.", e.Namespace, e.Name), e.Generation)
	}
	var missing []string
	for _, r := range e.Spec.Rules {
		found := false
		for _, sp := range svc.Spec.Ports {
			found = found || sp.Port == r.PortNumber
		}
		if !found {
			missing = append(missing, fmt.Sprint(r.PortNumber))
		}
	}
	if len(missing) > 0 {
		var ports []string
		for _, sp := range svc.Spec.Ports {
			ports = append(ports, fmt.Sprint(sp.Port))
		}
		return cond(flomeshv1alpha1.ConditionValid, false, flomeshv1alpha1.ReasonPortNotFound,
			fmt.Sprintf("spec.rules portNumber %s is not a port of Service %s/%s (its ports: %s).",
				strings.Join(missing, ", "), e.Namespace, e.Name, cmp.Or(strings.Join(ports, ", "), "none")), e.Generation)
	}
	return cond(flomeshv1alpha1.ConditionValid, true, flomeshv1alpha1.ReasonValid, "The Service and every rule's port exist.", e.Generation)
}

// policyStatuses reports, for each GlobalTrafficPolicy, whether it applies to a service
// (Accepted) and whether every target cluster exports it (ResolvedRefs).
func (t *translation) policyStatuses() []ObjectConditions {
	gtps := slices.Clone(t.in.GlobalTrafficPolicies)
	slices.SortFunc(gtps, func(a, b flomeshv1alpha1.GlobalTrafficPolicy) int {
		return cmpNsName(nsName{a.Namespace, a.Name}, nsName{b.Namespace, b.Name})
	})
	var out []ObjectConditions
	for _, g := range gtps {
		k := nsName{g.Namespace, g.Name}
		_, hasSvc := t.services[k]
		imp := t.imports[k]
		var conds []metav1.Condition
		if !hasSvc && imp == nil {
			conds = append(conds, cond(flomeshv1alpha1.ConditionAccepted, false, flomeshv1alpha1.ReasonServiceNotFound,
				fmt.Sprintf("No Service or ServiceImport %s/%s exists; a GlobalTrafficPolicy applies to the service of its own namespace and name.", g.Namespace, g.Name), g.Generation))
		} else {
			msg := fmt.Sprintf("%s applies to callers of %s.%s in this cluster.", cmp.Or(g.Spec.LbType, flomeshv1alpha1.Locality), g.Name, g.Namespace)
			if v := t.view(k); v != nil {
				var local []string
				for _, p := range v.ports {
					if !p.protocol.Routed() && len(p.remoteKeys) > 0 {
						local = append(local, fmt.Sprintf("%d (%s)", p.port, p.protocol))
					}
				}
				if len(local) > 0 {
					msg += fmt.Sprintf(" Port %s is not HTTP: gateways route HTTP only, so only this cluster's endpoints serve it.", strings.Join(local, ", "))
				}
			}
			conds = append(conds, cond(flomeshv1alpha1.ConditionAccepted, true, flomeshv1alpha1.ReasonAccepted, msg, g.Generation))
		}
		exporting := map[string]bool{}
		if imp != nil {
			for _, p := range imp.Spec.Ports {
				for _, e := range p.Endpoints {
					exporting[e.ClusterKey] = true
				}
			}
		}
		var missing []string
		for _, tg := range g.Spec.Targets {
			if key := string(tg.ClusterKey); key != t.cluster && !exporting[key] {
				missing = append(missing, key)
			}
		}
		if len(missing) > 0 {
			conds = append(conds, cond(flomeshv1alpha1.ConditionResolvedRefs, false, flomeshv1alpha1.ReasonTargetNotExported,
				fmt.Sprintf("Target cluster %s does not export %s/%s; no request is sent there until it does.", strings.Join(missing, ", "), g.Namespace, g.Name), g.Generation))
		} else {
			conds = append(conds, cond(flomeshv1alpha1.ConditionResolvedRefs, true, flomeshv1alpha1.ReasonResolvedRefs, "Every target cluster exports the service.", g.Generation))
		}
		out = append(out, ObjectConditions{Namespace: g.Namespace, Name: g.Name, Conditions: conds})
	}
	return out
}
