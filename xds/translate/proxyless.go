package translate

import (
	"strconv"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
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
		rc := &routev3.RouteConfiguration{Name: proxylessRouteName(key), VirtualHosts: []*routev3.VirtualHost{{
			Name: key, Domains: domains,
			Routes: []*routev3.Route{{
				Name:   key,
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: action},
			}},
		}}}
		b.route(rc)
		for _, h := range o.Hostnames {
			target := h + ":" + port
			b.listener(&listenerv3.Listener{
				Name: target,
				ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(
					hcm(hcmGRPC, target, rc.Name, nil),
				)},
			})
		}
		b.cluster(edsCluster(cluster, upstreamTLS(viaProvider, b.trustDomain), o.RetryOtherPriority, notHTTP))
		if cla := byName[cluster]; cla != nil {
			b.res.Endpoints = append(b.res.Endpoints, cla) // built and validated for the sidecar
			continue
		}
		cla, err := loadAssignment(cluster, o.Localities)
		if err != nil {
			b.fail(err)
		}
		b.endpoints(cla)
	}
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
