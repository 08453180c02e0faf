// Package plan is the federation's pure stage: from what every member exports, the ServiceImports
// each member should hold and the Conflict condition of every export (Aggregate), following the
// Kubernetes MCS API's rules. It reads no API server; controllers/federation reads the members,
// calls Aggregate and applies the plan. Tested by testdata/*.in.yaml -> *.out.yaml goldens.
package plan

import (
	"cmp"
	"fmt"
	"net"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/translator"
	"github.com/crossgate-io/crossgate/wellknown"
)

// Source is one member cluster as the federation sees it.
type Source struct {
	// Key is the member's cluster key.
	Key flomeshv1alpha1.ClusterKey
	// Gateway is where other clusters reach the member's gateway (host, ip and port; no path).
	Gateway flomeshv1alpha1.Target
	// Known is false while the member's exports have not been read since the federation started
	// (it was never reachable): its endpoints already present in other members' imports are then
	// carried over unchanged, so a restart of the control plane while a member is down loses
	// nothing.
	Known bool
	// Exports of the member and the Services they name (by namespace/name; absent when missing).
	Exports  []*flomeshv1alpha1.ServiceExport
	Services map[types.NamespacedName]*corev1.Service
	// Imports are the federation's ServiceImports currently in the member.
	Imports []*flomeshv1alpha1.ServiceImport
}

// ExportStatus is the Conflict condition one export should carry.
type ExportStatus struct {
	Namespace string           `json:"namespace"`
	Name      string           `json:"name"`
	Condition metav1.Condition `json:"condition"`
}

// Plan is what the cluster set should look like: the imports each member should hold and the
// Conflict condition of every export of the known members.
type Plan struct {
	Imports map[flomeshv1alpha1.ClusterKey][]*flomeshv1alpha1.ServiceImport `json:"imports"`
	Exports map[flomeshv1alpha1.ClusterKey][]ExportStatus                   `json:"exports"`
}

// candidate is one valid export of a service.
type candidate struct {
	src     *Source
	export  *flomeshv1alpha1.ServiceExport
	ports   []flomeshv1alpha1.ServicePort // sorted by port; no endpoints
	paths   map[int32]string              // the first rule's path for each port
	typ     flomeshv1alpha1.ServiceImportType
	account string
}

// Aggregate computes the plan from the members' exports. It is pure: the same sources give the
// same plan, byte for byte.
func Aggregate(sources []*Source) *Plan {
	plan := &Plan{
		Imports: map[flomeshv1alpha1.ClusterKey][]*flomeshv1alpha1.ServiceImport{},
		Exports: map[flomeshv1alpha1.ClusterKey][]ExportStatus{},
	}
	srcs := slices.Clone(sources)
	slices.SortFunc(srcs, func(a, b *Source) int { return cmp.Compare(a.Key, b.Key) })

	// The valid exports of every known member, by service.
	byService := map[types.NamespacedName][]*candidate{}
	for _, s := range srcs {
		if !s.Known {
			continue
		}
		for _, e := range s.Exports {
			k := types.NamespacedName{Namespace: e.Namespace, Name: e.Name}
			svc := s.Services[k]
			if c := translator.ExportCondition(e, svc); c.Status != metav1.ConditionTrue {
				plan.Exports[s.Key] = append(plan.Exports[s.Key], ExportStatus{e.Namespace, e.Name, condition(e, false, flomeshv1alpha1.ReasonNotExported,
					"The export is not valid (see its Valid condition), so it takes part in no conflict.")})
				continue
			}
			byService[k] = append(byService[k], newCandidate(s, e, svc))
		}
	}

	// The oldest export of each service wins; the others must agree with it.
	winners := map[types.NamespacedName]*candidate{}
	agree := map[types.NamespacedName][]*candidate{}
	for _, k := range sortedNames(byService) {
		cands := byService[k]
		slices.SortFunc(cands, func(a, b *candidate) int {
			if c := a.export.CreationTimestamp.Compare(b.export.CreationTimestamp.Time); c != 0 {
				return c
			}
			return cmp.Compare(a.src.Key, b.src.Key)
		})
		w := cands[0]
		winners[k] = w
		for _, c := range cands {
			reason, msg := conflictWith(c, w)
			plan.Exports[c.src.Key] = append(plan.Exports[c.src.Key], ExportStatus{c.export.Namespace, c.export.Name, condition(c.export, reason != "", cmp.Or(reason, flomeshv1alpha1.ReasonNoConflict), msg)})
			if reason == "" {
				agree[k] = append(agree[k], c)
			}
		}
	}

	// Each known member's imports.
	gateways := map[string]*Source{}
	for _, s := range srcs {
		gateways[string(s.Key)] = s
	}
	for _, t := range srcs {
		if !t.Known {
			continue
		}
		current := map[types.NamespacedName]*flomeshv1alpha1.ServiceImport{}
		for _, imp := range t.Imports {
			current[types.NamespacedName{Namespace: imp.Namespace, Name: imp.Name}] = imp
		}
		services := map[types.NamespacedName]bool{}
		for k := range winners {
			services[k] = true
		}
		for k := range current {
			services[k] = true
		}
		var out []*flomeshv1alpha1.ServiceImport
		for _, k := range sortedNames(services) {
			if imp := importFor(t, k, winners[k], agree[k], current[k], gateways); imp != nil {
				out = append(out, imp)
			}
		}
		plan.Imports[t.Key] = out
	}
	return plan
}

// The ServiceImports of a plan carry wellknown.ManagedByLabel and wellknown.FederatedLabel: the
// stale ones the federation deletes are found by them, and a ServiceImport without them is a
// user's, never touched.

// importFor is the import of service k in member t, or nil when t should have none.
func importFor(t *Source, k types.NamespacedName, w *candidate, agree []*candidate, cur *flomeshv1alpha1.ServiceImport, gateways map[string]*Source) *flomeshv1alpha1.ServiceImport {
	imp := &flomeshv1alpha1.ServiceImport{
		TypeMeta: metav1.TypeMeta{APIVersion: flomeshv1alpha1.GroupVersion.String(), Kind: "ServiceImport"},
		ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Name, Labels: map[string]string{
			wellknown.ManagedByLabel: wellknown.ManagedByValue, wellknown.FederatedLabel: "true",
		}},
	}
	switch {
	case w != nil:
		imp.Spec.Ports = slices.Clone(w.ports)
		imp.Spec.Type, imp.Spec.ServiceAccountName = w.typ, w.account
	case cur != nil:
		// Only members that have not been read since the start export it: keep what the import
		// says about the service until they are.
		for _, p := range cur.Spec.Ports {
			p.Endpoints = nil
			imp.Spec.Ports = append(imp.Spec.Ports, p)
		}
		imp.Spec.Type, imp.Spec.ServiceAccountName = cur.Spec.Type, cur.Spec.ServiceAccountName
	default:
		return nil
	}
	clusters := map[string]bool{}
	for i := range imp.Spec.Ports {
		p := &imp.Spec.Ports[i]
		for _, c := range agree {
			if c.src == t || !targets(c.export, t.Key) {
				continue
			}
			target := c.src.Gateway
			target.Path = c.paths[p.Port]
			p.Endpoints = append(p.Endpoints, flomeshv1alpha1.Endpoint{ClusterKey: string(c.src.Key), Target: target})
			clusters[string(c.src.Key)] = true
		}
		if cur != nil {
			for _, cp := range cur.Spec.Ports {
				if cp.Port != p.Port || cp.Protocol != p.Protocol {
					continue
				}
				for _, e := range cp.Endpoints {
					src := gateways[e.ClusterKey]
					if src == nil || src.Known || src == t {
						continue // gone from the set, read afresh above, or the member itself
					}
					target := src.Gateway
					target.Path = e.Target.Path
					p.Endpoints = append(p.Endpoints, flomeshv1alpha1.Endpoint{ClusterKey: e.ClusterKey, Target: target})
					clusters[e.ClusterKey] = true
				}
			}
		}
		slices.SortFunc(p.Endpoints, func(a, b flomeshv1alpha1.Endpoint) int { return cmp.Compare(a.ClusterKey, b.ClusterKey) })
		p.Endpoints = slices.CompactFunc(p.Endpoints, func(a, b flomeshv1alpha1.Endpoint) bool { return a.ClusterKey == b.ClusterKey })
	}
	if len(clusters) == 0 {
		return nil
	}
	for _, c := range sortedKeys(clusters) {
		imp.Status.Clusters = append(imp.Status.Clusters, flomeshv1alpha1.SourceCluster{Cluster: c})
	}
	return imp
}

// targets reports whether export e is imported by the member with key k.
func targets(e *flomeshv1alpha1.ServiceExport, k flomeshv1alpha1.ClusterKey) bool {
	return len(e.Spec.TargetClusters) == 0 || slices.Contains(e.Spec.TargetClusters, k)
}

func newCandidate(s *Source, e *flomeshv1alpha1.ServiceExport, svc *corev1.Service) *candidate {
	c := &candidate{
		src: s, export: e, paths: map[int32]string{}, typ: flomeshv1alpha1.ClusterSetIP,
		account: cmp.Or(e.Spec.ServiceAccountName, flomeshv1alpha1.AnyServiceAccount),
	}
	if svc.Spec.ClusterIP == corev1.ClusterIPNone {
		c.typ = flomeshv1alpha1.Headless
	}
	for _, r := range e.Spec.Rules {
		if _, seen := c.paths[r.PortNumber]; seen {
			continue
		}
		c.paths[r.PortNumber] = r.Path
		for _, sp := range svc.Spec.Ports {
			if sp.Port == r.PortNumber {
				c.ports = append(c.ports, flomeshv1alpha1.ServicePort{
					Name: sp.Name, Port: sp.Port, AppProtocol: sp.AppProtocol,
					Protocol: flomeshv1alpha1.Protocol(cmp.Or(sp.Protocol, corev1.ProtocolTCP)),
				})
				break
			}
		}
	}
	slices.SortFunc(c.ports, func(a, b flomeshv1alpha1.ServicePort) int { return cmp.Compare(a.Port, b.Port) })
	return c
}

// conflictWith compares c with the winner w and returns the reason and message of c's Conflict
// condition; the reason is empty when they agree.
func conflictWith(c, w *candidate) (reason, message string) {
	if c == w {
		return "", "This is the oldest export of the service in the cluster set; the others follow it."
	}
	winner := fmt.Sprintf("the oldest export, in cluster %s (created %s)", w.src.Key, w.export.CreationTimestamp.UTC().Format("2006-01-02T15:04:05Z"))
	var reasons, msgs []string
	add := func(r, m string) {
		reasons = append(reasons, r)
		msgs = append(msgs, m)
	}
	if !slices.EqualFunc(c.ports, w.ports, func(a, b flomeshv1alpha1.ServicePort) bool { return a.Port == b.Port }) {
		add(flomeshv1alpha1.ReasonPortConflict, fmt.Sprintf("it exports port %s while %s exports port %s", portList(c.ports, false), winner, portList(w.ports, false)))
	} else if !slices.EqualFunc(c.ports, w.ports, func(a, b flomeshv1alpha1.ServicePort) bool { return a.Protocol == b.Protocol }) {
		add(flomeshv1alpha1.ReasonProtocolConflict, fmt.Sprintf("it exports %s while %s exports %s", portList(c.ports, true), winner, portList(w.ports, true)))
	}
	if c.typ != w.typ {
		add(flomeshv1alpha1.ReasonTypeConflict, fmt.Sprintf("its Service makes it %s while %s is %s", c.typ, winner, w.typ))
	}
	if c.account != w.account {
		add(flomeshv1alpha1.ReasonServiceAccountNameConflict, fmt.Sprintf("its serviceAccountName is %q while %s has %q", c.account, winner, w.account))
	}
	if len(reasons) == 0 {
		return "", "The export agrees with " + winner + "."
	}
	return reasons[0], "Not imported anywhere: " + strings.Join(msgs, "; ") + ". Make it match, or delete one of the exports; the condition clears as soon as they agree."
}

func portList(ps []flomeshv1alpha1.ServicePort, protocol bool) string {
	var s []string
	for _, p := range ps {
		if protocol {
			s = append(s, fmt.Sprintf("%d/%s", p.Port, p.Protocol))
		} else {
			s = append(s, fmt.Sprint(p.Port))
		}
	}
	return strings.Join(s, ", ")
}

func condition(e *flomeshv1alpha1.ServiceExport, status bool, reason, message string) metav1.Condition {
	c := metav1.Condition{Type: flomeshv1alpha1.ConditionConflict, Status: metav1.ConditionFalse, Reason: reason, Message: flomeshv1alpha1.ConditionMessage(message), ObservedGeneration: e.Generation}
	if status {
		c.Status = metav1.ConditionTrue
	}
	return c
}

// GatewayTarget is the target of a member's gateway: the host, the same as ip when it is an IP
// address, and the port (80 when unset).
func GatewayTarget(c *flomeshv1alpha1.Cluster) flomeshv1alpha1.Target {
	t := flomeshv1alpha1.Target{Host: c.Spec.GatewayHost, Port: cmp.Or(c.Spec.GatewayPort, 80)}
	if net.ParseIP(c.Spec.GatewayHost) != nil {
		t.IP = c.Spec.GatewayHost
	}
	return t
}

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func sortedNames[V any](m map[types.NamespacedName]V) []types.NamespacedName {
	keys := make([]types.NamespacedName, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b types.NamespacedName) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return keys
}
