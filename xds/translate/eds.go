package translate

import (
	"fmt"
	"net"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/crossgate-io/crossgate/translator/ir"
)

// upstreamProtocol is the HTTP protocol a cluster speaks to its endpoints.
type upstreamProtocol int

const (
	// notHTTP: a TCP cluster (tcp_proxy), or one of grpc-go's, which always speaks HTTP/2.
	notHTTP upstreamProtocol = iota
	// sameAsDownstream: the protocol the request came in with (HTTP/1.1 or HTTP/2).
	sameAsDownstream
	// alwaysHTTP2: HTTP/2, for gRPC and h2c ports and for proxyless gRPC servers.
	alwaysHTTP2
	// alwaysHTTP1: HTTP/1.1, for kubelet's probes.
	alwaysHTTP1
)

// httpProtocolOptions selects a cluster's upstream HTTP protocol. Without them Envoy speaks
// HTTP/1.1 to every upstream whatever the client spoke (upstream_impl.cc upstreamHttpProtocol),
// which breaks gRPC at the first Envoy hop; use_downstream_protocol_config keeps the caller's
// protocol (Istio's useClientProtocol), explicit_http_config pins HTTP/2 (Envoy Gateway's choice
// for gRPC backends).
func httpProtocolOptions(p upstreamProtocol) map[string]*anypb.Any {
	if p == notHTTP {
		return nil
	}
	return map[string]*anypb.Any{HTTPProtocolOptionsKey: packed(fmt.Sprintf("http-protocol/%d", p), func() proto.Message { return protocolOptions(p) })}
}

func protocolOptions(p upstreamProtocol) *httpv3.HttpProtocolOptions {
	var o *httpv3.HttpProtocolOptions
	switch p {
	case sameAsDownstream:
		o = &httpv3.HttpProtocolOptions{UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_UseDownstreamProtocolConfig{
			UseDownstreamProtocolConfig: &httpv3.HttpProtocolOptions_UseDownstreamHttpConfig{
				HttpProtocolOptions: &corev3.Http1ProtocolOptions{}, Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
			},
		}}
	case alwaysHTTP2:
		o = &httpv3.HttpProtocolOptions{UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
		}}}
	case alwaysHTTP1:
		o = &httpv3.HttpProtocolOptions{UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}},
		}}}
	}
	return o
}

// protocolFor is the upstream protocol of a cluster of endpoints serving a port of protocol p.
// A proxyless gRPC server takes HTTP/2 only.
func protocolFor(p ir.Protocol, eps func(yield func(ir.Endpoint) bool)) upstreamProtocol {
	if !p.Routed() {
		return notHTTP
	}
	if p == ir.HTTP2 {
		return alwaysHTTP2
	}
	if eps == nil {
		return sameAsDownstream
	}
	for e := range eps {
		if e.Proxyless { // the inbound side (eps nil) reaches an application behind a sidecar
			return alwaysHTTP2
		}
	}
	return sameAsDownstream
}

// edsCluster is a cluster whose endpoints come over EDS, with mTLS to its endpoints. gRPC
// accepts only EDS clusters with ROUND_ROBIN, RING_HASH or LEAST_REQUEST. Envoy balances by the
// localities' weights only with locality_weighted_lb_config ("Locality weights are only
// considered when locality weighted load balancing is configured", endpoint_components.proto);
// grpc-go always does, and ignores common_lb_config.
func edsCluster(name string, tls *corev3.TransportSocket, eject bool, proto upstreamProtocol) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                          name,
		ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:              &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsConfig(), ServiceName: name},
		LbPolicy:                      clusterv3.Cluster_ROUND_ROBIN,
		ConnectTimeout:                durationpb.New(5 * time.Second),
		TransportSocket:               tls,
		TypedExtensionProtocolOptions: httpProtocolOptions(proto),
		CommonLbConfig: &clusterv3.Cluster_CommonLbConfig{LocalityConfigSpecifier: &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig_{
			LocalityWeightedLbConfig: &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig{},
		}},
	}
	if eject {
		// Without health checks, consecutive failures are what moves traffic away from a
		// failing endpoint (to the next priority, or to the other clusters): eject it quickly.
		// Each consecutive_* ejects only as often as its enforcing_* says, and that of gateway
		// failures defaults to 0 (outlier_detection.proto): both are set.
		c.OutlierDetection = &clusterv3.OutlierDetection{
			Consecutive_5Xx:                    wrapperspb.UInt32(3),
			EnforcingConsecutive_5Xx:           wrapperspb.UInt32(100),
			ConsecutiveGatewayFailure:          wrapperspb.UInt32(1),
			EnforcingConsecutiveGatewayFailure: wrapperspb.UInt32(100),
			Interval:                           durationpb.New(time.Second),
			BaseEjectionTime:                   durationpb.New(10 * time.Second),
			MaxEjectionPercent:                 wrapperspb.UInt32(100),
		}
	}
	return c
}

// loadAssignment turns localities into EDS: one locality per source cluster, its key split into
// region, zone and sub-zone (group/name), its priority and weight kept. Endpoints must be IP
// addresses; others are left out and reported.
func loadAssignment(name string, ls []ir.Locality) (*endpointv3.ClusterLoadAssignment, error) {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	var bad []string
	n := 0
	for _, l := range ls {
		n += len(l.Endpoints)
	}
	// The messages of every endpoint, allocated together: seven small objects per endpoint
	// were a good part of a full build's allocations.
	eps := make([]struct {
		lb   endpointv3.LbEndpoint
		host endpointv3.LbEndpoint_Endpoint
		ep   endpointv3.Endpoint
		addr corev3.Address
		sa   corev3.Address_SocketAddress
		sock corev3.SocketAddress
		port corev3.SocketAddress_PortValue
	}, n)
	next := 0
	for _, l := range ls {
		region, zone, sub := localityParts(l.Cluster)
		le := &endpointv3.LocalityLbEndpoints{
			Locality:            &corev3.Locality{Region: region, Zone: zone, SubZone: sub},
			Priority:            l.Priority,
			LoadBalancingWeight: wrapperspb.UInt32(l.Weight),
			LbEndpoints:         make([]*endpointv3.LbEndpoint, 0, len(l.Endpoints)),
		}
		for _, e := range l.Endpoints {
			if net.ParseIP(e.Address) == nil {
				bad = append(bad, e.Address)
				continue
			}
			x := &eps[next]
			next++
			x.port.PortValue = e.Port
			x.sock.Address, x.sock.PortSpecifier = e.Address, &x.port
			x.sa.SocketAddress = &x.sock
			x.addr.Address = &x.sa
			x.ep.Address = &x.addr
			x.host.Endpoint = &x.ep
			x.lb.HostIdentifier = &x.host
			le.LbEndpoints = append(le.LbEndpoints, &x.lb)
		}
		if len(le.LbEndpoints) > 0 {
			cla.Endpoints = append(cla.Endpoints, le)
		}
	}
	renumberPriorities(cla)
	if len(bad) > 0 {
		return cla, fmt.Errorf("endpoints %s of %s left out: an endpoint needs an IP address", strings.Join(bad, ", "), name)
	}
	return cla, nil
}

// renumberPriorities keeps priorities contiguous from 0 after localities were dropped: gRPC
// rejects gaps.
func renumberPriorities(cla *endpointv3.ClusterLoadAssignment) {
	next, last, seen := uint32(0), uint32(0), false
	for _, le := range cla.Endpoints { // localities come sorted by priority
		if seen && le.Priority != last {
			next++
		}
		last, seen = le.Priority, true
		le.Priority = next
	}
}

func localityParts(key string) (region, zone, sub string) {
	p := strings.SplitN(key, "/", 3)
	for len(p) < 3 {
		p = append(p, "")
	}
	return p[0], p[1], p[2]
}

func loadAssignmentStatic(name, host string, port uint32) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
		LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(host, port)}}}},
	}}}
}
