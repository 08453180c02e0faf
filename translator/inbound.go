package translator

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	accessv1alpha3 "github.com/crossgate-io/crossgate/api/smi/access/v1alpha3"
	"github.com/crossgate-io/crossgate/translator/ir"
)

// inboundIndex maps each identity to the ports its workloads serve, from the local endpoints of
// every Service. Built once: one pass over all services.
func (t *translation) inboundIndex() map[ir.Identity][]ir.InboundPort {
	type acc struct {
		proto     ir.Protocol
		services  map[string]bool
		addresses map[string]bool
	}
	byID := map[ir.Identity]map[uint32]*acc{}
	exported := map[ir.Identity]bool{}
	for _, v := range t.views {
		_, isExported := t.exports[v.key]
		for _, p := range v.ports {
			for _, e := range p.local {
				ports := byID[e.Identity]
				if ports == nil {
					ports = map[uint32]*acc{}
					byID[e.Identity] = ports
				}
				a := ports[e.Port]
				if a == nil {
					a = &acc{proto: p.protocol, services: map[string]bool{}, addresses: map[string]bool{}}
					ports[e.Port] = a
				}
				a.services[ir.ServiceKey(v.key.ns, v.key.name, p.port)] = true
				if e.Proxyless {
					a.addresses[e.Address] = true
				}
				if isExported {
					exported[e.Identity] = true
				}
			}
		}
	}
	out := map[ir.Identity][]ir.InboundPort{}
	for id, ports := range byID {
		var list []ir.InboundPort
		for port, a := range ports {
			svcs := make([]string, 0, len(a.services))
			for s := range a.services {
				svcs = append(svcs, s)
			}
			slices.Sort(svcs)
			var addrs []string
			for ad := range a.addresses {
				addrs = append(addrs, ad)
			}
			slices.Sort(addrs)
			ip := ir.InboundPort{Port: port, Protocol: a.proto, Services: svcs, ProxylessAddresses: addrs}
			if !t.permissive {
				ip.RBAC = t.rbac(id, port, exported[id])
			}
			list = append(list, ip)
		}
		slices.SortFunc(list, func(a, b ir.InboundPort) int { return cmp.Compare(a.Port, b.Port) })
		out[id] = list
	}
	return out
}

// rbac builds the inbound policy of identity dst on one port from the TrafficTargets naming it
// as destination. Workloads of exported services also admit this cluster's gateways: the
// caller's cluster enforced its own policy before the request crossed.
func (t *translation) rbac(dst ir.Identity, port uint32, exported bool) *ir.RBAC {
	r := &ir.RBAC{Policies: []ir.Policy{}}
	for _, tt := range t.ttByDest[dst] {
		d := tt.Spec.Destination
		if d.Port != nil && uint32(*d.Port) != port {
			continue
		}
		var principals []ir.Identity
		for _, s := range tt.Spec.Sources {
			if s.Kind != "ServiceAccount" {
				continue
			}
			id := ir.Identity{Namespace: cmp.Or(s.Namespace, tt.Namespace), ServiceAccount: s.Name}
			if !slices.Contains(principals, id) {
				principals = append(principals, id)
			}
		}
		if len(principals) == 0 {
			continue
		}
		slices.SortFunc(principals, func(a, b ir.Identity) int {
			return cmpNsName(nsName{a.Namespace, a.ServiceAccount}, nsName{b.Namespace, b.ServiceAccount})
		})
		rules := t.trafficTargetRules(tt)
		if len(rules) == 0 {
			continue // its rules name nothing that exists: it allows nothing
		}
		r.Policies = append(r.Policies, ir.Policy{Name: tt.Namespace + "/" + tt.Name, Principals: principals, Rules: rules})
	}
	if exported {
		for _, gw := range t.gateways {
			r.Policies = append(r.Policies, ir.Policy{Name: gatewayPolicyName(gw), Principals: []ir.Identity{gw}})
		}
	}
	return r
}

// trafficTargetRules turns a TrafficTarget's HTTPRouteGroup rules into request matches. Rules
// that resolve to nothing allow nothing: a TrafficTarget without rules, a route group that does
// not exist, and TCPRoute rules (TCP access control is not implemented yet), so that a mistake
// closes access rather than opening it.
func (t *translation) trafficTargetRules(tt *accessv1alpha3.TrafficTarget) []ir.HTTPRule {
	var rules []ir.HTTPRule
	for _, rule := range tt.Spec.Rules {
		if rule.Kind != "HTTPRouteGroup" {
			continue
		}
		g := t.routeGroups[nsName{tt.Namespace, rule.Name}]
		if g == nil {
			continue
		}
		for _, m := range g.Spec.Matches {
			if len(rule.Matches) > 0 && !slices.Contains(rule.Matches, m.Name) {
				continue
			}
			hr := ir.HTTPRule{PathRegex: m.PathRegex}
			for _, meth := range m.Methods {
				if meth == "*" {
					hr.Methods = nil
					break
				}
				hr.Methods = append(hr.Methods, strings.ToUpper(string(meth)))
			}
			slices.Sort(hr.Methods)
			hr.Methods = slices.Compact(hr.Methods)
			for name, re := range m.Headers {
				hr.Headers = append(hr.Headers, ir.HeaderMatch{Name: strings.ToLower(name), Regex: re})
			}
			slices.SortFunc(hr.Headers, func(a, b ir.HeaderMatch) int { return cmp.Compare(a.Name, b.Name) })
			rules = append(rules, hr)
		}
	}
	return rules
}

// whyNoRules says why a TrafficTarget's rules resolve to nothing, naming the fields.
func (t *translation) whyNoRules(tt *accessv1alpha3.TrafficTarget) string {
	if len(tt.Spec.Rules) == 0 {
		return "spec.rules is empty"
	}
	var why []string
	for i, rule := range tt.Spec.Rules {
		if rule.Kind != "HTTPRouteGroup" {
			why = append(why, fmt.Sprintf("spec.rules[%d] is a %s (only HTTPRouteGroup rules are enforced)", i, rule.Kind))
			continue
		}
		g := t.routeGroups[nsName{tt.Namespace, rule.Name}]
		if g == nil {
			why = append(why, fmt.Sprintf("spec.rules[%d] names HTTPRouteGroup %s/%s, which does not exist", i, tt.Namespace, rule.Name))
			continue
		}
		var defined []string
		for _, m := range g.Spec.Matches {
			defined = append(defined, m.Name)
		}
		why = append(why, fmt.Sprintf("spec.rules[%d].matches %s are not matches of HTTPRouteGroup %s/%s (it defines: %s)",
			i, strings.Join(rule.Matches, ", "), tt.Namespace, rule.Name, cmp.Or(strings.Join(defined, ", "), "none")))
	}
	return strings.Join(why, "; ")
}
