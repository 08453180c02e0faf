package simulate

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"

	"github.com/crossgate-io/crossgate/xds/resources"
	"github.com/crossgate-io/crossgate/xds/translate"
)

// Flavor is the kind of xDS client a proxy is: Envoy, or grpc-go's xDS support (proxyless),
// which reads a subset of the same resources under rules of its own.
type Flavor int

const (
	Envoy Flavor = iota
	GRPC
)

// Proxy is one proxy holding its configuration the way the client holds it after loading it:
// the resources it refused are not there (Envoy keeps the others of the update), and Rejected
// says why, naming the rule.
type Proxy struct {
	Flavor    Flavor
	listeners []*listenerv3.Listener // accepted, by name
	byName    map[string]*listenerv3.Listener
	routes    map[string]*routev3.RouteConfiguration
	clusters  map[string]*clusterv3.Cluster
	endpoints map[string]*endpointv3.ClusterLoadAssignment
	// Rejected are the resources the client refused (it NACKs them).
	Rejected []Rejection
}

// Rejection is one resource a client refuses.
type Rejection struct {
	Kind, Name string
	// Rule names the client's check, as "Envoy: <source file or proto field>" or
	// "grpc-go: <source file>".
	Rule   string
	Detail string
}

func (r Rejection) Error() string {
	return fmt.Sprintf("%s %s rejected (%s): %s", r.Kind, r.Name, r.Rule, r.Detail)
}

// Err joins the rejections, nil when the proxy accepted everything.
func (p *Proxy) Err() error {
	errs := make([]error, len(p.Rejected))
	for i, r := range p.Rejected {
		errs[i] = r
	}
	return errors.Join(errs...)
}

func (p *Proxy) reject(kind, name, rule, format string, args ...any) {
	p.Rejected = append(p.Rejected, Rejection{Kind: kind, Name: name, Rule: rule, Detail: fmt.Sprintf(format, args...)})
}

// Load loads a proxy's resources as the client does, refusing what it refuses. Listeners are
// added in name order (the order of a response is the server's: crossgate sorts by name), so
// that of two listeners in conflict the later one is refused.
func Load(res *resources.Resources, f Flavor) *Proxy {
	p := &Proxy{
		Flavor: f, byName: map[string]*listenerv3.Listener{}, routes: map[string]*routev3.RouteConfiguration{},
		clusters: map[string]*clusterv3.Cluster{}, endpoints: map[string]*endpointv3.ClusterLoadAssignment{},
	}
	if res == nil {
		return p
	}
	var ls []*listenerv3.Listener
	for part := range res.Parts() {
		for _, c := range part.Clusters {
			if p.checkCluster(c) {
				p.clusters[c.Name] = c
			}
		}
		for _, e := range part.Endpoints {
			if p.checkEndpoints(e) {
				p.endpoints[e.ClusterName] = e
			}
		}
		for _, r := range part.Routes {
			if p.checkRouteConfig("route", r.Name, r, false) {
				p.routes[r.Name] = r
			}
		}
		ls = append(ls, part.Listeners...)
	}
	slices.SortStableFunc(ls, func(a, b *listenerv3.Listener) int { return cmp.Compare(a.Name, b.Name) })
	addresses := map[string]string{}
	for _, l := range ls {
		if _, dup := p.byName[l.Name]; dup {
			p.reject("listener", l.Name, "xDS: resource names are unique in a response", "a second listener of that name")
			continue
		}
		if !p.checkListener(l) {
			continue
		}
		if sa := l.GetAddress().GetSocketAddress(); sa != nil && l.GetApiListener() == nil {
			key := fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue())
			// listener_manager_impl.cc: "error adding listener '...': has duplicate address
			// '...' as existing listener", checked for listeners that do not bind too.
			if other, dup := addresses[key]; dup && p.Flavor == Envoy {
				p.reject("listener", l.Name, "Envoy: listener_manager_impl.cc duplicate address", "address %s is listener %s's", key, other)
				continue
			}
			addresses[key] = l.Name
		}
		p.byName[l.Name] = l
		p.listeners = append(p.listeners, l)
	}
	return p
}

// checkListener applies the listener manager's checks.
func (p *Proxy) checkListener(l *listenerv3.Listener) bool {
	if err := l.ValidateAll(); err != nil {
		p.reject("listener", l.Name, "proto validation (PGV rules of listener.proto)", "%v", err)
		return false
	}
	if api := l.GetApiListener(); api != nil {
		m := &hcmv3.HttpConnectionManager{}
		if err := api.GetApiListener().UnmarshalTo(m); err != nil {
			p.reject("listener", l.Name, "grpc-go: xdsresource/unmarshal_lds.go", "API listener without an HTTP connection manager: %v", err)
			return false
		}
		return p.checkHCM(l.Name, m, true)
	}
	chains := slices.Clone(l.FilterChains)
	seen := map[string]string{}
	for _, fc := range chains {
		// filter_chain_manager_impl.cc verifyNoDuplicateMatchers: "filter chain '...' has the
		// same matching rules defined as '...'"; a leaf reached twice through repeated fields
		// is "multiple filter chains with overlapping matching rules are defined".
		for _, leaf := range matchLeaves(fc.GetFilterChainMatch()) {
			if other, dup := seen[leaf]; dup {
				p.reject("listener", l.Name, "Envoy: filter_chain_manager_impl.cc overlapping filter chain matches",
					"filter chains %s and %s match the same connections (%s)", other, fc.Name, leaf)
				return false
			}
			seen[leaf] = fc.Name
		}
	}
	if d := l.GetDefaultFilterChain(); d != nil {
		chains = append(chains, d)
	}
	for _, fc := range chains {
		if !p.checkNetworkFilters(l.Name, fc) {
			return false
		}
	}
	return true
}

// matchLeaves expands a filter chain match into the leaves Envoy's matching tree stores it
// under: one per destination IP, server name and application protocol (source fields are not
// used by crossgate and are folded into one leaf).
func matchLeaves(m *listenerv3.FilterChainMatch) []string {
	port := m.GetDestinationPort().GetValue()
	ips := []string{""}
	if rs := m.GetPrefixRanges(); len(rs) > 0 {
		ips = nil
		for _, r := range rs {
			pfx, err := netip.ParsePrefix(fmt.Sprintf("%s/%d", r.GetAddressPrefix(), r.GetPrefixLen().GetValue()))
			if err == nil {
				ips = append(ips, pfx.Masked().String())
			} else {
				ips = append(ips, r.GetAddressPrefix())
			}
		}
	}
	names := m.GetServerNames()
	if len(names) == 0 {
		names = []string{""}
	}
	alpns := m.GetApplicationProtocols()
	if len(alpns) == 0 {
		alpns = []string{""}
	}
	var src []string
	for _, r := range m.GetSourcePrefixRanges() {
		src = append(src, fmt.Sprintf("%s/%d", r.GetAddressPrefix(), r.GetPrefixLen().GetValue()))
	}
	rest := fmt.Sprintf("%d|%v|%s|%v", m.GetSourceType(), m.GetDirectSourcePrefixRanges(), strings.Join(src, ","), m.GetSourcePorts())
	var out []string
	for _, ip := range ips {
		for _, n := range names {
			for _, a := range alpns {
				out = append(out, fmt.Sprintf("port=%d ip=%s sni=%s transport=%s alpn=%s %s", port, ip, strings.ToLower(n), m.GetTransportProtocol(), a, rest))
			}
		}
	}
	return out
}

// checkNetworkFilters applies Envoy's network filter chain rules (config/utility.h
// validateTerminalFilters: the last filter must be terminal, and a terminal filter must be last)
// and checks each filter's configuration.
func (p *Proxy) checkNetworkFilters(listener string, fc *listenerv3.FilterChain) bool {
	n := len(fc.Filters)
	if n == 0 {
		p.reject("listener", listener, "Envoy: config/utility.h validateTerminalFilters", "filter chain %s has no filters", fc.Name)
		return false
	}
	for i, f := range fc.Filters {
		terminal := f.Name == "envoy.filters.network.tcp_proxy" || f.Name == "envoy.filters.network.http_connection_manager"
		switch {
		case terminal && i != n-1:
			p.reject("listener", listener, "Envoy: config/utility.h validateTerminalFilters", "terminal filter %s of chain %s must be the last", f.Name, fc.Name)
			return false
		case !terminal && i == n-1:
			p.reject("listener", listener, "Envoy: config/utility.h validateTerminalFilters", "non-terminal filter %s is the last of chain %s", f.Name, fc.Name)
			return false
		}
		if f.Name == "envoy.filters.network.http_connection_manager" {
			m := &hcmv3.HttpConnectionManager{}
			if err := f.GetTypedConfig().UnmarshalTo(m); err != nil {
				p.reject("listener", listener, "Envoy: typed_config of envoy.filters.network.http_connection_manager", "%v", err)
				return false
			}
			if !p.checkHCM(listener, m, false) {
				return false
			}
		}
	}
	if ts := fc.GetTransportSocket(); ts != nil {
		ctx := &tlsv3.DownstreamTlsContext{}
		if err := ts.GetTypedConfig().UnmarshalTo(ctx); err != nil {
			p.reject("listener", listener, "Envoy: transport_socket typed_config", "chain %s: %v", fc.Name, err)
			return false
		}
		if c := ctx.GetCommonTlsContext(); len(c.GetTlsCertificates()) == 0 && len(c.GetTlsCertificateSdsSecretConfigs()) == 0 && c.GetTlsCertificateProviderInstance() == nil {
			p.reject("listener", listener, "Envoy: server_context_impl.cc (a server needs a certificate)", "chain %s terminates TLS without a certificate", fc.Name)
			return false
		}
	}
	return true
}

// checkHCM checks an HTTP connection manager: its HTTP filters (the router last and only last,
// config/utility.h validateTerminalFilters; grpc-go: xdsresource/unmarshal_lds.go) and, for an
// inline route configuration, the route configuration's own rules with validate_clusters
// defaulting to true (route.proto: "defaults to true if the route table is statically defined
// via the route_config option").
func (p *Proxy) checkHCM(listener string, m *hcmv3.HttpConnectionManager, client bool) bool {
	fs := m.GetHttpFilters()
	for i, f := range fs {
		last := i == len(fs)-1
		router := f.Name == "envoy.filters.http.router"
		if router != last {
			p.reject("listener", listener, "Envoy: config/utility.h validateTerminalFilters", "HTTP filter %s at position %d: the router must be the last HTTP filter, and only the last", f.Name, i)
			return false
		}
		// grpc-go: xdsresource/unmarshal_lds.go processHTTPFilters refuses a filter its side
		// cannot run ("HTTP filter %q not supported client-side" / "server-side") unless it is
		// optional: RBAC runs on servers only (httpfilter/rbac), fault injection on clients
		// only (httpfilter/fault).
		if p.Flavor == GRPC && !f.GetIsOptional() {
			url := f.GetTypedConfig().GetTypeUrl()
			switch {
			case client && strings.Contains(url, "filters.http.rbac."):
				p.reject("listener", listener, "grpc-go: xdsresource/unmarshal_lds.go processHTTPFilters", "HTTP filter %q not supported client-side", f.Name)
				return false
			case !client && strings.Contains(url, "filters.http.fault."):
				p.reject("listener", listener, "grpc-go: xdsresource/unmarshal_lds.go processHTTPFilters", "HTTP filter %q not supported server-side", f.Name)
				return false
			}
		}
	}
	if rc := m.GetRouteConfig(); rc != nil {
		return p.checkRouteConfig("listener", listener, rc, true)
	}
	if m.GetRds() == nil {
		p.reject("listener", listener, "http_connection_manager.proto route_specifier", "no route configuration")
		return false
	}
	return true
}

// checkRouteConfig applies config_impl.cc's rules to a route configuration: domains unique in
// it, one "*" at most ("Only unique values for domains are permitted. Duplicate entry of domain
// ... in route ..."), valid regular expressions, weighted clusters with a positive total weight,
// no prefix_rewrite with regex_rewrite, and, when validate_clusters holds, every cluster a route
// names known ("route: unknown cluster").
func (p *Proxy) checkRouteConfig(kind, name string, rc *routev3.RouteConfiguration, inline bool) bool {
	if err := rc.ValidateAll(); err != nil {
		p.reject(kind, name, "proto validation (PGV rules of route.proto)", "%v", err)
		return false
	}
	validate := inline
	if v := rc.GetValidateClusters(); v != nil {
		validate = v.GetValue()
	}
	domains := map[string]string{}
	for _, vh := range rc.GetVirtualHosts() {
		for _, d := range vh.GetDomains() {
			d = strings.ToLower(d)
			if other, dup := domains[d]; dup {
				if d == "*" {
					p.reject(kind, name, "Envoy: router/config_impl.cc", "only a single wildcard domain is permitted (virtual hosts %s and %s)", other, vh.GetName())
				} else {
					p.reject(kind, name, "Envoy: router/config_impl.cc", "only unique values for domains are permitted: %s is in virtual hosts %s and %s", d, other, vh.GetName())
				}
				return false
			}
			domains[d] = vh.GetName()
		}
		for _, r := range vh.GetRoutes() {
			if sr := r.GetMatch().GetSafeRegex(); sr != nil {
				if _, err := compile(sr.GetRegex(), true); err != nil {
					p.reject(kind, name, "Envoy: RE2 (regex_utils.cc)", "route %s: %v", r.GetName(), err)
					return false
				}
			}
			if err := checkHeaderOps(r); err != nil {
				p.reject(kind, name, "Envoy: router/header_parser.cc", "route %s: %v", r.GetName(), err)
				return false
			}
			a := r.GetRoute()
			if a == nil {
				continue
			}
			if a.GetPrefixRewrite() != "" && a.GetRegexRewrite() != nil {
				p.reject(kind, name, "Envoy: router/config_impl.cc", "route %s: cannot specify both prefix_rewrite and regex_rewrite", r.GetName())
				return false
			}
			if wc := a.GetWeightedClusters(); wc != nil {
				total := uint32(0)
				for _, c := range wc.GetClusters() {
					total += c.GetWeight().GetValue()
				}
				if total == 0 {
					p.reject(kind, name, "Envoy: router/config_impl.cc", "route %s: the weights of its weighted clusters sum to 0", r.GetName())
					return false
				}
			}
			if validate {
				for _, c := range routeClusters(a) {
					if _, ok := p.clusters[c]; !ok {
						p.reject(kind, name, "Envoy: router/config_impl.cc validate_clusters", "route %s names unknown cluster %s (validate_clusters is on)", r.GetName(), c)
						return false
					}
				}
			}
		}
	}
	return true
}

func routeClusters(a *routev3.RouteAction) []string {
	if c := a.GetCluster(); c != "" {
		return []string{c}
	}
	var out []string
	for _, c := range a.GetWeightedClusters().GetClusters() {
		out = append(out, c.GetName())
	}
	return out
}

// checkCluster applies the cluster manager's checks, and grpc-go's for a proxyless client.
func (p *Proxy) checkCluster(c *clusterv3.Cluster) bool {
	if err := c.ValidateAll(); err != nil {
		p.reject("cluster", c.Name, "proto validation (PGV rules of cluster.proto)", "%v", err)
		return false
	}
	typ := c.GetType()
	lb := c.GetLbPolicy()
	switch {
	case typ == clusterv3.Cluster_ORIGINAL_DST && lb != clusterv3.Cluster_CLUSTER_PROVIDED:
		p.reject("cluster", c.Name, "Envoy: original_dst_cluster.cc", "LB policy %s is not valid for cluster type ORIGINAL_DST; only CLUSTER_PROVIDED is allowed", lb)
		return false
	case typ != clusterv3.Cluster_ORIGINAL_DST && lb == clusterv3.Cluster_CLUSTER_PROVIDED:
		p.reject("cluster", c.Name, "Envoy: upstream/cluster_factory_impl.cc", "LB policy CLUSTER_PROVIDED is not valid for cluster type %s", typ)
		return false
	case typ == clusterv3.Cluster_ORIGINAL_DST && len(c.GetLoadAssignment().GetEndpoints()) > 0:
		p.reject("cluster", c.Name, "Envoy: original_dst_cluster.cc", "an ORIGINAL_DST cluster must have no endpoints")
		return false
	}
	for key, opt := range c.GetTypedExtensionProtocolOptions() {
		if key != translate.HTTPProtocolOptionsKey {
			p.reject("cluster", c.Name, "Envoy: upstream_impl.cc typed_extension_protocol_options", "no extension %s", key)
			return false
		}
		o := &httpv3.HttpProtocolOptions{}
		if err := opt.UnmarshalTo(o); err != nil {
			p.reject("cluster", c.Name, "Envoy: upstream_impl.cc typed_extension_protocol_options", "%s: %v", key, err)
			return false
		}
	}
	if p.Flavor == GRPC {
		// grpc-go: xdsresource/unmarshal_cds.go.
		switch {
		case lb != clusterv3.Cluster_ROUND_ROBIN && lb != clusterv3.Cluster_RING_HASH && lb != clusterv3.Cluster_LEAST_REQUEST:
			p.reject("cluster", c.Name, "grpc-go: xdsresource/unmarshal_cds.go", "unexpected lbPolicy %s", lb)
			return false
		case typ != clusterv3.Cluster_EDS && typ != clusterv3.Cluster_LOGICAL_DNS:
			p.reject("cluster", c.Name, "grpc-go: xdsresource/unmarshal_cds.go", "unsupported cluster type %s", typ)
			return false
		case len(c.GetTransportSocketMatches()) > 0:
			p.reject("cluster", c.Name, "grpc-go: xdsresource/unmarshal_cds.go", "unsupported transport_socket_matches")
			return false
		}
		if ts := c.GetTransportSocket(); ts != nil {
			up := &tlsv3.UpstreamTlsContext{}
			if err := ts.GetTypedConfig().UnmarshalTo(up); err != nil {
				p.reject("cluster", c.Name, "grpc-go: xdsresource/unmarshal_cds.go", "%v", err)
				return false
			}
			if len(up.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs()) > 0 {
				p.reject("cluster", c.Name, "grpc-go: xdsresource/unmarshal_cds.go", "unsupported field tls_certificate_sds_secret_configs: grpc-go takes certificates from a certificate provider")
				return false
			}
		}
	}
	return true
}

// checkEndpoints applies the EDS rules. Envoy takes any priorities, but the same resources serve
// grpc-go, which refuses a gap in priorities, two localities alike at one priority and two
// endpoints of one address (xdsresource/unmarshal_eds.go), so both flavors apply them.
func (p *Proxy) checkEndpoints(e *endpointv3.ClusterLoadAssignment) bool {
	if err := e.ValidateAll(); err != nil {
		p.reject("endpoints", e.ClusterName, "proto validation (PGV rules of endpoint.proto)", "%v", err)
		return false
	}
	prios := map[uint32]bool{}
	max := uint32(0)
	localities := map[string]bool{}
	addrs := map[string]bool{}
	for _, le := range e.GetEndpoints() {
		prios[le.GetPriority()] = true
		max = maxU(max, le.GetPriority())
		loc := le.GetLocality()
		key := fmt.Sprintf("%d|%s|%s|%s", le.GetPriority(), loc.GetRegion(), loc.GetZone(), loc.GetSubZone())
		if localities[key] {
			p.reject("endpoints", e.ClusterName, "grpc-go: xdsresource/unmarshal_eds.go", "duplicate locality %s at priority %d", key, le.GetPriority())
			return false
		}
		localities[key] = true
		for _, ep := range le.GetLbEndpoints() {
			sa := ep.GetEndpoint().GetAddress().GetSocketAddress()
			a := fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue())
			if addrs[a] {
				p.reject("endpoints", e.ClusterName, "grpc-go: xdsresource/unmarshal_eds.go", "duplicate endpoint with the same address %s", a)
				return false
			}
			addrs[a] = true
		}
	}
	for i := uint32(0); i <= max && len(prios) > 0; i++ {
		if !prios[i] {
			p.reject("endpoints", e.ClusterName, "grpc-go: xdsresource/unmarshal_eds.go", "priority %d missing (priorities must be contiguous from 0)", i)
			return false
		}
	}
	return true
}

func maxU(a, b uint32) uint32 {
	if a > b {
		return a
	}
	return b
}

// checkHeaderOps applies header_parser.cc's rules to a route's headers to add and remove: the
// host header and pseudo-headers (":path") may be neither added nor removed, and a value is a
// format string whose "%" starts a variable unless doubled ("Invalid header configuration.
// Un-terminated variable expression"; crossgate uses no variables).
func checkHeaderOps(r *routev3.Route) error {
	if err := checkHeaderLists([][]string{r.GetRequestHeadersToRemove(), r.GetResponseHeadersToRemove()},
		[][]*corev3.HeaderValueOption{r.GetRequestHeadersToAdd(), r.GetResponseHeadersToAdd()}); err != nil {
		return err
	}
	// A weighted cluster's own headers follow the same rules (the same HeaderParser).
	for _, w := range r.GetRoute().GetWeightedClusters().GetClusters() {
		if err := checkHeaderLists([][]string{w.GetRequestHeadersToRemove(), w.GetResponseHeadersToRemove()},
			[][]*corev3.HeaderValueOption{w.GetRequestHeadersToAdd(), w.GetResponseHeadersToAdd()}); err != nil {
			return fmt.Errorf("weighted cluster %s: %w", w.GetName(), err)
		}
	}
	return nil
}

func checkHeaderLists(removes [][]string, adds [][]*corev3.HeaderValueOption) error {
	immutable := func(name string) bool { return strings.HasPrefix(name, ":") || strings.EqualFold(name, "host") }
	for _, list := range removes {
		for _, h := range list {
			if immutable(h) {
				return fmt.Errorf(":-prefixed or host headers may not be removed (%s)", h)
			}
		}
	}
	for _, list := range adds {
		for _, o := range list {
			if immutable(o.GetHeader().GetKey()) {
				return fmt.Errorf(":-prefixed or host headers may not be modified (%s)", o.GetHeader().GetKey())
			}
			if _, err := headerValue(o.GetHeader().GetValue()); err != nil {
				return fmt.Errorf("header %s: %w", o.GetHeader().GetKey(), err)
			}
		}
	}
	return nil
}

// headerValue is the value a header format string gives: "%%" is a "%"; any other "%" starts a
// variable, which this model does not evaluate.
func headerValue(format string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			b.WriteByte(format[i])
			continue
		}
		if i+1 < len(format) && format[i+1] == '%' {
			b.WriteByte('%')
			i++
			continue
		}
		return "", fmt.Errorf("%q has a variable expression (a lone %%), which is not simulated", format)
	}
	return b.String(), nil
}
