package translate

import (
	"fmt"
	"strconv"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/crossgate-io/crossgate/translator/ir"
)

// proxyless builds what grpc-go's xDS support reads for one identity. As a client: one API
// listener per target host:port a caller may dial (xds:///httpbin.httpbin:8080), a route
// configuration per service port, and the same EDS clusters as a sidecar, secured with the
// certificate provider instead of SDS. As a server: one listener per listening address, named
// by ServerListenerTemplate, that requires mTLS and applies the RBAC.
//
// EDS resources are the same for Envoy and gRPC: those already built for the sidecar (known)
// are reused rather than built and marshaled twice.
func (b *builder) proxylessOutbound(outbound []ir.OutboundService, known []*endpointv3.ClusterLoadAssignment) {
	byName := make(map[string]*endpointv3.ClusterLoadAssignment, len(known))
	for _, e := range known {
		byName[e.ClusterName] = e
	}
	for i := range outbound {
		o := &outbound[i]
		if !o.Protocol.Routed() {
			continue // gRPC is HTTP/2
		}
		key := o.Key()
		cluster := OutboundClusterName(key)
		port := strconv.Itoa(int(o.Port))
		domains := make([]string, 0, 2*len(o.Hostnames))
		for _, h := range o.Hostnames {
			domains = append(domains, h, h+":"+port)
		}
		action := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}
		if o.RetryOtherPriority {
			// gRPC retries by status code; priorities fail over inside its load balancer.
			action.RetryPolicy = &routev3.RetryPolicy{RetryOn: "unavailable", NumRetries: wrapperspb.UInt32(1)}
		}
		routes, denies := proxylessRoutes(o, action)
		rc := &routev3.RouteConfiguration{Name: proxylessRouteName(key), VirtualHosts: []*routev3.VirtualHost{{
			Name: key, Domains: domains, Routes: routes,
		}}}
		b.route(rc)
		var filters []*hcmv3.HttpFilter
		if denies {
			filters = append(filters, faultFilter())
		}
		// One connection manager for every target of the service port, packed once: grpc-go
		// reads no stat_prefix (internal/xds/xdsclient/xdsresource/unmarshal_lds.go), so it names the route
		// configuration rather than each target.
		m := mustAny(hcm(hcmGRPC, rc.Name, rc.Name, nil, filters...))
		for _, h := range o.Hostnames {
			target := h + ":" + port
			b.listener(&listenerv3.Listener{
				Name:        target,
				ApiListener: &listenerv3.ApiListener{ApiListener: &anypb.Any{TypeUrl: m.TypeUrl, Value: m.Value}},
			})
		}
		b.proxylessCluster(cluster, o.SNI, o.RetryOtherPriority, o.Localities, byName)
		if local := localOnly(o); local != nil {
			b.proxylessCluster(local.name, o.SNI, false, local.localities, byName)
		}
	}
}

// proxylessCluster adds a cluster for grpc-go and its endpoints, reusing those built for the
// sidecar (known) when there are. grpc-go sends the cluster's sni only with
// GRPC_EXPERIMENTAL_XDS_SNI=true in its environment (gRFC A101;
// internal/xds/xdsclient/xdsresource/unmarshal_cds.go), which a proxyless workload sets (README;
// the sandbox's callers set it themselves). Without it, a call to another cluster finds no route
// at the gateway, and a call to a workload with a sidecar is taken for the application's own TLS
// (grpc-go cannot offer wellknown.MeshALPN) and passed through to it.
func (b *builder) proxylessCluster(name, sni string, eject bool, ls []ir.Locality, known map[string]*endpointv3.ClusterLoadAssignment) {
	b.cluster(edsCluster(name, upstreamTLS(viaProvider, b.trustDomain, peersOf(localEndpoints(ls)), sni, notHTTP), eject, notHTTP))
	if cla := known[name]; cla != nil {
		b.res.Endpoints = append(b.res.Endpoints, cla) // built and validated for the sidecar
		return
	}
	cla, err := loadAssignment(name, ls)
	if err != nil {
		b.fail(err)
	}
	b.endpoints(cla)
}

// proxylessRoutes are the routes of one service port for grpc-go, as outboundRoutes for Envoy:
// with RemoteRules, the calls they allow go to every locality, and the others to the local
// localities alone, or are refused. grpc-go supports no direct_response on a client
// (errUnsupportedClientRouteAction), so a refusal is a fault filter abort with
// PERMISSION_DENIED, which grpc-go applies before the call leaves (httpfilter/fault); denies
// reports that the listener needs that filter. A rule on methods other than POST never matches
// an RPC and gets no route.
func proxylessRoutes(o *ir.OutboundService, action *routev3.RouteAction) (routes []*routev3.Route, denies bool) {
	key := o.Key()
	if len(o.RemoteRules) == 0 {
		return []*routev3.Route{{
			Name:   key,
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: action},
		}}, false
	}
	for i, rule := range o.RemoteRules {
		m, err := ruleMatch(rule, false)
		if err != nil {
			continue
		}
		routes = append(routes, &routev3.Route{Name: fmt.Sprintf("%s/rule-%d", key, i), Match: m, Action: &routev3.Route_Route{Route: action}})
	}
	last := &routev3.Route{Name: key + "/not-remote", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}}
	if local := localOnly(o); local != nil {
		last.Action = &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: local.name}}}
		return append(routes, last), false
	}
	last.Action = &routev3.Route_Route{Route: action} // never taken: the fault aborts the call first
	last.TypedPerFilterConfig = map[string]*anypb.Any{faultFilterName: packed("fault-deny", func() proto.Message {
		return &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{
			ErrorType:  &faultv3.FaultAbort_GrpcStatus{GrpcStatus: uint32(codes.PermissionDenied)},
			Percentage: &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED},
		}}
	})}
	return append(routes, last), true
}

const faultFilterName = "envoy.filters.http.fault"

// faultFilter is the fault injection filter with nothing to inject: routes that refuse a call
// configure it (typed_per_filter_config).
func faultFilter() *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: faultFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: packed("fault", func() proto.Message { return &faultv3.HTTPFault{} })}}
}

func (b *builder) proxylessInbound(inbound []ir.InboundPort) {
	for _, p := range inbound {
		if !p.Protocol.Routed() {
			continue
		}
		var filters []*hcmv3.HttpFilter
		if p.RBAC != nil {
			f, err := rbacFilter(p.RBAC, b.trustDomain)
			if err != nil {
				b.fail(err)
			}
			filters = append(filters, f)
		}
		for _, addr := range p.ProxylessAddresses {
			name := ServerListenerName(addr, p.Port)
			serve := &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{{
				Name: name, Domains: []string{"*"},
				Routes: []*routev3.Route{{
					Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}},
				}},
			}}}
			b.listener(&listenerv3.Listener{
				Name:    name,
				Address: socketAddress(addr, p.Port),
				FilterChains: []*listenerv3.FilterChain{{
					Name:            name,
					TransportSocket: downstreamTLS(viaProvider, b.trustDomain),
					Filters:         []*listenerv3.Filter{hcmFilter(hcm(hcmGRPC, name, "", serve, filters...))},
				}},
			})
		}
	}
}
