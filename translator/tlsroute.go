package translator

import (
	"cmp"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/translator/ir"
)

// attachedTLSRoute is a TLSRoute attached to one TLS listener: the server names it takes there
// and its backends.
type attachedTLSRoute struct {
	owner     nsName
	created   metav1.Time
	hostnames []string
	backends  []ir.Backend
}

// attachTLSRoutes attaches every TLSRoute to the TLS passthrough listeners of our Gateways it
// names and may use, and returns the routes' parent statuses for our parents.
func (t *translation) attachTLSRoutes(states map[nsName][]*listenerState) []RouteStatus {
	var out []RouteStatus
	for _, r := range sortedByName(t.in.TLSRoutes) {
		var backends []ir.Backend
		parents := ourParents(r, r.Spec.ParentRefs, states,
			func() (unresolved *flomeshv1alpha1.ConditionError) {
				backends, unresolved = t.tlsBackends(r)
				return unresolved
			},
			func(pr gatewayv1.ParentReference, gwNS string, ls []*listenerState) *flomeshv1alpha1.ConditionError {
				return t.attachTLS(r, pr, gwNS, ls, backends)
			})
		if len(parents) > 0 {
			out = append(out, RouteStatus{Namespace: r.Namespace, Name: r.Name, Parents: parents})
		}
	}
	return out
}

// tlsBackends resolves a TLSRoute's backendRefs (its one rule, as the API allows). A ref that
// does not resolve keeps its weight as an invalid backend, whose share of connections is refused
// (tlsroute_types.go BackendRefs).
func (t *translation) tlsBackends(r *gatewayv1.TLSRoute) ([]ir.Backend, *flomeshv1alpha1.ConditionError) {
	var out []ir.Backend
	var reason string
	var problems []string
	for _, rule := range r.Spec.Rules {
		for _, ref := range rule.BackendRefs {
			w := uint32(1)
			if ref.Weight != nil {
				w = uint32(max(*ref.Weight, 0))
			}
			b, p := t.resolveBackend(r.Namespace, ref, "TLSRoute")
			if p != nil {
				reason = cmp.Or(reason, p.Reason) // the first problem names the reason
				problems = append(problems, p.Message)
			}
			if w == 0 {
				continue
			}
			b.Weight = w
			out = append(out, b)
		}
	}
	if reason == "" {
		return out, nil
	}
	return out, &flomeshv1alpha1.ConditionError{Reason: reason, Message: strings.Join(problems, " ")}
}

// attachTLS adds the route to every TLS listener of one parent that accepts it; it returns why
// the parent does not accept the route, nil when it does.
func (t *translation) attachTLS(r *gatewayv1.TLSRoute, pr gatewayv1.ParentReference, gwNS string, ls []*listenerState, backends []ir.Backend) *flomeshv1alpha1.ConditionError {
	candidates := namedListeners(pr, ls)
	if len(candidates) == 0 {
		return flomeshv1alpha1.Problem(string(gatewayv1.RouteReasonNoMatchingParent), "No listener of the Gateway matches the parentRef's sectionName and port.")
	}
	tlsAny := slices.ContainsFunc(candidates, func(l *listenerState) bool { return l.spec.Protocol == gatewayv1.TLSProtocolType })
	allowedAny, hostAny := t.attachTo(candidates, "TLSRoute", gwNS, r.Namespace, r.Spec.Hostnames, func(l *listenerState, hosts []string) {
		l.passthrough = append(l.passthrough, attachedTLSRoute{owner: nsName{r.Namespace, r.Name}, created: r.CreationTimestamp, hostnames: hosts, backends: backends})
	})
	switch {
	case !tlsAny:
		// tlsroute_types.go says UnsupportedValue for a TLSRoute on a listener of another
		// protocol, but the conformance suite of the same version (TLSRouteInvalidNoMatchingListener)
		// wants NotAllowedByListeners, which shared_types.go also fits (no listener's
		// allowedRoutes permit a TLSRoute): the executable standard wins.
		return flomeshv1alpha1.Problem(string(gatewayv1.RouteReasonNotAllowedByListeners), "A TLSRoute attaches to listeners of protocol TLS only; the parentRef names none.")
	case !allowedAny:
		return flomeshv1alpha1.Problem(string(gatewayv1.RouteReasonNotAllowedByListeners),
			"No TLS listener in Passthrough mode that the parentRef names allows TLSRoutes from namespace %s (crossgate serves no TLS listener in Terminate mode).", r.Namespace)
	case !hostAny:
		return flomeshv1alpha1.Problem(string(gatewayv1.RouteReasonNoMatchingListenerHostname), "No hostname of the route matches a listener's hostname.")
	}
	return nil
}

// passthroughRoutes are the TLS routes of one port: a route attached through several listeners
// of the port is taken once with all its names, and a server name two routes claim belongs to
// the older route (then the first by namespace/name), as Gateway API resolves conflicts; a route
// left with no name is left out. Sorted by name.
func passthroughRoutes(attached []attachedTLSRoute) []ir.TLSRoute {
	byOwner := map[nsName]*attachedTLSRoute{}
	var order []*attachedTLSRoute
	for _, a := range attached {
		if cur := byOwner[a.owner]; cur != nil {
			cur.hostnames = append(cur.hostnames, a.hostnames...)
			continue
		}
		c := a
		c.hostnames = slices.Clone(a.hostnames)
		byOwner[a.owner] = &c
		order = append(order, &c)
	}
	slices.SortFunc(order, func(a, b *attachedTLSRoute) int {
		if !a.created.Equal(&b.created) {
			if a.created.Before(&b.created) {
				return -1
			}
			return 1
		}
		return cmpNsName(a.owner, b.owner)
	})
	taken := map[string]bool{}
	var out []ir.TLSRoute
	for _, a := range order {
		slices.Sort(a.hostnames)
		var hosts []string
		for _, h := range slices.Compact(a.hostnames) {
			if !taken[h] {
				taken[h] = true
				hosts = append(hosts, h)
			}
		}
		if len(hosts) > 0 {
			out = append(out, ir.TLSRoute{Name: tlsRouteName(a.owner.ns, a.owner.name), Hostnames: hosts, Backends: a.backends})
		}
	}
	slices.SortFunc(out, func(a, b ir.TLSRoute) int { return cmp.Compare(a.Name, b.Name) })
	return out
}
