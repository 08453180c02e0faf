package translate

import (
	"fmt"
	"net"
	"slices"

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

// An Envoy sidecar's configuration: traffic capture listeners, one outbound listener and route
// configuration per port, one EDS cluster per service port (sidecarOutbound), and the inbound
// listener whose filter chains (one per served port) terminate mTLS and apply RBAC (inbound).
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
		b.cluster(edsCluster(name, upstreamTLS(viaSDS, b.trustDomain), o.RetryOtherPriority || spreads(o)))
		cla, err := loadAssignment(name, o.Localities)
		if err != nil {
			b.fail(err)
		}
		b.endpoints(cla)
	}
	slices.Sort(ports)
	for _, port := range ports {
		b.outboundPort(uint32(port), byPort[port])
	}
}

// outboundCapture is where captured outgoing connections arrive: each is handed to the listener
// of its original destination port, or passed through unchanged when there is none.
func (b *builder) outboundCapture() {
	b.listener(&listenerv3.Listener{
		Name:           outboundVirtualListener,
		Address:        socketAddress("0.0.0.0", OutboundCapturePort),
		UseOriginalDst: wrapperspb.Bool(true),
		FilterChains: []*listenerv3.FilterChain{{
			Name:    passthroughCluster,
			Filters: []*listenerv3.Filter{tcpProxy(passthroughCluster, passthroughCluster)},
		}},
	})
	b.cluster(&clusterv3.Cluster{
		Name:                 passthroughCluster,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
		ConnectTimeout:       durationpb.New(5e9),
	})
}

func tcpProxy(statPrefix, cluster string) *listenerv3.Filter {
	return &listenerv3.Filter{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{
		TypedConfig: mustAny(&tcpproxyv3.TcpProxy{StatPrefix: statPrefix, ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster}}),
	}}
}

func hcmFilter(m *hcmv3.HttpConnectionManager) *listenerv3.Filter {
	return &listenerv3.Filter{Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(m)}}
}

// outboundPort builds the listener of one destination port: HTTP services share one route
// configuration, chosen by Host; TCP services are told apart by their ClusterIPs.
func (b *builder) outboundPort(port uint32, svcs []*ir.OutboundService) {
	l := &listenerv3.Listener{
		Name:       outboundListenerName(port),
		Address:    socketAddress("0.0.0.0", port),
		BindToPort: wrapperspb.Bool(false), // reached through the capture listener only
	}
	rc := &routev3.RouteConfiguration{Name: outboundRouteName(port), ValidateClusters: wrapperspb.Bool(false)}
	for _, o := range svcs {
		cluster := OutboundClusterName(o.Key())
		if o.Protocol == ir.TCP {
			var ranges []*corev3.CidrRange
			for _, h := range o.Hostnames {
				if ip := net.ParseIP(h); ip != nil {
					bits := uint32(32)
					if ip.To4() == nil {
						bits = 128
					}
					ranges = append(ranges, &corev3.CidrRange{AddressPrefix: h, PrefixLen: wrapperspb.UInt32(bits)})
				}
			}
			if len(ranges) == 0 {
				b.fail(fmt.Errorf("TCP service %s has no ClusterIP to tell its connections apart: left out", o.Key()))
				continue
			}
			l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{
				Name:             cluster,
				FilterChainMatch: &listenerv3.FilterChainMatch{PrefixRanges: ranges},
				Filters:          []*listenerv3.Filter{tcpProxy(cluster, cluster)},
			})
			continue
		}
		action := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}
		switch {
		case o.RetryOtherPriority:
			action.RetryPolicy = failoverRetry()
		case spreads(o):
			action.RetryPolicy = otherHostRetry()
		}
		rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{
			Name:    o.Key(),
			Domains: o.Hostnames,
			Routes: []*routev3.Route{{
				Name:   o.Key(),
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: action},
			}},
		})
	}
	if len(rc.VirtualHosts) > 0 {
		b.route(rc)
		l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{
			Name:    "http",
			Filters: []*listenerv3.Filter{hcmFilter(hcm(outboundListenerName(port), rc.Name, nil))},
		})
	}
	if len(l.FilterChains) > 0 {
		b.listener(l)
	}
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

// inbound builds the listener that captured incoming connections reach: one filter chain per
// served port, each requiring a client certificate of the trust domain, then RBAC, then the
// workload on 127.0.0.1.
func (b *builder) inbound(ports []ir.InboundPort) {
	if len(ports) == 0 {
		return
	}
	l := &listenerv3.Listener{
		Name:           inboundListener,
		Address:        socketAddress("0.0.0.0", InboundCapturePort),
		UseOriginalDst: wrapperspb.Bool(true),
		ListenerFilters: []*listenerv3.ListenerFilter{
			{Name: "envoy.filters.listener.original_dst", ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&origdstv3.OriginalDst{})}},
			{Name: "envoy.filters.listener.tls_inspector", ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspectorv3.TlsInspector{})}},
		},
	}
	for _, p := range ports {
		cluster := inboundClusterName(p.Port)
		b.cluster(&clusterv3.Cluster{
			Name:                 cluster,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			ConnectTimeout:       durationpb.New(5e9),
			LoadAssignment:       loadAssignmentStatic(cluster, "127.0.0.1", p.Port),
		})
		var filters []*listenerv3.Filter
		if p.Protocol == ir.TCP {
			if p.RBAC != nil {
				filters = append(filters, b.networkRBAC(cluster, p.RBAC))
			}
			filters = append(filters, tcpProxy(cluster, cluster))
		} else {
			var httpFilters []*hcmv3.HttpFilter
			if p.RBAC != nil {
				f, err := rbacFilter(p.RBAC, b.trustDomain)
				if err != nil {
					b.fail(fmt.Errorf("inbound port %d: %w", p.Port, err))
				}
				httpFilters = append(httpFilters, f)
			}
			filters = append(filters, hcmFilter(hcm(cluster, "", inboundRoutes(cluster), httpFilters...)))
		}
		l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{
			Name:             cluster,
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(p.Port), TransportProtocol: "tls"},
			TransportSocket:  downstreamTLS(viaSDS, b.trustDomain),
			Filters:          filters,
		})
		if p.RBAC == nil {
			// Permissive: callers without a sidecar speak plaintext; no identity is checked.
			l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{
				Name:             cluster + "/plaintext",
				FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(p.Port), TransportProtocol: "raw_buffer"},
				Filters:          filters,
			})
		}
	}
	b.listener(l)
}

func inboundRoutes(cluster string) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: cluster, VirtualHosts: []*routev3.VirtualHost{{
		Name: cluster, Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}},
		}},
	}}}
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
