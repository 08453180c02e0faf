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
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"

	"github.com/crossgate-io/crossgate/translator"
	"github.com/crossgate-io/crossgate/xds/cache"
	"github.com/crossgate-io/crossgate/xds/identity"
	"github.com/crossgate-io/crossgate/xds/server"
	"github.com/crossgate-io/crossgate/xds/translate"
)

// remoteRulesWorld is cluster-2 in policy mode: curl/curl may call only UnaryCall of the
// httpbin that cluster-1 exports (the import's ServiceAccount httpbin); with local set,
// cluster-2 runs httpbin too, as ServiceAccount local, which curl may call in full.
func remoteRulesWorld(local bool, localPort, remotePort int) *translator.Input {
	localObjects := ""
	if local {
		localObjects = fmt.Sprintf(`
pods:
- metadata: {namespace: httpbin, name: httpbin-0}
  spec: {serviceAccountName: local, containers: [{name: app, image: app}]}
endpointSlices:
- metadata: {namespace: httpbin, name: httpbin-1, labels: {kubernetes.io/service-name: httpbin}}
  addressType: IPv4
  ports: [{name: "", port: %d, protocol: TCP}]
  endpoints: [{addresses: [127.0.0.1], conditions: {ready: true}, targetRef: {kind: Pod, namespace: httpbin, name: httpbin-0}}]`, localPort)
	}
	in, err := translator.ParseInput([]byte(fmt.Sprintf(`
cluster: default/default/default/cluster-2
meshConfig: {metadata: {name: mesh, namespace: crossgate-system}, spec: {traffic: {enablePermissiveTrafficPolicyMode: false}}}
namespaces: [{metadata: {name: httpbin, labels: {crossgate.io/inject: enabled}}}]
serviceAccounts: [{metadata: {namespace: curl, name: curl}}]
services:
- metadata: {namespace: httpbin, name: httpbin}
  spec: {clusterIP: 10.97.0.30, clusterIPs: [10.97.0.30], ports: [{port: 8080, protocol: TCP}], selector: {app: httpbin}}
%s
serviceImports:
- metadata: {namespace: httpbin, name: httpbin}
  spec:
    serviceAccountName: httpbin
    ports:
    - port: 8080
      protocol: TCP
      endpoints:
      - {clusterKey: default/default/default/cluster-1, target: {host: 127.0.0.1, ip: 127.0.0.1, port: %d}}
globalTrafficPolicies:
- metadata: {namespace: httpbin, name: httpbin}
  spec: {lbType: ActiveActive, targets: [{clusterKey: default/default/default/cluster-1}, {clusterKey: default/default/default/cluster-2}]}
httpRouteGroups:
- metadata: {namespace: httpbin, name: calls}
  spec:
    matches:
    - {name: unary, pathRegex: /grpc.testing.TestService/UnaryCall, methods: [POST]}
    - {name: any, methods: ["*"]}
trafficTargets:
- metadata: {namespace: httpbin, name: curl-unary}
  spec:
    destination: {kind: ServiceAccount, name: httpbin, namespace: httpbin}
    rules: [{kind: HTTPRouteGroup, name: calls, matches: [unary]}]
    sources: [{kind: ServiceAccount, name: curl, namespace: curl}]
- metadata: {namespace: httpbin, name: curl-local}
  spec:
    destination: {kind: ServiceAccount, name: local, namespace: httpbin}
    rules: [{kind: HTTPRouteGroup, name: calls, matches: [any]}]
    sources: [{kind: ServiceAccount, name: curl, namespace: curl}]
`, localObjects, remotePort)))
	if err != nil {
		panic(err)
	}
	return in
}

// clusterApp answers UnaryCall and EmptyCall with its cluster's name (EmptyCall in a header).
type clusterApp struct{ app }

func (a *clusterApp) EmptyCall(ctx context.Context, _ *testgrpc.Empty) (*testgrpc.Empty, error) {
	return &testgrpc.Empty{}, grpc.SetHeader(ctx, metadata.Pairs("x-cluster", a.cluster))
}

// TestRemoteRulesInGRPC: grpc-go, given the translated configuration, keeps the calls a
// TrafficTarget does not allow to the remote cluster away from it (issue 16, defect 3): they go
// to the local endpoints, or, with none, fail with PERMISSION_DENIED before leaving the client.
func TestRemoteRulesInGRPC(t *testing.T) {
	ports := map[string]int{}
	for _, c := range []string{"cluster-1", "cluster-2"} {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s := grpc.NewServer()
		testgrpc.RegisterTestServiceServer(s, &clusterApp{app{cluster: c}})
		go s.Serve(lis)
		t.Cleanup(s.Stop)
		ports[c] = lis.Addr().(*net.TCPAddr).Port
	}
	ca, err := identity.NewCA("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	c := cache.New(cache.NodeIDResolver, nil)
	xlis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	xs := grpc.NewServer(server.GRPCOptions(c)...)
	ctx, cancel := context.WithCancel(context.Background())
	server.Register(ctx, xs, c, server.Options{})
	go xs.Serve(xlis)
	t.Cleanup(func() { cancel(); xs.Stop() })
	publish := func(local bool) {
		t.Helper()
		res := translator.Translate(remoteRulesWorld(local, ports["cluster-2"], ports["cluster-1"]))
		out, err := translate.Build(&res.IR)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Set("curl/curl", out.Proxyless["curl/curl"]); err != nil {
			t.Fatal(err)
		}
	}
	publish(false)
	resolver, err := xds.NewXDSResolverWithConfigForTesting(bootstrapFor(t, ca, xlis.Addr().String(), "curl/curl", "curl", "curl"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///httpbin.httpbin:8080", grpc.WithResolvers(resolver), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := testgrpc.NewTestServiceClient(conn)
	unary := func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
		return r.GetHostname(), err
	}
	empty := func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var md metadata.MD
		_, err := client.EmptyCall(ctx, &testgrpc.Empty{}, grpc.WaitForReady(true), grpc.Header(&md))
		if v := md.Get("x-cluster"); len(v) > 0 {
			return v[0], err
		}
		return "", err
	}

	// No local httpbin: UnaryCall crosses, EmptyCall is refused by the client itself.
	if got, err := unary(); err != nil || got != "cluster-1" {
		t.Fatalf("UnaryCall: %q, %v; want cluster-1", got, err)
	}
	if got, err := empty(); status.Code(err) != codes.PermissionDenied || got != "" {
		t.Errorf("EmptyCall: answered by %q, %v; want PERMISSION_DENIED before it leaves", got, err)
	}

	// With a local httpbin, EmptyCall goes to it alone; UnaryCall to both clusters.
	publish(true)
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := empty()
		if err == nil && got == "cluster-2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("EmptyCall never reached the local httpbin: %q, %v", got, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	seen := map[string]int{}
	for range 40 {
		got, err := empty()
		if err != nil {
			t.Fatal(err)
		}
		seen[got]++
	}
	if seen["cluster-2"] != 40 {
		t.Errorf("EmptyCall answered by %v: only cluster-2 may take it", seen)
	}
	seen = map[string]int{}
	for range 40 {
		got, err := unary()
		if err != nil {
			t.Fatal(err)
		}
		seen[got]++
	}
	if seen["cluster-1"] == 0 || seen["cluster-2"] == 0 {
		t.Errorf("UnaryCall answered by %v: both clusters may take it (ActiveActive)", seen)
	}
	if n := c.NACKs.Load(); n != 0 {
		t.Errorf("grpc-go rejected %d responses", n)
	}
}
