// Package proxyless runs real grpc-go xDS clients against crossgate's xDS server, fed with the
// translator's output for the walkthrough's objects, with real gRPC servers on loopback standing
// in for each cluster's httpbin.
package proxyless

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/xds"

	"github.com/crossgate-io/crossgate/translator"
	"github.com/crossgate-io/crossgate/xds/cache"
	"github.com/crossgate-io/crossgate/xds/identity"
	"github.com/crossgate-io/crossgate/xds/resources"
	"github.com/crossgate-io/crossgate/xds/server"
	"github.com/crossgate-io/crossgate/xds/translate"
)

// app answers UnaryCall with the name of its cluster.
type app struct {
	testgrpc.UnimplementedTestServiceServer
	cluster string
}

func (a *app) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{Hostname: a.cluster}, nil
}

// startApp serves the test service on a free loopback port.
func startApp(t *testing.T, cluster string) (*grpc.Server, int) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(s, &app{cluster: cluster})
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return s, lis.Addr().(*net.TCPAddr).Port
}

// world is cluster-2's Input with httpbin served by the three apps: cluster-2's locally (an
// EndpointSlice), cluster-1's and cluster-3's through their imports' targets.
func world(ports map[string]int, lbType string) *translator.Input {
	yaml := fmt.Sprintf(`
cluster: default/default/default/cluster-2
meshConfig: {metadata: {name: mesh, namespace: crossgate-system}, spec: {traffic: {enablePermissiveTrafficPolicyMode: true}}}
namespaces: [{metadata: {name: httpbin, labels: {crossgate.io/inject: enabled}}}]
serviceAccounts: [{metadata: {namespace: curl, name: curl}}]
services:
- metadata: {namespace: httpbin, name: httpbin}
  spec: {clusterIP: 10.97.0.30, clusterIPs: [10.97.0.30], ports: [{port: 8080, protocol: TCP}], selector: {app: httpbin}}
pods:
- metadata: {namespace: httpbin, name: httpbin-0}
endpointSlices:
- metadata: {namespace: httpbin, name: httpbin-1, labels: {kubernetes.io/service-name: httpbin}}
  addressType: IPv4
  ports: [{name: "", port: %d, protocol: TCP}]
  endpoints: [{addresses: [127.0.0.1], conditions: {ready: true}, targetRef: {kind: Pod, namespace: httpbin, name: httpbin-0}}]
serviceImports:
- metadata: {namespace: httpbin, name: httpbin}
  spec:
    serviceAccountName: "*"
    ports:
    - port: 8080
      protocol: TCP
      endpoints:
      - {clusterKey: default/default/default/cluster-1, target: {host: 127.0.0.1, ip: 127.0.0.1, port: %d}}
      - {clusterKey: default/default/default/cluster-3, target: {host: 127.0.0.1, ip: 127.0.0.1, port: %d}}
globalTrafficPolicies:
- metadata: {namespace: httpbin, name: httpbin}
  spec: {lbType: %s, targets: [{clusterKey: default/default/default/cluster-1}, {clusterKey: default/default/default/cluster-3}]}
`, ports["cluster-2"], ports["cluster-1"], ports["cluster-3"], lbType)
	in, err := translator.ParseInput([]byte(yaml))
	if err != nil {
		panic(err)
	}
	return in
}

type fixture struct {
	ca      *identity.CA
	cache   *cache.Cache
	client  testgrpc.TestServiceClient
	apps    map[string]*grpc.Server
	ports   map[string]int
	xdsAddr string
	lbType  string
}

func setup(t *testing.T, lbType string) *fixture {
	t.Helper()
	f := &fixture{apps: map[string]*grpc.Server{}, ports: map[string]int{}, lbType: lbType}
	for _, c := range []string{"cluster-1", "cluster-2", "cluster-3"} {
		f.apps[c], f.ports[c] = startApp(t, c)
	}
	var err error
	if f.ca, err = identity.NewCA("cluster.local"); err != nil {
		t.Fatal(err)
	}
	f.cache = cache.New(cache.NodeIDResolver, nil)
	f.publish(t, lbType)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	xs := grpc.NewServer(server.GRPCOptions(f.cache)...)
	ctx, cancel := context.WithCancel(context.Background())
	server.Register(ctx, xs, f.cache, server.Options{})
	go xs.Serve(lis)
	t.Cleanup(func() { cancel(); xs.Stop() })
	f.xdsAddr = lis.Addr().String()
	f.client = newClient(t, f, "curl/curl")
	return f
}

// newClient dials xds:///httpbin.httpbin:8080 as node nodeID.
func newClient(t *testing.T, f *fixture, nodeID string) testgrpc.TestServiceClient {
	t.Helper()
	bootstrap := bootstrapFor(t, f.ca, f.xdsAddr, nodeID, "curl", "curl")
	res, err := xds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///httpbin.httpbin:8080", grpc.WithResolvers(res), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return testgrpc.NewTestServiceClient(conn)
}

// publish translates the world and puts curl/curl's proxyless configuration in the cache.
func (f *fixture) publish(t *testing.T, lbType string) {
	t.Helper()
	f.lbType = lbType
	if err := f.cache.Set("curl/curl", translatedFor(t, f)); err != nil {
		t.Fatal(err)
	}
}

// translatedFor is curl/curl's proxyless configuration in the fixture's world.
func translatedFor(t *testing.T, f *fixture) *resources.Resources {
	t.Helper()
	res := translator.Translate(world(f.ports, f.lbType))
	out, err := translate.Build(&res.IR)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := out.Proxyless["curl/curl"]
	if !ok {
		t.Fatal("no proxyless configuration for curl/curl")
	}
	return r
}

// calls makes n calls and counts the clusters that answered; failures are counted as "error".
func (f *fixture) calls(t *testing.T, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r, err := f.client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
		cancel()
		if err != nil {
			got["error"]++
			t.Logf("call failed: %v", err)
			continue
		}
		got[r.GetHostname()]++
	}
	return got
}

func TestActiveActiveSpreadsOverThreeClusters(t *testing.T) {
	f := setup(t, "ActiveActive")
	// Until every locality's connection is up, calls go to those that are: warm up first.
	deadline := time.Now().Add(10 * time.Second)
	for seen := map[string]int{}; len(seen) < 3 && time.Now().Before(deadline); {
		for c, n := range f.calls(t, 10) {
			seen[c] += n
		}
	}
	// gRPC picks a locality at random by weight: over 300 calls one cluster's count has a
	// standard deviation of about 8, so each share is held to a third ±15 points there, and to
	// a third ±15% of itself over 3,000 calls (5.8 standard deviations: not flaky).
	got := f.calls(t, 300)
	for _, c := range []string{"cluster-1", "cluster-2", "cluster-3"} {
		if share := float64(got[c]) / 300; share < 1.0/3-0.15 || share > 1.0/3+0.15 {
			t.Errorf("%s answered %d of 300 calls, want a third ±15 points: %v", c, got[c], got)
		}
	}
	many := f.calls(t, 3000)
	for _, c := range []string{"cluster-1", "cluster-2", "cluster-3"} {
		if many[c] < 850 || many[c] > 1150 {
			t.Errorf("%s answered %d of 3000 calls, want 1000 ±15%%: %v", c, many[c], many)
		}
	}
	if got["error"] > 0 {
		t.Errorf("%d calls failed", got["error"])
	}
	if n := f.cache.NACKs.Load(); n != 0 {
		t.Errorf("grpc-go rejected %d responses", n)
	}
	t.Logf("distribution: %v over 300 calls, %v over 3000", got, many)
}

func TestLocalityStaysLocal(t *testing.T) {
	f := setup(t, "Locality")
	if got := f.calls(t, 60); got["cluster-2"] != 60 {
		t.Errorf("Locality: %v, want every call answered by cluster-2", got)
	}
}

func TestFailOverMovesWhenTheLocalServerStops(t *testing.T) {
	f := setup(t, "FailOver")
	if got := f.calls(t, 30); got["cluster-2"] != 30 {
		t.Fatalf("FailOver with a local server: %v, want every call local", got)
	}
	f.apps["cluster-2"].Stop()
	start := time.Now()
	var moved time.Duration
	failures := 0
	remote := map[string]int{}
	for time.Since(start) < 3*time.Second {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		r, err := f.client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
		cancel()
		if err != nil {
			failures++
			continue
		}
		if h := r.GetHostname(); h != "cluster-2" {
			if moved == 0 {
				moved = time.Since(start)
			}
			remote[h]++
		}
	}
	if moved == 0 || moved > time.Second {
		t.Errorf("calls moved to the remote clusters after %s, want within 1s", moved)
	}
	if failures > 0 {
		t.Errorf("%d calls failed during the failover", failures)
	}
	if remote["cluster-1"] == 0 || remote["cluster-3"] == 0 {
		t.Errorf("after failover the calls went to %v, want both cluster-1 and cluster-3", remote)
	}
	t.Logf("moved after %s; remote answers %v", moved, remote)
}
