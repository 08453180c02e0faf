package proxyless

import (
	"context"
	"fmt"
	"net"
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
	"github.com/crossgate-io/crossgate/xds/identity"
	"github.com/crossgate-io/crossgate/xds/server"
	"github.com/crossgate-io/crossgate/xds/translate"
)

// policyWorld is a cluster in policy mode where httpbin (ServiceAccount httpbin, a proxyless
// gRPC server on 127.0.0.1:port) is reached by curl/curl through a TrafficTarget whose route
// group allows the given methods.
func policyWorld(port int, methods string) *translator.Input {
	in, err := translator.ParseInput([]byte(fmt.Sprintf(`
cluster: default/default/default/cluster-1
meshConfig: {metadata: {name: mesh, namespace: crossgate-system}, spec: {traffic: {enablePermissiveTrafficPolicyMode: false}}}
namespaces: [{metadata: {name: httpbin, labels: {crossgate.io/inject: enabled}}}]
serviceAccounts: [{metadata: {namespace: curl, name: curl}}, {metadata: {namespace: intruder, name: intruder}}]
services:
- metadata: {namespace: httpbin, name: httpbin}
  spec: {clusterIP: 10.96.0.30, clusterIPs: [10.96.0.30], ports: [{port: 8080, protocol: TCP}], selector: {app: httpbin}}
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
			ca, err := identity.NewCA("cluster.local")
			if err != nil {
				t.Fatal(err)
			}
			c := cache.New(cache.NodeIDResolver, nil)
			xlis, _ := net.Listen("tcp", "127.0.0.1:0")
			xs := grpc.NewServer(server.GRPCOptions(c)...)
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
			srv, err := xds.NewGRPCServer(grpc.Creds(screds), xds.BootstrapContentsForTesting(bootstrapFor(t, ca, xlis.Addr().String(), "httpbin/httpbin", "httpbin", "httpbin")))
			if err != nil {
				t.Fatal(err)
			}
			testgrpc.RegisterTestServiceServer(srv, &app{cluster: "cluster-1"})
			go srv.Serve(alis)
			t.Cleanup(srv.Stop)

			// The client: the caller's identity, mTLS through xDS credentials.
			res2, err := xds.NewXDSResolverWithConfigForTesting(bootstrapFor(t, ca, xlis.Addr().String(), tc.caller+"/"+tc.caller, tc.caller, tc.caller))
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
