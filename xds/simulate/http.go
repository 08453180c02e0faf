package simulate

import (
	"maps"
	"path"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// httpConnection runs the HTTP connection manager: the codec, path normalisation, the HTTP
// filters (RBAC), then routing. grpc-go (Flavor GRPC) reads the route configuration and the
// RBAC filter and ignores the codec settings.
func (p *Proxy) httpConnection(c *connection, r *Result, m *hcmv3.HttpConnectionManager) *Result {
	req := c.req
	if p.Flavor == Envoy {
		// The codec reads what the client sends. HTTP/1 and HTTP/2 (AUTO: by ALPN when TLS
		// negotiated one, HTTP/2 for h2 and HTTP/1 for any other; otherwise by the HTTP/2
		// preface; conn_manager_utility.cc determineNextProtocol, autoCreateCodec) are decoded;
		// anything else is a codec error.
		switch {
		case req.TLS && !c.terminated:
			return deny(r, 0, "HTTP codec error: the client opens TLS and this chain does not terminate it, so the HTTP codec reads a TLS ClientHello and closes the connection")
		case req.ServerFirst:
			return deny(r, 0, "no request: the client waits for the server to speak first, and an HTTP server never does")
		case req.protocol() == TCP:
			return deny(r, 0, "HTTP codec error: the client's bytes are not HTTP, and the connection is closed")
		}
		proto := req.protocol()
		switch c.negotiated {
		case "h2":
			if proto != HTTP2 {
				return deny(r, 0, "HTTP codec error: ALPN agreed on h2 and the client speaks %s", proto)
			}
		case "":
		default:
			if proto != HTTP1 {
				return deny(r, 0, "HTTP codec error: ALPN agreed on %s, which gets the HTTP/1 codec, and the client speaks %s", c.negotiated, proto)
			}
		}
		switch m.GetCodecType() {
		case hcmv3.HttpConnectionManager_HTTP1:
			if proto != HTTP1 {
				return deny(r, 0, "HTTP codec error: the codec is HTTP/1 and the client speaks %s", proto)
			}
		case hcmv3.HttpConnectionManager_HTTP2:
			if proto != HTTP2 {
				return deny(r, 0, "HTTP codec error: the codec is HTTP/2 and the client speaks %s", proto)
			}
		}
		r.DownstreamProtocol = proto
	} else {
		r.DownstreamProtocol = HTTP2
	}
	if p.Flavor == Envoy {
		req.Path = normalizePath(req.Path, m)
		r.Path = req.Path
	}
	hreq := req
	hreq.Source = ""
	if c.terminated {
		hreq.Source = c.peer
	}
	var rc *routev3.RouteConfiguration
	switch {
	case m.GetRouteConfig() != nil:
		rc = m.GetRouteConfig()
	case m.GetRds() != nil:
		rc = p.routes[m.GetRds().GetRouteConfigName()]
		if rc == nil {
			// The listener waits for its route configuration (initial_fetch_timeout 15 s), then
			// serves without routes: 404.
			return deny(r, 404, "route configuration %s is not defined", m.GetRds().GetRouteConfigName())
		}
	default:
		return deny(r, 404, "HTTP connection manager without routes")
	}
	// The route is resolved once, before the filters run (Envoy: the filters and the router
	// read the same cached route, conn_manager_impl.cc refreshCachedRoute; grpc-go: the config
	// selector picks the route before the interceptors run, resolver/serviceconfig.go).
	r.RouteConfig = rc.Name
	host := req.Host
	if p.Flavor == Envoy && m.GetStripAnyHostPort() {
		host = hostOnly(host) // strip_any_host_port: the port is removed before matching domains
	}
	vh := vhostFor(rc, host)
	var rt *routev3.Route
	if vh != nil {
		r.VirtualHost = vh.Name
		for _, x := range vh.Routes {
			if routeMatches(x.GetMatch(), req, p.Flavor) {
				rt = x
				r.Route = x.Name
				break
			}
		}
	}
	if up := upgradeType(req); up != "" && p.Flavor == Envoy && !upgradeAllowed(m, rt, up) {
		// conn_manager_impl.cc: an upgrade the connection manager (or the route) does not
		// enable gets a local 403 before any filter runs (downstream_rq_ws_on_non_ws_route).
		return deny(r, 403, "upgrade %q is not enabled by the connection manager's upgrade_configs", up)
	}
	for _, f := range m.HttpFilters {
		switch f.Name {
		case "envoy.filters.http.router":
		case "envoy.filters.http.rbac":
			cfg := &rbacfilterv3.RBAC{}
			if err := f.GetTypedConfig().UnmarshalTo(cfg); err != nil {
				return deny(r, 500, "bad RBAC filter: %v", err)
			}
			if ok, why := evalRBAC(cfg.GetRules(), hreq); !ok {
				return deny(r, 403, "RBAC: %s", why)
			}
		case "envoy.filters.http.fault":
			if done := p.fault(r, f, rc, vh, rt); done != nil {
				return done
			}
		default:
			return deny(r, 500, "HTTP filter %s is not simulated", f.Name)
		}
	}
	if vh == nil {
		return deny(r, 404, "no virtual host of %s matches host %q", rc.Name, req.Host)
	}
	if rt == nil {
		return deny(r, 404, "no route of virtual host %s matches %s %s", vh.Name, req.Method, req.Path)
	}
	if p.Flavor == Envoy {
		// grpc-go applies neither (xdsresource/unmarshal_rds.go reads no headers to add).
		r.ResponseHeaderOps = headerOps(rt.GetResponseHeadersToAdd(), rt.GetResponseHeadersToRemove())
	}
	switch a := rt.Action.(type) {
	case *routev3.Route_DirectResponse:
		if p.Flavor == GRPC {
			return deny(r, 0, "grpc-go answers UNAVAILABLE: the matched route's direct_response is not a route action it supports (resolver/serviceconfig.go errUnsupportedClientRouteAction)")
		}
		r.DirectResponse = a.DirectResponse.GetStatus()
		return r
	case *routev3.Route_Redirect:
		if p.Flavor == GRPC {
			return deny(r, 0, "grpc-go answers UNAVAILABLE: a redirect is not a route action it supports (resolver/serviceconfig.go errUnsupportedClientRouteAction)")
		}
		r.DirectResponse, r.Location = redirect(c, req, rt.GetMatch(), a.Redirect)
		return r
	case *routev3.Route_NonForwardingAction:
		if c.client {
			return deny(r, 0, "grpc-go answers UNAVAILABLE: a client's route must forward (resolver/serviceconfig.go errUnsupportedClientRouteAction)")
		}
		return r // a proxyless server: the request reaches the application
	case *routev3.Route_Route:
		if p.Flavor == GRPC && !c.client {
			// server/routing.go: "NonForwardingAction is expected for all Routes used on
			// server-side"; any other action fails the RPC.
			return deny(r, 0, "grpc-go answers UNAVAILABLE: a server's route must be non-forwarding (xds/server/routing.go)")
		}
		if p.Flavor == Envoy {
			r.RequestHeaderOps = headerOps(rt.GetRequestHeadersToAdd(), rt.GetRequestHeadersToRemove())
			r.Headers = maps.Clone(req.Headers)
			if r.Headers == nil {
				r.Headers = map[string]string{}
			}
			r.RequestHeaderOps.Apply(r.Headers)
		}
		return p.routeAction(c, req, r, rt.GetMatch(), a.Route)
	default:
		return deny(r, 500, "route action %T is not simulated", a)
	}
}

// fault applies the fault injection filter (fault_filter.cc; grpc-go httpfilter/fault): the
// most specific configuration (the route's typed_per_filter_config under the filter's name,
// then the virtual host's, then the route configuration's, then the filter's own) replaces the
// others. An abort of 100% ends the request: Envoy answers the HTTP status, grpc-go fails the
// RPC with the gRPC status (an HTTP status mapped as fault.go grpcFromHTTP does). Other
// percentages, and delays, are not simulated. A nil result lets the request through.
func (p *Proxy) fault(r *Result, f *hcmv3.HttpFilter, rc *routev3.RouteConfiguration, vh *routev3.VirtualHost, rt *routev3.Route) *Result {
	cfg := &faultv3.HTTPFault{}
	if err := f.GetTypedConfig().UnmarshalTo(cfg); err != nil {
		return deny(r, 500, "bad fault filter: %v", err)
	}
	for _, per := range []map[string]*anypb.Any{rc.GetTypedPerFilterConfig(), vh.GetTypedPerFilterConfig(), rt.GetTypedPerFilterConfig()} {
		if o := per[f.Name]; o != nil {
			cfg = &faultv3.HTTPFault{}
			if err := o.UnmarshalTo(cfg); err != nil {
				return deny(r, 500, "bad fault override: %v", err)
			}
		}
	}
	if cfg.GetDelay() != nil {
		return deny(r, 500, "fault delays are not simulated")
	}
	a := cfg.GetAbort()
	if a == nil {
		return nil
	}
	pct := a.GetPercentage()
	switch {
	case pct.GetNumerator() == 0:
		return nil
	case pct.GetDenominator() != typev3.FractionalPercent_HUNDRED || pct.GetNumerator() < 100:
		return deny(r, 500, "fault aborts of less than 100%% are not simulated")
	}
	switch e := a.GetErrorType().(type) {
	case *faultv3.FaultAbort_HttpStatus:
		return deny(r, e.HttpStatus, "fault filter abort: HTTP %d", e.HttpStatus)
	case *faultv3.FaultAbort_GrpcStatus:
		status := uint32(0)
		if e.GrpcStatus == 7 { // PERMISSION_DENIED, what an RBAC denial is (grpc-go rbac filter)
			status = 403
		}
		return deny(r, status, "fault filter abort: gRPC status %d", e.GrpcStatus)
	default:
		return deny(r, 500, "fault abort %T is not simulated", e)
	}
}

// normalizePath applies the HTTP connection manager's path normalisation before filters and
// routing: RFC 3986 dot segments removed (normalize_path) and repeated slashes merged
// (merge_slashes), as http_connection_manager.proto describes them. The query is kept.
func normalizePath(p string, m *hcmv3.HttpConnectionManager) string {
	q := ""
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p, q = p[:i], p[i:]
	}
	if m.GetPathWithEscapedSlashesAction() == hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT ||
		m.GetPathWithEscapedSlashesAction() == hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD {
		p = strings.NewReplacer("%2F", "/", "%2f", "/", "%5C", "\\", "%5c", "\\").Replace(p)
	}
	if m.GetMergeSlashes() {
		for strings.Contains(p, "//") {
			p = strings.ReplaceAll(p, "//", "/")
		}
	}
	if m.GetNormalizePath().GetValue() && p != "" {
		// Envoy canonicalizes with Chromium's path canonicalizer (source/common/chromium_url
		// url_canon_path.cc): an escaped unreserved character is unescaped (kPathCharLookup
		// UNESCAPE), so an escaped dot ("%2e") is a dot for the dot segments (IsDot).
		p = unescapeUnreserved(p)
		trailing := strings.HasSuffix(p, "/") && p != "/"
		p = path.Clean("/" + p)
		if trailing {
			p += "/"
		}
	}
	return p + q
}

// unescapeUnreserved decodes the percent-escapes of unreserved characters (RFC 3986: ALPHA,
// DIGIT, "-", ".", "_", "~") and leaves the others.
func unescapeUnreserved(p string) string {
	if !strings.Contains(p, "%") {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) {
			if v, err := strconv.ParseUint(p[i+1:i+3], 16, 8); err == nil {
				c := byte(v)
				if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
					b.WriteByte(c)
					i += 2
					continue
				}
			}
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// routeAction resolves a route's clusters and applies its rewrites and retry policy.
func (p *Proxy) routeAction(c *connection, req Request, r *Result, m *routev3.RouteMatch, a *routev3.RouteAction) *Result {
	switch cs := a.ClusterSpecifier.(type) {
	case *routev3.RouteAction_Cluster:
		r.Clusters = []Cluster{p.resolveCluster(cs.Cluster, 1, c, r.DownstreamProtocol)}
	case *routev3.RouteAction_WeightedClusters:
		for _, w := range cs.WeightedClusters.GetClusters() {
			cl := p.resolveCluster(w.GetName(), w.GetWeight().GetValue(), c, r.DownstreamProtocol)
			if p.Flavor == Envoy { // grpc-go reads no headers to add (xdsresource/unmarshal_rds.go)
				cl.RequestHeaderOps = headerOps(w.GetRequestHeadersToAdd(), w.GetRequestHeadersToRemove())
			}
			r.Clusters = append(r.Clusters, cl)
		}
	default:
		return deny(r, 500, "cluster specifier %T is not simulated", cs)
	}
	if rp := a.GetRetryPolicy(); rp != nil {
		r.Retry = rp.GetRetryOn()
		r.Retries = 1 // route_components.proto num_retries: "Defaults to 1"
		if n := rp.GetNumRetries(); n != nil {
			r.Retries = n.GetValue()
		}
		r.RetryOtherPriority = rp.GetRetryPriority().GetName() == "envoy.retry_priorities.previous_priorities"
		for _, pr := range rp.GetRetryHostPredicate() {
			r.RetryOtherHost = r.RetryOtherHost || pr.GetName() == "envoy.retry_host_predicates.previous_hosts"
		}
	}
	if p.Flavor == Envoy {
		r.Timeout = routeTimeout(a)
	}
	if h := a.GetHostRewriteLiteral(); h != "" && p.Flavor == Envoy {
		r.Host = h
	}
	r.Path = rewrite(req.Path, m, a)
	if primaryMissing := len(r.Clusters) == 1 && r.Clusters[0].Missing; !primaryMissing && p.Flavor == Envoy {
		// Fire and forget, never when the primary cluster does not exist; the copy's Host gets
		// "-shadow" before its port unless disabled (route_components.proto
		// RequestMirrorPolicy; router/shadow_writer_impl.cc shadowAppendedHost).
		for _, mp := range a.GetRequestMirrorPolicies() {
			mirror := Mirror{Cluster: p.resolveCluster(mp.GetCluster(), 1, c, r.DownstreamProtocol), PerMillion: 1_000_000, Host: r.Host}
			if f := mp.GetRuntimeFraction().GetDefaultValue(); f != nil {
				mirror.PerMillion = perMillion(f)
			}
			if !mp.GetDisableShadowHostSuffixAppend() {
				mirror.Host = shadowHost(r.Host)
			}
			r.Mirrors = append(r.Mirrors, mirror)
		}
	}
	if len(r.Clusters) == 1 && r.Clusters[0].Missing {
		// route_components.proto cluster_not_found_response_code: 503 by default.
		status := uint32(503)
		switch a.GetClusterNotFoundResponseCode() {
		case routev3.RouteAction_NOT_FOUND:
			status = 404
		case routev3.RouteAction_INTERNAL_SERVER_ERROR:
			status = 500
		}
		return deny(r, status, "cluster %s is not defined", r.Clusters[0].Name)
	}
	return r
}

// Timeout is the route's timeout, 15 s when it sets none (route_components.proto
// RouteAction.timeout); 0 means none.
func routeTimeout(a *routev3.RouteAction) time.Duration {
	if t := a.GetTimeout(); t != nil {
		return t.AsDuration()
	}
	return 15 * time.Second
}

func rewrite(path string, m *routev3.RouteMatch, a *routev3.RouteAction) string {
	if rr := a.GetRegexRewrite(); rr != nil {
		re, err := compile(rr.GetPattern().GetRegex(), false)
		if err == nil {
			q := ""
			if i := strings.IndexAny(path, "?"); i >= 0 {
				path, q = path[:i], path[i:]
			}
			return re.ReplaceAllString(path, strings.ReplaceAll(rr.GetSubstitution(), "$", "$$")) + q
		}
		return path
	}
	if pr := a.GetPrefixRewrite(); pr != "" {
		q := ""
		if i := strings.IndexAny(path, "?"); i >= 0 {
			path, q = path[:i], path[i:]
		}
		prefix := m.GetPrefix()
		if prefix == "" {
			prefix = m.GetPathSeparatedPrefix()
		}
		if prefix == "" {
			prefix = m.GetPath() // with a path match the whole path is replaced
		}
		return pr + strings.TrimPrefix(path, prefix) + q
	}
	return path
}

func durationOr(d time.Duration, def string) string {
	if d == 0 {
		return def
	}
	return d.String()
}

// headerOps reads a route's headers to add and remove. append_action says how a header is
// added (APPEND_IF_EXISTS_OR_ADD by default), unless the deprecated append is set
// (base.proto HeaderValueOption).
func headerOps(add []*corev3.HeaderValueOption, remove []string) HeaderOps {
	o := HeaderOps{Remove: remove}
	for _, h := range add {
		v, _ := headerValue(h.GetHeader().GetValue()) // checked by Load
		a := HeaderAdd{Name: h.GetHeader().GetKey(), Value: v}
		switch h.GetAppendAction() {
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			a.Append = true
		case corev3.HeaderValueOption_ADD_IF_ABSENT:
			a.IfAbsent = true
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			a.IfPresent = true
		}
		if ap := h.GetAppend(); ap != nil { //nolint:staticcheck // deprecated; still honoured by Envoy
			a.Append, a.IfAbsent, a.IfPresent = ap.GetValue(), false, false
		}
		o.Add = append(o.Add, a)
	}
	return o
}

// redirect is a redirect action's status and Location (http/utility.cc newUri): the scheme the
// action sets, or the request's (https once this hop terminated TLS); the host the action sets,
// or the request's, without its port when the action sets a port, or when the scheme changes
// and the port was the old scheme's default (processRequestHost, with x-forwarded-proto the
// connection's scheme, as the gateway's use_remote_address makes it); ":port" when the action
// sets one; the path the action sets (the request's query kept unless the new path has one), or
// the request's path with the action's prefix or regex rewrite (router config_impl.cc).
func redirect(c *connection, req Request, m *routev3.RouteMatch, a *routev3.RedirectAction) (uint32, string) {
	status := uint32(301)
	switch a.GetResponseCode() {
	case routev3.RedirectAction_FOUND:
		status = 302
	case routev3.RedirectAction_SEE_OTHER:
		status = 303
	case routev3.RedirectAction_TEMPORARY_REDIRECT:
		status = 307
	case routev3.RedirectAction_PERMANENT_REDIRECT:
		status = 308
	}
	requestScheme := "http"
	if c.terminated {
		requestScheme = "https"
	}
	scheme := requestScheme
	switch {
	case a.GetSchemeRedirect() != "":
		scheme = a.GetSchemeRedirect()
	case a.GetHttpsRedirect():
		scheme = "https"
	}
	port := ""
	if a.GetPortRedirect() != 0 {
		port = ":" + strconv.FormatUint(uint64(a.GetPortRedirect()), 10)
	}
	host := a.GetHostRedirect()
	if host == "" {
		host = req.Host
		if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
			requestPort := host[i:]
			strip := port != ""
			if scheme != requestScheme {
				strip = strip || (requestScheme == "https" && requestPort == ":443") || (requestScheme == "http" && requestPort == ":80")
			}
			if strip {
				host = host[:i]
			}
		}
	}
	path := req.Path
	switch {
	case a.GetPathRedirect() != "":
		path = a.GetPathRedirect()
		if i := strings.IndexByte(req.Path, '?'); i >= 0 && !strings.Contains(path, "?") {
			path += req.Path[i:]
		}
	case a.GetPrefixRewrite() != "":
		path = rewrite(req.Path, m, &routev3.RouteAction{PrefixRewrite: a.GetPrefixRewrite()})
	case a.GetRegexRewrite() != nil:
		path = rewrite(req.Path, m, &routev3.RouteAction{RegexRewrite: a.GetRegexRewrite()})
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	if a.GetStripQuery() {
		if i := strings.IndexByte(path, '?'); i >= 0 && a.GetPathRedirect() == "" {
			path = path[:i]
		}
	}
	return status, scheme + "://" + host + port + path
}

// perMillion is a fractional percent in millionths.
func perMillion(f *typev3.FractionalPercent) uint32 {
	n := uint64(f.GetNumerator())
	switch f.GetDenominator() {
	case typev3.FractionalPercent_HUNDRED:
		n *= 10_000
	case typev3.FractionalPercent_TEN_THOUSAND:
		n *= 100
	}
	return uint32(min(n, 1_000_000))
}

// shadowHost is a mirrored request's Host: "-shadow" before the port.
func shadowHost(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		return host[:i] + "-shadow" + host[i:]
	}
	return host + "-shadow"
}

// upgradeType is the protocol an HTTP/1.1 request asks to upgrade to: its Upgrade header, when its
// Connection header has the "upgrade" token (http/utility.cc isUpgrade).
func upgradeType(req Request) string {
	var up, conn string
	for k, v := range req.Headers {
		switch strings.ToLower(k) {
		case "upgrade":
			up = v
		case "connection":
			conn = v
		}
	}
	if up == "" {
		return ""
	}
	for t := range strings.SplitSeq(conn, ",") {
		if strings.EqualFold(strings.TrimSpace(t), "upgrade") {
			return up
		}
	}
	return ""
}

// upgradeAllowed says whether an upgrade type is enabled: by the route's upgrade_configs when
// they name it, else by the connection manager's (http_connection_manager.proto UpgradeConfig:
// enabled defaults to true; route_components.proto RouteAction.UpgradeConfig overrides it).
func upgradeAllowed(m *hcmv3.HttpConnectionManager, rt *routev3.Route, up string) bool {
	for _, u := range rt.GetRoute().GetUpgradeConfigs() {
		if strings.EqualFold(u.GetUpgradeType(), up) {
			return u.GetEnabled() == nil || u.GetEnabled().GetValue()
		}
	}
	for _, u := range m.GetUpgradeConfigs() {
		if strings.EqualFold(u.GetUpgradeType(), up) {
			return u.GetEnabled() == nil || u.GetEnabled().GetValue()
		}
	}
	return false
}
