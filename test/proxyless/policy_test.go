package proxyless

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"

	"github.com/crossgate-io/crossgate/translator"
	"github.com/crossgate-io/crossgate/xds/cache"
	"github.com/crossgate-io/crossgate/xds/server"
	"github.com/crossgate-io/crossgate/xds/translate"
)

// testCA issues workload certificates for SPIFFE identities.
type testCA struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	caPath string
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "crossgate test root"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	cert, _ := x509.ParseCertificate(der)
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, caPath: p}
}

// bootstrap writes a certificate for identity ns/sa and returns a bootstrap for xdsAddr with a
// file_watcher provider reading it.
func (ca *testCA) bootstrap(t *testing.T, xdsAddr, nodeID, ns, sa string) []byte {
	t.Helper()
	dir := t.TempDir()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/%s", ns, sa))
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &k.PublicKey, ca.key)
	kb, _ := x509.MarshalECPrivateKey(k)
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	_ = os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return []byte(fmt.Sprintf(`{
  "xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
  "node": {"id": %q},
  "certificate_providers": {%q: {"plugin_name": "file_watcher", "config": {
    "certificate_file": %q, "private_key_file": %q, "ca_certificate_file": %q, "refresh_interval": "600s"}}},
  "server_listener_resource_name_template": %q
}`, xdsAddr, nodeID, translate.CertificateProviderInstance, cert, key, ca.caPath, translate.ServerListenerTemplate))
}

// policyWorld is a cluster in policy mode where httpbin (ServiceAccount httpbin, a proxyless
// gRPC server on 127.0.0.1:port) is reached by curl/curl through a TrafficTarget whose route
// group allows the given methods.
func policyWorld(port int, methods string) *translator.Input {
	in, err := translator.ParseInput([]byte(fmt.Sprintf(`
cluster: default/default/default/cluster-1
meshConfig: {metadata: {name: mesh, namespace: crossgate-system}, spec: {traffic: {enablePermissiveTrafficPolicyMode: false}}}
serviceAccounts: [{metadata: {namespace: curl, name: curl}}, {metadata: {namespace: intruder, name: intruder}}]
services:
- metadata: {namespace: httpbin, name: httpbin}
  spec: {clusterIP: 10.96.0.30, clusterIPs: [10.96.0.30], ports: [{port: 8080, protocol: TCP}]}
pods:
- metadata: {namespace: httpbin, name: httpbin-0, annotations: {crossgate.io/proxyless: "true"}}
  spec: {serviceAccountName: httpbin, containers: [{name: app, image: app}]}
endpointSlices:
- metadata: {namespace: httpbin, name: httpbin-1, labels: {kubernetes.io/service-name: httpbin}}
  addressType: IPv4
  ports: [{name: "", port: %d, protocol: TCP}]
  endpoints: [{addresses: [127.0.0.1], conditions: {ready: true}, targetRef: {kind: Pod, namespace: httpbin, name: httpbin-0}}]
httpRouteGroups:
- metadata: {namespace: httpbin, name: httpbin-route}
  spec: {matches: [{name: all, pathRegex: "/.*", methods: [%s]}]}
trafficTargets:
- metadata: {namespace: httpbin, name: curl-to-httpbin}
  spec:
    destination: {kind: ServiceAccount, name: httpbin, namespace: httpbin}
    rules: [{kind: HTTPRouteGroup, name: httpbin-route, matches: [all]}]
    sources: [{kind: ServiceAccount, name: curl, namespace: curl}]
`, port, methods)))
	if err != nil {
		panic(err)
	}
	return in
}

func TestPolicyModeOverMTLS(t *testing.T) {
	for _, tc := range []struct {
		name    string
		methods string
		caller  string // whose certificate the client presents
		want    codes.Code
	}{
		{"a caller with a TrafficTarget is allowed", "POST", "curl", codes.OK},
		{"a POST is denied by a route group that allows only GET", "GET", "curl", codes.PermissionDenied},
		{"a caller without a TrafficTarget is denied at the server", "POST", "intruder", codes.PermissionDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := newTestCA(t)
			c := cache.New(cache.NodeIDResolver, nil)
			xlis, _ := net.Listen("tcp", "127.0.0.1:0")
			xs := grpc.NewServer()
			ctx, cancel := context.WithCancel(context.Background())
			server.Register(ctx, xs, c, server.Options{})
			go xs.Serve(xlis)
			t.Cleanup(func() { cancel(); xs.Stop() })

			// The server: xDS-enabled, mTLS from its certificate provider, RBAC from its listener.
			alis, _ := net.Listen("tcp", "127.0.0.1:0")
			port := alis.Addr().(*net.TCPAddr).Port
			res := translator.Translate(policyWorld(port, tc.methods))
			out, err := translate.Build(&res.IR)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Set("httpbin/httpbin", out.Proxyless["httpbin/httpbin"]); err != nil {
				t.Fatal(err)
			}
			// The intruder bypasses its own (empty) outbound configuration by getting curl's: the
			// server must still refuse it, by the identity in its certificate.
			if err := c.Set(tc.caller+"/"+tc.caller, out.Proxyless["curl/curl"]); err != nil {
				t.Fatal(err)
			}
			screds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
			if err != nil {
				t.Fatal(err)
			}
			srv, err := xds.NewGRPCServer(grpc.Creds(screds), xds.BootstrapContentsForTesting(ca.bootstrap(t, xlis.Addr().String(), "httpbin/httpbin", "httpbin", "httpbin")))
			if err != nil {
				t.Fatal(err)
			}
			testgrpc.RegisterTestServiceServer(srv, &app{cluster: "cluster-1"})
			go srv.Serve(alis)
			t.Cleanup(srv.Stop)

			// The client: the caller's identity, mTLS through xDS credentials.
			res2, err := xds.NewXDSResolverWithConfigForTesting(ca.bootstrap(t, xlis.Addr().String(), tc.caller+"/"+tc.caller, tc.caller, tc.caller))
			if err != nil {
				t.Fatal(err)
			}
			ccreds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
			if err != nil {
				t.Fatal(err)
			}
			conn, err := grpc.NewClient("xds:///httpbin.httpbin:8080", grpc.WithResolvers(res2), grpc.WithTransportCredentials(ccreds))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer ccancel()
			r, err := testgrpc.NewTestServiceClient(conn).UnaryCall(cctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
			if got := status.Code(err); got != tc.want {
				t.Fatalf("call: %v (code %s), want %s", err, got, tc.want)
			}
			if tc.want == codes.OK && r.GetHostname() != "cluster-1" {
				t.Errorf("answered by %q", r.GetHostname())
			}
			if n := c.NACKs.Load(); n != 0 {
				t.Errorf("grpc-go rejected %d responses", n)
			}
		})
	}
}
