// Package server serves crossgate's xDS cache over gRPC (ADS) with go-control-plane's stream
// plumbing, and enforces that a proxy receives only the configuration of the identity its
// connection proves.
package server

import (
	"context"
	"log/slog"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/crossgate-io/crossgate/wellknown"
	"github.com/crossgate-io/crossgate/xds/cache"
)

// Options configure the server.
type Options struct {
	// RequireIdentity refuses streams whose client certificate carries no SPIFFE identity, and
	// requests whose node ID names another identity than the certificate's. Node IDs are
	// "ns/serviceaccount", optionally prefixed by a kind and "~" ("sidecar~ns/sa").
	RequireIdentity bool
	// TrustDomain, when set, is the only SPIFFE trust domain whose identities are served: a
	// certificate of the same root naming another trust domain gets nothing.
	TrustDomain string
	Log         *slog.Logger
	// Metrics, when set, counts open streams (the cache reports the rest: set it as the cache's
	// Observer).
	Metrics *Metrics
}

// Register adds the aggregated discovery service backed by c to a gRPC server. With
// RequireIdentity, the gRPC server must be serving TLS and requiring client certificates.
func Register(ctx context.Context, s *grpc.Server, c *cache.Cache, opts Options) {
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	// State-of-the-world and delta streams are numbered by separate counters: one guard each,
	// or the streams of one kind would read the identities of the other.
	sotw := &guard{require: opts.RequireIdentity, trustDomain: opts.TrustDomain, log: log, streams: map[int64]string{}, nodes: map[int64]string{}, metrics: opts.Metrics}
	delta := &guard{require: opts.RequireIdentity, trustDomain: opts.TrustDomain, log: log, streams: map[int64]string{}, nodes: map[int64]string{}, metrics: opts.Metrics}
	xds := serverv3.NewServer(ctx, c, serverv3.CallbackFuncs{
		StreamOpenFunc:        sotw.open,
		StreamClosedFunc:      func(id int64, _ *corev3.Node) { sotw.closed(id) },
		StreamRequestFunc:     sotw.request,
		DeltaStreamOpenFunc:   delta.open,
		DeltaStreamClosedFunc: func(id int64, _ *corev3.Node) { delta.closed(id) },
		StreamDeltaRequestFunc: func(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
			return delta.check(id, req.GetNode().GetId(), req.GetTypeUrl())
		},
	})
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(s, xds)
}

// guard remembers the identity proven by each stream's peer certificate.
type guard struct {
	require     bool
	trustDomain string
	log         *slog.Logger
	metrics     *Metrics
	mu          sync.Mutex
	streams     map[int64]string
	nodes       map[int64]string // the node ID each stream named first
}

func (g *guard) open(ctx context.Context, id int64, _ string) error {
	if g.metrics != nil {
		g.metrics.streams.Inc()
	}
	if !g.require {
		return nil
	}
	ident, err := peerIdentity(ctx, g.trustDomain)
	if err != nil {
		g.log.Warn("xDS stream refused", "stream", id, "error", err)
		return status.Error(codes.Unauthenticated, err.Error())
	}
	g.mu.Lock()
	g.streams[id] = ident
	g.mu.Unlock()
	return nil
}

func (g *guard) closed(id int64) {
	if g.metrics != nil {
		g.metrics.streams.Dec()
	}
	g.mu.Lock()
	delete(g.streams, id)
	delete(g.nodes, id)
	g.mu.Unlock()
}

func (g *guard) request(id int64, req *discoveryv3.DiscoveryRequest) error {
	return g.check(id, req.GetNode().GetId(), req.GetTypeUrl())
}

func (g *guard) check(id int64, node, typeURL string) error {
	if !g.require {
		return nil
	}
	g.mu.Lock()
	ident := g.streams[id]
	// A node is sent on the first request of a stream; later requests (ACKs) may omit it, and
	// then stand for the stream's node.
	if node == "" {
		node = g.nodes[id]
	} else if _, seen := g.nodes[id]; !seen {
		g.nodes[id] = node
	}
	first := g.nodes[id]
	g.mu.Unlock()
	if node != first {
		g.log.Warn("xDS request for another node on the same stream refused", "stream", id, "node", node, "first", first, "type", typeURL)
		return status.Errorf(codes.PermissionDenied, "node %q on a stream opened as node %q", node, first)
	}
	if !NodeIsIdentity(node, ident) {
		g.log.Warn("xDS request for another identity refused", "stream", id, "node", node, "certificate", ident, "type", typeURL)
		return status.Errorf(codes.PermissionDenied, "node %q is not the identity %q of the client certificate", node, ident)
	}
	return nil
}

// NodeIsIdentity reports whether a node ID (wellknown.NodeID) names identity ns/sa.
func NodeIsIdentity(node, identity string) bool {
	id, err := wellknown.ParseNodeID(node)
	return err == nil && identity != "" && id.Identity() == identity
}

// PeerIdentity is the ns/serviceaccount of the SPIFFE URI in the verified client certificate of
// the connection in ctx.
func PeerIdentity(ctx context.Context) (string, error) { return peerIdentity(ctx, "") }

// peerIdentity is PeerIdentity, for a SPIFFE URI of trustDomain only when it is set.
func peerIdentity(ctx context.Context, trustDomain string) (string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", status.Error(codes.Unauthenticated, "no peer")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.PeerCertificates) == 0 {
		return "", status.Error(codes.Unauthenticated, "a verified client certificate is required")
	}
	for _, u := range info.State.PeerCertificates[0].URIs {
		if u.Scheme != "spiffe" {
			continue
		}
		if trustDomain != "" && u.Host != trustDomain {
			return "", status.Errorf(codes.PermissionDenied, "the client certificate names trust domain %q; this server serves %q only", u.Host, trustDomain)
		}
		if id, err := wellknown.ParseSPIFFEID(u); err == nil {
			return id.Identity(), nil
		}
	}
	return "", status.Error(codes.Unauthenticated, "the client certificate names no SPIFFE workload identity (spiffe://<trust-domain>/ns/<ns>/sa/<sa>)")
}
