package ir

import (
	"slices"
	"strconv"
	"strings"

	"github.com/crossgate-io/crossgate/wellknown"
)

// Snapshot is the whole configuration of one cluster's proxies.
type Snapshot struct {
	// TrustDomain of the SPIFFE identities of this cluster set.
	TrustDomain string `json:"trustDomain"`
	// OutboundSets are the outbound service lists callers see, each held once and named by
	// Sidecar.Outbound: callers whose lists are built from the same access share one (every
	// caller in permissive mode). Sorted by name.
	OutboundSets []OutboundSet `json:"outboundSets,omitempty"`
	// Sidecars, one per workload identity, sorted by identity.
	Sidecars []Sidecar `json:"sidecars,omitempty"`
	// Gateways, one per Gateway object of our class, sorted by namespace/name.
	Gateways []Gateway `json:"gateways,omitempty"`
}

// OutboundSet is one outbound service list, shared by the sidecars that name it.
type OutboundSet struct {
	// Name is the identity (ns/sa) of the first sidecar, in order, that uses the set.
	Name string `json:"name"`
	// Services are the services the set's callers may call, one entry per service port, sorted
	// by port, namespace and name.
	Services []OutboundService `json:"services"`
}

// Outbound is the outbound service list of sc: the set it names, nil when none.
func (s *Snapshot) Outbound(sc *Sidecar) []OutboundService {
	if sc.Outbound == "" {
		return nil
	}
	i, ok := slices.BinarySearchFunc(s.OutboundSets, sc.Outbound, func(o OutboundSet, name string) int { return strings.Compare(o.Name, name) })
	if !ok {
		return nil
	}
	return s.OutboundSets[i].Services
}

// Identity is a workload identity: a ServiceAccount. ServiceAccount "*" stands for any
// identity in the namespace (a ServiceImport's serviceAccountName "*").
type Identity struct {
	Namespace      string `json:"namespace"`
	ServiceAccount string `json:"serviceAccount"`
}

// Any reports whether the identity stands for any ServiceAccount.
func (i Identity) Any() bool { return i.ServiceAccount == "*" }

func (i Identity) String() string { return i.Namespace + "/" + i.ServiceAccount }

// SPIFFEID is the identity's URI in a trust domain.
func (i Identity) SPIFFEID(trustDomain string) string {
	return wellknown.SPIFFEID{TrustDomain: trustDomain, Namespace: i.Namespace, ServiceAccount: i.ServiceAccount}.String()
}

// Protocol is what a port carries, as the Service port's appProtocol or name declares it.
type Protocol string

const (
	// HTTP is HTTP/1.1 or HTTP/2, routed by Host and path; upstream, a proxy speaks the protocol
	// its caller spoke. Ports that declare nothing are HTTP.
	HTTP Protocol = "HTTP"
	// HTTP2 is HTTP/2 only (gRPC, h2c): routed like HTTP, and always HTTP/2 upstream.
	HTTP2 Protocol = "HTTP2"
	// TLS is a TLS stream the application terminates itself (https, tls): forwarded opaque by
	// address and port, never parsed as HTTP.
	TLS Protocol = "TLS"
	// TCP is opaque TCP, forwarded by address and port.
	TCP Protocol = "TCP"
)

// Routed reports whether a proxy parses the port's traffic as HTTP (routes by Host and path).
func (p Protocol) Routed() bool { return p == HTTP || p == HTTP2 }

// Ports a sidecar's Envoy listens on itself, which no outbound service may use: its admin
// interface, the capture listeners of outgoing and incoming connections, and the listener that
// answers kubelet's probes.
const (
	AdminPort           = 15000
	OutboundCapturePort = 15001
	InboundCapturePort  = 15006
	ProbePort           = 15020
)

// InboundPassthroughSource is the source address of the connections a sidecar passes through
// to its own application: capture lets connections from it through (Istio uses 127.0.0.6).
const InboundPassthroughSource = "127.0.0.6"

// Reserved reports whether port is one the sidecar listens on itself.
func Reserved(port uint32) bool {
	switch port {
	case AdminPort, OutboundCapturePort, InboundCapturePort, ProbePort:
		return true
	}
	return false
}

// Sidecar is the configuration of every proxy (or proxyless workload) running as one identity.
type Sidecar struct {
	Identity Identity `json:"identity"`
	// Outbound names the OutboundSet of the services this identity may call; empty when it may
	// call none.
	Outbound string `json:"outbound,omitempty"`
	// Inbound are the ports this identity serves, sorted by port.
	Inbound []InboundPort `json:"inbound,omitempty"`
	// Probes are the kubelet HTTP probes of this identity's pods, as the injector rewrote them
	// to the sidecar's probe port, sorted by port and path.
	Probes []Probe `json:"probes,omitempty"`
}

// Probe is one HTTP probe the sidecar forwards to the application: kubelet sends
// GET /crossgate-probe/<Port><Path> to the probe port, the application gets GET <Path> on Port.
type Probe struct {
	Port uint32 `json:"port"`
	Path string `json:"path"`
}

// OutboundService is one port of a service as a caller sees it.
type OutboundService struct {
	// Namespace and Name of the service.
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Port the caller dials (the Service or ServiceImport port).
	Port     int32    `json:"port"`
	Protocol Protocol `json:"protocol"`
	// Hostnames callers use: name.ns, name.ns.svc, name.ns.svc.<domain>, and the ClusterIP.
	Hostnames []string `json:"hostnames"`
	// Localities hold the endpoints, one locality per source cluster, sorted by priority then
	// cluster. Priorities are contiguous from 0.
	Localities []Locality `json:"localities"`
	// RetryOtherPriority retries a failed request (connect failure or 5xx) once on the next
	// priority: the FailOver policy.
	RetryOtherPriority bool `json:"retryOtherPriority,omitempty"`
	// Policy is the GlobalTrafficPolicy type in force: Locality, FailOver or ActiveActive.
	Policy string `json:"policy"`
	// RemoteRules, in policy mode, are the requests the caller may send to the remote clusters'
	// localities (the rules of its TrafficTargets to the import's identity): a request that
	// matches none is served by the local localities alone, or refused with 403 when there are
	// none. Empty: any request may go to any locality.
	RemoteRules []HTTPRule `json:"remoteRules,omitempty"`
	// SNI is the TLS server name the caller sends (wellknown.MeshSNI): the remote gateways route
	// the caller's mTLS by it, without terminating it, to their endpoints of the service port,
	// and the workload's proxy terminates TLS that names one of its services.
	SNI string `json:"sni,omitempty"`
}

// Key is the deterministic name of the outbound service port: ns/name:port.
func (o OutboundService) Key() string { return ServiceKey(o.Namespace, o.Name, o.Port) }

// ServiceKey names a service port: ns/name:port.
func ServiceKey(namespace, name string, port int32) string {
	return namespace + "/" + name + ":" + strconv.Itoa(int(port))
}

// Locality is the set of endpoints of one source cluster.
type Locality struct {
	// Cluster is the source cluster's key (region/zone/group/name).
	Cluster string `json:"cluster"`
	// Local is true for the caller's own cluster (endpoints are pods); false for a remote
	// cluster (endpoints are its gateway).
	Local    bool   `json:"local,omitempty"`
	Priority uint32 `json:"priority"`
	// Weight of the locality within its priority; never 0 (a zero weight drops the locality).
	Weight    uint32     `json:"weight"`
	Endpoints []Endpoint `json:"endpoints"`
}

// Endpoint is one address that serves a service port.
type Endpoint struct {
	Address string `json:"address"`
	Port    uint32 `json:"port"`
	// Identity the endpoint serves as: its pod's ServiceAccount, or for a remote cluster the
	// ServiceImport's serviceAccountName (ServiceAccount "*" = any).
	Identity Identity `json:"identity"`
	// Proxyless is set for a pod that serves with grpc-go's xDS support (no sidecar): it takes
	// mTLS and HTTP/2 only.
	Proxyless bool `json:"proxyless,omitempty"`
}

// InboundPort is one port a sidecar's workload listens on.
type InboundPort struct {
	// Port is the workload's port (the Service's targetPort).
	Port     uint32   `json:"port"`
	Protocol Protocol `json:"protocol"`
	// Services that reach this port, as ns/name:servicePort, sorted.
	Services []string `json:"services"`
	// ProxylessAddresses are the addresses of this identity's proxyless gRPC workloads on this
	// port, sorted: each gets a server listener named after its exact listening address. Pods
	// with an Envoy sidecar need none.
	ProxylessAddresses []string `json:"proxylessAddresses,omitempty"`
	// RBAC is the access policy; nil lets every caller in (permissive mode).
	RBAC *RBAC `json:"rbac,omitempty"`
}

// RBAC allows a request when any policy allows it, and denies everything else.
type RBAC struct {
	Policies []Policy `json:"policies"`
}

// Policy allows requests from any of Principals that match any of Rules.
type Policy struct {
	// Name is deterministic: the TrafficTarget's ns/name, or "gateway/<ns>/<name>".
	Name string `json:"name"`
	// Principals are the allowed caller identities, sorted.
	Principals []Identity `json:"principals"`
	// Rules describe the allowed requests; empty allows any request.
	Rules []HTTPRule `json:"rules,omitempty"`
}

// HTTPRule matches a request when every part given matches.
type HTTPRule struct {
	// PathRegex is an RE2 expression the whole path must match; empty matches any path.
	PathRegex string `json:"pathRegex,omitempty"`
	// Methods, any of which matches; empty matches any method.
	Methods []string `json:"methods,omitempty"`
	// Headers must all be present and match these RE2 expressions, sorted by name.
	Headers []HeaderMatch `json:"headers,omitempty"`
}

// MatchesAll reports whether the rule matches every request.
func (r HTTPRule) MatchesAll() bool {
	return r.PathRegex == "" && len(r.Methods) == 0 && len(r.Headers) == 0
}

// Equal reports whether two rules are the same.
func (r HTTPRule) Equal(o HTTPRule) bool {
	return r.PathRegex == o.PathRegex && slices.Equal(r.Methods, o.Methods) && slices.Equal(r.Headers, o.Headers)
}

// HeaderMatch is one header condition.
type HeaderMatch struct {
	Name string `json:"name"`
	// Regex is an RE2 expression the whole value must match.
	Regex string `json:"regex,omitempty"`
	// Exact, when set, is the exact value (used by Gateway API matches).
	Exact string `json:"exact,omitempty"`
}
