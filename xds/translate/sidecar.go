package translate

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	origdstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	prevpriov3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/priority/previous_priorities/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/crossgate-io/crossgate/translator/ir"
	"github.com/crossgate-io/crossgate/wellknown"
)

// An Envoy sidecar's configuration:
//   - the capture listeners: outbound-virtual (15001) takes every captured outgoing connection
//     and hands it to the listener of its original destination port, or passes it through;
//     inbound (15006) takes every captured incoming connection, one filter chain per served
//     port, terminating mTLS and applying RBAC; probe (15020) answers kubelet;
//   - per destination port, an outbound listener whose filter chains tell services apart by
//     their ClusterIPs; per HTTP service port a route configuration, and per service port an
//     EDS cluster, all shared by every identity that sees the same services.

// sidecarOutbound builds the outbound listeners, route configurations, clusters and endpoints of
// an outbound list.
func (b *builder) sidecarOutbound(outbound []ir.OutboundService) {
	byPort := map[int32][]*ir.OutboundService{}
	var ports []int32
	for i := range outbound {
		o := &outbound[i]
		if byPort[o.Port] == nil {
			ports = append(ports, o.Port)
		}
		byPort[o.Port] = append(byPort[o.Port], o)
		name := OutboundClusterName(o.Key())
		proto := protocolFor(o.Protocol, localEndpoints(o.Localities))
		b.cluster(edsCluster(name, upstreamTLS(viaSDS, b.trustDomain, peersOf(localEndpoints(o.Localities)), o.SNI, proto), o.RetryOtherPriority || spreads(o), proto))
		cla, err := loadAssignment(name, o.Localities)
		if err != nil {
			b.fail(err)
		}
		b.endpoints(cla)
		if local := localOnly(o); local != nil {
			proto := protocolFor(o.Protocol, localEndpoints(local.localities))
			b.cluster(edsCluster(local.name, upstreamTLS(viaSDS, b.trustDomain, peersOf(localEndpoints(local.localities)), o.SNI, proto), false, proto))
			cla, err := loadAssignment(local.name, local.localities)
			if err != nil {
				b.fail(err)
			}
			b.endpoints(cla)
		}
	}
	slices.Sort(ports)
	for _, port := range ports {
		b.outboundPort(uint32(port), byPort[port])
	}
}

// localEndpoints yields the endpoints of the localities.
func localEndpoints(ls []ir.Locality) func(yield func(ir.Endpoint) bool) {
	return func(yield func(ir.Endpoint) bool) {
		for _, l := range ls {
			for _, e := range l.Endpoints {
				if !yield(e) {
					return
				}
			}
		}
	}
}

// outboundCapture is where captured outgoing connections arrive: Envoy hands each to the
// listener of its original destination (use_original_dst: the exact address, then 0.0.0.0 on
// the port; connection_handler_impl.cc getBalancedHandlerByAddress), or, when there is none,
// passes it through unchanged.
func (b *builder) outboundCapture() {
	b.listener(&listenerv3.Listener{
		Name:           outboundVirtualListener,
		Address:        socketAddress("0.0.0.0", OutboundCapturePort),
		UseOriginalDst: wrapperspb.Bool(true),
		FilterChains:   []*listenerv3.FilterChain{passthroughChain(passthroughCluster)},
	})
	b.cluster(originalDst(passthroughCluster, ""))
}

// originalDst is a cluster that connects to the connection's original destination, from source
// when given.
func originalDst(name, source string) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
		ConnectTimeout:       durationpb.New(5e9),
	}
	if source != "" {
		c.UpstreamBindConfig = &corev3.BindConfig{SourceAddress: &corev3.SocketAddress{Address: source, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 0}}}
	}
	return c
}

func passthroughChain(cluster string) *listenerv3.FilterChain {
	return &listenerv3.FilterChain{Name: cluster, Filters: []*listenerv3.Filter{tcpProxy(cluster, cluster)}}
}

func tcpProxy(statPrefix, cluster string) *listenerv3.Filter {
	return &listenerv3.Filter{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{
		TypedConfig: mustAny(&tcpproxyv3.TcpProxy{StatPrefix: statPrefix, ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster}}),
	}}
}

func hcmFilter(m *hcmv3.HttpConnectionManager) *listenerv3.Filter {
	return &listenerv3.Filter{Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(m)}}
}

// outboundPort builds the listener of one destination port. Connections are told apart by
// their original destination address, as OSM does: each service by its ClusterIPs, a TCP or TLS
// service to its cluster, an HTTP service to its route configuration. A connection to any other
// address (a pod IP, an external host, a Service outside the mesh) takes the default filter
// chain and passes through unchanged. Routing by address rather than by Host is what kube-proxy
// does with the same connection, and it needs no name of the caller's namespace: a short name,
// a ClusterIP or any other Host reaches the service the caller connected to.
func (b *builder) outboundPort(port uint32, svcs []*ir.OutboundService) {
	l := &listenerv3.Listener{
		Name:               outboundListenerName(port),
		Address:            socketAddress("0.0.0.0", port),
		BindToPort:         wrapperspb.Bool(false), // reached through the capture listener only
		DefaultFilterChain: passthroughChain(passthroughCluster),
	}
	used := map[string]bool{} // an address belongs to one chain: Envoy rejects overlapping matches
	for _, o := range svcs {
		cluster := OutboundClusterName(o.Key())
		var ranges []*corev3.CidrRange
		for _, h := range o.Hostnames {
			ip := net.ParseIP(h)
			if ip == nil {
				continue
			}
			if used[ip.String()] {
				b.fail(fmt.Errorf("service %s: address %s is also another service's on port %d: left out", o.Key(), h, port))
				continue
			}
			used[ip.String()] = true
			bits := uint32(32)
			if ip.To4() == nil {
				bits = 128
			}
			ranges = append(ranges, &corev3.CidrRange{AddressPrefix: ip.String(), PrefixLen: wrapperspb.UInt32(bits)})
		}
		if len(ranges) == 0 {
			if !o.Protocol.Routed() {
				b.fail(fmt.Errorf("%s service %s has no ClusterIP to tell its connections apart: left out", o.Protocol, o.Key()))
			}
			continue // a headless Service: its pods are reached by address, passed through
		}
		fc := &listenerv3.FilterChain{Name: cluster, FilterChainMatch: &listenerv3.FilterChainMatch{PrefixRanges: ranges}}
		if o.Protocol.Routed() {
			rc := outboundRoutes(o)
			b.route(rc)
			m := hcm(hcmOutbound, l.Name, rc.Name, nil)
			if len(o.RemoteRules) > 0 {
				normalizePaths(m) // the routes authorize by path
			}
			fc.Filters = []*listenerv3.Filter{hcmFilter(m)}
		} else {
			fc.Filters = []*listenerv3.Filter{tcpProxy(cluster, cluster)}
		}
		l.FilterChains = append(l.FilterChains, fc)
	}
	if len(l.FilterChains) > 0 {
		b.listener(l)
	}
}

// outboundRoutes is the route configuration of one HTTP service port: every request on a
// connection to the service goes to its cluster, with the Host the caller sent (a remote
// cluster's workload gets the request through its gateway as a local caller's request).
//
// When the caller may send only some requests to the remote clusters (o.RemoteRules, policy
// mode), those requests are routed as above and the others go to the local endpoints alone, or
// get 403 when there are none: the caller's cluster applies its own TrafficTarget rules here,
// before the request leaves, and the remote workload's proxy applies its cluster's.
func outboundRoutes(o *ir.OutboundService) *routev3.RouteConfiguration {
	action := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: OutboundClusterName(o.Key())}, Timeout: noTimeout()}
	switch {
	case o.RetryOtherPriority:
		action.RetryPolicy = failoverRetry()
	case spreads(o):
		action.RetryPolicy = otherHostRetry()
	}
	var routes []*routev3.Route
	if len(o.RemoteRules) == 0 {
		routes = []*routev3.Route{{
			Name:   o.Key(),
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: action},
		}}
	} else {
		for i, rule := range o.RemoteRules {
			m, err := ruleMatch(rule, true)
			if err != nil {
				continue // validated by the translator; a rule that cannot be matched allows nothing
			}
			routes = append(routes, &routev3.Route{Name: fmt.Sprintf("%s/rule-%d", o.Key(), i), Match: m, Action: &routev3.Route_Route{Route: action}})
		}
		routes = append(routes, notRemote(o))
	}
	return &routev3.RouteConfiguration{
		Name: outboundRouteName(o.Key()), ValidateClusters: wrapperspb.Bool(false),
		VirtualHosts: []*routev3.VirtualHost{{Name: o.Key(), Domains: []string{"*"}, Routes: routes}},
	}
}

// notRemote is the last route of a service whose remote localities take only some requests:
// the others go to the local localities, or are refused as the destination's RBAC filter
// would refuse them (403, rbac_filter.cc).
func notRemote(o *ir.OutboundService) *routev3.Route {
	r := &routev3.Route{Name: o.Key() + "/not-remote", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}}
	if local := localOnly(o); local != nil {
		r.Action = &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: local.name}, Timeout: noTimeout()}}
		return r
	}
	r.Action = &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
		Status: 403, Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "RBAC: access denied"}},
	}}
	return r
}

// localCluster is the cluster of a service's local localities alone.
type localCluster struct {
	name       string
	localities []ir.Locality
}

// localOnly is the local-only cluster of a service whose remote localities take only some
// requests and that has local ones; nil otherwise.
func localOnly(o *ir.OutboundService) *localCluster {
	if len(o.RemoteRules) == 0 {
		return nil
	}
	var ls []ir.Locality
	for _, l := range o.Localities {
		if l.Local {
			ls = append(ls, l)
		}
	}
	if len(ls) == 0 {
		return nil
	}
	return &localCluster{name: OutboundLocalClusterName(o.Key()), localities: ls}
}

// failoverRetry retries a failed request once, on the next priority (FailOver).
func failoverRetry() *routev3.RetryPolicy {
	return &routev3.RetryPolicy{
		RetryOn:    "connect-failure,refused-stream,reset,5xx",
		NumRetries: wrapperspb.UInt32(1),
		RetryPriority: &routev3.RetryPolicy_RetryPriority{
			Name:       "envoy.retry_priorities.previous_priorities",
			ConfigType: &routev3.RetryPolicy_RetryPriority_TypedConfig{TypedConfig: packed("previous-priorities", func() proto.Message { return &prevpriov3.PreviousPrioritiesConfig{UpdateFrequency: 1} })},
		},
	}
}

// otherHostRetry retries a request that failed at the connection or at a gateway (502, 503,
// 504) once, on another endpoint: under ActiveActive, another cluster's gateway takes a request
// that a gateway without a healthy backend refused.
func otherHostRetry() *routev3.RetryPolicy {
	return &routev3.RetryPolicy{
		RetryOn:    "connect-failure,refused-stream,reset,gateway-error",
		NumRetries: wrapperspb.UInt32(1),
		RetryHostPredicate: []*routev3.RetryPolicy_RetryHostPredicate{{
			Name:       "envoy.retry_host_predicates.previous_hosts",
			ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: packed("previous-hosts", func() proto.Message { return &previoushostsv3.PreviousHostsPredicate{} })},
		}},
		HostSelectionRetryMaxAttempts: 5,
	}
}

// spreads reports whether an outbound service spreads its load over several clusters
// (ActiveActive with more than one locality).
func spreads(o *ir.OutboundService) bool {
	return o.Policy == "ActiveActive" && len(o.Localities) > 1
}

// inbound builds the listener that captured incoming connections reach. The original_dst
// listener filter restores the destination and filter chains match its port; the listener does
// not set use_original_dst, which would hand each connection over to the outbound listener of
// that port (Istio's virtualInbound and OSM's inbound listener leave it out for that reason).
// Per served port: mTLS from mesh callers, then RBAC, then the workload on 127.0.0.1; plaintext
// from callers outside the mesh is served in permissive mode and refused in policy mode. Ports no
// Service exposes (kubelet's probes on them, metrics scrapes) pass through to the application.
// A caller that waits for the server to speak first (MySQL, SMTP) gets the plaintext chain once
// tls_inspector gives up, instead of being closed (continue_on_listener_filters_timeout).
//
// TLS is the mesh's when it names one of the port's services (wellknown.MeshSNI: every
// crossgate caller sends it, grpc-go included) or offers wellknown.MeshALPN (every Envoy caller
// does): the proxy terminates it. Any other TLS is the application's own, for an application
// that terminates TLS itself: it passes through untouched to the application in permissive
// mode, and is closed in policy mode, where a caller without a mesh identity has no access.
// tls_inspector reads the server name and the ALPN protocols offered, and Envoy matches the
// server name before the transport and the ALPN (filter_chain_manager_impl.cc), so the chain
// that names the services needs no ALPN, and the one that matches the ALPN serves callers whose
// server name is not among the port's services.
func (b *builder) inbound(ports []ir.InboundPort) {
	l := &listenerv3.Listener{
		Name:    inboundListener,
		Address: socketAddress("0.0.0.0", InboundCapturePort),
		ListenerFilters: []*listenerv3.ListenerFilter{
			{Name: "envoy.filters.listener.original_dst", ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: packed("original-dst", func() proto.Message { return &origdstv3.OriginalDst{} })}},
			{Name: "envoy.filters.listener.tls_inspector", ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: packed("tls-inspector", func() proto.Message { return &tlsinspectorv3.TlsInspector{} })}},
		},
		ContinueOnListenerFiltersTimeout: true,
		DefaultFilterChain:               passthroughChain(inboundPassthroughCluster),
	}
	b.cluster(originalDst(inboundPassthroughCluster, InboundPassthroughSource))
	for _, p := range ports {
		cluster := inboundClusterName(p.Port)
		b.cluster(&clusterv3.Cluster{
			Name:                          cluster,
			ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			ConnectTimeout:                durationpb.New(5e9),
			LoadAssignment:                loadAssignmentStatic(cluster, "127.0.0.1", p.Port),
			TypedExtensionProtocolOptions: httpProtocolOptions(protocolFor(p.Protocol, nil)),
		})
		port := wrapperspb.UInt32(p.Port)
		allow := b.inboundFilters(cluster, p, p.RBAC)
		if names := meshNames(p.Services); len(names) > 0 {
			l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{
				Name:             cluster,
				FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: port, ServerNames: names, TransportProtocol: "tls"},
				TransportSocket:  downstreamTLS(viaSDS, b.trustDomain),
				Filters:          allow,
			})
		}
		l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{
			Name:             cluster + "/mesh",
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: port, TransportProtocol: "tls", ApplicationProtocols: []string{wellknown.MeshALPN}},
			TransportSocket:  downstreamTLS(viaSDS, b.trustDomain),
			Filters:          allow,
		})
		var own []*listenerv3.Filter // the application's own TLS, bytes untouched
		if p.RBAC != nil {
			own = append(own, b.networkRBAC(cluster+"/tls", &ir.RBAC{}))
		}
		l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{
			Name:             cluster + "/tls",
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: port, TransportProtocol: "tls"},
			Filters:          append(own, tcpProxy(cluster+"/tls", cluster)),
		})
		plain := allow // permissive: callers without a sidecar; no identity is checked
		if p.RBAC != nil {
			plain = b.inboundFilters(cluster+"/plaintext", p, &ir.RBAC{}) // policy mode: no identity, no access
		}
		l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{
			Name:             cluster + "/plaintext",
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: port, TransportProtocol: "raw_buffer"},
			Filters:          plain,
		})
	}
	b.listener(l)
}

// meshNames are the server names mesh callers send to the services of an inbound port, given
// as ns/name:port (ir.ServiceKey), in their order.
func meshNames(services []string) []string {
	var out []string
	for _, s := range services {
		ns, rest, ok1 := strings.Cut(s, "/")
		name, port, ok2 := strings.Cut(rest, ":")
		n, err := strconv.ParseInt(port, 10, 32)
		if ok1 && ok2 && err == nil {
			out = append(out, wellknown.MeshSNI(ns, name, int32(n)))
		}
	}
	return out
}

// inboundFilters are the network filters of an inbound chain: for HTTP an HTTP connection
// manager with the RBAC filter (nil: none), for TCP and TLS the network RBAC filter and
// tcp_proxy.
func (b *builder) inboundFilters(statPrefix string, p ir.InboundPort, r *ir.RBAC) []*listenerv3.Filter {
	cluster := inboundClusterName(p.Port)
	if !p.Protocol.Routed() {
		var filters []*listenerv3.Filter
		if r != nil {
			filters = append(filters, b.networkRBAC(statPrefix, r))
		}
		return append(filters, tcpProxy(statPrefix, cluster))
	}
	var httpFilters []*hcmv3.HttpFilter
	if r != nil {
		f, err := rbacFilter(r, b.trustDomain)
		if err != nil {
			b.fail(fmt.Errorf("inbound port %d: %w", p.Port, err))
		}
		httpFilters = append(httpFilters, f)
	}
	return []*listenerv3.Filter{hcmFilter(hcm(hcmInbound, statPrefix, "", inboundRoutes(cluster), httpFilters...))}
}

// inboundRoutes is an inline route configuration to the workload. validate_clusters defaults to
// true for an inline route configuration (route.proto), which makes Envoy refuse the listener
// while the cluster is not yet known; the cluster comes by CDS.
func inboundRoutes(cluster string) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: cluster, ValidateClusters: wrapperspb.Bool(false), VirtualHosts: []*routev3.VirtualHost{{
		Name: cluster, Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}, Timeout: noTimeout()}},
		}},
	}}}
}

// probe builds the listener kubelet's rewritten HTTP probes reach (ProbePort, excluded from
// capture): GET ProbePathPrefix<port><path> is forwarded as GET <path> to the application on
// 127.0.0.1:<port>, in plaintext whatever the mesh's mode, and only for the probes the pods of
// this identity declare. ReadyPath answers 200: the sidecar's own startup probe.
func (b *builder) probe(probes []ir.Probe) {
	vh := &routev3.VirtualHost{Name: probeListener, Domains: []string{"*"}, Routes: []*routev3.Route{{
		Name:   "ready",
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: ReadyPath}},
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 200}},
	}}}
	for _, p := range probes {
		cluster := probeClusterName(p.Port)
		if !b.seen[resourceName{"cluster", cluster}] {
			b.cluster(&clusterv3.Cluster{
				Name:                          cluster,
				ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
				ConnectTimeout:                durationpb.New(5e9),
				LoadAssignment:                loadAssignmentStatic(cluster, "127.0.0.1", p.Port),
				TypedExtensionProtocolOptions: httpProtocolOptions(alwaysHTTP1),
			})
		}
		path, _, _ := strings.Cut(p.Path, "?")
		vh.Routes = append(vh.Routes, &routev3.Route{
			Name:  fmt.Sprintf("probe/%d%s", p.Port, path),
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: fmt.Sprintf("%s%d%s", ProbePathPrefix, p.Port, path)}},
			// With a path match, prefix_rewrite replaces the whole path; the query is kept.
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}, PrefixRewrite: path, Timeout: noTimeout()}},
		})
	}
	rc := &routev3.RouteConfiguration{Name: probeListener, ValidateClusters: wrapperspb.Bool(false), VirtualHosts: []*routev3.VirtualHost{vh}}
	b.listener(&listenerv3.Listener{
		Name:         probeListener,
		Address:      socketAddress("0.0.0.0", ProbePort),
		FilterChains: []*listenerv3.FilterChain{{Name: probeListener, Filters: []*listenerv3.Filter{hcmFilter(hcm(hcmOutbound, probeListener, "", rc))}}},
	})
}

// networkRBAC guards a TCP port: only policies that allow any request apply, as a TCP
// connection carries no path or method to check.
func (b *builder) networkRBAC(statPrefix string, r *ir.RBAC) *listenerv3.Filter {
	tcpOnly := &ir.RBAC{}
	for _, p := range r.Policies {
		if len(p.Rules) == 0 {
			tcpOnly.Policies = append(tcpOnly.Policies, p)
		}
	}
	cfg, err := rbacPolicies(tcpOnly, b.trustDomain)
	if err != nil {
		b.fail(err)
	}
	if cfg == nil {
		cfg = &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW}
	}
	return &listenerv3.Filter{Name: "envoy.filters.network.rbac", ConfigType: &listenerv3.Filter_TypedConfig{
		TypedConfig: mustAny(&netrbacv3.RBAC{StatPrefix: statPrefix, Rules: cfg}),
	}}
}
