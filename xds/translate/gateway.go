package translate

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/crossgate-io/crossgate/translator/ir"
)

// gatewayBackend adds the cluster of one backend Service port of an HTTP route and its
// endpoints: the gateway originates mTLS, as itself, to the workloads of the mesh, and speaks
// plaintext to a Service outside it, whose pods have no proxy to terminate mTLS.
func (b *builder) gatewayBackend(be *ir.Backend) {
	name := GatewayClusterName(be.Cluster)
	proto := protocolFor(be.Protocol, slices.Values(be.Endpoints))
	if be.Plaintext && proto == sameAsDownstream {
		// Outside the mesh no sidecar takes either protocol: a port that does not declare HTTP/2
		// (appProtocol kubernetes.io/h2c, http2, grpc) gets HTTP/1.1, whatever the client spoke.
		// Keeping an HTTP/2 client's protocol would send h2c to an HTTP/1.1 server.
		proto = alwaysHTTP1
	}
	var tls *corev3.TransportSocket
	if !be.Plaintext {
		tls = upstreamTLS(viaSDS, b.trustDomain, peersOf(slices.Values(be.Endpoints)), "", proto)
	}
	b.cluster(edsCluster(name, tls, false, proto))
	b.backendEndpoints(name, be)
}

// passthroughBackend adds the cluster of one backend Service port of a TLS route and its
// endpoints: the connection's bytes go on as they came (the caller's own TLS).
func (b *builder) passthroughBackend(be *ir.Backend) {
	name := PassthroughClusterName(be.Cluster)
	b.cluster(edsCluster(name, nil, false, notHTTP))
	b.backendEndpoints(name, be)
}

func (b *builder) backendEndpoints(name string, be *ir.Backend) {
	cla, err := loadAssignment(name, []ir.Locality{{Priority: 0, Weight: 1, Endpoints: be.Endpoints}})
	if err != nil {
		b.fail(err)
	}
	b.endpoints(cla)
}

// gateway builds a gateway's configuration: one listener per port, one route configuration per
// port, and an EDS cluster per backend Service port. A listener tells connections apart by their
// first bytes (tls_inspector): TLS goes by its server name to the filter chain of the TLS route
// that takes the name, passed through to the route's backends without being terminated (this is
// how workloads of other clusters reach exported services: mTLS from the caller's proxy to the
// workload's); plaintext goes to the HTTP routes (direct access, like the walkthrough's curl to
// HOST:81/cluster-1/httpbin-mesh), whose backends the gateway reaches with mTLS of its own. TLS
// with a name no route takes matches no filter chain, and Envoy closes the connection.
func (b *builder) gateway(g *ir.Gateway) {
	for _, l := range g.Listeners {
		lst := &listenerv3.Listener{
			Name:    l.Name,
			Address: socketAddress("0.0.0.0", l.Port),
			ListenerFilters: []*listenerv3.ListenerFilter{
				{Name: "envoy.filters.listener.tls_inspector", ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: packed("tls-inspector", func() proto.Message { return &tlsinspectorv3.TlsInspector{} })}},
			},
		}
		for _, tr := range l.Passthrough {
			lst.FilterChains = append(lst.FilterChains, b.passthroughChain(tr))
		}
		for _, tt := range l.Terminate {
			lst.FilterChains = append(lst.FilterChains, b.terminateChain(l.Port, tt))
		}
		if l.Protocol == ir.HTTP {
			rc := b.gatewayRoutes(l.Name, l.Port, "http", l.VirtualHosts)
			b.route(rc)
			lst.FilterChains = append(lst.FilterChains, &listenerv3.FilterChain{
				Name:             "plaintext",
				FilterChainMatch: &listenerv3.FilterChainMatch{TransportProtocol: "raw_buffer"},
				Filters:          []*listenerv3.Filter{hcmFilter(hcm(hcmGateway, l.Name, rc.Name, nil))},
			})
		}
		b.listener(lst)
	}
	// The listener the gateway pod's readiness probe reaches (ReadyPath on ProbePort), as a
	// sidecar's: the proxy is ready once it has its listeners, whatever their state.
	b.probe(nil)
	for _, c := range g.Certificates {
		b.secret(&tlsv3.Secret{Name: GatewayCertificateName(c.Name), Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: c.CertPEM}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: c.KeyPEM}},
		}}})
	}
}

// terminateChain is the filter chain of an HTTPS listener: TLS whose server name the listener's
// hostname takes (any without one) is terminated with the listener's certificates, which come by
// SDS (a proxy presents the certificate whose key type the client supports among several:
// common.proto tls_certificate_sds_secret_configs), agreeing on h2 or http/1.1 by ALPN; the
// HTTP inside is routed by the listener's own route configuration. No client certificate is
// asked for. A server name that no chain takes matches no chain and the connection is closed.
func (b *builder) terminateChain(port uint32, tt ir.Terminate) *listenerv3.FilterChain {
	match := &listenerv3.FilterChainMatch{TransportProtocol: "tls"}
	if tt.Hostname != "" {
		match.ServerNames = []string{tt.Hostname}
	}
	common := &tlsv3.CommonTlsContext{AlpnProtocols: []string{"h2", "http/1.1"}}
	for _, c := range tt.Certificates {
		common.TlsCertificateSdsSecretConfigs = append(common.TlsCertificateSdsSecretConfigs, &tlsv3.SdsSecretConfig{Name: GatewayCertificateName(c), SdsConfig: adsConfig()})
	}
	rc := b.gatewayRoutes(tt.Name, port, "https", tt.VirtualHosts)
	b.route(rc)
	return &listenerv3.FilterChain{
		Name:             tt.Name,
		FilterChainMatch: match,
		TransportSocket: &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{
			TypedConfig: mustAny(&tlsv3.DownstreamTlsContext{CommonTlsContext: common}),
		}},
		Filters: []*listenerv3.Filter{hcmFilter(hcm(hcmGateway, tt.Name, rc.Name, nil))},
	}
}

// gatewayRoutes is the route configuration of a listener's HTTP routes, served over scheme; it
// adds their clusters.
func (b *builder) gatewayRoutes(name string, port uint32, scheme string, vhosts []ir.VirtualHost) *routev3.RouteConfiguration {
	rc := &routev3.RouteConfiguration{Name: name, ValidateClusters: wrapperspb.Bool(false)}
	for _, vh := range vhosts {
		v := &routev3.VirtualHost{Name: vh.Name, Domains: vh.Hostnames}
		for _, r := range vh.Routes {
			route, ok := b.gatewayRoute(r, port, scheme)
			if ok {
				v.Routes = append(v.Routes, route)
			}
			for i := range r.Backends {
				if be := &r.Backends[i]; !be.Invalid && !b.seen[resourceName{"cluster", GatewayClusterName(be.Cluster)}] {
					b.gatewayBackend(be)
				}
			}
			for i := range r.Mirrors {
				if be := &r.Mirrors[i].Backend; !b.seen[resourceName{"cluster", GatewayClusterName(be.Cluster)}] {
					b.gatewayBackend(be)
				}
			}
		}
		// A virtual host without routes in the IR holds a listener's hostname for it (listener
		// isolation): Envoy answers its requests with a 404 instead of a less specific domain's
		// routes. One whose routes all failed to build is left out.
		if len(v.Routes) > 0 || len(vh.Routes) == 0 {
			rc.VirtualHosts = append(rc.VirtualHosts, v)
		}
	}
	return rc
}

// passthroughChain is the filter chain of one TLS route: TLS whose server name the route takes
// (any name for "*") goes to its backends by weight, as a TCP stream. An invalid backend's share
// goes to a cluster that does not exist, where tcp_proxy closes the connection
// (tcp_proxy.cc onNewConnection, "Cluster not found"), as Gateway API asks.
func (b *builder) passthroughChain(tr ir.TLSRoute) *listenerv3.FilterChain {
	match := &listenerv3.FilterChainMatch{TransportProtocol: "tls"}
	if !slices.Contains(tr.Hostnames, "*") {
		match.ServerNames = tr.Hostnames
	}
	cluster := func(be ir.Backend) string {
		if be.Invalid {
			return invalidBackendCluster
		}
		if !b.seen[resourceName{"cluster", PassthroughClusterName(be.Cluster)}] {
			b.passthroughBackend(&be)
		}
		return PassthroughClusterName(be.Cluster)
	}
	tp := &tcpproxyv3.TcpProxy{StatPrefix: tr.Name}
	switch len(tr.Backends) {
	case 0:
		tp.ClusterSpecifier = &tcpproxyv3.TcpProxy_Cluster{Cluster: invalidBackendCluster}
	case 1:
		tp.ClusterSpecifier = &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster(tr.Backends[0])}
	default:
		wc := &tcpproxyv3.TcpProxy_WeightedCluster{}
		for _, be := range tr.Backends {
			wc.Clusters = append(wc.Clusters, &tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight{Name: cluster(be), Weight: be.Weight})
		}
		tp.ClusterSpecifier = &tcpproxyv3.TcpProxy_WeightedClusters{WeightedClusters: wc}
	}
	return &listenerv3.FilterChain{
		Name:             tr.Name,
		FilterChainMatch: match,
		Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{
			TypedConfig: mustAny(tp),
		}}},
	}
}

// gatewayRoute turns one IR route of a listener (its port, and the scheme it serves) into an
// Envoy route with Gateway API semantics.
func (b *builder) gatewayRoute(r ir.Route, listenerPort uint32, listenerScheme string) (*routev3.Route, bool) {
	m := &routev3.RouteMatch{}
	switch r.Path.Type {
	case ir.PathExact:
		m.PathSpecifier = &routev3.RouteMatch_Path{Path: r.Path.Value}
	case ir.PathRegex:
		sm, err := regex(r.Path.Value)
		if err != nil {
			b.fail(err)
			return nil, false
		}
		m.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: sm.GetSafeRegex()}
	default:
		// A Gateway API prefix matches whole path elements: /a matches /a and /a/b, not /ab.
		if p := strings.TrimRight(r.Path.Value, "/"); p == "" {
			m.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/"}
		} else {
			m.PathSpecifier = &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: p}
		}
	}
	if r.Method != "" {
		m.Headers = append(m.Headers, &routev3.HeaderMatcher{Name: ":method", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exact(r.Method)}})
	}
	for _, h := range r.Headers {
		hm, err := headerMatcher(h)
		if err != nil {
			b.fail(err)
			return nil, false
		}
		m.Headers = append(m.Headers, hm)
	}
	for _, q := range r.QueryParams {
		sm := exact(q.Exact)
		if q.Regex != "" {
			var err error
			if sm, err = regex(q.Regex); err != nil {
				b.fail(fmt.Errorf("query parameter %s: %w", q.Name, err))
				return nil, false
			}
		}
		m.QueryParameters = append(m.QueryParameters, &routev3.QueryParameterMatcher{
			Name: q.Name, QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: sm},
		})
	}
	route := &routev3.Route{Name: r.Name, Match: m}
	route.ResponseHeadersToAdd, route.ResponseHeadersToRemove = headerOptions(r.ResponseHeaders)
	if r.DirectResponse != 0 {
		route.Action = &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: r.DirectResponse}}
		return route, true
	}
	if r.Redirect != nil {
		route.Action = &routev3.Route_Redirect{Redirect: redirectAction(r, listenerPort, listenerScheme)}
		return route, true
	}
	action := &routev3.RouteAction{ClusterNotFoundResponseCode: routev3.RouteAction_INTERNAL_SERVER_ERROR, Timeout: noTimeout()}
	if r.TimeoutMillis > 0 {
		action.Timeout = durationpb.New(time.Duration(r.TimeoutMillis) * time.Millisecond)
	}
	if len(r.Backends) == 1 && r.Backends[0].RequestHeaders == nil {
		action.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: backendCluster(r.Backends[0])}
	} else {
		// A backend's own header changes ride on its weighted cluster, which Envoy applies
		// before the route's (route_components.proto ClusterWeight.request_headers_to_add).
		wc := &routev3.WeightedCluster{}
		for _, be := range r.Backends {
			cw := &routev3.WeightedCluster_ClusterWeight{Name: backendCluster(be), Weight: wrapperspb.UInt32(be.Weight)}
			cw.RequestHeadersToAdd, cw.RequestHeadersToRemove = headerOptions(be.RequestHeaders)
			wc.Clusters = append(wc.Clusters, cw)
		}
		action.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
	}
	action.PrefixRewrite, action.RegexRewrite = pathRewrite(r.Path, r.Rewrite)
	if r.HostRewrite != "" {
		action.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: r.HostRewrite}
	}
	for _, m := range r.Mirrors {
		// Fire and forget, with the request's own Host (Gateway API changes no header of a copy;
		// Envoy would append "-shadow" to it otherwise).
		action.RequestMirrorPolicies = append(action.RequestMirrorPolicies, &routev3.RouteAction_RequestMirrorPolicy{
			Cluster: GatewayClusterName(m.Backend.Cluster),
			RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{
				Numerator: m.PerMillion, Denominator: typev3.FractionalPercent_MILLION,
			}},
			DisableShadowHostSuffixAppend: true,
		})
	}
	route.RequestHeadersToAdd, route.RequestHeadersToRemove = headerOptions(r.RequestHeaders)
	route.Action = &routev3.Route_Route{Route: action}
	return route, true
}

// headerOptions turns a header modifier into a route's headers to add and to remove. Envoy
// removes first, then adds in order (router/header_parser.cc evaluateHeaders), as Gateway API
// asks: Set replaces every value (OVERWRITE_IF_EXISTS_OR_ADD), Add appends one
// (APPEND_IF_EXISTS_OR_ADD). A value is a format string there, so "%" is escaped as "%%".
func headerOptions(m *ir.HeaderModifier) ([]*corev3.HeaderValueOption, []string) {
	if m == nil {
		return nil, nil
	}
	var add []*corev3.HeaderValueOption
	option := func(h ir.Header, action corev3.HeaderValueOption_HeaderAppendAction) {
		add = append(add, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: h.Name, Value: strings.ReplaceAll(h.Value, "%", "%%")},
			AppendAction: action,
		})
	}
	for _, h := range m.Set {
		option(h, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)
	}
	for _, h := range m.Add {
		option(h, corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD)
	}
	return add, m.Remove
}

func backendCluster(be ir.Backend) string {
	if be.Invalid {
		return invalidBackendCluster
	}
	return GatewayClusterName(be.Cluster)
}

// pathRewrite is the prefix_rewrite or regex_rewrite of a Gateway API path modifier on a route
// matching path.
func pathRewrite(path ir.PathMatch, rw *ir.PathRewrite) (string, *matcherv3.RegexMatchAndSubstitute) {
	switch {
	case rw == nil:
	case rw.ReplaceFullPath != nil:
		return "", &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^/.*$"}, Substitution: *rw.ReplaceFullPath}
	case rw.ReplacePrefixMatch != nil && path.Type == ir.PathPrefix:
		prefix := strings.TrimRight(path.Value, "/")
		with := *rw.ReplacePrefixMatch
		if strings.TrimRight(with, "/") == "" {
			// /prefix/x -> /x, and /prefix -> /: a plain prefix rewrite would leave "//x".
			return "", &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^" + regexp.QuoteMeta(prefix) + "/*"}, Substitution: "/"}
		}
		return strings.TrimRight(with, "/"), nil
	}
	return "", nil
}

// redirectAction is a RequestRedirect on a listener of listenerPort. Envoy builds the Location
// from the scheme, host and port the action sets and the request's otherwise
// (http/utility.cc newUri: a request host keeps its port unless a port is set, or the scheme
// changes and the port was the old scheme's default). Gateway API derives the port when none is
// given: the scheme's well-known port when a scheme is given, else the listener's; and it is
// left out of the Location when it is the scheme's default (80 for http, 443 for https).
func redirectAction(r ir.Route, listenerPort uint32, listenerScheme string) *routev3.RedirectAction {
	rd := r.Redirect
	a := &routev3.RedirectAction{HostRedirect: rd.Hostname}
	if rd.Scheme != "" {
		a.SchemeRewriteSpecifier = &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: rd.Scheme}
	}
	switch rd.StatusCode {
	case 301:
		a.ResponseCode = routev3.RedirectAction_MOVED_PERMANENTLY
	case 303:
		a.ResponseCode = routev3.RedirectAction_SEE_OTHER
	case 307:
		a.ResponseCode = routev3.RedirectAction_TEMPORARY_REDIRECT
	case 308:
		a.ResponseCode = routev3.RedirectAction_PERMANENT_REDIRECT
	default:
		a.ResponseCode = routev3.RedirectAction_FOUND
	}
	scheme, port := cmp.Or(rd.Scheme, listenerScheme), rd.Port
	if port == 0 {
		switch rd.Scheme {
		case "http":
			port = 80
		case "https":
			port = 443
		default:
			port = listenerPort
		}
	}
	if defaultPort := (scheme == "http" && port == 80) || (scheme == "https" && port == 443); !defaultPort {
		a.PortRedirect = port
	}
	if rw := rd.Path; rw != nil && rw.ReplaceFullPath != nil {
		a.PathRewriteSpecifier = &routev3.RedirectAction_PathRedirect{PathRedirect: *rw.ReplaceFullPath}
	} else {
		switch prefix, regex := pathRewrite(r.Path, rw); {
		case prefix != "":
			a.PathRewriteSpecifier = &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: prefix}
		case regex != nil:
			a.PathRewriteSpecifier = &routev3.RedirectAction_RegexRewrite{RegexRewrite: regex}
		}
	}
	return a
}
