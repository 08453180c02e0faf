package probe

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/xds"

	// grpc-go sends the clusters' server names (wellknown.MeshSNI), by which remote gateways
	// pass calls through to their workloads.
	_ "github.com/crossgate-io/crossgate/internal/grpcsni"
	"github.com/crossgate-io/crossgate/sandbox/grpcxds"
	"github.com/crossgate-io/crossgate/sandbox/network"
)

// GRPCCaller calls through grpc-go's own xDS client as the caller's identity (a proxyless
// workload): no stand-in on the caller's side.
type GRPCCaller struct {
	conn   *grpc.ClientConn
	client testgrpc.TestServiceClient
}

// NewGRPCCaller dials xds:///target (host:port) with a bootstrap and certificate for the
// caller's identity written under dir.
func NewGRPCCaller(ctx context.Context, o Options, dir, target string) (*GRPCCaller, error) {
	ca, err := grpcxds.RootCA(ctx, o.Config)
	if err != nil {
		return nil, err
	}
	boot, err := grpcxds.Bootstrap(ca, dir, o.XDS, o.Namespace, o.ServiceAccount)
	if err != nil {
		return nil, err
	}
	// In-process bootstrap (grpc-go's option for tests: the sandbox is one).
	res, err := xds.NewXDSResolverWithConfigForTesting(boot)
	if err != nil {
		return nil, err
	}
	creds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient("xds:///"+target, grpc.WithResolvers(res), grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			// The sandbox network: pod IPs stand for loopback addresses.
			return (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp", network.LoopbackAddr(addr))
		}))
	if err != nil {
		return nil, err
	}
	// Let the xDS resolution settle: a target without configuration ends in TransientFailure.
	conn.Connect()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for s := conn.GetState(); s == connectivity.Idle || s == connectivity.Connecting; s = conn.GetState() {
		if !conn.WaitForStateChange(wctx, s) {
			break
		}
	}
	return &GRPCCaller{conn: conn, client: testgrpc.NewTestServiceClient(conn)}, nil
}

// Close closes the channel.
func (c *GRPCCaller) Close() { _ = c.conn.Close() }

// Call makes one UnaryCall.
func (c *GRPCCaller) Call(ctx context.Context) Answer {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r, err := c.client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	if err != nil {
		return Answer{Err: err}
	}
	a := Answer{Status: 200, Body: r.GetHostname()}
	if m := fromCluster.FindStringSubmatch(a.Body + " "); m != nil {
		a.Cluster = m[1]
	} else {
		a.Err = fmt.Errorf("unexpected answer %q", a.Body)
	}
	return a
}
