package simulate

import (
	"errors"
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/crossgate-io/crossgate/xds/resources"
	"github.com/crossgate-io/crossgate/xds/translate"
)

// Lint reports what Envoy accepts from an Envoy proxy's resources but does otherwise than such a
// configuration suggests: the mechanical checks of the Envoy review, each with the Envoy rule
// that makes it a mistake. Load reports what Envoy refuses; Lint what it would mishandle.
func Lint(res *resources.Resources) error {
	var errs []error
	add := func(kind, name, rule, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s %s (%s): %s", kind, name, rule, fmt.Sprintf(format, args...)))
	}
	clusters := map[string]*clusterv3.Cluster{}
	for part := range res.Parts() {
		for _, c := range part.Clusters {
			clusters[c.Name] = c
		}
	}
	httpClusters := map[string]bool{} // clusters that routes send HTTP to
	routeConfigs := []*routev3.RouteConfiguration{}
	for part := range res.Parts() {
		for _, l := range part.Listeners {
			if l.GetUseOriginalDst().GetValue() && l.GetAddress().GetSocketAddress().GetPortValue() != translate.OutboundCapturePort {
				add("listener", l.Name, "listener.proto use_original_dst", "only the outbound capture listener may hand connections over to the listener of their original destination")
			}
			for _, fc := range append(append([]*listenerv3.FilterChain{}, l.GetFilterChains()...), l.GetDefaultFilterChain()) {
				if fc == nil {
					continue
				}
				if ts := fc.GetTransportSocket(); ts != nil {
					ctx := &tlsv3.DownstreamTlsContext{}
					if ts.GetTypedConfig().UnmarshalTo(ctx) == nil {
						lintTLS(add, "listener", l.Name, ctx.GetCommonTlsContext())
					}
				}
				for _, f := range fc.GetFilters() {
					if f.Name != "envoy.filters.network.http_connection_manager" {
						continue
					}
					m := &hcmv3.HttpConnectionManager{}
					if f.GetTypedConfig().UnmarshalTo(m) == nil {
						if rc := m.GetRouteConfig(); rc != nil {
							if v := rc.GetValidateClusters(); v == nil || v.GetValue() {
								add("listener", l.Name, "route.proto validate_clusters", "inline route configuration %s validates clusters (the default for route_config): the listener is refused while a cluster it names has not arrived by CDS", rc.Name)
							}
							routeConfigs = append(routeConfigs, rc)
						}
						if len(m.GetUpgradeConfigs()) == 0 {
							add("listener", l.Name, "http_connection_manager.proto upgrade_configs", "WebSocket upgrades are not proxied without upgrade_configs")
						}
					}
				}
			}
		}
		routeConfigs = append(routeConfigs, part.Routes...)
	}
	for _, rc := range routeConfigs {
		for _, vh := range rc.GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				a := r.GetRoute()
				if a == nil {
					continue
				}
				if a.GetTimeout() == nil {
					add("route", rc.Name, "route_components.proto RouteAction.timeout", "route %s has Envoy's default timeout of 15 s, which cuts long requests and every stream", r.GetName())
				}
				for _, c := range routeClusters(a) {
					httpClusters[c] = true
				}
			}
		}
	}
	for name := range httpClusters {
		c := clusters[name]
		if c == nil || c.GetType() == clusterv3.Cluster_ORIGINAL_DST {
			continue
		}
		if c.GetTypedExtensionProtocolOptions()[translate.HTTPProtocolOptionsKey] == nil {
			add("cluster", name, "upstream_impl.cc upstreamHttpProtocol", "HTTP goes to it as HTTP/1.1 whatever the client spoke: gRPC and HTTP/2 break at this hop")
		}
	}
	for part := range res.Parts() {
		for _, c := range part.Clusters {
			if ts := c.GetTransportSocket(); ts != nil {
				up := &tlsv3.UpstreamTlsContext{}
				if ts.GetTypedConfig().UnmarshalTo(up) == nil {
					lintTLS(add, "cluster", c.Name, up.GetCommonTlsContext())
				}
			}
			if od := c.GetOutlierDetection(); od != nil {
				if od.GetConsecutiveGatewayFailure() != nil && od.GetEnforcingConsecutiveGatewayFailure().GetValue() == 0 {
					add("cluster", c.Name, "outlier_detection.proto enforcing_consecutive_gateway_failure", "consecutive_gateway_failure is set and its enforcement defaults to 0%%: it ejects nothing")
				}
				if od.GetConsecutiveLocalOriginFailure() != nil && od.GetEnforcingConsecutiveLocalOriginFailure() == nil {
					add("cluster", c.Name, "outlier_detection.proto enforcing_consecutive_local_origin_failure", "consecutive_local_origin_failure is set without its enforcement")
				}
			}
		}
		for _, e := range part.Endpoints {
			c := clusters[e.ClusterName]
			weighted := c.GetCommonLbConfig().GetLocalityWeightedLbConfig() != nil
			for _, le := range e.GetEndpoints() {
				if len(le.GetLbEndpoints()) == 0 {
					add("endpoints", e.ClusterName, "endpoint_components.proto LocalityLbEndpoints", "a locality without endpoints")
				}
				if le.GetLoadBalancingWeight() != nil && len(e.GetEndpoints()) > 1 && c != nil && !weighted {
					add("endpoints", e.ClusterName, "endpoint_components.proto load_balancing_weight", "locality weights are ignored: cluster %s has no locality_weighted_lb_config", c.Name)
					break
				}
			}
		}
	}
	return errors.Join(errs...)
}

func lintTLS(add func(kind, name, rule, format string, args ...any), kind, name string, common *tlsv3.CommonTlsContext) {
	v := common.GetValidationContext()
	if cv := common.GetCombinedValidationContext(); cv != nil {
		v = cv.GetDefaultValidationContext()
	}
	if len(v.GetMatchSubjectAltNames()) > 0 { //nolint:staticcheck // the model reports the deprecated field, as Envoy does
		add(kind, name, "common.proto match_subject_alt_names", "deprecated in favor of match_typed_subject_alt_names: Envoy warns and counts a deprecated feature use")
	}
}

// Check loads every proxy's resources of a build as its client does (Envoy for sidecars and
// gateways, grpc-go for proxyless workloads) and lints Envoy's: the error names every refusal
// and every mishandling, by proxy.
func Check(out *resources.Output) error {
	var errs []error
	for kind, group := range map[string]map[string]*resources.Resources{"sidecar": out.Sidecars, "gateway": out.Gateways, "proxyless": out.Proxyless} {
		for id, res := range group {
			f := Envoy
			if kind == "proxyless" {
				f = GRPC
			}
			if err := Load(res, f).Err(); err != nil {
				errs = append(errs, fmt.Errorf("%s %s: %w", kind, id, err))
			}
			if f == Envoy {
				if err := Lint(res); err != nil {
					errs = append(errs, fmt.Errorf("%s %s: %w", kind, id, err))
				}
			}
		}
	}
	return errors.Join(errs...)
}
