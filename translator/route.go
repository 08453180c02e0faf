package translator

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/translator/ir"
)

// builtRule is one match of one rule of an HTTPRoute, ready to attach.
type builtRule struct {
	route ir.Route
	rule  int
	match int
}

// buildRules turns an HTTPRoute's rules into IR routes. unresolved, when not nil, is the
// ResolvedRefs=False problem of backendRefs that do not resolve (their share of requests then
// gets a 500); unsupported, when not nil, names a feature crossgate cannot program, and the
// route is then not attached at all.
func (t *translation) buildRules(r *gatewayv1.HTTPRoute) (out []builtRule, unresolved, unsupported *flomeshv1alpha1.ConditionError) {
	var reason string
	var problems []string
	for ri, rule := range r.Spec.Rules {
		var rewrite *ir.PathRewrite
		var hostRewrite string
		var requestHeaders, responseHeaders *ir.HeaderModifier
		var redirect *ir.Redirect
		var mirrors []ir.Mirror
		for _, f := range rule.Filters {
			switch {
			case f.Type == gatewayv1.HTTPRouteFilterURLRewrite && f.URLRewrite != nil:
				if p := f.URLRewrite.Path; p != nil {
					switch p.Type {
					case gatewayv1.PrefixMatchHTTPPathModifier:
						rewrite = &ir.PathRewrite{ReplacePrefixMatch: ptr(cmp.Or(derefStr(p.ReplacePrefixMatch), "/"))}
					case gatewayv1.FullPathHTTPPathModifier:
						rewrite = &ir.PathRewrite{ReplaceFullPath: ptr(cmp.Or(derefStr(p.ReplaceFullPath), "/"))}
					}
				}
				if h := f.URLRewrite.Hostname; h != nil {
					hostRewrite = string(*h)
				}
			case f.Type == gatewayv1.HTTPRouteFilterRequestHeaderModifier && f.RequestHeaderModifier != nil:
				m, err := headerModifier(ri, "requestHeaderModifier", f.RequestHeaderModifier)
				if err != nil {
					return nil, nil, err
				}
				requestHeaders = m
			case f.Type == gatewayv1.HTTPRouteFilterResponseHeaderModifier && f.ResponseHeaderModifier != nil:
				m, err := headerModifier(ri, "responseHeaderModifier", f.ResponseHeaderModifier)
				if err != nil {
					return nil, nil, err
				}
				responseHeaders = m
			case f.Type == gatewayv1.HTTPRouteFilterRequestRedirect && f.RequestRedirect != nil:
				rd, err := requestRedirect(ri, f.RequestRedirect)
				if err != nil {
					return nil, nil, err
				}
				redirect = rd
			case f.Type == gatewayv1.HTTPRouteFilterRequestMirror && f.RequestMirror != nil:
				// A mirror's backend that does not resolve mirrors nothing; ResolvedRefs says why.
				b, why := t.resolveBackend(r.Namespace, gatewayv1.BackendRef{BackendObjectReference: f.RequestMirror.BackendRef}, "HTTPRoute")
				if why != nil {
					reason = cmp.Or(reason, why.Reason)
					problems = append(problems, "requestMirror: "+why.Message)
					continue
				}
				mirrors = append(mirrors, ir.Mirror{Backend: b, PerMillion: mirrorShare(f.RequestMirror)})
			default:
				return nil, nil, flomeshv1alpha1.Problem(string(gatewayv1.RouteReasonUnsupportedValue),
					"Rule %d uses filter %s, which crossgate does not support yet; URLRewrite, RequestRedirect, RequestMirror, RequestHeaderModifier and ResponseHeaderModifier are.", ri, f.Type)
			}
		}
		timeout, err := ruleTimeout(ri, rule.Timeouts)
		if err != nil {
			return nil, nil, err
		}
		backends, direct, whys, err := t.backends(r.Namespace, ri, rule.BackendRefs)
		if err != nil {
			return nil, nil, err
		}
		if redirect != nil {
			backends, direct = nil, 0 // a redirect answers itself: no backend takes the request
		}
		for _, why := range whys {
			if reason == "" {
				reason = why.Reason // the first problem names the reason
			}
			problems = append(problems, why.Message)
		}
		matches := rule.Matches
		if len(matches) == 0 {
			matches = []gatewayv1.HTTPRouteMatch{{}}
		}
		for mi, m := range matches {
			route := ir.Route{
				Name:            routeName(r.Namespace, r.Name, ri, mi),
				Path:            pathMatch(m.Path),
				Rewrite:         rewrite,
				HostRewrite:     hostRewrite,
				RequestHeaders:  requestHeaders,
				ResponseHeaders: responseHeaders,
				Redirect:        redirect,
				Mirrors:         mirrors,
				Backends:        backends,
				DirectResponse:  direct,
				TimeoutMillis:   timeout.Milliseconds(),
			}
			if m.Method != nil {
				route.Method = string(*m.Method)
			}
			for _, h := range m.Headers {
				hm := ir.HeaderMatch{Name: strings.ToLower(string(h.Name))}
				if h.Type != nil && *h.Type == gatewayv1.HeaderMatchRegularExpression {
					hm.Regex = h.Value
				} else {
					hm.Exact = h.Value
				}
				route.Headers = append(route.Headers, hm)
			}
			slices.SortFunc(route.Headers, func(a, b ir.HeaderMatch) int { return cmp.Compare(a.Name, b.Name) })
			route.QueryParams = queryParamMatches(m.QueryParams)
			if err := checkRegexes(ri, mi, m); err != nil {
				return nil, nil, err
			}
			out = append(out, builtRule{route: route, rule: ri, match: mi})
		}
	}
	if reason != "" {
		unresolved = &flomeshv1alpha1.ConditionError{Reason: reason, Message: strings.Join(problems, " ")}
	}
	return out, unresolved, nil
}

// ruleTimeout is how long the gateway waits for a rule's backend: its backendRequest timeout, or
// its request timeout, whichever is shorter ("0s" disables either; 0: no limit). The gateway does
// not retry, so one backend request is the whole request; Envoy's route timeout is both
// (route_components.proto RouteAction.timeout covers the request and its retries), as in Envoy
// Gateway. A duration that does not parse (the CRD's pattern enforces GEP-2257) refuses the route.
func ruleTimeout(ri int, to *gatewayv1.HTTPRouteTimeouts) (time.Duration, *flomeshv1alpha1.ConditionError) {
	if to == nil {
		return 0, nil
	}
	var out time.Duration
	for _, f := range []struct {
		field string
		value *gatewayv1.Duration
	}{{"request", to.Request}, {"backendRequest", to.BackendRequest}} {
		if f.value == nil {
			continue
		}
		d, err := time.ParseDuration(string(*f.value))
		if err != nil || d < 0 {
			return 0, flomeshv1alpha1.Problem(string(gatewayv1.RouteReasonUnsupportedValue),
				"spec.rules[%d].timeouts.%s %q is not a duration: want a GEP-2257 duration such as 500ms, 10s or 1m30s.", ri, f.field, *f.value)
		}
		if d > 0 && (out == 0 || d < out) {
			out = d
		}
	}
	return out, nil
}

// checkRegexes refuses a match whose regular expressions Envoy would refuse (RE2, which Go's
// regexp implements): the route is not attached, and the condition names the field, rather than
// the route vanishing from the gateway's configuration.
func checkRegexes(ri, mi int, m gatewayv1.HTTPRouteMatch) *flomeshv1alpha1.ConditionError {
	bad := func(field, re string) *flomeshv1alpha1.ConditionError {
		if _, err := regexp.Compile(re); err != nil {
			return flomeshv1alpha1.Problem(string(gatewayv1.RouteReasonUnsupportedValue),
				"spec.rules[%d].matches[%d].%s %q is not an RE2 regular expression: %v.", ri, mi, field, re, err)
		}
		return nil
	}
	if p := m.Path; p != nil && p.Type != nil && *p.Type == gatewayv1.PathMatchRegularExpression {
		if err := bad("path.value", derefStr(p.Value)); err != nil {
			return err
		}
	}
	for i, h := range m.Headers {
		if h.Type != nil && *h.Type == gatewayv1.HeaderMatchRegularExpression {
			if err := bad(fmt.Sprintf("headers[%d].value", i), h.Value); err != nil {
				return err
			}
		}
	}
	for i, q := range m.QueryParams {
		if q.Type != nil && *q.Type == gatewayv1.QueryParamMatchRegularExpression {
			if err := bad(fmt.Sprintf("queryParams[%d].value", i), q.Value); err != nil {
				return err
			}
		}
	}
	return nil
}

// queryParamMatches are a match's query parameter conditions, sorted by name. Of entries naming
// the same parameter only the first counts (HTTPQueryParamMatch: "only the first entry with an
// equivalent name MUST be considered"); names compare exactly, as query parameter names are
// case-sensitive.
func queryParamMatches(qs []gatewayv1.HTTPQueryParamMatch) []ir.QueryParamMatch {
	var out []ir.QueryParamMatch
	seen := map[string]bool{}
	for _, q := range qs {
		name := string(q.Name)
		if seen[name] {
			continue
		}
		seen[name] = true
		qm := ir.QueryParamMatch{Name: name}
		if q.Type != nil && *q.Type == gatewayv1.QueryParamMatchRegularExpression {
			qm.Regex = q.Value
		} else {
			qm.Exact = q.Value
		}
		out = append(out, qm)
	}
	slices.SortFunc(out, func(a, b ir.QueryParamMatch) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

func derefStr(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func pathMatch(p *gatewayv1.HTTPPathMatch) ir.PathMatch {
	if p == nil {
		return ir.PathMatch{Type: ir.PathPrefix, Value: "/"}
	}
	typ := gatewayv1.PathMatchPathPrefix
	if p.Type != nil {
		typ = *p.Type
	}
	val := cmp.Or(derefStr(p.Value), "/")
	switch typ {
	case gatewayv1.PathMatchExact:
		return ir.PathMatch{Type: ir.PathExact, Value: val}
	case gatewayv1.PathMatchRegularExpression:
		return ir.PathMatch{Type: ir.PathRegex, Value: val}
	}
	return ir.PathMatch{Type: ir.PathPrefix, Value: val}
}

// backends resolves a rule's backendRefs. A ref that does not resolve keeps its weight as an
// invalid backend, so its share of requests is answered with 500; with no usable weight at all
// the rule answers 500 directly (Gateway API).
func (t *translation) backends(routeNS string, ri int, refs []gatewayv1.HTTPBackendRef) ([]ir.Backend, uint32, []*flomeshv1alpha1.ConditionError, *flomeshv1alpha1.ConditionError) {
	var out []ir.Backend
	var problems []*flomeshv1alpha1.ConditionError
	total := uint32(0)
	for bi, ref := range refs {
		var headers *ir.HeaderModifier
		for _, f := range ref.Filters {
			if f.Type != gatewayv1.HTTPRouteFilterRequestHeaderModifier || f.RequestHeaderModifier == nil {
				return nil, 0, nil, flomeshv1alpha1.Problem(string(gatewayv1.RouteReasonUnsupportedValue),
					"Rule %d backendRefs[%d] uses filter %s, which crossgate does not support on a backendRef; RequestHeaderModifier is.", ri, bi, f.Type)
			}
			m, err := headerModifier(ri, fmt.Sprintf("backendRefs[%d] requestHeaderModifier", bi), f.RequestHeaderModifier)
			if err != nil {
				return nil, 0, nil, err
			}
			headers = m
		}
		w := uint32(1)
		if ref.Weight != nil {
			w = uint32(max(*ref.Weight, 0))
		}
		b, p := t.resolveBackend(routeNS, ref.BackendRef, "HTTPRoute")
		if p != nil {
			problems = append(problems, p)
		}
		if w == 0 {
			continue
		}
		b.Weight = w
		if !b.Invalid {
			b.RequestHeaders = headers
		}
		total += w
		out = append(out, b)
	}
	if total == 0 || allInvalid(out) {
		return nil, 500, problems, nil
	}
	return out, 0, problems, nil
}

func allInvalid(bs []ir.Backend) bool {
	for _, b := range bs {
		if !b.Invalid {
			return false
		}
	}
	return true
}

// resolveBackend resolves one backendRef of a route of kind routeKind ("HTTPRoute": the port must
// carry HTTP; "TLSRoute": any TCP port, the connection passed through).
func (t *translation) resolveBackend(routeNS string, ref gatewayv1.BackendRef, routeKind string) (ir.Backend, *flomeshv1alpha1.ConditionError) {
	invalid := ir.Backend{Invalid: true}
	group, kind := "", "Service"
	if ref.Group != nil {
		group = string(*ref.Group)
	}
	if ref.Kind != nil {
		kind = string(*ref.Kind)
	}
	if group != "" || kind != "Service" {
		return invalid, flomeshv1alpha1.Problem(string(gatewayv1.RouteReasonInvalidKind), "Backend %s of kind %s/%s is not supported; use a Service.", ref.Name, group, kind)
	}
	ns := routeNS
	if ref.Namespace != nil && string(*ref.Namespace) != routeNS {
		ns = string(*ref.Namespace)
		if !t.referenceGranted(gatewayv1.Kind(routeKind), routeNS, "", "Service", ns, string(ref.Name)) {
			return invalid, flomeshv1alpha1.Problem(string(gatewayv1.RouteReasonRefNotPermitted),
				"Backend %s/%s is in another namespace, and no ReferenceGrant in %s lets %ss of namespace %s refer to that Service.", ns, ref.Name, ns, routeKind, routeNS)
		}
	}
	svc := t.services[nsName{ns, string(ref.Name)}]
	if svc == nil {
		return invalid, flomeshv1alpha1.Problem(string(gatewayv1.RouteReasonBackendNotFound), "Service %s/%s does not exist.", ns, ref.Name)
	}
	if ref.Port == nil {
		return invalid, flomeshv1alpha1.Problem(string(gatewayv1.RouteReasonUnsupportedValue), "Backend Service %s/%s needs a port.", ns, ref.Name)
	}
	for _, sp := range svc.Spec.Ports {
		if sp.Port != int32(*ref.Port) {
			continue
		}
		proto, ok := portProtocol(sp.Protocol, sp.Name, sp.AppProtocol)
		if !ok {
			break
		}
		if routeKind == "HTTPRoute" && !proto.Routed() {
			return invalid, flomeshv1alpha1.Problem(string(gatewayv1.RouteReasonUnsupportedProtocol), "Port %d of Service %s/%s carries %s (its appProtocol or name says so); an HTTPRoute sends HTTP.", sp.Port, ns, ref.Name, proto)
		}
		return ir.Backend{
			Cluster: ir.ServiceKey(ns, svc.Name, sp.Port), Protocol: proto, Endpoints: t.localEndpoints(nsName{ns, svc.Name}, sp),
			Plaintext: !t.meshNamespace(ns),
		}, nil
	}
	return invalid, flomeshv1alpha1.Problem(string(gatewayv1.RouteReasonBackendNotFound), "Service %s/%s has no TCP port %d.", ns, ref.Name, *ref.Port)
}

// referenceGranted reports whether a ReferenceGrant in toNS lets objects of kind fromKind
// (gateway.networking.k8s.io) in fromNS refer to the object of toGroup/toKind named toName: one
// of its from entries names that kind and namespace, and one of its to entries that kind, with
// no name or that name (referencegrant_types.go).
func (t *translation) referenceGranted(fromKind gatewayv1.Kind, fromNS string, toGroup gatewayv1.Group, toKind gatewayv1.Kind, toNS, toName string) bool {
	for i := range t.in.ReferenceGrants {
		g := &t.in.ReferenceGrants[i]
		if g.Namespace != toNS {
			continue
		}
		from := slices.ContainsFunc(g.Spec.From, func(f gatewayv1.ReferenceGrantFrom) bool {
			return f.Group == gatewayv1.GroupName && f.Kind == fromKind && string(f.Namespace) == fromNS
		})
		to := slices.ContainsFunc(g.Spec.To, func(r gatewayv1.ReferenceGrantTo) bool {
			return r.Group == toGroup && r.Kind == toKind && (r.Name == nil || string(*r.Name) == toName)
		})
		if from && to {
			return true
		}
	}
	return false
}

// headerModifier reads an HTTPHeaderFilter. The Host header cannot be changed this way (Envoy
// refuses to modify host and pseudo-headers: router/header_parser.cc); URLRewrite's hostname
// does that.
func headerModifier(rule int, field string, f *gatewayv1.HTTPHeaderFilter) (*ir.HeaderModifier, *flomeshv1alpha1.ConditionError) {
	m := &ir.HeaderModifier{}
	host := func(name string) *flomeshv1alpha1.ConditionError {
		if strings.EqualFold(name, "host") {
			return flomeshv1alpha1.Problem(string(gatewayv1.RouteReasonUnsupportedValue),
				"Rule %d: %s cannot change the Host header; use URLRewrite's hostname.", rule, field)
		}
		return nil
	}
	for _, h := range f.Set {
		if err := host(string(h.Name)); err != nil {
			return nil, err
		}
		m.Set = append(m.Set, ir.Header{Name: strings.ToLower(string(h.Name)), Value: h.Value})
	}
	for _, h := range f.Add {
		if err := host(string(h.Name)); err != nil {
			return nil, err
		}
		m.Add = append(m.Add, ir.Header{Name: strings.ToLower(string(h.Name)), Value: h.Value})
	}
	for _, name := range f.Remove {
		if err := host(name); err != nil {
			return nil, err
		}
		m.Remove = append(m.Remove, strings.ToLower(name))
	}
	return m, nil
}

// requestRedirect reads a RequestRedirect filter. A status code other than those of the API's
// enum is UnsupportedValue, as the API asks of unknown values.
func requestRedirect(rule int, f *gatewayv1.HTTPRequestRedirectFilter) (*ir.Redirect, *flomeshv1alpha1.ConditionError) {
	rd := &ir.Redirect{StatusCode: 302}
	if f.StatusCode != nil {
		switch *f.StatusCode {
		case 301, 302, 303, 307, 308:
			rd.StatusCode = uint32(*f.StatusCode)
		default:
			return nil, flomeshv1alpha1.Problem(string(gatewayv1.RouteReasonUnsupportedValue),
				"Rule %d: requestRedirect.statusCode %d is not one of 301, 302, 303, 307, 308.", rule, *f.StatusCode)
		}
	}
	if f.Scheme != nil {
		rd.Scheme = strings.ToLower(*f.Scheme)
	}
	if f.Hostname != nil {
		rd.Hostname = string(*f.Hostname)
	}
	if f.Port != nil {
		rd.Port = uint32(*f.Port)
	}
	if p := f.Path; p != nil {
		switch p.Type {
		case gatewayv1.PrefixMatchHTTPPathModifier:
			rd.Path = &ir.PathRewrite{ReplacePrefixMatch: ptr(cmp.Or(derefStr(p.ReplacePrefixMatch), "/"))}
		case gatewayv1.FullPathHTTPPathModifier:
			rd.Path = &ir.PathRewrite{ReplaceFullPath: ptr(cmp.Or(derefStr(p.ReplaceFullPath), "/"))}
		}
	}
	return rd, nil
}

// mirrorShare is the share of requests a RequestMirror copies, in millionths: percent, or
// fraction (denominator 100 when not given), or all.
func mirrorShare(f *gatewayv1.HTTPRequestMirrorFilter) uint32 {
	switch {
	case f.Percent != nil:
		return uint32(min(max(*f.Percent, 0), 100)) * 10_000
	case f.Fraction != nil:
		den := int64(100)
		if f.Fraction.Denominator != nil && *f.Fraction.Denominator > 0 {
			den = int64(*f.Fraction.Denominator)
		}
		return uint32(min(max(int64(f.Fraction.Numerator), 0)*1_000_000/den, 1_000_000))
	}
	return 1_000_000
}
