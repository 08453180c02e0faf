package proxyless

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	// grpc-go sends the clusters' server names only with this switch (gRFC A101).
	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	_ "github.com/crossgate-io/crossgate/internal/grpcsni"
	"github.com/crossgate-io/crossgate/sandbox/proxy"
	"github.com/crossgate-io/crossgate/translator"
	"github.com/crossgate-io/crossgate/wellknown"
	"github.com/crossgate-io/crossgate/xds/cache"
	"github.com/crossgate-io/crossgate/xds/identity"
	"github.com/crossgate-io/crossgate/xds/server"
	"github.com/crossgate-io/crossgate/xds/translate"
)

// callerWorld is cluster-2, permissive: curl/curl and intruder/intruder may call httpbin, which
// cluster-1 exports, as ServiceAccount importSA, behind its gateway at 127.0.0.1:gatewayPort.
func callerWorld(gatewayPort int, importSA string) *translator.Input {
	in, err := translator.ParseInput([]byte(fmt.Sprintf(`
cluster: default/default/default/cluster-2
meshConfig: {metadata: {name: mesh, namespace: crossgate-system}, spec: {traffic: {enablePermissiveTrafficPolicyMode: true}}}
namespaces: [{metadata: {name: httpbin, labels: {crossgate.io/inject: enabled}}}]
serviceAccounts: [{metadata: {namespace: curl, name: curl}}, {metadata: {namespace: intruder, name: intruder}}]
services:
- metadata: {namespace: httpbin, name: httpbin}
  spec: {clusterIP: 10.97.0.30, clusterIPs: [10.97.0.30], ports: [{port: 8080, protocol: TCP}], selector: {app: httpbin}}
serviceImports:
- metadata: {namespace: httpbin, name: httpbin}
  spec:
    serviceAccountName: %s
    ports:
    - port: 8080
      protocol: TCP
      endpoints:
      - {clusterKey: default/default/default/cluster-1, target: {host: 127.0.0.1, ip: 127.0.0.1, port: %d}}
globalTrafficPolicies:
- metadata: {namespace: httpbin, name: httpbin}
  spec: {lbType: FailOver, targets: [{clusterKey: default/default/default/cluster-1}]}
`, importSA, gatewayPort)))
	if err != nil {
		panic(err)
	}
	return in
}

// TestCallThroughPassthroughGateway: a proxyless caller of cluster-2 reaches the proxyless
// httpbin of cluster-1 through cluster-1's gateway, which routes the caller's mTLS by its server
// name without terminating it (the sandbox's stand-in for the gateway's Envoy, obeying the
// gateway's configuration as xds/simulate models it). httpbin's server, in policy mode, sees the
// caller's own identity: it admits curl and refuses intruder, whom cluster-2 lets call. And the
// caller checks the server: when the import names another ServiceAccount than the one httpbin
// runs as, grpc-go refuses the server's certificate.
func TestCallThroughPassthroughGateway(t *testing.T) {
	ca, err := identity.NewCA("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	c, xlis, tlis := xdsServers(t, ca)

	// cluster-1: httpbin, a proxyless server in policy mode, exported on the gateway.
	alis, _ := net.Listen("tcp", "127.0.0.1:0")
	exporter := policyWorld(alis.Addr().(*net.TCPAddr).Port, "POST")
	exporter.GatewayClasses = append(exporter.GatewayClasses, gatewayClass())
	exporter.Gateways = append(exporter.Gateways, gateway())
	routes := translator.ExportRoutes(&flomeshv1alpha1.ServiceExport{
		ObjectMeta: meta("httpbin", "httpbin"),
		Spec:       flomeshv1alpha1.ServiceExportSpec{Rules: []flomeshv1alpha1.ServiceExportRule{{PortNumber: 8080, Path: "/", PathType: flomeshv1alpha1.PathMatchPrefix}}},
	}, wellknown.SystemNamespace, wellknown.DefaultGatewayName)
	exporter.TLSRoutes = routes.TLS
	res := translator.Translate(exporter)
	out1, err := translate.Build(&res.IR)
	if err != nil {
		t.Fatal(err)
	}
	gwKey := wellknown.SystemNamespace + "/" + wellknown.DefaultGatewayName
	if err := c.Set(wellknown.Gateway(wellknown.SystemNamespace, wellknown.DefaultGatewayName).String(), out1.Gateways[gwKey]); err != nil {
		t.Fatal(err)
	}
	if err := c.Set("httpbin/httpbin", out1.Proxyless["httpbin/httpbin"]); err != nil {
		t.Fatal(err)
	}
	screds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := xds.NewGRPCServer(grpc.Creds(screds), xds.BootstrapContentsForTesting(bootstrapFor(t, ca, xlis.Addr().String(), "httpbin/httpbin", "httpbin", "httpbin")))
	if err != nil {
		t.Fatal(err)
	}
	testgrpc.RegisterTestServiceServer(srv, &app{cluster: "cluster-1"})
	go srv.Serve(alis)
	t.Cleanup(srv.Stop)

	// cluster-1's gateway: the stand-in, subscribed as the gateway with the gateway's identity.
	gwCert, err := ca.Issue(wellknown.SystemNamespace, wellknown.DefaultGatewayName, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	glis, _ := net.Listen("tcp", "127.0.0.1:0")
	serveStandIn(t, glis, proxy.Options{Role: proxy.Gateway, XDS: proxy.XDSOptions{
		Address: tlis.Addr().String(), Node: wellknown.Gateway(wellknown.SystemNamespace, wellknown.DefaultGatewayName).String(), Certificate: gwCert,
	}})

	// cluster-2: the callers.
	for _, tc := range []struct {
		name, caller, importSA string
		want                   codes.Code
	}{
		{"curl is admitted", "curl", "httpbin", codes.OK},
		{"intruder is refused by the server", "intruder", "httpbin", codes.PermissionDenied},
		{"a server of another identity is refused by the caller", "curl", "other", codes.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res2 := translator.Translate(callerWorld(glis.Addr().(*net.TCPAddr).Port, tc.importSA))
			out2, err := translate.Build(&res2.IR)
			if err != nil {
				t.Fatal(err)
			}
			node := tc.caller + "/" + tc.caller
			if err := c.Set(node, out2.Proxyless[node]); err != nil {
				t.Fatal(err)
			}
			r, err := xds.NewXDSResolverWithConfigForTesting(bootstrapFor(t, ca, xlis.Addr().String(), node, tc.caller, tc.caller))
			if err != nil {
				t.Fatal(err)
			}
			ccreds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
			if err != nil {
				t.Fatal(err)
			}
			conn, err := grpc.NewClient("xds:///httpbin.httpbin:8080", grpc.WithResolvers(r), grpc.WithTransportCredentials(ccreds))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			timeout := 15 * time.Second
			opts := []grpc.CallOption{grpc.WaitForReady(true)}
			if tc.want == codes.Unavailable {
				timeout, opts = 5*time.Second, nil // fails fast once the handshake is refused
			}
			cctx, ccancel := context.WithTimeout(context.Background(), timeout)
			defer ccancel()
			var resp *testgrpc.SimpleResponse
			for {
				resp, err = testgrpc.NewTestServiceClient(conn).UnaryCall(cctx, &testgrpc.SimpleRequest{}, opts...)
				if tc.want != codes.Unavailable || status.Code(err) == codes.Unavailable || cctx.Err() != nil {
					break
				}
				time.Sleep(50 * time.Millisecond) // before xDS resolves, a call may fail otherwise
			}
			if got := status.Code(err); got != tc.want {
				t.Fatalf("call: %v (code %s), want %s", err, got, tc.want)
			}
			t.Logf("%v", err)
			if tc.want == codes.OK && resp.GetHostname() != "cluster-1" {
				t.Errorf("answered by %q", resp.GetHostname())
			}
		})
	}
	if n := c.NACKs.Load(); n != 0 {
		t.Errorf("%d responses were refused", n)
	}
}

// serveStandIn starts the sandbox's stand-in proxy with opts (logging at debug level) and serves
// it on ln until the test ends, once it holds its configuration.
func serveStandIn(t *testing.T, ln net.Listener, opts proxy.Options) {
	t.Helper()
	opts.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := proxy.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	sniffed, err := p.Listener(ln)
	if err != nil {
		t.Fatal(err)
	}
	srv := p.Server()
	go srv.Serve(sniffed)
	t.Cleanup(func() { _ = srv.Close() })
	select {
	case <-p.Ready():
	case <-time.After(30 * time.Second):
		t.Fatalf("the stand-in %s got no configuration", opts.XDS.Node)
	}
}

// xdsServers serves the cache's configurations from two xDS servers: one in plaintext for
// grpc-go (as the other tests here), one with mTLS for the stand-in, as crossgate's controller
// serves proxies. They stop when the test ends.
func xdsServers(t *testing.T, ca *identity.CA) (c *cache.Cache, plain, mtls net.Listener) {
	t.Helper()
	c = cache.New(cache.NodeIDResolver, nil)
	plain, _ = net.Listen("tcp", "127.0.0.1:0")
	xs := grpc.NewServer(server.GRPCOptions(c)...)
	serving, err := ca.IssueServing(nil, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(serving.CertPEM, serving.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(serving.RootPEM)
	mtls, _ = net.Listen("tcp", "127.0.0.1:0")
	ts := grpc.NewServer(append(server.GRPCOptions(c), grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS12,
	})))...)
	ctx, cancel := context.WithCancel(context.Background())
	server.Register(ctx, xs, c, server.Options{})
	server.Register(ctx, ts, c, server.Options{})
	go xs.Serve(plain)
	go ts.Serve(mtls)
	t.Cleanup(func() { cancel(); xs.Stop(); ts.Stop() })
	return c, plain, mtls
}

func meta(namespace, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: namespace, Name: name}
}

func gatewayClass() gatewayv1.GatewayClass {
	return gatewayv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "crossgate"}, Spec: gatewayv1.GatewayClassSpec{ControllerName: translator.ControllerName}}
}

func gateway() gatewayv1.Gateway {
	return gatewayv1.Gateway{
		ObjectMeta: meta(wellknown.SystemNamespace, wellknown.DefaultGatewayName),
		Spec:       gatewayv1.GatewaySpec{GatewayClassName: "crossgate", Listeners: translator.GatewayListeners(80)},
	}
}
