package translate

import (
	"fmt"
	"net"
	"slices"
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
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/crossgate-io/crossgate/translator/ir"
)

// An Envoy sidecar's configuration:
//   - the capture listeners: outbound-virtual (15001) takes every captured outgoing connection
//     and hands it to the listener of its original destination port, or passes it through;
//     inbound (15006) takes every captured incoming connection, one filter chain per served
//     port, terminating mTLS and applying RBAC; probe (15020) answers kubelet;
//   - per destination port, an outbound listener and route configuration (per caller
//     namespace: short names resolve in the caller's namespace), shared by the identities of a
//     namespace that see the same services;
//   - one EDS cluster per service port, shared by every identity that sees the same services.

// sidecarClusters builds the clusters and endpoints of an outbound list.
func (b *builder) sidecarClusters(outbound []ir.OutboundService) {
	for i := range outbound {
		o := &outbound[i]
		name := OutboundClusterName(o.Key())
		b.cluster(edsCluster(name, upstreamTLS(viaSDS, b.trustDomain), o.RetryOtherPriority || spreads(o), protocolFor(o.Protocol, localEndpoints(o.Localities))))
		cla, err := loadAssignment(name, o.Localities)
		if err != nil {
			b.fail(err)
		}
		b.endpoints(cla)
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

// sidecarListeners builds the outbound listeners and route configurations of an outbound list
// as callers in namespace callerNS see it.
func (b *builder) sidecarListeners(outbound []ir.OutboundService, callerNS string) {
	byPort := map[int32][]*ir.OutboundService{}
	var ports []int32
	for i := range outbound {
		o := &outbound[i]
		if byPort[o.Port] == nil {
			ports = append(ports, o.Port)
		}
		byPort[o.Port] = append(byPort[o.Port], o)
	}
	slices.Sort(ports)
	for _, port := range ports {
		b.outboundPort(uint32(port), byPort[port], callerNS)
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

// outboundPort builds the listener of one destination port. Connections are told apart by their
// original destination address, as OSM does: TCP and TLS services each by their ClusterIPs, the
// HTTP services of the port together by theirs, their requests then by Host. A connection to any
// other address (a pod IP, an external host, a Service outside the mesh) takes the default
// filter chain and passes through unchanged, as does a request for an unknown Host (the route
// configuration's catch-all virtual host).
func (b *builder) outboundPort(port uint32, svcs []*ir.OutboundService, callerNS string) {
	l := &listenerv3.Listener{
		Name:               outboundListenerName(port),
		Address:            socketAddress("0.0.0.0", port),
		BindToPort:         wrapperspb.Bool(false), // reached through the capture listener only
		DefaultFilterChain: passthroughChain(passthroughCluster),
	}
	rc := &routev3.RouteConfiguration{Name: outboundRouteName(port), ValidateClusters: wrapperspb.Bool(false)}
	used := map[string]bool{} // an address belongs to one chain: Envoy rejects overlapping matches
	ranges := func(o *ir.OutboundService) []*corev3.CidrRange {
		var out []*corev3.CidrRange
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
			out = append(out, &corev3.CidrRange{AddressPrefix: ip.String(), PrefixLen: wrapperspb.UInt32(bits)})
		}
		return out
	}
	var httpRanges []*corev3.CidrRange
	for _, o := range svcs {
		cluster := OutboundClusterName(o.Key())
		rs := ranges(o)
		if !o.Protocol.Routed() {
			if len(rs) == 0 {
				b.fail(fmt.Errorf("%s service %s has no ClusterIP to tell its connections apart: left out", o.Protocol, o.Key()))
				continue
			}
			l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{
				Name:             cluster,
				FilterChainMatch: &listenerv3.FilterChainMatch{PrefixRanges: rs},
				Filters:          []*listenerv3.Filter{tcpProxy(cluster, cluster)},
			})
			continue
		}
		httpRanges = append(httpRanges, rs...)
		rc.VirtualHosts = append(rc.VirtualHosts, outboundVirtualHosts(o, callerNS)...)
	}
	if len(httpRanges) > 0 {
		rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{
			Name: passthroughCluster, Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Name:   passthroughCluster,
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: passthroughCluster}, Timeout: noTimeout()}},
			}},
		})
		b.route(rc)
		l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{
			Name:             "http",
			FilterChainMatch: &listenerv3.FilterChainMatch{PrefixRanges: httpRanges},
			Filters:          []*listenerv3.Filter{hcmFilter(hcm(hcmOutbound, outboundListenerName(port), rc.Name, nil))},
		})
	}
	if len(l.FilterChains) > 0 {
		b.listener(l)
	}
}

// outboundVirtualHosts are the virtual hosts of one HTTP service for callers in callerNS: its
// mesh hostnames, its ClusterIPs, and its short name for callers of its own namespace. When a
// remote cluster's gateway may take the request, the names that gateway does not route (the
// short name, the ClusterIPs, the name with this cluster's DNS domain) are rewritten to one it
// routes, in a virtual host of their own; the others keep the caller's Host.
func outboundVirtualHosts(o *ir.OutboundService, callerNS string) []*routev3.VirtualHost {
	route := func(rewrite string) []*routev3.Route {
		action := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: OutboundClusterName(o.Key())}, Timeout: noTimeout()}
		switch {
		case o.RetryOtherPriority:
			action.RetryPolicy = failoverRetry()
		case spreads(o):
			action.RetryPolicy = otherHostRetry()
		}
		if rewrite != "" {
			action.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: rewrite}
		}
		return []*routev3.Route{{
			Name:   o.Key(),
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: action},
		}}
	}
	domains := slices.Clone(o.Hostnames)
	if o.Namespace == callerNS {
		domains = append(domains, o.Name)
	}
	if o.HostRewrite == "" {
		return []*routev3.VirtualHost{{Name: o.Key(), Domains: domains, Routes: route("")}}
	}
	routed := []string{o.Name + "." + o.Namespace, o.Name + "." + o.Namespace + ".svc"}
	var keep, rewrite []string
	for _, d := range domains {
		if slices.Contains(routed, d) {
			keep = append(keep, d)
		} else {
			rewrite = append(rewrite, d)
		}
	}
	out := []*routev3.VirtualHost{{Name: o.Key(), Domains: keep, Routes: route("")}}
	if len(rewrite) > 0 {
		out = append(out, &routev3.VirtualHost{Name: o.Key() + "/rewrite", Domains: rewrite, Routes: route(o.HostRewrite)})
	}
	return out
}

// failoverRetry retries a failed request once, on the next priority (FailOver).
func failoverRetry() *routev3.RetryPolicy {
	return &routev3.RetryPolicy{
		RetryOn:    "connect-failure,refused-stream,reset,5xx",
		NumRetries: wrapperspb.UInt32(1),
		RetryPriority: &routev3.RetryPolicy_RetryPriority{
			Name:       "envoy.retry_priorities.previous_priorities",
			ConfigType: &routev3.RetryPolicy_RetryPriority_TypedConfig{TypedConfig: mustAny(&prevpriov3.PreviousPrioritiesConfig{UpdateFrequency: 1})},
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
			ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: mustAny(&previoushostsv3.PreviousHostsPredicate{})},
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
func (b *builder) inbound(ports []ir.InboundPort) {
	l := &listenerv3.Listener{
		Name:    inboundListener,
		Address: socketAddress("0.0.0.0", InboundCapturePort),
		ListenerFilters: []*listenerv3.ListenerFilter{
			{Name: "envoy.filters.listener.original_dst", ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&origdstv3.OriginalDst{})}},
			{Name: "envoy.filters.listener.tls_inspector", ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspectorv3.TlsInspector{})}},
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
		allow := b.inboundFilters(cluster, p, p.RBAC)
		l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{
			Name:             cluster,
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(p.Port), TransportProtocol: "tls"},
			TransportSocket:  downstreamTLS(viaSDS, b.trustDomain),
			Filters:          allow,
		})
		plain := allow // permissive: callers without a sidecar; no identity is checked
		if p.RBAC != nil {
			plain = b.inboundFilters(cluster+"/plaintext", p, &ir.RBAC{}) // policy mode: no identity, no access
		}
		l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{
			Name:             cluster + "/plaintext",
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(p.Port), TransportProtocol: "raw_buffer"},
			Filters:          plain,
		})
	}
	b.listener(l)
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
		if !b.seen["cluster/"+cluster] {
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
