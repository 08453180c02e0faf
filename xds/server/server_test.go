package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/crossgate-io/crossgate/xds/cache"
	"github.com/crossgate-io/crossgate/xds/resources"
)

func issue(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, uri string, server bool) tls.Certificate {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	if uri != "" {
		u, _ := url.Parse(uri)
		tmpl.URIs = []*url.URL{u}
	}
	if server {
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}

// TestIdentityIsEnforced: a client whose certificate proves identity a/a gets a/a's
// configuration and is refused b/b's.
func TestIdentityIsEnforced(t *testing.T) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "root"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	ca, _ := x509.ParseCertificate(caDER)
	pool := x509.NewCertPool()
	pool.AddCert(ca)

	c := cache.New(cache.NodeIDResolver, nil)
	metrics := NewMetrics()
	c.Observer = metrics
	for _, key := range []string{"a/a", "b/b"} {
		if err := c.Set(key, &resources.Resources{Listeners: []*listenerv3.Listener{{Name: "listener-of-" + key}}}); err != nil {
			t.Fatal(err)
		}
	}
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	s := grpc.NewServer(append(GRPCOptions(c), grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{issue(t, ca, caKey, "", true)},
		ClientAuth:   tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS13,
	})))...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	Register(ctx, s, c, Options{RequireIdentity: true, TrustDomain: "cluster.local", Metrics: metrics})
	go s.Serve(lis)
	defer s.Stop()

	ask := func(cert tls.Certificate, node string) (*discoveryv3.DiscoveryResponse, error) {
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS13,
		})))
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		defer scancel()
		st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx)
		if err != nil {
			return nil, err
		}
		// When the server refuses the stream at once, Send reports io.EOF: the status comes from Recv.
		if err := st.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: node}, TypeUrl: resourcev3.ListenerType}); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		return st.Recv()
	}
	certA := issue(t, ca, caKey, "spiffe://cluster.local/ns/a/sa/a", false)

	resp, err := ask(certA, "b/b")
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("identity a/a asking for b/b: %v, %v; want PermissionDenied", resp, err)
	}
	if n := c.PushCount("b/b", resourcev3.ListenerType); n != 0 {
		t.Errorf("b/b's configuration was sent %d times", n)
	}
	resp, err = ask(certA, "a/a")
	if err != nil || len(resp.GetResources()) != 1 {
		t.Fatalf("identity a/a asking for its own configuration: %v, %v", resp, err)
	}
	l := &listenerv3.Listener{}
	if err := resp.GetResources()[0].UnmarshalTo(l); err != nil || l.Name != "listener-of-a/a" {
		t.Errorf("got listener %q (%v), want a/a's", l.Name, err)
	}
	// A certificate of the same root for another trust domain gets nothing.
	if _, err := ask(issue(t, ca, caKey, "spiffe://evil.example/ns/a/sa/a", false), "a/a"); status.Code(err) == codes.OK {
		t.Error("a certificate of another trust domain was served")
	}
	// A certificate without a workload identity gets nothing.
	if _, err := ask(issue(t, ca, caKey, "", false), "a/a"); status.Code(err) != codes.Unauthenticated {
		t.Errorf("a certificate without a SPIFFE identity: %v, want Unauthenticated", err)
	}
	if got := testutil.ToFloat64(metrics.pushes.WithLabelValues("Listener")); got != 1 {
		t.Errorf("pushes = %v, want 1 (a/a's listener only)", got)
	}

	// Delta, as Envoy does it: the node on the first request only; the ACK without a node
	// stands for the same node and keeps the stream open. A later request naming another node
	// on the same stream is refused.
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{certA}, RootCAs: pool, MinVersion: tls.VersionTLS13,
	})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
	defer dcancel()
	ds, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(dctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ds.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "a/a"}, TypeUrl: resourcev3.ListenerType}); err != nil {
		t.Fatal(err)
	}
	dr, err := ds.Recv()
	if err != nil || len(dr.GetResources()) != 1 {
		t.Fatalf("delta, node on the first request: %v, %v", dr, err)
	}
	for _, req := range []*discoveryv3.DeltaDiscoveryRequest{
		{TypeUrl: resourcev3.ListenerType, ResponseNonce: dr.GetNonce()},
		{TypeUrl: resourcev3.ClusterType},
	} {
		if err := ds.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	if err := ds.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "b/b"}, TypeUrl: resourcev3.RouteType}); err != nil {
		t.Fatal(err)
	}
	if _, err := ds.Recv(); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), `"b/b"`) {
		t.Errorf("after requests without a node, a request naming another node: %v; want PermissionDenied for it", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(metrics.streams) != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := testutil.ToFloat64(metrics.streams); got != 0 {
		t.Errorf("%v streams still counted open after every client left", got)
	}
}

func TestNodeIsIdentity(t *testing.T) {
	for _, tc := range []struct {
		node, identity string
		want           bool
	}{
		{"a/b", "a/b", true},
		{"sidecar~a/b", "a/b", true},
		{"proxyless~a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"sidecar~a/b~x", "a/b", false},
		{"a/b", "", false},
		{"", "", false},
	} {
		if got := NodeIsIdentity(tc.node, tc.identity); got != tc.want {
			t.Errorf("NodeIsIdentity(%q, %q) = %v", tc.node, tc.identity, got)
		}
	}
}

// A state-of-the-world stream and a delta stream are numbered by separate counters, so the first
// of each carries the same number: each must keep its own identity.
func TestSotWAndDeltaStreamsKeepTheirIdentities(t *testing.T) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "root"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	ca, _ := x509.ParseCertificate(caDER)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	c := cache.New(cache.NodeIDResolver, nil)
	for _, key := range []string{"a/a", "b/b"} {
		if err := c.Set(key, &resources.Resources{Listeners: []*listenerv3.Listener{{Name: "listener-of-" + key}}}); err != nil {
			t.Fatal(err)
		}
	}
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	s := grpc.NewServer(append(GRPCOptions(c), grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{issue(t, ca, caKey, "", true)},
		ClientAuth:   tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS13,
	})))...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	Register(ctx, s, c, Options{RequireIdentity: true})
	go s.Serve(lis)
	defer s.Stop()
	dial := func(spiffe string) discoveryv3.AggregatedDiscoveryServiceClient {
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			Certificates: []tls.Certificate{issue(t, ca, caKey, spiffe, false)}, RootCAs: pool, MinVersion: tls.VersionTLS13,
		})))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	}
	sotw, err := dial("spiffe://cluster.local/ns/b/sa/b").StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := sotw.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "b/b"}, TypeUrl: resourcev3.ListenerType}); err != nil {
		t.Fatal(err)
	}
	first, err := sotw.Recv()
	if err != nil {
		t.Fatal(err)
	}
	delta, err := dial("spiffe://cluster.local/ns/a/sa/a").DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := delta.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "a/a"}, TypeUrl: resourcev3.ListenerType}); err != nil {
		t.Fatal(err)
	}
	if r, err := delta.Recv(); err != nil || len(r.GetResources()) != 1 {
		t.Fatalf("a/a over delta: %v %v", r, err)
	}
	// b/b acknowledges and gets its next configuration: its stream still has its own identity.
	if err := sotw.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ListenerType, VersionInfo: first.GetVersionInfo(), ResponseNonce: first.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	if err := c.Set("b/b", &resources.Resources{Listeners: []*listenerv3.Listener{{Name: "listener-of-b/b-2"}}}); err != nil {
		t.Fatal(err)
	}
	if r, err := sotw.Recv(); err != nil || len(r.GetResources()) != 1 {
		t.Fatalf("b/b over SotW after a delta stream of the same number opened: %v, %v", r, err)
	}
}
