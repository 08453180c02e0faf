package simulate

import (
	"testing"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

func TestVirtualHostPrecedence(t *testing.T) {
	rc := &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{
		{Name: "any", Domains: []string{"*"}},
		{Name: "suffix", Domains: []string{"*.example.com"}},
		{Name: "longer-suffix", Domains: []string{"*.api.example.com"}},
		{Name: "prefix", Domains: []string{"shop.*"}},
		{Name: "exact", Domains: []string{"shop.example.com"}},
	}}
	for host, want := range map[string]string{
		"shop.example.com":   "exact",
		"SHOP.example.com":   "exact",
		"v1.api.example.com": "longer-suffix",
		"www.example.com":    "suffix",
		"shop.local":         "prefix",
		"other":              "any",
		"example.com":        "any",
	} {
		if got := vhostFor(rc, host); got == nil || got.Name != want {
			t.Errorf("%s: got %v, want %s", host, got.GetName(), want)
		}
	}
}

func TestRouteMatch(t *testing.T) {
	sep := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/a/b"}}
	re := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/r[0-9]+"}}}
	get := &routev3.RouteMatch{
		PathSpecifier: &routev3.RouteMatch_Path{Path: "/x"},
		Headers: []*routev3.HeaderMatcher{{Name: ":method", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
			StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "GET"}},
		}}},
	}
	post := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{{Name: ":method", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
		StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "POST"}},
	}}}}
	header := func(name, value string) *routev3.RouteMatch {
		return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
			StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: value}},
		}}}}
	}
	cases := []struct {
		m      *routev3.RouteMatch
		req    Request
		flavor Flavor
		want   bool
	}{
		{sep, Request{Path: "/a/b"}, Envoy, true},
		{sep, Request{Path: "/a/b/c?q=1"}, Envoy, true},
		{sep, Request{Path: "/a/bc"}, Envoy, false},
		{re, Request{Path: "/r12"}, Envoy, true},
		{re, Request{Path: "/r12/x"}, Envoy, false}, // safe_regex matches the whole path
		{get, Request{Path: "/x", Method: "GET"}, Envoy, true},
		{get, Request{Path: "/x", Method: "POST"}, Envoy, false},
		// grpc-go matches headers against the RPC's metadata: no pseudo-headers, no -bin
		// headers, content-type application/grpc.
		{post, Request{Path: "/pkg.Svc/Call", Method: "POST"}, GRPC, false},
		{post, Request{Path: "/pkg.Svc/Call", Method: "POST"}, Envoy, true},
		{header("content-type", "application/grpc"), Request{Path: "/pkg.Svc/Call"}, GRPC, true},
		{header("x-team", "a"), Request{Path: "/pkg.Svc/Call", Headers: map[string]string{"X-Team": "a"}}, GRPC, true},
		{header("x-id-bin", "a"), Request{Path: "/pkg.Svc/Call", Headers: map[string]string{"x-id-bin": "a"}}, GRPC, false},
	}
	for i, c := range cases {
		if got := routeMatches(c.m, c.req, c.flavor); got != c.want {
			t.Errorf("case %d (%s %s): got %v", i, c.req.Method, c.req.Path, got)
		}
	}
}

// Query parameters match as Envoy's router matches them: names exactly, the first value of a
// repeated parameter only, values as sent (not percent-decoded), a bare name as an empty value;
// grpc-go ignores a route that matches query parameters.
func TestQueryParameterMatch(t *testing.T) {
	exact := func(name, value string) *routev3.QueryParameterMatcher {
		return &routev3.QueryParameterMatcher{Name: name, QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{
			StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: value}},
		}}
	}
	match := func(qs ...*routev3.QueryParameterMatcher) *routev3.RouteMatch {
		return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, QueryParameters: qs}
	}
	whale := match(exact("animal", "whale"))
	both := match(exact("animal", "dolphin"), exact("color", "blue"))
	regex := match(&routev3.QueryParameterMatcher{Name: "id", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{
		StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "[0-9]+"}}},
	}})
	absent := match(&routev3.QueryParameterMatcher{Name: "debug", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: false}})
	empty := match(exact("flag", ""))
	cases := []struct {
		m      *routev3.RouteMatch
		path   string
		flavor Flavor
		want   bool
	}{
		{whale, "/?animal=whale", Envoy, true},
		{whale, "/x?animal=whale&other=1", Envoy, true},
		{whale, "/?ANIMAL=whale", Envoy, false},
		{whale, "/?animal=whaledolphin", Envoy, false},
		{whale, "/?animal=dolphin&animal=whale", Envoy, false}, // the first value only
		{whale, "/?animal=whale&animal=dolphin", Envoy, true},
		{whale, "/", Envoy, false},
		{match(exact("q", "a%20b")), "/?q=a%20b", Envoy, true}, // not decoded
		{both, "/?color=blue&animal=dolphin", Envoy, true},
		{both, "/?animal=dolphin", Envoy, false},
		{regex, "/?id=42", Envoy, true},
		{regex, "/?id=42a", Envoy, false},
		{absent, "/?a=1", Envoy, true},
		{absent, "/?debug", Envoy, false},
		{empty, "/?flag", Envoy, true},
		{whale, "/?animal=whale", GRPC, false},
	}
	for i, c := range cases {
		if got := routeMatches(c.m, Request{Path: c.path}, c.flavor); got != c.want {
			t.Errorf("case %d (%s): got %v", i, c.path, got)
		}
	}
}

func TestRBACEvaluation(t *testing.T) {
	principal := func(id string) *rbacv3.Principal {
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{
			PrincipalName: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: id}},
		}}}
	}
	notPost := &rbacv3.Permission{Rule: &rbacv3.Permission_NotRule{NotRule: &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: &routev3.HeaderMatcher{
		Name: ":method", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "POST"}}},
	}}}}}
	allow := &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{
		"p": {Principals: []*rbacv3.Principal{principal("spiffe://td/ns/a/sa/b")}, Permissions: []*rbacv3.Permission{notPost}},
	}}
	if ok, _ := evalRBAC(allow, Request{Source: "spiffe://td/ns/a/sa/b", Method: "GET"}); !ok {
		t.Error("ALLOW: matching principal and permission must pass")
	}
	if ok, _ := evalRBAC(allow, Request{Source: "spiffe://td/ns/a/sa/b", Method: "POST"}); ok {
		t.Error("ALLOW: a permission that does not match must deny")
	}
	if ok, _ := evalRBAC(allow, Request{Source: "spiffe://td/ns/a/sa/c", Method: "GET"}); ok {
		t.Error("ALLOW: another principal must deny")
	}
	deny := &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: allow.Policies}
	if ok, _ := evalRBAC(deny, Request{Source: "spiffe://td/ns/a/sa/b", Method: "GET"}); ok {
		t.Error("DENY: a matching policy must deny")
	}
	if ok, _ := evalRBAC(deny, Request{Source: "spiffe://td/ns/a/sa/c", Method: "GET"}); !ok {
		t.Error("DENY: no matching policy must pass")
	}
}
