package translate

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/crossgate-io/crossgate/translator/ir"
	"github.com/crossgate-io/crossgate/wellknown"
)

// mustAny packs a message; packing a well-formed message of a linked-in type cannot fail.
func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(fmt.Sprintf("packing %T: %v", m, err))
	}
	return a
}

// packedOnce memoizes the typed configurations that do not depend on what is built: the router
// filter, the listener filters, the TLS contexts of a trust domain, the upstream protocol options.
// A full build packs them for every cluster, route and listener (tens of thousands at B1's size),
// always to the same bytes. Each caller gets an Any of its own that shares those bytes, which
// nothing modifies: an Any shared between resources would have its size cached concurrently by
// the marshalers of both. peerContexts memoizes the upstream TLS contexts by the identities they
// accept: as many as there are distinct sets of a service's identities.
var (
	packedOnce   = memo{max: maxMemo}
	peerContexts = memo{max: 16 * maxMemo}
)

// memo is a bounded memo of packed messages; past max it starts over.
type memo struct {
	mu  sync.Mutex
	m   map[string]*anypb.Any
	max int
}

// packed returns the packed form of the message build makes, memoized under key. key must name
// everything the message depends on.
func (m *memo) packed(key string, build func() proto.Message) *anypb.Any {
	m.mu.Lock()
	a := m.m[key]
	m.mu.Unlock()
	if a == nil {
		a = mustAny(build())
		m.mu.Lock()
		if m.m == nil || len(m.m) >= m.max {
			m.m = map[string]*anypb.Any{}
		}
		m.m[key] = a
		m.mu.Unlock()
	}
	return &anypb.Any{TypeUrl: a.TypeUrl, Value: a.Value}
}

// packed is packedOnce.packed. The memo is bounded: the trust domains a process has seen are the
// only open-ended part of its keys.
func packed(key string, build func() proto.Message) *anypb.Any { return packedOnce.packed(key, build) }

// maxMemo bounds each memo of this package; past it the memo starts over.
const maxMemo = 1024

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func adsConfig() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func routerFilter() *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: packed("router", func() proto.Message { return &routerv3.Router{} })}}
}

// hcmKind says which proxy and which side an HTTP connection manager serves.
type hcmKind int

const (
	// hcmOutbound is a sidecar's outbound: the app is the client.
	hcmOutbound hcmKind = iota
	// hcmInbound is a sidecar's inbound: it authorizes requests by path (RBAC).
	hcmInbound
	// hcmGateway is a gateway: it faces clients outside the mesh and routes by path.
	hcmGateway
	// hcmGRPC is grpc-go's (an API listener or a proxyless server's listener): grpc-go reads the
	// route configuration and the HTTP filters, and ignores Envoy's connection settings.
	hcmGRPC
)

// hcm builds an HTTP connection manager with RDS (rdsName) or an inline route configuration.
//
// Every Envoy HCM proxies WebSocket upgrades (Envoy forwards an Upgrade only for the types in
// upgrade_configs: docs arch_overview/http/upgrades). Those that authorize or route by path
// (inbound, gateway) normalise it first, as Envoy Gateway does: without normalize_path and
// merge_slashes, an RBAC rule on /status/.* admits /status/../admin (http_connection_manager.proto
// normalize_path, "defaults to false"). A gateway takes requests from outside the mesh, so it uses
// the peer's address rather than trusting x-forwarded-for, and treats its clients as external:
// Envoy honours x-envoy-* request headers only from internal clients (use_remote_address;
// Envoy's edge proxy best practices).
func hcm(kind hcmKind, statPrefix, rdsName string, inline *routev3.RouteConfiguration, filters ...*hcmv3.HttpFilter) *hcmv3.HttpConnectionManager {
	m := &hcmv3.HttpConnectionManager{
		StatPrefix:  statPrefix,
		CodecType:   hcmv3.HttpConnectionManager_AUTO,
		HttpFilters: append(filters, routerFilter()),
	}
	if kind != hcmGRPC {
		m.StripPortMode = &hcmv3.HttpConnectionManager_StripAnyHostPort{StripAnyHostPort: true}
		m.UpgradeConfigs = []*hcmv3.HttpConnectionManager_UpgradeConfig{{UpgradeType: "websocket"}}
	}
	if kind == hcmInbound || kind == hcmGateway {
		normalizePaths(m)
	}
	if kind == hcmGateway {
		m.UseRemoteAddress = wrapperspb.Bool(true)
	}
	if inline != nil {
		m.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: inline}
	} else {
		m.RouteSpecifier = &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: rdsName, ConfigSource: adsConfig()}}
	}
	return m
}

// normalizePaths has the connection manager normalize paths before filters and routing, as
// every proxy that authorizes by path must: the path a rule matched is then the path the next
// hop sees (an RBAC filter, or a remote gateway that normalizes it in turn). Without it a rule
// for /status/.* would admit /status/../admin, which the gateway then routes as /admin.
func normalizePaths(m *hcmv3.HttpConnectionManager) {
	m.NormalizePath = wrapperspb.Bool(true)
	m.MergeSlashes = true
	m.PathWithEscapedSlashesAction = hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT
}

// noTimeout is a route's timeout: none, as for an application without a proxy. Envoy's default
// is 15 s (route_components.proto RouteAction.timeout), which would cut long requests and every
// gRPC stream; Istio sets 0s likewise.
func noTimeout() *durationpb.Duration { return durationpb.New(0) }

// Envoy reads certificates over SDS; proxyless gRPC reads them from its certificate provider.
type certSource int

const (
	viaSDS certSource = iota
	viaProvider
)

// commonTLS configures a workload certificate and the trust bundle; the peer's certificate must
// also carry a URI SAN that one of peer matches (none: any certificate of the set's root). grpc-go
// refuses that check on the server side, where the RBAC filter authorizes the peer's identity
// instead.
//
// Envoy matches the peer with match_typed_subject_alt_names (a URI SAN); match_subject_alt_names
// is deprecated there (common.proto) and logs a deprecation warning. grpc-go reads only
// match_subject_alt_names (xdsresource/unmarshal_cds.go) and would ignore the typed one, so the
// proxyless form keeps it.
func commonTLS(src certSource, trustDomain string, peer []*matcherv3.StringMatcher) *tlsv3.CommonTlsContext {
	if src == viaProvider {
		return &tlsv3.CommonTlsContext{
			TlsCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: CertificateProviderInstance, CertificateName: SecretCertificate},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				CaCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: CertificateProviderInstance, CertificateName: SecretRootCA},
				MatchSubjectAltNames:          peer, //nolint:staticcheck // grpc-go reads only this field (see above)
			}},
		}
	}
	var typed []*tlsv3.SubjectAltNameMatcher
	for _, m := range peer {
		typed = append(typed, &tlsv3.SubjectAltNameMatcher{SanType: tlsv3.SubjectAltNameMatcher_URI, Matcher: m})
	}
	sds := func(name string) *tlsv3.SdsSecretConfig {
		return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: adsConfig()}
	}
	return &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds(SecretCertificate)},
		ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
			DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: typed},
			ValidationContextSdsSecretConfig: sds(SecretRootCA),
		}},
	}
}

// trustDomainPeer matches any workload of the trust domain.
func trustDomainPeer(trustDomain string) []*matcherv3.StringMatcher {
	return []*matcherv3.StringMatcher{{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: wellknown.SPIFFEPrefix(trustDomain)}}}
}

// Peers are the identities a caller accepts as the server of a cluster (finding K9): those its
// endpoints run as. A local endpoint's is its pod's ServiceAccount; a remote cluster's endpoints
// run as the import's serviceAccountName (through the gateway, the caller's TLS reaches the
// workload itself). Where the identity is not known (an endpoint without a pod, an import of
// any account, "*"), any ServiceAccount of the service's namespace: a Service's pods are in its
// namespace.
type Peers struct {
	exact, namespaces []string
}

// peersOf collects the identities of the endpoints.
func peersOf(endpoints func(yield func(ir.Endpoint) bool)) Peers {
	var p Peers
	for e := range endpoints {
		if id := e.Identity; id.ServiceAccount == "" || id.Any() {
			p.namespaces = append(p.namespaces, id.Namespace)
		} else {
			p.exact = append(p.exact, id.Namespace+"/"+id.ServiceAccount)
		}
	}
	slices.Sort(p.exact)
	slices.Sort(p.namespaces)
	p.exact, p.namespaces = slices.Compact(p.exact), slices.Compact(p.namespaces)
	return p
}

// key names the set for the memo.
func (p Peers) key() string {
	return strings.Join(p.exact, ",") + "|" + strings.Join(p.namespaces, ",")
}

// matchers are the peers' SAN matchers: exact SPIFFE IDs, and the prefix of each namespace whose
// accounts are not known. No endpoint: the trust domain (the cluster connects nowhere).
func (p Peers) matchers(trustDomain string) []*matcherv3.StringMatcher {
	if len(p.exact) == 0 && len(p.namespaces) == 0 {
		return trustDomainPeer(trustDomain)
	}
	var out []*matcherv3.StringMatcher
	for _, ns := range p.namespaces {
		out = append(out, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: wellknown.NamespacePrefix(trustDomain, ns)}})
	}
	for _, id := range p.exact {
		ns, sa, _ := strings.Cut(id, "/")
		if slices.Contains(p.namespaces, ns) {
			continue // the namespace's prefix takes it
		}
		out = append(out, exact(ir.Identity{Namespace: ns, ServiceAccount: sa}.SPIFFEID(trustDomain)))
	}
	return out
}

// upstreamTLS originates mTLS, accepting the peers as the server. sni, when set, is the server
// name sent (wellknown.MeshSNI), by which a remote gateway passes the connection through to the
// service's workloads. Envoy offers wellknown.MeshALPN first (meshALPN), so that the workload's
// proxy knows the TLS is the mesh's; grpc-go ignores alpn_protocols (it always offers h2) and is
// known by its server name.
func upstreamTLS(src certSource, trustDomain string, peers Peers, sni string, protocol upstreamProtocol) *corev3.TransportSocket {
	var alpn []string
	if src == viaSDS {
		alpn = meshALPN(protocol)
	}
	a := peerContexts.packed(fmt.Sprintf("upstream-tls/%d/%s/%v/%s", src, trustDomain, alpn, peers.key()), func() proto.Message {
		common := commonTLS(src, trustDomain, peers.matchers(trustDomain))
		common.AlpnProtocols = alpn
		return &tlsv3.UpstreamTlsContext{CommonTlsContext: common}
	})
	if sni != "" {
		// The context without sni, followed by the encoded sni field, is the context with sni:
		// protobuf's encoding merges concatenated messages, and fields in number order are what
		// the deterministic marshaler writes (TestSNIAppendedAsMarshaled). Per cluster, this
		// costs the name rather than a marshal of the whole context. Clip: the memo's bytes are
		// shared, append must copy them.
		a.Value = protowire.AppendString(protowire.AppendTag(slices.Clip(a.Value), upstreamSNIField, protowire.BytesType), sni)
	}
	return &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}
}

// meshALPN is what Envoy offers when it opens mesh mTLS to a cluster that speaks protocol.
// A configured list replaces the ALPN of the connection pool's protocol, which Envoy otherwise
// offers (conn_pool_base.cc wrapTransportSocketOptions: the pool's protocols are only the
// fallback), and one list serves every pool of the cluster. So h2 is offered only where the
// cluster always speaks HTTP/2: the workload's proxy picks it (its alpn_protocols list h2) and
// a proxyless gRPC server requires it (Go's crypto/tls refuses a client whose protocols it
// supports none of). Elsewhere the mesh protocol alone agrees on nothing, and the workload's
// proxy reads HTTP/1.1 or HTTP/2 from the client's first bytes (codec_type AUTO) — offering h2
// to a pool that speaks HTTP/1.1 would have it decode HTTP/1.1 as HTTP/2. Istio offers its
// "istio" the same way (pilot networking/common ALPNInMesh, ALPNInMeshH2).
func meshALPN(protocol upstreamProtocol) []string {
	if protocol == alwaysHTTP2 {
		return []string{wellknown.MeshALPN, "h2"}
	}
	return []string{wellknown.MeshALPN}
}

// upstreamSNIField is the field number of UpstreamTlsContext.sni.
const upstreamSNIField = 2

// downstreamTLS terminates mTLS. Envoy's server negotiates ALPN only with alpn_protocols set;
// without it a client offering h2 gets no protocol and relies on Envoy inferring HTTP/2 from the
// preface. grpc-go ignores alpn_protocols (it always negotiates h2).
func downstreamTLS(src certSource, trustDomain string) *corev3.TransportSocket {
	return &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{
		TypedConfig: packed(fmt.Sprintf("downstream-tls/%d/%s", src, trustDomain), func() proto.Message {
			var peer []*matcherv3.StringMatcher
			if src == viaSDS {
				peer = trustDomainPeer(trustDomain) // the RBAC filter authorizes the identity
			}
			common := commonTLS(src, trustDomain, peer)
			if src == viaSDS {
				common.AlpnProtocols = []string{"h2", "http/1.1"}
			}
			return &tlsv3.DownstreamTlsContext{CommonTlsContext: common, RequireClientCertificate: wrapperspb.Bool(true)}
		}),
	}}
}

// rbacFilter builds the RBAC HTTP filter of an inbound port: allow what a policy allows, deny
// the rest. A rule with an invalid regular expression is dropped (it allows nothing) and
// reported.
func rbacFilter(r *ir.RBAC, trustDomain string) (*hcmv3.HttpFilter, error) {
	cfg, err := rbacPolicies(r, trustDomain)
	f := &hcmv3.HttpFilter{Name: "envoy.filters.http.rbac", ConfigType: &hcmv3.HttpFilter_TypedConfig{
		TypedConfig: mustAny(&rbacfilterv3.RBAC{Rules: cfg}),
	}}
	return f, err
}

func rbacPolicies(r *ir.RBAC, trustDomain string) (*rbacv3.RBAC, error) {
	cfg := &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{}}
	var errs []error
	for _, p := range r.Policies {
		pol := &rbacv3.Policy{}
		for _, id := range p.Principals {
			pol.Principals = append(pol.Principals, &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{
				Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: exact(id.SPIFFEID(trustDomain))},
			}})
		}
		if len(p.Rules) == 0 {
			pol.Permissions = []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}}
		}
		for _, rule := range p.Rules {
			perm, err := permission(rule)
			if err != nil {
				errs = append(errs, fmt.Errorf("policy %s: %w", p.Name, err))
				continue
			}
			pol.Permissions = append(pol.Permissions, perm)
		}
		if len(pol.Permissions) > 0 && len(pol.Principals) > 0 {
			cfg.Policies[p.Name] = pol
		}
	}
	return cfg, errors.Join(errs...)
}

func exact(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

// compiled remembers whether each regular expression seen compiles: the same few expressions
// (an HTTPRouteGroup's) are checked again for every service that a TrafficTarget covers.
var compiled struct {
	mu sync.Mutex
	m  map[string]error
}

func regex(re string) (*matcherv3.StringMatcher, error) {
	compiled.mu.Lock()
	err, ok := compiled.m[re]
	compiled.mu.Unlock()
	if !ok {
		_, err = regexp.Compile(re)
		compiled.mu.Lock()
		if compiled.m == nil || len(compiled.m) >= maxMemo {
			compiled.m = map[string]error{}
		}
		compiled.m[re] = err
		compiled.mu.Unlock()
	}
	if err != nil {
		return nil, fmt.Errorf("invalid regular expression %q: %w", re, err)
	}
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}, nil
}

func permission(rule ir.HTTPRule) (*rbacv3.Permission, error) {
	var and []*rbacv3.Permission
	if rule.PathRegex != "" {
		m, err := regex(rule.PathRegex)
		if err != nil {
			return nil, err
		}
		and = append(and, &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{
			Rule: &matcherv3.PathMatcher_Path{Path: m},
		}}})
	}
	if len(rule.Methods) > 0 {
		var or []*rbacv3.Permission
		for _, m := range rule.Methods {
			or = append(or, &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: &routev3.HeaderMatcher{
				Name: ":method", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exact(m)},
			}}})
		}
		and = append(and, &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: or}}})
	}
	for _, h := range rule.Headers {
		hm, err := headerMatcher(h)
		if err != nil {
			return nil, err
		}
		and = append(and, &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: hm}})
	}
	if len(and) == 0 {
		return &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}}, nil
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: and}}}, nil
}

// ruleMatch is the route match of an HTTP rule: what permission(rule) admits, as a route. Envoy
// matches a safe_regex path against the whole path without its query (route_components.proto
// RouteMatch.safe_regex), as the RBAC filter's url_path (rbac.proto Permission.url_path). For
// grpc-go (withMethod false) the :method pseudo-header is not in the metadata its header
// matchers read (resolver/serviceconfig.go SelectConfig), and every RPC is a POST: a rule that
// allows POST (or any method) matches without the method, and one that does not can never match
// (an error).
func ruleMatch(rule ir.HTTPRule, withMethod bool) (*routev3.RouteMatch, error) {
	m := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	if rule.PathRegex != "" {
		re, err := regex(rule.PathRegex)
		if err != nil {
			return nil, err
		}
		m.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: re.GetSafeRegex()}
	}
	switch {
	case len(rule.Methods) == 0:
	case !withMethod:
		if !slices.Contains(rule.Methods, "POST") {
			return nil, fmt.Errorf("methods %s: a gRPC call is a POST", strings.Join(rule.Methods, ", "))
		}
	default:
		quoted := make([]string, len(rule.Methods))
		for i, meth := range rule.Methods {
			quoted[i] = regexp.QuoteMeta(meth)
		}
		sm := exact(rule.Methods[0])
		if len(quoted) > 1 {
			sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: strings.Join(quoted, "|")}}}
		}
		m.Headers = append(m.Headers, &routev3.HeaderMatcher{Name: ":method", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: sm}})
	}
	for _, h := range rule.Headers {
		hm, err := headerMatcher(h)
		if err != nil {
			return nil, err
		}
		m.Headers = append(m.Headers, hm)
	}
	return m, nil
}

func headerMatcher(h ir.HeaderMatch) (*routev3.HeaderMatcher, error) {
	m := exact(h.Exact)
	if h.Regex != "" {
		var err error
		if m, err = regex(h.Regex); err != nil {
			return nil, fmt.Errorf("header %s: %w", h.Name, err)
		}
	}
	return &routev3.HeaderMatcher{Name: strings.ToLower(h.Name), HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: m}}, nil
}
