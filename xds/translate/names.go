package translate

import (
	"fmt"
	"net"
	"strconv"

	"github.com/crossgate-io/crossgate/translator/ir"
)

// Deterministic names of the resources this package builds, defined in one place.
const (
	// SecretCertificate is the SDS name of a workload's certificate and key.
	SecretCertificate = "default"
	// SecretRootCA is the SDS name of the trust bundle (the cluster set's root).
	SecretRootCA = "ROOTCA"
	// CertificateProviderInstance is the name of the certificate provider (grpc-go's
	// file_watcher) that proxyless workloads configure in their bootstrap.
	CertificateProviderInstance = "crossgate"
	// ServerListenerTemplate is the server_listener_resource_name_template of a proxyless
	// workload's bootstrap: %s is the exact listening address host:port.
	ServerListenerTemplate = "crossgate/inbound/%s"

	// OutboundCapturePort is where traffic capture sends a sidecar's outgoing connections.
	OutboundCapturePort = ir.OutboundCapturePort
	// InboundCapturePort is where traffic capture sends a sidecar's incoming connections.
	InboundCapturePort = ir.InboundCapturePort
	// ProbePort is where kubelet's rewritten HTTP probes reach the sidecar, which forwards each
	// to the application in plaintext.
	ProbePort = ir.ProbePort
	// ProbePathPrefix starts a rewritten probe's path: /crossgate-probe/<port><original path>.
	ProbePathPrefix = "/crossgate-probe/"
	// ReadyPath on ProbePort answers 200 once the sidecar has its listeners: the sidecar's
	// startup probe, which holds the application back until then.
	ReadyPath = "/crossgate-ready"
	// HTTPProtocolOptionsKey is the typed_extension_protocol_options key of a cluster's upstream
	// HTTP protocol.
	HTTPProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

	outboundVirtualListener = "outbound-virtual"
	inboundListener         = "inbound"
	probeListener           = "probe"
	passthroughCluster      = "passthrough"
	// inboundPassthroughCluster takes incoming connections to ports no Service exposes to their
	// original destination, from InboundPassthroughSource: the capture rules let connections
	// from that address through, so they reach the application instead of the sidecar again.
	inboundPassthroughCluster = "inbound-passthrough"
	// invalidBackendCluster is never defined: a route to it answers 500
	// (cluster_not_found_response_code), which is what Gateway API asks for unresolved backends.
	invalidBackendCluster = "invalid-backend"
)

func outboundListenerName(port uint32) string {
	return "outbound-" + strconv.FormatUint(uint64(port), 10)
}

// outboundRouteName names the route configuration of one HTTP service port, as its cluster.
func outboundRouteName(key string) string { return OutboundClusterName(key) }

// OutboundClusterName names the cluster (and its EDS resource) of a service port key ns/name:port.
func OutboundClusterName(key string) string { return "outbound/" + key }

// OutboundLocalClusterName names the cluster of a service port's local endpoints alone, which
// takes the requests a caller may not send to the remote clusters.
func OutboundLocalClusterName(key string) string { return "outbound-local/" + key }

// InboundPassthroughSource is the source address of the connections the sidecar passes through
// to its own application (Istio uses 127.0.0.6 likewise).
const InboundPassthroughSource = ir.InboundPassthroughSource

func probeClusterName(port uint32) string { return "probe/" + strconv.FormatUint(uint64(port), 10) }

func inboundClusterName(port uint32) string { return "inbound/" + strconv.FormatUint(uint64(port), 10) }

// GatewayClusterName names a gateway's cluster for a backend key ns/name:port.
func GatewayClusterName(key string) string { return "gateway/" + key }

// GatewayCertificateName names the SDS secret of an HTTPS listener's certificate, from the
// Secret's namespace/name; it cannot be one of a proxy's own secrets (SecretCertificate,
// SecretRootCA).
func GatewayCertificateName(secret string) string { return "certificate/" + secret }

// PassthroughClusterName names a gateway's cluster for the backend key ns/name:port of a TLS
// route: connections to it are passed through, not terminated.
func PassthroughClusterName(key string) string { return "passthrough/" + key }

// ServerListenerName is the name of a proxyless server's listener for its listening address.
func ServerListenerName(host string, port uint32) string {
	return fmt.Sprintf(ServerListenerTemplate, net.JoinHostPort(host, strconv.FormatUint(uint64(port), 10)))
}

// proxylessRouteName names the route configuration of one service port for proxyless callers.
func proxylessRouteName(key string) string { return "proxyless/" + key }
