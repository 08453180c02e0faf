package server

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/crossgate-io/crossgate/xds/cache"
	"github.com/crossgate-io/crossgate/xds/resources"
)

func TestMetricsAndHealth(t *testing.T) {
	m := NewMetrics()
	c := cache.New(cache.NodeIDResolver, nil)
	c.Observer = m
	published := false
	h := m.Handler(func() bool { return published })

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 503 {
		t.Errorf("/readyz before any configuration: %d, want 503", rec.Code)
	}
	if err := c.Set("a/a", &resources.Resources{Listeners: []*listenerv3.Listener{{Name: "l"}}}); err != nil {
		t.Fatal(err)
	}
	published = true
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 200 {
		t.Errorf("/readyz after a configuration: %d, want 200", rec.Code)
	}
	if got := testutil.ToFloat64(m.size); got <= 0 {
		t.Errorf("config bytes %v, want > 0", got)
	}
	m.Pushed(resourcev3.ListenerType, 3*time.Millisecond)
	m.NACKed(resourcev3.ClusterType)
	if got := testutil.ToFloat64(m.pushes.WithLabelValues("Listener")); got != 1 {
		t.Errorf("pushes{type=Listener} = %v", got)
	}
	if got := testutil.ToFloat64(m.nacks.WithLabelValues("Cluster")); got != 1 {
		t.Errorf("nacks{type=Cluster} = %v", got)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, name := range []string{
		"crossgate_xds_connected_streams", "crossgate_xds_pushes_total", "crossgate_xds_push_latency_seconds_bucket",
		"crossgate_xds_nacks_total", "crossgate_xds_config_bytes",
	} {
		if !strings.Contains(rec.Body.String(), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}
