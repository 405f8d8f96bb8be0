package main

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"mcpgw/store"
	"mcpgw/store/memory"
)

// TestCleanupJob: a pass deletes audit rows older than the retention and
// keeps newer ones, counts what it deleted, and is skipped while another
// replica holds the cleanup lock.
func TestCleanupJob(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	st := memory.New(memory.WithClock(func() time.Time { return now }))
	defer st.Close()
	old := store.AuditEvent{Time: now.Add(-61 * 24 * time.Hour), Type: "config.create", Outcome: "success"}
	recent := store.AuditEvent{Time: now.Add(-59 * 24 * time.Hour), Type: "config.create", Outcome: "success"}
	if err := st.AppendAudit(ctx, old, recent); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	j := newCleanupJob(st, 60*24*time.Hour, slog.New(slog.NewTextHandler(io.Discard, nil)), reg, func() time.Time { return now })

	c, ran, err := j.once(ctx)
	if err != nil || !ran || c.AuditEvents != 1 {
		t.Fatalf("pass: %+v ran=%v err=%v", c, ran, err)
	}
	evs, _, err := st.QueryAudit(ctx, store.AuditFilter{Limit: 10})
	if err != nil || len(evs) != 1 || !evs[0].Time.Equal(recent.Time) {
		t.Fatalf("remaining audit: %v %v", evs, err)
	}
	if got := testutil.ToFloat64(j.deleted.WithLabelValues("audit_events")); got != 1 {
		t.Fatalf("deleted metric %v", got)
	}

	// Another replica holds the lock: this pass is skipped.
	held := make(chan struct{})
	release := make(chan struct{})
	go st.TryLeader(ctx, cleanupLock, func(context.Context) error { close(held); <-release; return nil })
	<-held
	if _, ran, err := j.once(ctx); err != nil || ran {
		t.Fatalf("pass under a held lock: ran=%v err=%v", ran, err)
	}
	close(release)
	if got := testutil.ToFloat64(j.runs.WithLabelValues("skipped")); got != 1 {
		t.Fatalf("skipped metric %v", got)
	}
	if n, err := testutil.GatherAndCount(reg, "mcpgw_cleanup_runs_total"); err != nil || n != 2 {
		t.Fatalf("runs series: %d %v", n, err)
	}
}
