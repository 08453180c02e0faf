// Package proxy is the sandbox's stand-in for Envoy, which cannot run here: it subscribes over
// xDS as the proxy it stands in for (a caller's sidecar, a pod's sidecar on the inbound side, or
// a member's gateway), loads its configuration with xds/simulate's model of Envoy (refusing,
// with a NACK, what Envoy refuses), decides listener, route, endpoint and RBAC with it, and
// forwards HTTP/1.1 and HTTP/2 with the protocol, mTLS and ALPN each cluster's configuration
// selects. It works at the HTTP level: opaque TCP is not forwarded. Production uses Envoy.
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"github.com/crossgate-io/crossgate/xds/identity"
	"github.com/crossgate-io/crossgate/xds/resources"
	"github.com/crossgate-io/crossgate/xds/simulate"
)

// types are the xDS types the stand-in subscribes to, all as wildcards, in the order Envoy
// takes them (xDS protocol, "Eventual consistency considerations": CDS and EDS before LDS and
// RDS; SDS secrets before what uses them): on one ADS stream the answers come in the order of
// the requests, so a listener does not arrive before the clusters it names.
var types = []string{resourcev3.SecretType, resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType}

// config is the proxy's view of its xDS resources.
type config struct {
	mu       sync.RWMutex
	byType   map[string]map[string]proto.Message
	res      *resources.Resources
	loaded   *simulate.Proxy
	received map[string]bool
	ready    chan struct{}
	updates  int
}

func newConfig() *config {
	c := &config{byType: map[string]map[string]proto.Message{}, received: map[string]bool{}, ready: make(chan struct{}), res: &resources.Resources{}}
	for _, t := range types {
		c.byType[t] = map[string]proto.Message{}
	}
	return c
}

func newMessage(typeURL string) proto.Message {
	switch typeURL {
	case resourcev3.ListenerType:
		return &listenerv3.Listener{}
	case resourcev3.RouteType:
		return &routev3.RouteConfiguration{}
	case resourcev3.ClusterType:
		return &clusterv3.Cluster{}
	case resourcev3.EndpointType:
		return &endpointv3.ClusterLoadAssignment{}
	case resourcev3.SecretType:
		return &tlsv3.Secret{}
	}
	return nil
}

// certificate is the certificate and key of the SDS secret name (an HTTPS listener's).
func (c *config) certificate(name string) (tls.Certificate, error) {
	c.mu.RLock()
	m, _ := c.byType[resourcev3.SecretType][name].(*tlsv3.Secret)
	c.mu.RUnlock()
	tc := m.GetTlsCertificate()
	if tc == nil {
		return tls.Certificate{}, fmt.Errorf("no SDS secret %s with a certificate", name)
	}
	return tls.X509KeyPair(tc.GetCertificateChain().GetInlineBytes(), tc.GetPrivateKey().GetInlineBytes())
}

// apply takes one delta response into the configuration.
func (c *config) apply(r *discoveryv3.DeltaDiscoveryResponse) error {
	typ := r.GetTypeUrl()
	if newMessage(typ) == nil {
		return nil
	}
	msgs := map[string]proto.Message{}
	for _, res := range r.GetResources() {
		m := newMessage(typ)
		if err := res.GetResource().UnmarshalTo(m); err != nil {
			return fmt.Errorf("%s %s: %w", typ, res.GetName(), err)
		}
		msgs[res.GetName()] = m
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for n, m := range msgs {
		c.byType[typ][n] = m
	}
	for _, n := range r.GetRemovedResources() {
		delete(c.byType[typ], n)
	}
	res := &resources.Resources{}
	for _, m := range c.byType[resourcev3.ListenerType] {
		res.Listeners = append(res.Listeners, m.(*listenerv3.Listener))
	}
	for _, m := range c.byType[resourcev3.RouteType] {
		res.Routes = append(res.Routes, m.(*routev3.RouteConfiguration))
	}
	for _, m := range c.byType[resourcev3.ClusterType] {
		res.Clusters = append(res.Clusters, m.(*clusterv3.Cluster))
	}
	for _, m := range c.byType[resourcev3.EndpointType] {
		res.Endpoints = append(res.Endpoints, m.(*endpointv3.ClusterLoadAssignment))
	}
	c.res = res
	c.loaded = simulate.Load(res, simulate.Envoy)
	c.updates++
	c.received[typ] = true
	if c.received[resourcev3.ListenerType] { // a proxy without clusters gets no Cluster response
		select {
		case <-c.ready:
		default:
			close(c.ready)
		}
	}
	// What Envoy refuses of this update it NACKs, and does without.
	var refused []string
	for _, rj := range c.loaded.Rejected {
		if _, inThis := msgs[rj.Name]; inThis && typeOf(rj.Kind) == typ {
			refused = append(refused, rj.Error())
		}
	}
	if len(refused) > 0 {
		return errors.New(strings.Join(refused, "; "))
	}
	return nil
}

func typeOf(kind string) string {
	switch kind {
	case "listener":
		return resourcev3.ListenerType
	case "route":
		return resourcev3.RouteType
	case "cluster":
		return resourcev3.ClusterType
	case "endpoints":
		return resourcev3.EndpointType
	}
	return ""
}

// proxy is the configuration as Envoy holds it.
func (c *config) proxy() *simulate.Proxy {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.loaded == nil {
		return simulate.Load(c.res, simulate.Envoy)
	}
	return c.loaded
}

// XDSOptions say how the stand-in reaches crossgate's xDS server.
type XDSOptions struct {
	// Address of the controller's xDS server (mTLS).
	Address string
	// Node is the node ID: sidecar~ns/sa or gateway~ns/name.
	Node string
	// Certificate proves the identity the node ID names.
	Certificate *identity.Certificate
	Log         *slog.Logger
}

// subscribe keeps a delta ADS stream open (reconnecting after errors) and applies what arrives.
func (c *config) subscribe(ctx context.Context, o XDSOptions) error {
	tc, err := o.Certificate.ClientTLS()
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(o.Address, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		return err
	}
	go func() {
		defer func() { _ = conn.Close() }()
		for ctx.Err() == nil {
			if err := c.stream(ctx, conn, o); ctx.Err() == nil { // stream returns when the stream ends, always with an error
				o.Log.Warn("xDS stream ended; reconnecting", "node", o.Node, "error", err)
				select {
				case <-ctx.Done():
				case <-time.After(500 * time.Millisecond):
				}
			}
		}
	}()
	return nil
}

func (c *config) stream(ctx context.Context, conn *grpc.ClientConn, o XDSOptions) error {
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return err
	}
	node := &corev3.Node{Id: o.Node}
	for _, t := range types {
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: t}); err != nil {
			return err
		}
	}
	for {
		r, err := st.Recv()
		if err != nil {
			return err
		}
		ack := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()}
		if err := c.apply(r); err != nil {
			ack.ErrorDetail = &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
		}
		if err := st.Send(ack); err != nil {
			return err
		}
	}
}
