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
	streams prometheus.Gauge
	pushes  *prometheus.CounterVec
	latency prometheus.Histogram
	nacks   *prometheus.CounterVec
	size    prometheus.Gauge
	// publishes and publishTime are the controller's publications to the cache, by path
	// (controllers.PathFull, PathIncremental, PathRebuild).
	publishes   *prometheus.CounterVec
	publishTime *prometheus.HistogramVec
	registry    *prometheus.Registry
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
		publishes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crossgate_publishes_total",
			Help: "Publications of the cluster's configuration to the xDS cache, by path: full (read and translate the cluster), incremental (replace the clusters and endpoints that endpoint changes touched), rebuild (build every proxy's resources again from the kept translation).",
		}, []string{"path"}),
		publishTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "crossgate_publish_duration_seconds",
			Help:    "Time a publication to the xDS cache took, by path.",
			Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5},
		}, []string{"path"}),
	}
	m.registry.MustRegister(m.streams, m.pushes, m.latency, m.nacks, m.size, m.publishes, m.publishTime)
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

// Published counts a publication to the cache (controllers.PublishObserver).
func (m *Metrics) Published(path string, took time.Duration) {
	m.publishes.WithLabelValues(path).Inc()
	m.publishTime.WithLabelValues(path).Observe(took.Seconds())
}

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
