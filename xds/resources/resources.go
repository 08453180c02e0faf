// Package resources holds the xDS resources of a cluster's proxies as xds/translate builds them
// and xds/cache serves them: the neutral type between the two (as Envoy Gateway's
// ResourceVersionTable), so that the cache does not depend on the builder.
package resources

import (
	"iter"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// Resources are the xDS resources of one proxy (or of every proxy of one identity), each list
// sorted by name. Resources that several proxies share (the outbound configuration, identical
// for every identity in permissive mode) are held once, in Shared, not copied into each.
type Resources struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
	// Secrets are the proxy's SDS secrets (its certificate and the trust bundle); never shared.
	Secrets []*tlsv3.Secret
	// Shared, when not nil, holds the rest of this proxy's resources, shared with others.
	Shared *Resources
}

// Parts yields the resources of the proxy: its own, then the shared ones.
func (r *Resources) Parts() iter.Seq[*Resources] {
	return func(yield func(*Resources) bool) {
		for p := r; p != nil; p = p.Shared {
			if !yield(p) {
				return
			}
		}
	}
}

// Output is the configuration of every proxy of a cluster.
type Output struct {
	// Sidecars are the Envoy sidecars' resources, by identity ns/serviceaccount.
	Sidecars map[string]*Resources
	// Proxyless are grpc-go's resources (client and server), by identity ns/serviceaccount.
	Proxyless map[string]*Resources
	// Gateways are the gateways' resources, by namespace/name.
	Gateways map[string]*Resources
}
