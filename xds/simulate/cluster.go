package simulate

import (
	"net"
	"slices"
	"strconv"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"

	"github.com/crossgate-io/crossgate/xds/translate"
)

// Cluster is one upstream the request may reach, with what Envoy's load balancer and
// connection pool make of its configuration.
type Cluster struct {
	Name   string
	Weight uint32
	// Missing is true when no such cluster is defined (Envoy answers with the route's
	// cluster_not_found_response_code).
	Missing bool
	// Priorities hold the endpoints, by priority from 0.
	Priorities []Priority
	// LocalityWeighted is set when the localities' weights apply: only with
	// common_lb_config.locality_weighted_lb_config ("Locality weights are only considered when
	// locality weighted load balancing is configured. These weights are ignored otherwise",
	// endpoint_components.proto). Otherwise every host of a priority weighs the same.
	LocalityWeighted bool
	// Outlier is the outlier detection in force, nil without.
	Outlier *Outlier
	// PanicThreshold is common_lb_config.healthy_panic_threshold in percent (50 by default):
	// below it a priority's unhealthy hosts take requests too.
	PanicThreshold float64
	// Overprovisioning is the endpoints' overprovisioning factor in percent (140 by default).
	Overprovisioning uint32
	// Upstream is how the proxy connects to the endpoints.
	Upstream Upstream
	// OriginalDestination, for an ORIGINAL_DST cluster, is where the connection goes: its
	// original destination. BindSource is the source address it binds, if any.
	OriginalDestination string
	BindSource          string
	// RequestHeaderOps are a weighted cluster's own changes to the request (Envoy), applied
	// when it is chosen and before the route's (route_components.proto
	// ClusterWeight.request_headers_to_add: "applied before headers from the enclosing Route";
	// config_impl.cc WeightedClusterEntry::finalizeRequestHeaders).
	RequestHeaderOps HeaderOps
}

// Outlier is a cluster's outlier detection, each consecutive_* with the percentage of the time
// it is enforced (outlier_detection.proto defaults: consecutive_5xx 5 enforced 100%,
// consecutive_gateway_failure 5 enforced 0%).
type Outlier struct {
	Consecutive5xx, Enforcing5xx                       uint32
	ConsecutiveGatewayFailure, EnforcingGatewayFailure uint32
	Interval, BaseEjectionTime                         time.Duration
	MaxEjectionPercent                                 uint32
}

// Upstream is how a proxy connects to a cluster's endpoints.
type Upstream struct {
	// Protocol is HTTP1 or HTTP2 for HTTP, TCP for tcp_proxy.
	Protocol string
	// TLS is set when the proxy originates TLS; ALPN is what it offers and SNI the name it sends.
	TLS  bool
	ALPN []string
	SNI  string
	// common is the TLS context's, which says which server certificates the proxy accepts.
	common *tlsv3.CommonTlsContext
	flavor Flavor
}

// AcceptsServer reports whether the proxy accepts a server certificate with the SPIFFE URI uri
// (of the set's root): its subject alternative names must match the context's matchers
// (match_typed_subject_alt_names for Envoy, match_subject_alt_names for grpc-go; Envoy
// source/common/tls/cert_validator/default_validator.cc, grpc-go
// internal/credentials/xds/handshake_info.go). Without TLS there is nothing to check.
func (u Upstream) AcceptsServer(uri string) bool {
	return !u.TLS || sanAccepted(u.common, uri, u.flavor)
}

// Priority is one priority level of a cluster's endpoints.
type Priority struct {
	Priority   uint32
	Localities []Locality
}

// Locality is one locality of endpoints with its weight.
type Locality struct {
	// Name is region/zone/sub-zone.
	Name      string
	Weight    uint32
	Endpoints []string
}

// resolveCluster finds a cluster and, through EDS, its endpoints by priority, and what its
// configuration makes of a request that came in with downstream protocol proto ("" for TCP).
func (p *Proxy) resolveCluster(name string, weight uint32, conn *connection, proto string) Cluster {
	out := Cluster{Name: name, Weight: weight, PanicThreshold: 50, Overprovisioning: 140}
	c := p.clusters[name]
	if c == nil {
		out.Missing = true
		return out
	}
	if cl := c.GetCommonLbConfig(); cl != nil {
		out.LocalityWeighted = cl.GetLocalityWeightedLbConfig() != nil
		if t := cl.GetHealthyPanicThreshold(); t != nil {
			out.PanicThreshold = t.GetValue()
		}
	}
	if p.Flavor == GRPC {
		out.LocalityWeighted = true // grpc-go's xDS balancer always weighs localities
	}
	if od := c.GetOutlierDetection(); od != nil {
		o := &Outlier{
			Consecutive5xx: 5, Enforcing5xx: 100, ConsecutiveGatewayFailure: 5, EnforcingGatewayFailure: 0,
			Interval: 10 * time.Second, BaseEjectionTime: 30 * time.Second, MaxEjectionPercent: 10,
		}
		if v := od.GetConsecutive_5Xx(); v != nil {
			o.Consecutive5xx = v.GetValue()
		}
		if v := od.GetEnforcingConsecutive_5Xx(); v != nil {
			o.Enforcing5xx = v.GetValue()
		}
		if v := od.GetConsecutiveGatewayFailure(); v != nil {
			o.ConsecutiveGatewayFailure = v.GetValue()
		}
		if v := od.GetEnforcingConsecutiveGatewayFailure(); v != nil {
			o.EnforcingGatewayFailure = v.GetValue()
		}
		if v := od.GetInterval(); v != nil {
			o.Interval = v.AsDuration()
		}
		if v := od.GetBaseEjectionTime(); v != nil {
			o.BaseEjectionTime = v.AsDuration()
		}
		if v := od.GetMaxEjectionPercent(); v != nil {
			o.MaxEjectionPercent = v.GetValue()
		}
		out.Outlier = o
	}
	out.Upstream = p.upstream(c, proto)
	switch c.GetType() {
	case clusterv3.Cluster_ORIGINAL_DST:
		if conn != nil {
			out.OriginalDestination = conn.local.String()
		}
		if b := c.GetUpstreamBindConfig().GetSourceAddress(); b != nil {
			out.BindSource = b.GetAddress()
		}
		return out
	case clusterv3.Cluster_EDS:
		svc := c.GetEdsClusterConfig().GetServiceName()
		if svc == "" {
			svc = name
		}
		cla := p.endpoints[svc]
		out.Priorities = priorities(cla)
		if f := cla.GetPolicy().GetOverprovisioningFactor(); f != nil {
			out.Overprovisioning = f.GetValue()
		}
	default:
		out.Priorities = priorities(c.GetLoadAssignment())
	}
	return out
}

// upstream is how the proxy speaks to a cluster: the HTTP protocol its HttpProtocolOptions select
// (none: HTTP/1.1 whatever the client spoke, upstream_impl.cc upstreamHttpProtocol), and TLS with
// the ALPN of that protocol unless the TLS context sets its own (conn_pool_base.cc
// wrapTransportSocketOptions: the pool's protocol is the ALPN fallback).
func (p *Proxy) upstream(c *clusterv3.Cluster, downstream string) Upstream {
	u := Upstream{Protocol: TCP}
	if downstream != "" {
		u.Protocol = HTTP1
		if p.Flavor == GRPC {
			u.Protocol = HTTP2
		} else if a := c.GetTypedExtensionProtocolOptions()[translate.HTTPProtocolOptionsKey]; a != nil {
			o := &httpv3.HttpProtocolOptions{}
			if a.UnmarshalTo(o) == nil {
				switch {
				case o.GetUseDownstreamProtocolConfig() != nil:
					u.Protocol = downstream
				case o.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil:
					u.Protocol = HTTP2
				case o.GetExplicitHttpConfig().GetHttpProtocolOptions() != nil:
					u.Protocol = HTTP1
				case o.GetAutoConfig() != nil:
					u.Protocol = "ALPN" // h2 when the upstream's TLS agrees on it, else HTTP/1.1
				}
			}
		}
	}
	ts := c.GetTransportSocket()
	if ts == nil {
		return u
	}
	up := &tlsv3.UpstreamTlsContext{}
	if ts.GetTypedConfig().UnmarshalTo(up) != nil {
		return u
	}
	u.TLS, u.SNI = true, up.GetSni()
	u.common, u.flavor = up.GetCommonTlsContext(), p.Flavor
	u.ALPN = up.GetCommonTlsContext().GetAlpnProtocols()
	if len(u.ALPN) == 0 && p.Flavor == Envoy {
		switch u.Protocol {
		case HTTP1:
			u.ALPN = []string{"http/1.1"}
		case HTTP2:
			u.ALPN = []string{"h2"}
		case "ALPN":
			u.ALPN = []string{"h2", "http/1.1"}
		}
	}
	if p.Flavor == GRPC {
		u.ALPN = []string{"h2"}
	}
	return u
}

func priorities(cla *endpointv3.ClusterLoadAssignment) []Priority {
	byPrio := map[uint32]*Priority{}
	for _, le := range cla.GetEndpoints() {
		pr := byPrio[le.GetPriority()]
		if pr == nil {
			pr = &Priority{Priority: le.GetPriority()}
			byPrio[le.GetPriority()] = pr
		}
		loc := le.GetLocality()
		l := Locality{Name: loc.GetRegion() + "/" + loc.GetZone() + "/" + loc.GetSubZone(), Weight: le.GetLoadBalancingWeight().GetValue()}
		for _, e := range le.GetLbEndpoints() {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			l.Endpoints = append(l.Endpoints, net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))))
		}
		pr.Localities = append(pr.Localities, l)
	}
	var out []Priority
	for _, pr := range byPrio {
		out = append(out, *pr)
	}
	slices.SortFunc(out, func(a, b Priority) int { return int(a.Priority) - int(b.Priority) })
	return out
}

// Hosts counts a priority's endpoints.
func (pr Priority) Hosts() int {
	n := 0
	for _, l := range pr.Localities {
		n += len(l.Endpoints)
	}
	return n
}

// PriorityLoad is how Envoy shares requests among a cluster's priorities given which endpoints
// are healthy (load_balancer_impl.cc recalculatePerPriorityState, recalculatePerPriorityPanic):
// each priority's health is its healthy share times the overprovisioning factor, capped at
// 100; load goes to priorities in order up to their health, scaled when their health sums to
// less than 100. A priority whose healthy share is below the panic threshold, when the total is
// below 100, is in panic: it balances over all its hosts, healthy or not. When every priority is
// in panic, load follows the number of hosts.
func (c *Cluster) PriorityLoad(healthy func(endpoint string) bool) (load []float64, panic []bool) {
	n := len(c.Priorities)
	load, panic = make([]float64, n), make([]bool, n)
	if n == 0 {
		return load, panic
	}
	health := make([]float64, n)
	share := make([]float64, n)
	total := 0.0
	for i, pr := range c.Priorities {
		h, all := 0, pr.Hosts()
		for _, l := range pr.Localities {
			for _, e := range l.Endpoints {
				if healthy == nil || healthy(e) {
					h++
				}
			}
		}
		if all > 0 {
			share[i] = 100 * float64(h) / float64(all)
			health[i] = min(100, float64(c.Overprovisioning)*float64(h)/float64(all))
		}
		total += health[i]
	}
	normalized := min(100, total)
	allPanic := true
	for i := range c.Priorities {
		panic[i] = normalized < 100 && share[i] < c.PanicThreshold
		allPanic = allPanic && panic[i]
	}
	if allPanic && c.PanicThreshold > 0 {
		hosts := 0
		for _, pr := range c.Priorities {
			hosts += pr.Hosts()
		}
		for i, pr := range c.Priorities {
			if hosts > 0 {
				load[i] = 100 * float64(pr.Hosts()) / float64(hosts)
			}
		}
		return load, panic
	}
	if normalized == 0 {
		load[0] = 100
		return load, panic
	}
	remaining := 100.0
	for i := range c.Priorities {
		load[i] = min(remaining, health[i]*100/normalized)
		remaining -= load[i]
	}
	return load, panic
}

// LocalityWeights are the weights the localities of a priority get: with locality weighted load
// balancing, each locality's weight scaled by its health (Envoy's effective locality weight:
// weight times min(1, overprovisioning × healthy share)); without, the number of healthy hosts,
// every host weighing the same.
func (c *Cluster) LocalityWeights(prio int, healthy func(endpoint string) bool) []float64 {
	pr := c.Priorities[prio]
	out := make([]float64, len(pr.Localities))
	for i, l := range pr.Localities {
		h := 0
		for _, e := range l.Endpoints {
			if healthy == nil || healthy(e) {
				h++
			}
		}
		if !c.LocalityWeighted {
			out[i] = float64(h)
			continue
		}
		if len(l.Endpoints) > 0 {
			w := float64(max(l.Weight, 1))
			out[i] = w * min(1, float64(c.Overprovisioning)/100*float64(h)/float64(len(l.Endpoints)))
		}
	}
	return out
}

// Shares returns, for the first priority with endpoints of the first cluster, each locality's
// share of requests when every endpoint is healthy, by locality name.
func (r *Result) Shares() map[string]float64 {
	out := map[string]float64{}
	if len(r.Clusters) == 0 || len(r.Clusters[0].Priorities) == 0 {
		return out
	}
	c := &r.Clusters[0]
	ws := c.LocalityWeights(0, nil)
	total := 0.0
	for _, w := range ws {
		total += w
	}
	for i, l := range c.Priorities[0].Localities {
		if total > 0 {
			out[l.Name] += ws[i] / total
		}
	}
	return out
}
