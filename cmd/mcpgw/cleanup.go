package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"mcpgw/store"
)

// cleanupLock is the store.TryLeader name of the cleanup job.
const cleanupLock = "cleanup"

// cleanupJob deletes expired terminal OAuth artifacts, stale rate-limit
// windows and audit rows older than the retention (DESIGN §9). Every
// serving process runs it; store.TryLeader lets one replica do each pass.
type cleanupJob struct {
	st        store.Store
	retention time.Duration
	now       func() time.Time
	log       *slog.Logger
	runs      *prometheus.CounterVec // outcome: done, skipped, error
	deleted   *prometheus.CounterVec // kind
}

func newCleanupJob(st store.Store, retention time.Duration, log *slog.Logger, reg prometheus.Registerer, now func() time.Time) *cleanupJob {
	j := &cleanupJob{
		st: st, retention: retention, now: now, log: log,
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpgw_cleanup_runs_total",
			Help: "Cleanup passes by outcome: done (this replica ran it), skipped (another replica holds the lock), error.",
		}, []string{"outcome"}),
		deleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpgw_cleanup_deleted_total",
			Help: "Rows deleted by the cleanup job, by kind.",
		}, []string{"kind"}),
	}
	reg.MustRegister(j.runs, j.deleted)
	return j
}

// once runs one pass.
func (j *cleanupJob) once(ctx context.Context) (store.CleanupCounts, bool, error) {
	var counts store.CleanupCounts
	ran, err := j.st.TryLeader(ctx, cleanupLock, func(ctx context.Context) error {
		now := j.now()
		var err error
		counts, err = j.st.Cleanup(ctx, now, now.Add(-j.retention))
		return err
	})
	switch {
	case err != nil:
		j.runs.WithLabelValues("error").Inc()
		return counts, ran, err
	case !ran:
		j.runs.WithLabelValues("skipped").Inc()
		return counts, false, nil
	}
	j.runs.WithLabelValues("done").Inc()
	for kind, n := range map[string]int64{
		"auth_requests": counts.AuthRequests, "consent_tickets": counts.ConsentTickets,
		"auth_codes": counts.AuthCodes, "refresh_tokens": counts.RefreshTokens,
		"pending_states": counts.PendingStates, "sessions": counts.Sessions,
		"rate_limits": counts.RateLimits, "audit_events": counts.AuditEvents,
	} {
		j.deleted.WithLabelValues(kind).Add(float64(n))
	}
	return counts, true, nil
}

// run does a pass now and then every interval until ctx ends. A failed
// pass is logged and retried at the next tick; it never stops the
// process.
func (j *cleanupJob) run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		c, ran, err := j.once(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			j.log.Warn("cleanup failed; retrying at the next interval", "err", err)
		case ran:
			j.log.Debug("cleanup done", "auth_codes", c.AuthCodes, "refresh_tokens", c.RefreshTokens,
				"sessions", c.Sessions, "rate_limits", c.RateLimits, "audit_events", c.AuditEvents)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
