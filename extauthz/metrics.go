package extauthz

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Prometheus series of extauthz (issue 5 item 5). Label
// values come from fixed internal sets (outcomes, reason labels); no label
// ever carries a token, user, route or header value.
type metrics struct {
	decisions     *prometheus.CounterVec
	checkLatency  prometheus.Histogram
	recheck       prometheus.Histogram
	refresh       *prometheus.CounterVec
	jwks          *prometheus.CounterVec
	auditDropped  prometheus.Counter
	auditWritten  prometheus.Counter
	auditFailures prometheus.Counter

	mu     sync.RWMutex
	counts map[[2]string]prometheus.Counter // pre-resolved decision counters
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mcpgw", Subsystem: "extauthz", Name: "decisions_total",
			Help: "Check decisions by outcome (allow, deny, error) and internal reason label.",
		}, []string{"outcome", "reason"}),
		checkLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "mcpgw", Subsystem: "extauthz", Name: "check_duration_seconds",
			Help:    "Time to decide one Check, from request to response.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
		recheck: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "mcpgw", Subsystem: "extauthz", Name: "recheck_duration_seconds",
			Help:    "Time of the one-round-trip database recheck (ResolveRuntime).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
		refresh: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mcpgw", Subsystem: "extauthz", Name: "credential_refresh_total",
			Help: "Provider credential lookups for OAuth-mode requests by result (ok, reauth, transient, unavailable, error, expired).",
		}, []string{"result"}),
		jwks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mcpgw", Subsystem: "extauthz", Name: "jwks_fetch_total",
			Help: "JWKS fetches by result (ok, error).",
		}, []string{"result"}),
		auditDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "mcpgw", Subsystem: "extauthz", Name: "audit_dropped_total",
			Help: "Usage audit events dropped because the bounded queue was full (Check never blocks on audit).",
		}),
		auditWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "mcpgw", Subsystem: "extauthz", Name: "audit_rows_written_total",
			Help: "Coalesced usage audit rows written.",
		}),
		auditFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "mcpgw", Subsystem: "extauthz", Name: "audit_write_failures_total",
			Help: "Usage audit batches that could not be written.",
		}),
		counts: map[[2]string]prometheus.Counter{},
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.decisions, m.checkLatency, m.recheck, m.refresh, m.jwks, m.auditDropped, m.auditWritten, m.auditFailures} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// decision counts one decision. Counters are resolved once per label pair
// and kept, so the hot path does no label hashing.
func (m *metrics) decision(outcome, reason string) {
	k := [2]string{outcome, reason}
	m.mu.RLock()
	c, ok := m.counts[k]
	m.mu.RUnlock()
	if !ok {
		c = m.decisions.WithLabelValues(outcome, reason)
		m.mu.Lock()
		m.counts[k] = c
		m.mu.Unlock()
	}
	c.Inc()
}
