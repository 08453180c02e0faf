package simulate

import (
	"path"
	"strings"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// httpConnection runs the HTTP connection manager: the codec, path normalisation, the HTTP
// filters (RBAC), then routing. grpc-go (Flavor GRPC) reads the route configuration and the
// RBAC filter and ignores the codec settings.
func (p *Proxy) httpConnection(c *connection, r *Result, m *hcmv3.HttpConnectionManager) *Result {
	req := c.req
	if p.Flavor == Envoy {
		// The codec reads what the client sends. HTTP/1 and HTTP/2 (AUTO: by ALPN when TLS
		// negotiated one, otherwise by the HTTP/2 preface; conn_manager_utility.cc
		// determineNextProtocol) are decoded; anything else is a codec error.
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
		case "http/1.1":
			if proto != HTTP1 {
				return deny(r, 0, "HTTP codec error: ALPN agreed on http/1.1 and the client speaks %s", proto)
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
		default:
			return deny(r, 500, "HTTP filter %s is not simulated", f.Name)
		}
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
	r.RouteConfig = rc.Name
	host := req.Host
	if p.Flavor == Envoy && m.GetStripAnyHostPort() {
		host = hostOnly(host) // strip_any_host_port: the port is removed before matching domains
	}
	vh := vhostFor(rc, host)
	if vh == nil {
		return deny(r, 404, "no virtual host of %s matches host %q", rc.Name, req.Host)
	}
	r.VirtualHost = vh.Name
	for _, rt := range vh.Routes {
		if !routeMatches(rt.GetMatch(), req) {
			continue
		}
		r.Route = rt.Name
		switch a := rt.Action.(type) {
		case *routev3.Route_DirectResponse:
			r.DirectResponse = a.DirectResponse.GetStatus()
			return r
		case *routev3.Route_NonForwardingAction:
			return r // a proxyless server: the request reaches the application
		case *routev3.Route_Route:
			return p.routeAction(c, req, r, rt.GetMatch(), a.Route)
		default:
			return deny(r, 500, "route action %T is not simulated", a)
		}
	}
	return deny(r, 404, "no route of virtual host %s matches %s %s", vh.Name, req.Method, req.Path)
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
		trailing := strings.HasSuffix(p, "/") && p != "/"
		p = path.Clean("/" + p)
		if trailing {
			p += "/"
		}
	}
	return p + q
}

// routeAction resolves a route's clusters and applies its rewrites and retry policy.
func (p *Proxy) routeAction(c *connection, req Request, r *Result, m *routev3.RouteMatch, a *routev3.RouteAction) *Result {
	switch cs := a.ClusterSpecifier.(type) {
	case *routev3.RouteAction_Cluster:
		r.Clusters = []Cluster{p.resolveCluster(cs.Cluster, 1, c, r.DownstreamProtocol)}
	case *routev3.RouteAction_WeightedClusters:
		for _, w := range cs.WeightedClusters.GetClusters() {
			r.Clusters = append(r.Clusters, p.resolveCluster(w.GetName(), w.GetWeight().GetValue(), c, r.DownstreamProtocol))
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
