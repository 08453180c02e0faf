package proxyless

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/proto"

	"github.com/crossgate-io/crossgate/test/internal/poll"
	"github.com/crossgate-io/crossgate/xds/resources"
	"github.com/crossgate-io/crossgate/xds/server"
)

// TestNACKIsNotResent gives a client a cluster grpc-go rejects (an lb_policy it does not
// support, injected below the translator): the client NACKs, the server sends that version once
// and not again, keeps serving another client, and delivers the next, valid version.
func TestNACKIsNotResent(t *testing.T) {
	f := setup(t, "ActiveActive")
	if got := f.calls(t, 5); got["error"] != 0 {
		t.Fatalf("calls failed before the bad update: %v", got)
	}
	good := f.cache
	metrics := server.NewMetrics()
	good.Observer = metrics
	res := translatedFor(t, f)

	bad := &resources.Resources{}
	for part := range res.Parts() {
		bad.Listeners = append(bad.Listeners, part.Listeners...)
		bad.Routes = append(bad.Routes, part.Routes...)
		bad.Endpoints = append(bad.Endpoints, part.Endpoints...)
		for _, c := range part.Clusters {
			c = proto.Clone(c).(*clusterv3.Cluster)
			c.LbPolicy = clusterv3.Cluster_MAGLEV // grpc-go accepts ROUND_ROBIN, RING_HASH, LEAST_REQUEST
			bad.Clusters = append(bad.Clusters, c)
		}
	}
	before := good.PushCount("curl/curl", resourcev3.ClusterType)
	nacks := good.NACKs.Load()
	if err := good.Set("curl/curl", bad); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return good.NACKs.Load() > nacks })
	time.Sleep(time.Second) // room for a re-send, which must not come
	if sent := good.PushCount("curl/curl", resourcev3.ClusterType) - before; sent != 1 {
		t.Errorf("the rejected version was sent %d times, want once", sent)
	}
	if n := good.NACKs.Load() - nacks; n != 1 {
		t.Errorf("%d NACKs, want 1", n)
	}
	// The client keeps its last good configuration.
	if got := f.calls(t, 30); got["error"] != 0 {
		t.Errorf("calls failed after the rejected update: %v", got)
	}
	// Another client of the same server is served meanwhile.
	other := newClient(t, f, "other/other")
	if err := good.Set("other/other", res); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := other.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Errorf("another client was not served: %v", err)
	}
	// The next valid version goes out and is accepted.
	if err := good.Set("curl/curl", res); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return good.PushCount("curl/curl", resourcev3.ClusterType)-before == 2 })
	if n := good.NACKs.Load() - nacks; n != 1 {
		t.Errorf("%d NACKs after the fix, want still 1", n)
	}
	// The metrics saw it all: one NACK of a cluster, and pushes timed from their change.
	rec := httptest.NewRecorder()
	metrics.Handler(func() bool { return true }).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{`crossgate_xds_nacks_total{type="Cluster"} 1`, "crossgate_xds_push_latency_seconds_count"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, "crossgate_xds_push_latency_seconds_count 0\n") {
		t.Error("no push latency observed")
	}
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	poll.Eventually(t, d, "the condition", func() error {
		if cond() {
			return nil
		}
		return errors.New("not met")
	})
}
