// Package server serves crossgate's xDS cache over gRPC (ADS) with go-control-plane's stream
// plumbing.
package server

import (
	"context"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"

	"github.com/crossgate-io/crossgate/xds/cache"
)

// Register adds the aggregated discovery service backed by c to a gRPC server.
func Register(ctx context.Context, s *grpc.Server, c *cache.Cache) {
	xds := serverv3.NewServer(ctx, c, nil)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(s, xds)
}
