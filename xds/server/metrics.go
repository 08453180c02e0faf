package server

import (
	"net/http"
	"strings"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/crossgate-io/crossgate/xds/cache"
)

// Metrics are the xDS server's Prometheus metrics. It implements cache.Observer.
type Metrics struct {
	streams  prometheus.Gauge
	pushes   *prometheus.CounterVec
	latency  prometheus.Histogram
	nacks    *prometheus.CounterVec
	size     prometheus.Gauge
	registry *prometheus.Registry
}

var _ cache.Observer = (*Metrics)(nil)

// NewMetrics registers the metrics in a registry of their own.
func NewMetrics() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "crossgate_xds_connected_streams",
			Help: "Open xDS streams (connected proxies and proxyless workloads).",
		}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crossgate_xds_pushes_total",
			Help: "xDS responses sent, by resource type.",
		}, []string{"type"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "crossgate_xds_push_latency_seconds",
			Help:    "Time from a configuration change to the response carrying it.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crossgate_xds_nacks_total",
			Help: "xDS responses rejected by clients, by resource type.",
		}, []string{"type"}),
		size: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "crossgate_xds_config_bytes",
			Help: "Bytes of marshaled xDS resources held by the cache.",
		}),
	}
	m.registry.MustRegister(m.streams, m.pushes, m.latency, m.nacks, m.size)
	return m
}

// shortType is a metric's type label: the served types by their short name, any other (a client
// may send any type URL) as "other", so that a client cannot make series without bound.
func shortType(typeURL string) string {
	switch typeURL {
	case resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.SecretType:
		return typeURL[strings.LastIndexByte(typeURL, '.')+1:]
	}
	return "other"
}

// Pushed implements cache.Observer.
func (m *Metrics) Pushed(typeURL string, sinceChange time.Duration) {
	m.pushes.WithLabelValues(shortType(typeURL)).Inc()
	if sinceChange > 0 {
		m.latency.Observe(sinceChange.Seconds())
	}
}

// NACKed implements cache.Observer.
func (m *Metrics) NACKed(typeURL string) { m.nacks.WithLabelValues(shortType(typeURL)).Inc() }

// Size implements cache.Observer.
func (m *Metrics) Size(bytes int) { m.size.Set(float64(bytes)) }

// Handler serves /metrics, /healthz and /readyz; ready is true once a first configuration has
// been published.
func (m *Metrics) Handler(ready func() bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "no configuration published yet\n", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}
