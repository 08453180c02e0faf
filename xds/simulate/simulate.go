package simulate

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"

	"github.com/crossgate-io/crossgate/xds/translate"
)

// Request is one request as a proxy sees it.
type Request struct {
	// Listener names the listener explicitly: an API listener for a proxyless client (the
	// target host:port), or a proxyless server's listener. Empty: chosen by Port.
	Listener string
	// Inbound selects the sidecar's inbound listener (the request arrives at Port) instead of
	// an outbound or gateway listener for Port.
	Inbound bool
	// Port the request is sent to (outbound, gateway) or arrives at (inbound).
	Port uint32
	// DestinationIP, when set, selects among filter chains matched by address (TCP services).
	DestinationIP string
	// TLS is true when the connection is TLS (mTLS from a mesh peer).
	TLS bool
	// Host is the Host header or :authority, with or without port.
	Host    string
	Path    string
	Method  string
	Headers map[string]string
	// Source is the caller's identity as its certificate names it (a SPIFFE URI); empty for a
	// caller without a certificate.
	Source string
}

// Result is what the proxy does with the request.
type Result struct {
	Listener    string
	FilterChain string
	RouteConfig string
	VirtualHost string
	Route       string
	// Denied is set when the request does not reach any upstream, with the reason.
	Denied     bool
	DenyReason string
	// DirectResponse is the status of a direct response (for example 500 for unresolved
	// Gateway API backends).
	DirectResponse uint32
	// Clusters the request may go to, with their weights (one with weight 1 without splitting).
	Clusters []Cluster
	// Path after rewrites.
	Path string
	// Retry is the retry policy's retry_on, when the route retries.
	Retry string
	// RetryOtherPriority is set when a retry goes to another priority than the ones tried
	// (previous_priorities), RetryOtherHost when to another host (previous_hosts).
	RetryOtherPriority, RetryOtherHost bool
}

// Cluster is one upstream the request may reach.
type Cluster struct {
	Name   string
	Weight uint32
	// Missing is true when no such cluster is defined (Envoy answers with the route's
	// cluster_not_found_response_code).
	Missing bool
	// Priorities hold the eligible endpoints, by priority from 0.
	Priorities []Priority
	// EjectAfterGatewayFailures is the outlier detection's consecutive gateway failures (502,
	// 503, 504, connect failures) after which an endpoint is ejected for EjectFor; 0: none.
	EjectAfterGatewayFailures uint32
	EjectFor                  time.Duration
}

// Priority is one priority level of a cluster's endpoints.
type Priority struct {
	Priority   uint32
	Localities []Locality
}

// Locality is one locality of endpoints with its weight.
type Locality struct {
	// Name is region/zone/sub-zone.
	Name      string
	Weight    uint32
	Endpoints []string
}

func deny(r *Result, format string, args ...any) *Result {
	r.Denied = true
	r.DenyReason = fmt.Sprintf(format, args...)
	return r
}

// Simulate runs the request through the resources of one proxy.
func Simulate(res *translate.Resources, req Request) *Result {
	r := &Result{Path: req.Path}
	l := findListener(res, req)
	if l == nil {
		return deny(r, "no listener for port %d (listener %q)", req.Port, req.Listener)
	}
	r.Listener = l.Name
	if api := l.GetApiListener(); api != nil {
		m := &hcmv3.HttpConnectionManager{}
		if err := api.GetApiListener().UnmarshalTo(m); err != nil {
			return deny(r, "API listener %s does not hold an HTTP connection manager: %v", l.Name, err)
		}
		return httpChain(res, req, r, m, false)
	}
	fc := findChain(l, req)
	if fc == nil {
		return deny(r, "no filter chain of %s matches (port %d, tls %v, ip %q)", l.Name, req.Port, req.TLS, req.DestinationIP)
	}
	r.FilterChain = fc.Name
	for _, f := range fc.Filters {
		switch f.Name {
		case "envoy.filters.network.http_connection_manager":
			m := &hcmv3.HttpConnectionManager{}
			if err := f.GetTypedConfig().UnmarshalTo(m); err != nil {
				return deny(r, "bad HTTP connection manager: %v", err)
			}
			return httpChain(res, req, r, m, true)
		case "envoy.filters.network.tcp_proxy":
			tp := &tcpproxyv3.TcpProxy{}
			if err := f.GetTypedConfig().UnmarshalTo(tp); err != nil {
				return deny(r, "bad tcp_proxy: %v", err)
			}
			r.Clusters = []Cluster{resolveCluster(res, tp.GetCluster(), 1)}
			return r
		case "envoy.filters.network.rbac":
			return deny(r, "network RBAC is not simulated")
		default:
			return deny(r, "network filter %s is not simulated", f.Name)
		}
	}
	return deny(r, "filter chain %s has no terminal filter", fc.Name)
}

func findListener(res *translate.Resources, req Request) *listenerv3.Listener {
	for part := range res.Parts() {
		if l := findListenerIn(part, req); l != nil {
			return l
		}
	}
	return nil
}

func findListenerIn(res *translate.Resources, req Request) *listenerv3.Listener {
	for _, l := range res.Listeners {
		if req.Listener != "" {
			if l.Name == req.Listener {
				return l
			}
			continue
		}
		port := l.GetAddress().GetSocketAddress().GetPortValue()
		isInbound := port == translate.InboundCapturePort
		if req.Inbound {
			if isInbound {
				return l
			}
			continue
		}
		if !isInbound && port != translate.OutboundCapturePort && port == req.Port && l.GetApiListener() == nil {
			return l
		}
	}
	return nil
}

// findChain picks the filter chain Envoy would: the most specific match on destination port,
// then destination address, then transport protocol.
func findChain(l *listenerv3.Listener, req Request) *listenerv3.FilterChain {
	transport := "raw_buffer"
	if req.TLS {
		transport = "tls"
	}
	var best *listenerv3.FilterChain
	bestScore := -1
	for _, fc := range l.FilterChains {
		m := fc.GetFilterChainMatch()
		score := 0
		if p := m.GetDestinationPort(); p != nil {
			if p.GetValue() != req.Port {
				continue
			}
			score += 4
		}
		if rs := m.GetPrefixRanges(); len(rs) > 0 {
			if !ipInRanges(req.DestinationIP, rs) {
				continue
			}
			score += 2
		}
		if tp := m.GetTransportProtocol(); tp != "" {
			if tp != transport {
				continue
			}
			score++
		}
		if score > bestScore {
			best, bestScore = fc, score
		}
	}
	if best == nil {
		return l.GetDefaultFilterChain()
	}
	return best
}

func ipInRanges(ip string, rs []*corev3.CidrRange) bool {
	a := net.ParseIP(ip)
	if a == nil {
		return false
	}
	for _, r := range rs {
		_, n, err := net.ParseCIDR(r.GetAddressPrefix() + "/" + strconv.Itoa(int(r.GetPrefixLen().GetValue())))
		if err == nil && n.Contains(a) {
			return true
		}
	}
	return false
}

// httpChain applies the HTTP filters (RBAC) and routes the request. envoy is false for grpc-go,
// which matches the authority as dialled and ignores Envoy-only settings.
func httpChain(res *translate.Resources, req Request, r *Result, m *hcmv3.HttpConnectionManager, envoy bool) *Result {
	for _, f := range m.HttpFilters {
		switch f.Name {
		case "envoy.filters.http.router":
		case "envoy.filters.http.rbac":
			cfg := &rbacfilterv3.RBAC{}
			if err := f.GetTypedConfig().UnmarshalTo(cfg); err != nil {
				return deny(r, "bad RBAC filter: %v", err)
			}
			if ok, why := evalRBAC(cfg.GetRules(), req); !ok {
				return deny(r, "RBAC: %s", why)
			}
		default:
			return deny(r, "HTTP filter %s is not simulated", f.Name)
		}
	}
	var rc *routev3.RouteConfiguration
	switch {
	case m.GetRouteConfig() != nil:
		rc = m.GetRouteConfig()
	case m.GetRds() != nil:
		name := m.GetRds().GetRouteConfigName()
		for part := range res.Parts() {
			for _, c := range part.Routes {
				if c.Name == name {
					rc = c
				}
			}
		}
		if rc == nil {
			return deny(r, "route configuration %s is not defined", name)
		}
	default:
		return deny(r, "HTTP connection manager without routes")
	}
	r.RouteConfig = rc.Name
	host := req.Host
	if h, _, err := net.SplitHostPort(host); err == nil && envoy && m.GetStripAnyHostPort() {
		host = h // Envoy strips the port before matching domains
	}
	vh := vhostFor(rc, host)
	if vh == nil {
		return deny(r, "no virtual host of %s matches host %q", rc.Name, req.Host)
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
			return routeAction(res, req, r, rt.GetMatch(), a.Route)
		default:
			return deny(r, "route action %T is not simulated", a)
		}
	}
	return deny(r, "no route of virtual host %s matches %s %s", vh.Name, req.Method, req.Path)
}

func routeAction(res *translate.Resources, req Request, r *Result, m *routev3.RouteMatch, a *routev3.RouteAction) *Result {
	switch c := a.ClusterSpecifier.(type) {
	case *routev3.RouteAction_Cluster:
		r.Clusters = []Cluster{resolveCluster(res, c.Cluster, 1)}
	case *routev3.RouteAction_WeightedClusters:
		for _, w := range c.WeightedClusters.GetClusters() {
			r.Clusters = append(r.Clusters, resolveCluster(res, w.GetName(), w.GetWeight().GetValue()))
		}
	default:
		return deny(r, "cluster specifier %T is not simulated", c)
	}
	if rp := a.GetRetryPolicy(); rp != nil {
		r.Retry = rp.GetRetryOn()
		r.RetryOtherPriority = rp.GetRetryPriority().GetName() == "envoy.retry_priorities.previous_priorities"
		for _, p := range rp.GetRetryHostPredicate() {
			r.RetryOtherHost = r.RetryOtherHost || p.GetName() == "envoy.retry_host_predicates.previous_hosts"
		}
	}
	r.Path = rewrite(req.Path, m, a)
	return r
}

func rewrite(path string, m *routev3.RouteMatch, a *routev3.RouteAction) string {
	if rr := a.GetRegexRewrite(); rr != nil {
		re, err := compile(rr.GetPattern().GetRegex(), false)
		if err == nil {
			return re.ReplaceAllString(path, strings.ReplaceAll(rr.GetSubstitution(), "$", "$$"))
		}
		return path
	}
	if pr := a.GetPrefixRewrite(); pr != "" {
		prefix := m.GetPrefix()
		if prefix == "" {
			prefix = m.GetPathSeparatedPrefix()
		}
		if prefix == "" {
			prefix = m.GetPath()
		}
		return pr + strings.TrimPrefix(path, prefix)
	}
	return path
}

// resolveCluster finds a cluster and, through EDS, its endpoints by priority.
func resolveCluster(res *translate.Resources, name string, weight uint32) Cluster {
	out := Cluster{Name: name, Weight: weight}
	var c *clusterv3.Cluster
	for part := range res.Parts() {
		for _, x := range part.Clusters {
			if x.Name == name {
				c = x
			}
		}
	}
	if c == nil {
		out.Missing = true
		return out
	}
	if od := c.GetOutlierDetection(); od != nil && od.GetConsecutiveGatewayFailure().GetValue() > 0 {
		out.EjectAfterGatewayFailures = od.GetConsecutiveGatewayFailure().GetValue()
		out.EjectFor = od.GetBaseEjectionTime().AsDuration()
	}
	cla := c.GetLoadAssignment()
	if c.GetType() == clusterv3.Cluster_EDS {
		svc := c.GetEdsClusterConfig().GetServiceName()
		if svc == "" {
			svc = name
		}
		cla = nil
		for part := range res.Parts() {
			for _, e := range part.Endpoints {
				if e.ClusterName == svc {
					cla = e
				}
			}
		}
	}
	out.Priorities = priorities(cla)
	return out
}

func priorities(cla *endpointv3.ClusterLoadAssignment) []Priority {
	byPrio := map[uint32]*Priority{}
	for _, le := range cla.GetEndpoints() {
		p := byPrio[le.GetPriority()]
		if p == nil {
			p = &Priority{Priority: le.GetPriority()}
			byPrio[le.GetPriority()] = p
		}
		loc := le.GetLocality()
		l := Locality{Name: loc.GetRegion() + "/" + loc.GetZone() + "/" + loc.GetSubZone(), Weight: le.GetLoadBalancingWeight().GetValue()}
		if l.Weight == 0 {
			l.Weight = 1
		}
		for _, e := range le.GetLbEndpoints() {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			l.Endpoints = append(l.Endpoints, net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))))
		}
		p.Localities = append(p.Localities, l)
	}
	var out []Priority
	for _, p := range byPrio {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b Priority) int { return int(a.Priority) - int(b.Priority) })
	return out
}

// Shares returns, for the first priority with endpoints of the first cluster, each locality's
// share of requests (locality weights normalised), by locality name.
func (r *Result) Shares() map[string]float64 {
	out := map[string]float64{}
	if len(r.Clusters) == 0 || len(r.Clusters[0].Priorities) == 0 {
		return out
	}
	p := r.Clusters[0].Priorities[0]
	total := 0.0
	for _, l := range p.Localities {
		total += float64(l.Weight)
	}
	for _, l := range p.Localities {
		out[l.Name] = float64(l.Weight) / total
	}
	return out
}
