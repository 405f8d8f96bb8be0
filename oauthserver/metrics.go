package oauthserver

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the AS's Prometheus series (issue 3 item 9). Labels are fixed
// vocabularies (endpoint names, OAuth error codes, status codes): never a
// client id, user id or any request value.
type metrics struct {
	requests *prometheus.CounterVec   // endpoint, code, outcome
	latency  *prometheus.HistogramVec // endpoint
	tokens   *prometheus.CounterVec   // grant_type
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mcpgw", Subsystem: "oauth", Name: "requests_total",
			Help: "OAuth server requests by endpoint, HTTP status and outcome (\"ok\" or the OAuth error code).",
		}, []string{"endpoint", "status", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "mcpgw", Subsystem: "oauth", Name: "request_duration_seconds",
			Help:    "OAuth server request latency by endpoint.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"endpoint"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mcpgw", Subsystem: "oauth", Name: "tokens_issued_total",
			Help: "Gateway access tokens issued, by grant (authorization_code, refresh_token, connect_token).",
		}, []string{"grant_type"}),
	}
	if reg != nil {
		m.requests = register(reg, m.requests)
		m.latency = register(reg, m.latency)
		m.tokens = register(reg, m.tokens)
	}
	return m
}

// register adds c to reg, or reuses the identical collector a previous
// Server registered there (several servers may share one registry).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic("oauthserver: metrics: " + err.Error())
	}
	return c
}

// recorder captures the status and the OAuth outcome of one response.
type recorder struct {
	http.ResponseWriter
	status  int
	outcome string
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// setOutcome records the OAuth error code of the response for metrics.
func setOutcome(w http.ResponseWriter, code string) {
	if rec, ok := w.(*recorder); ok {
		rec.outcome = code
	}
}

func (s *Server) instrument(endpoint string, h http.HandlerFunc) http.Handler {
	lat := s.m.latency.WithLabelValues(endpoint)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w}
		h(rec, r)
		lat.Observe(time.Since(start).Seconds())
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		outcome := rec.outcome
		if outcome == "" {
			if rec.status < 400 {
				outcome = "ok"
			} else {
				outcome = "error"
			}
		}
		s.m.requests.WithLabelValues(endpoint, strconv.Itoa(rec.status), outcome).Inc()
	})
}
