// Package dataplane provisions crossgate's proxies: the Envoy bootstrap and the identity Secret
// every proxy (sidecar or gateway) mounts, the rendering of a Gateway's Envoy Deployment and
// LoadBalancer Service, and the controller that keeps them for every Gateway of crossgate's
// class. (It was called gateway; it serves sidecars too.)
package dataplane

import (
	"fmt"
	"net"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	overloadv3 "github.com/envoyproxy/go-control-plane/envoy/config/overload/v3"
	downstreamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Paths inside an Envoy container, and the names of what is mounted there.
const (
	// IdentityDir holds the proxy's certificate for the xDS connection: the identity Secret's
	// IdentityCertFile, IdentityKeyFile and IdentityCAFile.
	IdentityDir      = "/etc/crossgate/identity"
	IdentityCertFile = "tls.crt"
	IdentityKeyFile  = "tls.key"
	IdentityCAFile   = "ca.crt"
	// BootstrapDir holds bootstrap.json.
	BootstrapDir = "/etc/crossgate/bootstrap"
	// BootstrapFile is the bootstrap's key in the ConfigMap and its file name.
	BootstrapFile = "bootstrap.json"
	// AdminPort is Envoy's admin listener, on loopback only.
	AdminPort = 15000
)

// Files of the bootstrap ConfigMap besides BootstrapFile: the SDS resources (as file-based
// DiscoveryResponses) of the proxy's xDS client certificate and of the root it trusts.
const (
	XDSCertificateFile = "xds-certificate.json"
	XDSTrustedCAFile   = "xds-trusted-ca.json"

	xdsCertificateSecret = "xds-client-certificate"
	xdsTrustedCASecret   = "xds-trusted-ca"
	// MaxDownstreamConnections bounds the connections a proxy accepts (Envoy warns at start
	// when nothing does).
	MaxDownstreamConnections = 50000
)

// Bootstrap is the Envoy bootstrap of every crossgate proxy of a cluster, as the files of its
// ConfigMap: delta ADS to the controller's xDS server at host:port over mTLS with the proxy's
// certificate. The node ID is not in it: each proxy passes --service-node ("gateway~ns/name",
// "sidecar~ns/sa"), so one bootstrap serves every proxy, and the xDS server checks that ID
// against the certificate.
//
// The certificate files (the identity Secret, which the controller renews) are read through
// file-based SDS with a watched directory, as Envoy Gateway does: Envoy reads static TLS files
// once, but reloads SDS-delivered file references when the directory changes (common.proto
// TlsCertificate.watched_directory: "only applies when a TlsCertificate is delivered by SDS with
// references to filesystem paths"). Kubernetes updates a Secret volume by swapping a symbolic
// link in it. The server must prove the name the proxies dial, not just any certificate of the
// set's root (which every workload has).
func Bootstrap(host string, port uint32) (map[string]string, error) {
	h2, err := anypb.New(&httpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
		}},
	})
	if err != nil {
		return nil, err
	}
	file := func(name string) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: IdentityDir + "/" + name}}
	}
	watched := &corev3.WatchedDirectory{Path: IdentityDir}
	fromFile := func(name string) *corev3.ConfigSource {
		return &corev3.ConfigSource{ResourceApiVersion: corev3.ApiVersion_V3, ConfigSourceSpecifier: &corev3.ConfigSource_PathConfigSource{
			PathConfigSource: &corev3.PathConfigSource{Path: BootstrapDir + "/" + name, WatchedDirectory: &corev3.WatchedDirectory{Path: BootstrapDir}},
		}}
	}
	sanType := tlsv3.SubjectAltNameMatcher_DNS
	if net.ParseIP(host) != nil {
		sanType = tlsv3.SubjectAltNameMatcher_IP_ADDRESS
	}
	tls, err := anypb.New(&tlsv3.UpstreamTlsContext{
		Sni: host,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: xdsCertificateSecret, SdsConfig: fromFile(XDSCertificateFile)}},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext: &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
					SanType: sanType, Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: host}},
				}}},
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: xdsTrustedCASecret, SdsConfig: fromFile(XDSTrustedCAFile)},
			}},
		},
	})
	if err != nil {
		return nil, err
	}
	connections, err := anypb.New(&downstreamv3.DownstreamConnectionsConfig{MaxActiveDownstreamConnections: MaxDownstreamConnections})
	if err != nil {
		return nil, err
	}
	ads := &corev3.ConfigSource{ResourceApiVersion: corev3.ApiVersion_V3, ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}
	b := &bootstrapv3.Bootstrap{
		Node: &corev3.Node{Cluster: "crossgate"},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &corev3.ApiConfigSource{
				ApiType:                   corev3.ApiConfigSource_DELTA_GRPC,
				TransportApiVersion:       corev3.ApiVersion_V3,
				GrpcServices:              []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: "xds"}}}},
				SetNodeOnFirstMessageOnly: true,
			},
			LdsConfig: ads,
			CdsConfig: ads,
		},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{Clusters: []*clusterv3.Cluster{{
			Name:                          "xds",
			ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
			ConnectTimeout:                durationpb.New(5 * time.Second),
			TypedExtensionProtocolOptions: map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": h2},
			TransportSocket:               &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: tls}},
			LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: "xds", Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: socket(host, port),
				}}}},
			}}},
		}}},
		Admin: &bootstrapv3.Admin{Address: socket("127.0.0.1", AdminPort)},
		OverloadManager: &overloadv3.OverloadManager{ResourceMonitors: []*overloadv3.ResourceMonitor{{
			Name:       "envoy.resource_monitors.global_downstream_max_connections",
			ConfigType: &overloadv3.ResourceMonitor_TypedConfig{TypedConfig: connections},
		}}},
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	out := map[string]string{}
	j, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(b)
	if err != nil {
		return nil, err
	}
	out[BootstrapFile] = string(j)
	for name, secret := range map[string]*tlsv3.Secret{
		XDSCertificateFile: {Name: xdsCertificateSecret, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: file(IdentityCertFile), PrivateKey: file(IdentityKeyFile), WatchedDirectory: watched,
		}}},
		XDSTrustedCAFile: {Name: xdsTrustedCASecret, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: file(IdentityCAFile), WatchedDirectory: watched,
		}}},
	} {
		if err := secret.ValidateAll(); err != nil {
			return nil, fmt.Errorf("bootstrap %s: %w", name, err)
		}
		res, err := anypb.New(secret)
		if err != nil {
			return nil, err
		}
		j, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(&discoveryv3.DiscoveryResponse{Resources: []*anypb.Any{res}})
		if err != nil {
			return nil, err
		}
		out[name] = string(j)
	}
	return out, nil
}

func socket(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// ParseBootstrap reads a bootstrap back, for tests and `crossgate proxy config`.
func ParseBootstrap(b []byte) (*bootstrapv3.Bootstrap, error) {
	out := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(b, out); err != nil {
		return nil, err
	}
	return out, nil
}
