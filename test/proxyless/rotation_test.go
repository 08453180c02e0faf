package proxyless

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/xds"

	"github.com/crossgate-io/crossgate/translator"
	"github.com/crossgate-io/crossgate/xds/cache"
	"github.com/crossgate-io/crossgate/xds/identity"
	"github.com/crossgate-io/crossgate/xds/server"
	"github.com/crossgate-io/crossgate/xds/translate"
)

// serialApp records the serial numbers of the client certificates it is called with.
type serialApp struct {
	testgrpc.UnimplementedTestServiceServer
	mu      sync.Mutex
	serials map[string]int
}

func (a *serialApp) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.PeerCertificates) > 0 {
			a.mu.Lock()
			a.serials[info.State.PeerCertificates[0].SerialNumber.String()]++
			a.mu.Unlock()
		}
	}
	return &testgrpc.SimpleResponse{Hostname: "cluster-1"}, nil
}

func fileBootstrap(xdsAddr, nodeID, dir string) []byte {
	return []byte(fmt.Sprintf(`{
  "xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
  "node": {"id": %q},
  "certificate_providers": {%q: {"plugin_name": "file_watcher", "config": {
    "certificate_file": %q, "private_key_file": %q, "ca_certificate_file": %q, "refresh_interval": "1s"}}},
  "server_listener_resource_name_template": %q
}`, xdsAddr, nodeID, translate.CertificateProviderInstance,
		filepath.Join(dir, identity.CertFile), filepath.Join(dir, identity.KeyFile), filepath.Join(dir, identity.CAFile),
		translate.ServerListenerTemplate))
}

// bootstrapFor issues a certificate for ns/sa from ca into a new directory and returns a
// bootstrap whose file_watcher provider reads it.
func bootstrapFor(t *testing.T, ca *identity.CA, xdsAddr, nodeID, ns, sa string) []byte {
	t.Helper()
	c, err := ca.Issue(ns, sa, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := c.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	return fileBootstrap(xdsAddr, nodeID, dir)
}

// TestRotationUnderLoad makes 1,000 calls over mTLS (policy mode, RBAC on) while both sides'
// certificates are replaced; the server recycles connections every 300 ms so that new
// handshakes happen with the new certificates. No call may fail, and calls made after the
// rotation must carry the new client certificate.
func TestRotationUnderLoad(t *testing.T) {
	ca, err := identity.NewCA("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	clientDir, serverDir := t.TempDir(), t.TempDir()
	issue := func(dir, ns, sa string) *identity.Certificate {
		c, err := ca.Issue(ns, sa, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.WriteFiles(dir); err != nil {
			t.Fatal(err)
		}
		return c
	}
	oldClient := issue(clientDir, "curl", "curl")
	issue(serverDir, "httpbin", "httpbin")

	c := cache.New(cache.NodeIDResolver, nil)
	xlis, _ := net.Listen("tcp", "127.0.0.1:0")
	xs := grpc.NewServer(server.GRPCOptions(c)...)
	ctx, cancel := context.WithCancel(context.Background())
	server.Register(ctx, xs, c, server.Options{})
	go xs.Serve(xlis)
	t.Cleanup(func() { cancel(); xs.Stop() })

	alis, _ := net.Listen("tcp", "127.0.0.1:0")
	res := translator.Translate(policyWorld(alis.Addr().(*net.TCPAddr).Port, "POST"))
	out, err := translate.Build(&res.IR)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Set("httpbin/httpbin", out.Proxyless["httpbin/httpbin"]); err != nil {
		t.Fatal(err)
	}
	if err := c.Set("curl/curl", out.Proxyless["curl/curl"]); err != nil {
		t.Fatal(err)
	}

	screds, _ := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
	app := &serialApp{serials: map[string]int{}}
	srv, err := xds.NewGRPCServer(grpc.Creds(screds),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: 300 * time.Millisecond, MaxConnectionAgeGrace: 5 * time.Second}),
		xds.BootstrapContentsForTesting(fileBootstrap(xlis.Addr().String(), "httpbin/httpbin", serverDir)))
	if err != nil {
		t.Fatal(err)
	}
	testgrpc.RegisterTestServiceServer(srv, app)
	go srv.Serve(alis)
	t.Cleanup(srv.Stop)

	resolver, err := xds.NewXDSResolverWithConfigForTesting(fileBootstrap(xlis.Addr().String(), "curl/curl", clientDir))
	if err != nil {
		t.Fatal(err)
	}
	ccreds, _ := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
	conn, err := grpc.NewClient("xds:///httpbin.httpbin:8080", grpc.WithResolvers(resolver), grpc.WithTransportCredentials(ccreds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)

	var newClient *identity.Certificate
	failures := 0
	start := time.Now()
	for i := range 1000 {
		if i == 300 {
			newClient = issue(clientDir, "curl", "curl")
			issue(serverDir, "httpbin", "httpbin")
		}
		if i > 300 && i%100 == 0 {
			time.Sleep(400 * time.Millisecond) // let connections age out and the providers reload
		}
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := client.UnaryCall(cctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
		ccancel()
		if err != nil {
			failures++
			t.Logf("call %d failed: %v", i, err)
		}
	}
	if failures > 0 {
		t.Errorf("%d of 1000 calls failed across the rotation", failures)
	}
	app.mu.Lock()
	defer app.mu.Unlock()
	if app.serials[oldClient.Serial.String()] == 0 || app.serials[newClient.Serial.String()] == 0 {
		t.Errorf("client certificates seen by the server: %v; want both the old (%s) and the new (%s)",
			app.serials, oldClient.Serial, newClient.Serial)
	}
	t.Logf("1000 calls in %s; calls per client certificate: %v", time.Since(start).Round(time.Millisecond), app.serials)
}
