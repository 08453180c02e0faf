package server

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/genproto/googleapis/rpc/status"

	"github.com/crossgate-io/crossgate/xds/cache"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) Len() int { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Len() }

// TestClientCannotFloodLogsOrMetrics: a client's NACKs are counted, but their messages (its
// choice, of any size) are logged cut short and at most once per interval; the type URLs it
// sends (its choice too) become metric labels only when they are served types.
func TestClientCannotFloodLogsOrMetrics(t *testing.T) {
	var logs lockedBuffer
	c := cache.New(cache.NodeIDResolver, slog.New(slog.NewTextHandler(&logs, nil)))
	m := NewMetrics()
	c.Observer = m
	if err := c.Set("a/a", clusters(map[string]int64{"c1": 1})); err != nil {
		t.Fatal(err)
	}
	st := deltaStream(t, c)
	node := &corev3.Node{Id: "a/a"}
	huge := strings.Repeat("x", 1<<20)
	const nacks = 10
	for i := range nacks {
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{
			Node: node, TypeUrl: resourcev3.ClusterType, ResponseNonce: fmt.Sprint(i),
			ErrorDetail: &status.Status{Message: huge},
		}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 {
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{
			Node: node, TypeUrl: fmt.Sprintf("type.example/made.up.T%d", i), ResponseNonce: "x",
			ErrorDetail: &status.Status{Message: "no"},
		}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.NACKs.Load() < nacks+100 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := c.NACKs.Load(); got != nacks+100 {
		t.Fatalf("%d NACKs counted, want %d", got, nacks+100)
	}
	if n := logs.Len(); n > 64<<10 {
		t.Errorf("%d NACKs of 1 MiB wrote %d bytes of log", nacks, n)
	}
	if n := testutil.CollectAndCount(m.nacks); n > 6 {
		t.Errorf("the NACK counter has %d series, want at most one per served type and other", n)
	}
	if got := testutil.ToFloat64(m.nacks.WithLabelValues("other")); got != 100 {
		t.Errorf("NACKs of unknown types counted as other: %v, want 100", got)
	}
}

// The config dump, which shows every identity's configuration, is served on loopback only.
func TestConfigDumpIsLoopbackOnly(t *testing.T) {
	for _, ok := range []string{DefaultDebugAddress, "localhost:9091", "[::1]:9091", "127.0.0.2:1"} {
		if err := CheckLoopback(ok); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{":9091", "0.0.0.0:9091", "10.0.0.5:9091", "[::]:9091", "example.com:9091", "9091"} {
		if err := CheckLoopback(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
