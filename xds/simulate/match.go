package simulate

import (
	"fmt"
	"regexp"
	"strings"
	"sync"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

var regexCache sync.Map // pattern -> *regexp.Regexp

// compile compiles an RE2 pattern; full anchors it, as Envoy's safe_regex matches the whole
// string.
func compile(pattern string, full bool) (*regexp.Regexp, error) {
	key := fmt.Sprint(full, pattern)
	if re, ok := regexCache.Load(key); ok {
		return re.(*regexp.Regexp), nil
	}
	p := pattern
	if full {
		p = "^(?:" + pattern + ")$"
	}
	re, err := regexp.Compile(p)
	if err != nil {
		return nil, err
	}
	regexCache.Store(key, re)
	return re, nil
}

// vhostFor picks the virtual host Envoy would: an exact domain, then the longest suffix
// wildcard (*.example.com), then the longest prefix wildcard (example.*), then "*".
func vhostFor(rc *routev3.RouteConfiguration, host string) *routev3.VirtualHost {
	host = strings.ToLower(host)
	var best *routev3.VirtualHost
	bestRank, bestLen := 4, -1
	for _, vh := range rc.VirtualHosts {
		for _, d := range vh.Domains {
			d = strings.ToLower(d)
			rank, n := 4, len(d)
			switch {
			case d == host:
				rank = 0
			case strings.HasPrefix(d, "*") && d != "*" && strings.HasSuffix(host, d[1:]) && len(host) > len(d)-1:
				rank = 1
			case strings.HasSuffix(d, "*") && d != "*" && strings.HasPrefix(host, d[:len(d)-1]):
				rank = 2
			case d == "*":
				rank = 3
			}
			if rank < bestRank || (rank == bestRank && n > bestLen) {
				best, bestRank, bestLen = vh, rank, n
			}
		}
	}
	if bestRank == 4 {
		return nil
	}
	return best
}

func routeMatches(m *routev3.RouteMatch, req Request, f Flavor) bool {
	path := req.Path
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	switch p := m.PathSpecifier.(type) {
	case *routev3.RouteMatch_Prefix:
		if !strings.HasPrefix(path, p.Prefix) {
			return false
		}
	case *routev3.RouteMatch_Path:
		if path != p.Path {
			return false
		}
	case *routev3.RouteMatch_PathSeparatedPrefix:
		if path != p.PathSeparatedPrefix && !strings.HasPrefix(path, p.PathSeparatedPrefix+"/") {
			return false
		}
	case *routev3.RouteMatch_SafeRegex:
		re, err := compile(p.SafeRegex.GetRegex(), true)
		if err != nil || !re.MatchString(path) {
			return false
		}
	default:
		return false
	}
	for _, h := range m.Headers {
		if f == GRPC && !grpcHeaderMatches(h, req) {
			return false
		}
		if f == Envoy && !headerMatches(h, req) {
			return false
		}
	}
	if len(m.QueryParameters) > 0 {
		// grpc-go ignores a route that matches query parameters (xds/internal/xdsclient/
		// xdsresource/unmarshal_rds.go: "Ignoring route ... with query parameter matchers").
		if f == GRPC {
			return false
		}
		params := queryParams(req.Path)
		for _, q := range m.QueryParameters {
			if !queryParamMatches(q, params) {
				return false
			}
		}
	}
	return true
}

// queryParams parses a path's query string as Envoy's route match does
// (source/common/router/config_impl.cc: Http::Utility::QueryParamsMulti::parseQueryString, which
// does not percent-decode): parameters separated by '&', each name=value or a bare name with an
// empty value; every value of a name, in order.
func queryParams(path string) map[string][]string {
	out := map[string][]string{}
	i := strings.IndexByte(path, '?')
	if i < 0 {
		return out
	}
	query := path[i+1:]
	if j := strings.IndexByte(query, '#'); j >= 0 {
		query = query[:j]
	}
	for p := range strings.SplitSeq(query, "&") {
		if p == "" {
			continue
		}
		name, value, _ := strings.Cut(p, "=")
		out[name] = append(out[name], value)
	}
	return out
}

// queryParamMatches applies one query parameter matcher as Envoy does
// (source/common/router/config_utility.cc: QueryParameterMatcher::matches): only the first value
// of the name counts; a string_match must match it; a present_match says whether the parameter
// must be present or absent (the behaviour of envoy.reloadable_features.
// enable_new_query_param_present_match_behavior); no specifier needs the parameter.
func queryParamMatches(q *routev3.QueryParameterMatcher, params map[string][]string) bool {
	vs := params[q.GetName()]
	switch s := q.GetQueryParameterMatchSpecifier().(type) {
	case *routev3.QueryParameterMatcher_PresentMatch:
		return (len(vs) > 0) == s.PresentMatch
	case *routev3.QueryParameterMatcher_StringMatch:
		return len(vs) > 0 && stringMatches(s.StringMatch, vs[0])
	}
	return len(vs) > 0
}

// grpcHeaderMatches is a route's header matcher as grpc-go applies it: to the RPC's metadata,
// which holds no pseudo-header (:method, :authority, :path), drops binary (-bin) headers, and
// reads content-type as application/grpc (resolver/serviceconfig.go SelectConfig; gRFC A28).
func grpcHeaderMatches(h *routev3.HeaderMatcher, req Request) bool {
	name := strings.ToLower(h.GetName())
	v, present := "", false
	switch {
	case strings.HasPrefix(name, ":"), strings.HasSuffix(name, "-bin"):
	case name == "content-type":
		v, present = "application/grpc", true
	default:
		for k, x := range req.Headers {
			if strings.EqualFold(k, name) {
				v, present = x, true
			}
		}
	}
	return valueMatches(h, v, present)
}

func header(req Request, name string) (string, bool) {
	switch strings.ToLower(name) {
	case ":method":
		return cmpOr(req.Method, "GET"), true
	case ":path":
		return req.Path, true
	case ":authority", "host":
		return req.Host, true
	}
	for k, v := range req.Headers {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

func headerMatches(h *routev3.HeaderMatcher, req Request) bool {
	v, present := header(req, h.GetName())
	return valueMatches(h, v, present)
}

// valueMatches applies a header matcher to a header's value (present false: no such header).
func valueMatches(h *routev3.HeaderMatcher, v string, present bool) bool {
	var ok bool
	switch s := h.HeaderMatchSpecifier.(type) {
	case *routev3.HeaderMatcher_StringMatch:
		ok = present && stringMatches(s.StringMatch, v)
	case *routev3.HeaderMatcher_PresentMatch:
		ok = present == s.PresentMatch
	case nil:
		ok = present
	default:
		ok = false
	}
	if h.GetInvertMatch() {
		return !ok
	}
	return ok
}

func stringMatches(m *matcherv3.StringMatcher, v string) bool {
	if m.GetIgnoreCase() {
		v = strings.ToLower(v)
	}
	low := func(s string) string {
		if m.GetIgnoreCase() {
			return strings.ToLower(s)
		}
		return s
	}
	switch p := m.MatchPattern.(type) {
	case *matcherv3.StringMatcher_Exact:
		return v == low(p.Exact)
	case *matcherv3.StringMatcher_Prefix:
		return strings.HasPrefix(v, low(p.Prefix))
	case *matcherv3.StringMatcher_Suffix:
		return strings.HasSuffix(v, low(p.Suffix))
	case *matcherv3.StringMatcher_Contains:
		return strings.Contains(v, low(p.Contains))
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := compile(p.SafeRegex.GetRegex(), true)
		return err == nil && re.MatchString(v)
	}
	return false
}

// evalRBAC applies an RBAC configuration: with ALLOW, a request passes when a policy's principal
// and permission both match; with DENY, when none does.
func evalRBAC(cfg *rbacv3.RBAC, req Request) (bool, string) {
	if cfg == nil {
		return true, ""
	}
	var matched string
	for name, p := range cfg.GetPolicies() {
		if anyPrincipal(p.GetPrincipals(), req) && anyPermission(p.GetPermissions(), req) {
			matched = name
			break
		}
	}
	switch cfg.GetAction() {
	case rbacv3.RBAC_ALLOW:
		if matched == "" {
			return false, fmt.Sprintf("no policy allows %s %s from %q", req.Method, req.Path, req.Source)
		}
		return true, matched
	case rbacv3.RBAC_DENY:
		if matched != "" {
			return false, "denied by policy " + matched
		}
		return true, ""
	}
	return false, "RBAC action " + cfg.GetAction().String() + " is not simulated"
}

func anyPrincipal(ps []*rbacv3.Principal, req Request) bool {
	for _, p := range ps {
		if principalMatches(p, req) {
			return true
		}
	}
	return false
}

func principalMatches(p *rbacv3.Principal, req Request) bool {
	switch id := p.Identifier.(type) {
	case *rbacv3.Principal_Any:
		return id.Any
	case *rbacv3.Principal_Authenticated_:
		if req.Source == "" {
			return false // no peer certificate
		}
		if id.Authenticated.GetPrincipalName() == nil {
			return true
		}
		return stringMatches(id.Authenticated.GetPrincipalName(), req.Source)
	case *rbacv3.Principal_OrIds:
		return anyPrincipal(id.OrIds.GetIds(), req)
	case *rbacv3.Principal_AndIds:
		for _, x := range id.AndIds.GetIds() {
			if !principalMatches(x, req) {
				return false
			}
		}
		return true
	case *rbacv3.Principal_NotId:
		return !principalMatches(id.NotId, req)
	}
	return false
}

func anyPermission(ps []*rbacv3.Permission, req Request) bool {
	for _, p := range ps {
		if permissionMatches(p, req) {
			return true
		}
	}
	return false
}

func permissionMatches(p *rbacv3.Permission, req Request) bool {
	switch r := p.Rule.(type) {
	case *rbacv3.Permission_Any:
		return r.Any
	case *rbacv3.Permission_AndRules:
		for _, x := range r.AndRules.GetRules() {
			if !permissionMatches(x, req) {
				return false
			}
		}
		return true
	case *rbacv3.Permission_OrRules:
		return anyPermission(r.OrRules.GetRules(), req)
	case *rbacv3.Permission_NotRule:
		return !permissionMatches(r.NotRule, req)
	case *rbacv3.Permission_Header:
		return headerMatches(r.Header, req)
	case *rbacv3.Permission_UrlPath:
		path := req.Path
		if i := strings.IndexAny(path, "?#"); i >= 0 {
			path = path[:i]
		}
		return stringMatches(r.UrlPath.GetPath(), path)
	case *rbacv3.Permission_DestinationPort:
		return r.DestinationPort == req.Port
	}
	return false
}
