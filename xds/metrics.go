package xds

import "github.com/prometheus/client_golang/prometheus"

// metrics are the xds Prometheus metrics. Labels are bounded enums (build
// kind, xDS type URL, problem reason) — never host names, ids or keys.
type metrics struct {
	builds          *prometheus.CounterVec   // kind, result
	buildSeconds    *prometheus.HistogramVec // kind
	nacks           *prometheus.CounterVec   // type_url
	requests        *prometheus.CounterVec   // type_url
	streams         prometheus.Gauge
	configs         prometheus.Gauge
	upstreamsDown   *prometheus.GaugeVec // reason: configs without endpoints
	rejections      *prometheus.CounterVec
	resolveRejected prometheus.Counter
	resolveFailures prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		builds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpgw_xds_snapshot_builds_total",
			Help: "Snapshot builds by kind (full, incremental, endpoints) and result (ok, error).",
		}, []string{"kind", "result"}),
		buildSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mcpgw_xds_snapshot_build_seconds",
			Help:    "Time from starting a rebuild to the snapshot being set.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"kind"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpgw_xds_nacks_total",
			Help: "Discovery requests from Envoy rejecting (NACKing) a pushed version, by type URL.",
		}, []string{"type_url"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpgw_xds_requests_total",
			Help: "Discovery requests received, by type URL.",
		}, []string{"type_url"}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mcpgw_xds_streams",
			Help: "Open xDS streams.",
		}),
		configs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mcpgw_xds_configs",
			Help: "Routable configs in the current snapshot.",
		}),
		upstreamsDown: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mcpgw_xds_upstreams_without_endpoints",
			Help: "Configs whose cluster has no endpoints, by reason.",
		}, []string{"reason"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpgw_xds_upstream_rejections_total",
			Help: "Transitions of a config to no endpoints, by reason (audited).",
		}, []string{"reason"}),
		resolveRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mcpgw_xds_resolve_non_public_total",
			Help: "Resolutions whose answer contained a non-public address.",
		}),
		resolveFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mcpgw_xds_resolve_failures_total",
			Help: "Failed upstream host resolutions.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.builds, m.buildSeconds, m.nacks, m.requests, m.streams, m.configs,
			m.upstreamsDown, m.rejections, m.resolveRejected, m.resolveFailures)
	}
	return m
}
