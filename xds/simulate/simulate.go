package simulate

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/crossgate-io/crossgate/inject/capture"
	"github.com/crossgate-io/crossgate/xds/resources"
	"github.com/crossgate-io/crossgate/xds/translate"
)

// Protocols a client speaks, and a cluster speaks upstream.
const (
	HTTP1 = "HTTP/1.1"
	HTTP2 = "HTTP/2"
	// TCP is a stream that is not HTTP: a database protocol, or TLS that the proxy does not
	// terminate.
	TCP = "TCP"
)

// Request is one connection, and the request it carries, as a client opens it.
type Request struct {
	// Listener names a listener of grpc-go: an API listener (the client's target host:port) or
	// a proxyless server's listener. The request is then evaluated as grpc-go would.
	Listener string
	// Inbound is set for a connection arriving at the sidecar's pod; otherwise a process of the
	// pod opens it (a sidecar), or it arrives at the proxy's listening port (a gateway).
	Inbound bool
	// PodIP is the pod's own address (a sidecar); DestinationIP the address the connection is
	// opened to (for Inbound, the pod's address when empty); Port its port.
	PodIP, DestinationIP string
	Port                 uint32
	// UID of the process opening an outbound connection: 0 is the application.
	UID int
	// TLS is set when the client opens TLS; then SNI and ALPN are what its ClientHello offers, and
	// Source the SPIFFE URI of its client certificate ("" for none).
	TLS    bool
	SNI    string
	ALPN   []string
	Source string
	// ForeignCA is set when the client's certificate was not issued by the set's root (another
	// CA, or self-signed): whatever its names, a proxy that verifies it refuses the handshake.
	ForeignCA bool
	// Protocol is what the client speaks inside: HTTP1 (the default), HTTP2 (gRPC, h2c), or TCP.
	Protocol string
	// ServerFirst is set for a client that sends nothing until the server speaks (MySQL, SMTP).
	ServerFirst bool
	// Hello stops at the filter chain, as far as a TLS connection's ClientHello decides:
	// Simulate then reports whether the chain terminates TLS and the protocol its server agrees
	// on (Result.TerminatesTLS, Result.ALPN) instead of going on with the handshake.
	Hello bool
	// The HTTP request.
	Host    string
	Path    string
	Method  string
	Headers map[string]string
}

func (r Request) protocol() string { return cmpOr(r.Protocol, HTTP1) }

// Result is what the proxy does with the connection.
type Result struct {
	// Bypass is set when the connection does not go through the proxy: capture leaves it alone,
	// and it reaches its destination (or, arriving, the application) directly.
	Bypass bool
	// Arrived is the listener that accepted the connection; Listener the one that served it,
	// another one when Arrived handed it over (use_original_dst).
	Arrived, Listener, FilterChain string
	// TerminatesTLS and ALPN answer a Hello request: whether the filter chain terminates TLS,
	// and the ALPN protocol its server agrees on ("" for none).
	TerminatesTLS bool
	ALPN          string
	// Certificates are the SDS secrets a chain that terminates TLS presents (its
	// tls_certificate_sds_secret_configs), from either a Hello or a full request.
	Certificates []string
	// DownstreamProtocol is the HTTP protocol of the request as the proxy decoded it.
	DownstreamProtocol              string
	RouteConfig, VirtualHost, Route string
	// Denied is set when the request reaches no upstream, with the reason.
	Denied     bool
	DenyReason string
	// Status is the HTTP status the proxy answers itself when it denies a request (404 no
	// route, 403 RBAC, 500 or 503 no cluster); 0 when it closes or resets the connection.
	Status uint32
	// DirectResponse is the status of a direct response (for example 500 for unresolved
	// Gateway API backends, 200 for the sidecar's readiness path, 302 for a redirect).
	DirectResponse uint32
	// Location is a redirect's Location header.
	Location string
	// Mirrors get copies of the request, whose answers are dropped.
	Mirrors []Mirror
	// Clusters the request may go to, with their weights (one with weight 1 without splitting).
	Clusters []Cluster
	// Path and Host as sent upstream, after rewrites.
	Path, Host string
	// Retry is the retry policy's retry_on, when the route retries, and Retries how many times.
	Retry   string
	Retries uint32
	// RetryOtherPriority is set when a retry goes to another priority than the ones tried
	// (previous_priorities), RetryOtherHost when to another host (previous_hosts).
	RetryOtherPriority, RetryOtherHost bool
	// Timeout is the route's timeout (Envoy), 0 for none.
	Timeout time.Duration
	// Headers are the request's headers as sent upstream, the route's changes applied
	// (RequestHeaderOps); ResponseHeaderOps are the route's changes to the response.
	Headers                             map[string]string
	RequestHeaderOps, ResponseHeaderOps HeaderOps
}

// Mirror is a copy of the request sent to a cluster (route_components.proto
// RequestMirrorPolicy): for PerMillion of the requests, with Host.
type Mirror struct {
	Cluster    Cluster
	PerMillion uint32
	Host       string
}

// HeaderOps are a route's changes to headers (route_components.proto request_headers_to_add,
// request_headers_to_remove, and the response's): the removals first, then the additions in
// order (router/header_parser.cc evaluateHeaders).
type HeaderOps struct {
	Remove []string
	Add    []HeaderAdd
}

// HeaderAdd is one header to add: appended to the values there are (APPEND_IF_EXISTS_OR_ADD),
// or replacing them (OVERWRITE_IF_EXISTS_OR_ADD); IfAbsent adds it only where there is none
// (ADD_IF_ABSENT), IfPresent replaces only what there is (OVERWRITE_IF_EXISTS).
type HeaderAdd struct {
	Name, Value         string
	Append              bool
	IfAbsent, IfPresent bool
}

// Apply applies the changes to headers by lower-case name, a header's values joined by commas.
func (o HeaderOps) Apply(h map[string]string) {
	for _, n := range o.Remove {
		delete(h, strings.ToLower(n))
	}
	for _, a := range o.Add {
		n := strings.ToLower(a.Name)
		old, ok := h[n]
		switch {
		case ok && a.IfAbsent, !ok && a.IfPresent:
		case ok && a.Append:
			h[n] = old + "," + a.Value
		default:
			h[n] = a.Value
		}
	}
}

func deny(r *Result, status uint32, format string, args ...any) *Result {
	r.Denied = true
	r.Status = status
	r.DenyReason = fmt.Sprintf(format, args...)
	return r
}

// Simulate loads a proxy's resources and runs one connection through them. With Listener set it
// is grpc-go that loads and serves; otherwise Envoy. Resources the client would refuse are left
// out, as the client leaves them out; Load reports them.
func Simulate(res *resources.Resources, req Request) *Result {
	f := Envoy
	if req.Listener != "" {
		f = GRPC
	}
	return Load(res, f).Simulate(req)
}

// connection is the state of a connection inside the proxy.
type connection struct {
	req Request
	// local is the connection's local address as Envoy sees it; restored once the original
	// destination of a redirected connection was read back.
	local      netip.AddrPort
	redirected bool
	restored   bool
	// transport is what the listener filters detected ("tls", "raw_buffer"); sni and alpn are
	// those tls_inspector read.
	transport string
	sni       string
	alpn      []string
	// terminated is set once a filter chain terminated TLS; peer is then the client's verified
	// identity, negotiated the ALPN protocol agreed.
	terminated bool
	peer       string
	negotiated string
	// client is set for grpc-go's API listener (the RPC's client side).
	client bool
}

// Simulate runs one connection through the loaded proxy.
func (p *Proxy) Simulate(req Request) *Result {
	r := &Result{Path: req.Path, Host: req.Host}
	if req.Listener != "" {
		l := p.byName[req.Listener]
		if l == nil {
			return deny(r, 0, "no listener %q", req.Listener)
		}
		r.Arrived, r.Listener = l.Name, l.Name
		if api := l.GetApiListener(); api != nil {
			m := &hcmv3.HttpConnectionManager{}
			_ = api.GetApiListener().UnmarshalTo(m) // checked by Load
			c := &connection{req: req, terminated: true, peer: "", negotiated: "h2", client: true}
			req.Protocol = HTTP2
			c.req = req
			return p.httpConnection(c, r, m)
		}
		dst := req.DestinationIP
		if dst == "" {
			dst = l.GetAddress().GetSocketAddress().GetAddress()
		}
		c, err := newConnection(req, dst, req.Port)
		if err != nil {
			return deny(r, 0, "%v", err)
		}
		return p.serve(c, r, l)
	}
	sidecar := p.sidecar()
	dst := req.DestinationIP
	if dst == "" && req.Inbound {
		dst = cmpOr(req.PodIP, defaultPodIP)
	}
	if dst == "" {
		if sidecar {
			return deny(r, 0, "the request names no destination address: give the IP the application connects to (the ClusterIP its DNS name resolves to)")
		}
		dst = "0.0.0.0"
	}
	c, err := newConnection(req, dst, req.Port)
	if err != nil {
		return deny(r, 0, "%v", err)
	}
	if sidecar {
		// The capture rules the injector installs decide where the connection goes.
		pod := netip.MustParseAddr(cmpOr(req.PodIP, defaultPodIP))
		v := capture.Evaluate(capture.Sidecar(), capture.Connection{
			Local: !req.Inbound, UID: req.UID, Destination: c.local.Addr(), DestinationPort: int(req.Port),
			PodAddresses: []netip.Addr{pod},
		})
		if v.Redirected {
			c.redirected = true
			l := p.listenerAt(netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(v.Port)), true)
			if l == nil {
				return deny(r, 0, "capture redirects the connection to port %d, where no listener is: connection refused", v.Port)
			}
			return p.serve(c, r, l)
		}
		if !req.Inbound {
			r.Bypass = true
			return r // not captured: straight to its destination
		}
		// Not captured arriving: whatever listens on the port takes it, a listener of the
		// sidecar's own (its probe port) or the application.
		if l := p.listenerAt(c.local, true); l != nil {
			return p.serve(c, r, l)
		}
		r.Bypass = true
		return r
	}
	l := p.listenerAt(c.local, true)
	if l == nil {
		return deny(r, 0, "no listener on %s: connection refused", c.local)
	}
	return p.serve(c, r, l)
}

// defaultPodIP stands for the pod's address when a request gives none.
const defaultPodIP = "192.0.2.10"

func newConnection(req Request, ip string, port uint32) (*connection, error) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return nil, fmt.Errorf("destination %q is not an IP address", ip)
	}
	return &connection{req: req, local: netip.AddrPortFrom(a, uint16(port))}, nil
}

// sidecar reports whether the proxy runs as a sidecar: its configuration holds the outbound
// capture listener, which only crossgate's sidecars get, and the injector installs the capture
// rules in every pod it gives a sidecar.
func (p *Proxy) sidecar() bool {
	l := p.listenerAt(netip.AddrPortFrom(netip.IPv4Unspecified(), translate.OutboundCapturePort), true)
	return l != nil && l.GetUseOriginalDst().GetValue()
}

// listenerAt is the listener Envoy gives a connection to addr: one at that exact address, then
// one at the wildcard address of its port (connection_handler_impl.cc
// getBalancedHandlerByAddress). Listeners that do not bind (bind_to_port false) take connections
// only by hand-off; bound is false when looking for one.
func (p *Proxy) listenerAt(addr netip.AddrPort, bound bool) *listenerv3.Listener {
	var wildcard *listenerv3.Listener
	for _, l := range p.listeners {
		sa := l.GetAddress().GetSocketAddress()
		if sa == nil || l.GetApiListener() != nil || sa.GetPortValue() != uint32(addr.Port()) {
			continue
		}
		if bound && l.GetBindToPort() != nil && !l.GetBindToPort().GetValue() {
			continue
		}
		a, err := netip.ParseAddr(sa.GetAddress())
		if err != nil {
			continue
		}
		switch {
		case a == addr.Addr():
			return l
		case a.IsUnspecified() && wildcard == nil:
			wildcard = l
		}
	}
	return wildcard
}

// serve runs the connection through a listener: its listener filters, a hand-off to the
// listener of the original destination when it sets use_original_dst
// (active_tcp_socket.cc newConnection: "Hands off connections redirected by iptables to the
// listener associated with the original destination address"), then the filter chain.
func (p *Proxy) serve(c *connection, r *Result, l *listenerv3.Listener) *Result {
	if r.Arrived == "" {
		r.Arrived = l.Name
	}
	r.Listener = l.Name
	if !p.listenerFilters(c, r, l) {
		return r
	}
	if l.GetUseOriginalDst().GetValue() && c.restored {
		if target := p.listenerAt(c.local, false); target != nil && target != l {
			// The target runs its own listener filters; it does not hand over again.
			r.Listener = target.Name
			if !p.listenerFilters(c, r, target) {
				return r
			}
			l = target
		}
	}
	fc := findFilterChain(l, c)
	if fc == nil {
		// listener.proto default_filter_chain: "If no default filter chain is supplied, the
		// connection will be closed."
		return deny(r, 0, "no filter chain of listener %s matches (destination %s, transport %s, server name %q): the connection is closed", l.Name, c.local, c.transport, c.sni)
	}
	r.FilterChain = fc.Name
	if c.req.Hello {
		r.TerminatesTLS = fc.GetTransportSocket() != nil
		if r.TerminatesTLS {
			ctx := &tlsv3.DownstreamTlsContext{}
			if err := fc.GetTransportSocket().GetTypedConfig().UnmarshalTo(ctx); err != nil {
				return deny(r, 0, "chain %s: %v", fc.Name, err)
			}
			r.ALPN = selectALPN(ctx.GetCommonTlsContext().GetAlpnProtocols(), c.req.ALPN)
			r.Certificates = sdsCertificates(ctx.GetCommonTlsContext())
		}
		return r
	}
	if !p.transportSocket(c, r, fc) {
		return r
	}
	return p.networkFilters(c, r, fc)
}

// listenerFilters runs a listener's filters: original_dst restores the destination of a
// redirected connection (use_original_dst adds it, listener_impl.cc
// buildOriginalDstListenerFilter); tls_inspector reads the ClientHello. A client that speaks
// first is read at once; one that waits for the server makes tls_inspector wait until
// listener_filters_timeout (15 s by default), after which the socket is closed, unless
// continue_on_listener_filters_timeout (listener.proto). Without an inspector the transport is
// raw_buffer (active_tcp_socket.cc: "Set default transport protocol if none of the listener
// filters did it").
func (p *Proxy) listenerFilters(c *connection, r *Result, l *listenerv3.Listener) bool {
	origDst := l.GetUseOriginalDst().GetValue()
	inspector := false
	for _, f := range l.GetListenerFilters() {
		switch f.Name {
		case "envoy.filters.listener.original_dst":
			origDst = true
		case "envoy.filters.listener.tls_inspector":
			inspector = true
		default:
			deny(r, 0, "listener filter %s is not simulated", f.Name)
			return false
		}
	}
	if origDst && c.redirected {
		c.restored = true
	}
	if !c.restored {
		if sa := l.GetAddress().GetSocketAddress(); sa != nil && c.redirected {
			// The socket's local address is the capture port's, not the original destination.
			c.local = netip.AddrPortFrom(c.local.Addr(), uint16(sa.GetPortValue()))
		}
	}
	if c.transport != "" && !inspector {
		return true // detected by the listener that handed the connection over
	}
	c.transport, c.sni, c.alpn = "raw_buffer", "", nil
	if !inspector {
		return true
	}
	switch {
	case c.req.ServerFirst:
		if !l.GetContinueOnListenerFiltersTimeout() {
			deny(r, 0, "tls_inspector waits for the client, which waits for the server: the socket is closed at listener_filters_timeout (%s)", durationOr(l.GetListenerFiltersTimeout().AsDuration(), "15s"))
			return false
		}
	case c.req.TLS:
		c.transport, c.sni, c.alpn = "tls", strings.ToLower(c.req.SNI), c.req.ALPN
	}
	return true
}

// findFilterChain picks the filter chain as Envoy's filter chain manager does
// (filter_chain_manager_impl.cc findFilterChain): destination port, then the longest destination
// prefix, then server name (exact, then wildcards from the longest), then transport protocol,
// then application protocol, then the source criteria. At each step a more specific match
// found is final: Envoy does not fall back to less specific chains when it fails further down,
// it takes the default filter chain (except that a destination port with no chain falls back to
// chains of any port).
func findFilterChain(l *listenerv3.Listener, c *connection) *listenerv3.FilterChain {
	chains := l.GetFilterChains()
	port := uint32(c.local.Port())
	var cands []*listenerv3.FilterChain
	for _, fc := range chains {
		if fc.GetFilterChainMatch().GetDestinationPort().GetValue() == port {
			cands = append(cands, fc)
		}
	}
	if len(cands) == 0 {
		for _, fc := range chains {
			if fc.GetFilterChainMatch().GetDestinationPort() == nil || fc.GetFilterChainMatch().GetDestinationPort().GetValue() == 0 {
				cands = append(cands, fc)
			}
		}
	}
	pick := func(out []*listenerv3.FilterChain) *listenerv3.FilterChain {
		if len(out) == 0 {
			return l.GetDefaultFilterChain()
		}
		return out[0]
	}
	// Destination IP: the longest prefix containing it; chains without prefixes count as /0.
	best := -1
	var byIP []*listenerv3.FilterChain
	for _, fc := range cands {
		bits := prefixContaining(fc.GetFilterChainMatch().GetPrefixRanges(), c.local.Addr())
		switch {
		case bits > best:
			best, byIP = bits, []*listenerv3.FilterChain{fc}
		case bits == best && bits >= 0:
			byIP = append(byIP, fc)
		}
	}
	if best < 0 {
		return pick(nil)
	}
	// Server name.
	var bySNI []*listenerv3.FilterChain
	if c.sni != "" {
		for _, fc := range byIP {
			if slices.Contains(lower(fc.GetFilterChainMatch().GetServerNames()), c.sni) {
				bySNI = append(bySNI, fc)
			}
		}
		for i := strings.Index(c.sni[1:], "."); len(bySNI) == 0 && i >= 0; {
			wildcard := "*" + c.sni[i+1:]
			for _, fc := range byIP {
				if slices.Contains(lower(fc.GetFilterChainMatch().GetServerNames()), wildcard) {
					bySNI = append(bySNI, fc)
				}
			}
			j := strings.Index(c.sni[i+2:], ".")
			if j < 0 {
				break
			}
			i += j + 1
		}
	}
	if len(bySNI) == 0 {
		for _, fc := range byIP {
			if len(fc.GetFilterChainMatch().GetServerNames()) == 0 {
				bySNI = append(bySNI, fc)
			}
		}
	}
	if len(bySNI) == 0 {
		return pick(nil)
	}
	// Transport protocol.
	var byTransport []*listenerv3.FilterChain
	for _, fc := range bySNI {
		if fc.GetFilterChainMatch().GetTransportProtocol() == c.transport {
			byTransport = append(byTransport, fc)
		}
	}
	if len(byTransport) == 0 {
		for _, fc := range bySNI {
			if fc.GetFilterChainMatch().GetTransportProtocol() == "" {
				byTransport = append(byTransport, fc)
			}
		}
	}
	if len(byTransport) == 0 {
		return pick(nil)
	}
	// Application protocols, in the client's order.
	var byALPN []*listenerv3.FilterChain
	for _, a := range c.alpn {
		for _, fc := range byTransport {
			if slices.Contains(fc.GetFilterChainMatch().GetApplicationProtocols(), a) {
				byALPN = append(byALPN, fc)
			}
		}
		if len(byALPN) > 0 {
			break
		}
	}
	if len(byALPN) == 0 {
		for _, fc := range byTransport {
			if len(fc.GetFilterChainMatch().GetApplicationProtocols()) == 0 {
				byALPN = append(byALPN, fc)
			}
		}
	}
	// Source criteria: crossgate sets none; chains that set them are not simulated.
	var out []*listenerv3.FilterChain
	for _, fc := range byALPN {
		m := fc.GetFilterChainMatch()
		if len(m.GetSourcePrefixRanges()) == 0 && len(m.GetDirectSourcePrefixRanges()) == 0 && len(m.GetSourcePorts()) == 0 && m.GetSourceType() == listenerv3.FilterChainMatch_ANY {
			out = append(out, fc)
		}
	}
	return pick(out)
}

func lower(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.ToLower(s)
	}
	return out
}

// prefixContaining is the length of the longest of ranges containing a, 0 when there are none
// (a catch-all), -1 when none contains it.
func prefixContaining(ranges []*corev3.CidrRange, a netip.Addr) int {
	if len(ranges) == 0 {
		return 0
	}
	best := -1
	for _, r := range ranges {
		pfx, err := netip.ParsePrefix(r.GetAddressPrefix() + "/" + strconv.Itoa(int(r.GetPrefixLen().GetValue())))
		if err == nil && pfx.Contains(a.Unmap()) && pfx.Bits() > best {
			best = pfx.Bits()
		}
	}
	return best
}

// transportSocket terminates TLS when the chain says so: the client must open TLS, present a
// certificate when one is required, and one whose subject alternative names the context
// accepts (match_typed_subject_alt_names for Envoy, match_subject_alt_names for grpc-go); the
// server's alpn_protocols pick the protocol from those the client offers (Envoy negotiates none
// without them).
func (p *Proxy) transportSocket(c *connection, r *Result, fc *listenerv3.FilterChain) bool {
	ts := fc.GetTransportSocket()
	if ts == nil {
		return true
	}
	ctx := &tlsv3.DownstreamTlsContext{}
	if err := ts.GetTypedConfig().UnmarshalTo(ctx); err != nil {
		deny(r, 0, "chain %s: %v", fc.Name, err)
		return false
	}
	if !c.req.TLS {
		deny(r, 0, "chain %s terminates TLS and the client speaks plaintext: the handshake fails", fc.Name)
		return false
	}
	if ctx.GetRequireClientCertificate().GetValue() && c.req.Source == "" {
		deny(r, 0, "chain %s requires a client certificate and the client presents none: the handshake fails", fc.Name)
		return false
	}
	// A certificate that does not chain to the trusted CA fails verification before any name is
	// matched (Envoy source/common/tls/cert_validator/default_validator.cc verifyCertChain; grpc-go
	// credentials/tls/certprovider: the root provider's pool). Every context we build trusts
	// the set's root, by SDS or a certificate provider.
	if c.req.Source != "" && c.req.ForeignCA && trustsACA(ctx.GetCommonTlsContext()) {
		deny(r, 0, "chain %s does not trust the issuer of the client's certificate: the handshake fails", fc.Name)
		return false
	}
	if c.req.Source != "" && !sanAccepted(ctx.GetCommonTlsContext(), c.req.Source, p.Flavor) {
		deny(r, 0, "chain %s does not accept the client's certificate (%s): the handshake fails", fc.Name, c.req.Source)
		return false
	}
	c.terminated, c.peer = true, c.req.Source
	c.negotiated = selectALPN(ctx.GetCommonTlsContext().GetAlpnProtocols(), c.req.ALPN)
	r.Certificates = sdsCertificates(ctx.GetCommonTlsContext())
	if p.Flavor == GRPC {
		// grpc-go's server ignores alpn_protocols and offers h2 alone; Go's crypto/tls server
		// (handshake_server.go negotiateALPN) agrees on h2 when the client offers it, on nothing
		// when the client offers no protocol or http/1.1 ("let http/1.1 clients connect to h2
		// servers as if they didn't support ALPN"), and otherwise fails the handshake
		// (no_application_protocol). grpc-go speaks HTTP/2 in any case.
		switch {
		case slices.Contains(c.req.ALPN, "h2"):
			c.negotiated = "h2"
		case len(c.req.ALPN) == 0 || slices.Contains(c.req.ALPN, "http/1.1"):
			c.negotiated = ""
		default:
			c.terminated = false
			deny(r, 0, "chain %s: the client offers ALPN %v, of which grpc-go's server (h2) supports none: the handshake fails", fc.Name, c.req.ALPN)
			return false
		}
	}
	return true
}

// sdsCertificates are the names of the SDS secrets a TLS context presents.
func sdsCertificates(common *tlsv3.CommonTlsContext) []string {
	var out []string
	for _, s := range common.GetTlsCertificateSdsSecretConfigs() {
		out = append(out, s.GetName())
	}
	return out
}

// selectALPN is the protocol Envoy's TLS server agrees on: the first of its alpn_protocols the
// client offers, none when it offers none of them (the handshake goes on without ALPN:
// source/common/tls/server_context_impl.cc alpnSelectCallback, SSL_select_next_proto in the
// server's order), none without alpn_protocols.
func selectALPN(server, offered []string) string {
	for _, s := range server {
		if slices.Contains(offered, s) {
			return s
		}
	}
	return ""
}

// trustsACA reports whether a TLS context verifies peers against a CA: a validation context
// with a trusted CA by SDS, inline, or from a certificate provider.
func trustsACA(common *tlsv3.CommonTlsContext) bool {
	if cv := common.GetCombinedValidationContext(); cv != nil {
		return cv.GetValidationContextSdsSecretConfig() != nil || cv.GetDefaultValidationContext().GetTrustedCa() != nil ||
			cv.GetDefaultValidationContext().GetCaCertificateProviderInstance() != nil
	}
	v := common.GetValidationContext()
	return common.GetValidationContextSdsSecretConfig() != nil || v.GetTrustedCa() != nil || v.GetCaCertificateProviderInstance() != nil
}

// sanAccepted applies a validation context's subject alternative name matchers to a peer's
// SPIFFE URI.
func sanAccepted(common *tlsv3.CommonTlsContext, uri string, f Flavor) bool {
	v := common.GetValidationContext()
	if cv := common.GetCombinedValidationContext(); cv != nil {
		v = cv.GetDefaultValidationContext()
	}
	if f == GRPC {
		ms := v.GetMatchSubjectAltNames() //nolint:staticcheck // grpc-go reads only this field (xdsresource/unmarshal_cds.go)
		for _, m := range ms {
			if stringMatches(m, uri) {
				return true
			}
		}
		return len(ms) == 0
	}
	typed := v.GetMatchTypedSubjectAltNames()
	for _, m := range typed {
		if m.GetSanType() == tlsv3.SubjectAltNameMatcher_URI && stringMatches(m.GetMatcher(), uri) {
			return true
		}
	}
	legacy := v.GetMatchSubjectAltNames() //nolint:staticcheck // deprecated; still honoured by Envoy
	for _, m := range legacy {
		if stringMatches(m, uri) {
			return true
		}
	}
	return len(typed) == 0 && len(legacy) == 0
}

// networkFilters runs a chain's network filters: RBAC, then the terminal filter.
func (p *Proxy) networkFilters(c *connection, r *Result, fc *listenerv3.FilterChain) *Result {
	for _, f := range fc.Filters {
		switch f.Name {
		case "envoy.filters.network.rbac":
			cfg := &netrbacv3.RBAC{}
			if err := f.GetTypedConfig().UnmarshalTo(cfg); err != nil {
				return deny(r, 0, "bad network RBAC: %v", err)
			}
			if ok, why := evalRBAC(cfg.GetRules(), c.rbacRequest()); !ok {
				return deny(r, 0, "RBAC (network): %s: the connection is closed", why)
			}
		case "envoy.filters.network.tcp_proxy":
			tp := &tcpproxyv3.TcpProxy{}
			if err := f.GetTypedConfig().UnmarshalTo(tp); err != nil {
				return deny(r, 0, "bad tcp_proxy: %v", err)
			}
			// One cluster, or several by weight, one picked per connection; a connection whose
			// cluster is not defined is closed (tcp_proxy.proto cluster, weighted_clusters;
			// tcp_proxy.cc onNewConnection "Cluster not found").
			if wc := tp.GetWeightedClusters(); wc != nil {
				missing := 0
				for _, w := range wc.GetClusters() {
					cl := p.resolveCluster(w.GetName(), w.GetWeight(), c, "")
					if cl.Missing {
						missing++
					}
					r.Clusters = append(r.Clusters, cl)
				}
				if missing == len(r.Clusters) {
					return deny(r, 0, "no tcp_proxy cluster is defined: the connection is closed")
				}
				return r
			}
			cl := p.resolveCluster(tp.GetCluster(), 1, c, "")
			r.Clusters = []Cluster{cl}
			if cl.Missing {
				return deny(r, 0, "tcp_proxy cluster %s is not defined: the connection is closed", tp.GetCluster())
			}
			return r
		case "envoy.filters.network.http_connection_manager":
			m := &hcmv3.HttpConnectionManager{}
			if err := f.GetTypedConfig().UnmarshalTo(m); err != nil {
				return deny(r, 0, "bad HTTP connection manager: %v", err)
			}
			return p.httpConnection(c, r, m)
		default:
			return deny(r, 0, "network filter %s is not simulated", f.Name)
		}
	}
	return deny(r, 0, "filter chain %s has no terminal filter", fc.Name)
}

// rbacRequest is the request as an RBAC filter sees it: the peer's identity only when this hop
// verified a certificate, the destination port as the connection's local port.
func (c *connection) rbacRequest() Request {
	q := c.req
	q.Source = ""
	if c.terminated {
		q.Source = c.peer
	}
	q.Port = uint32(c.local.Port())
	return q
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}
