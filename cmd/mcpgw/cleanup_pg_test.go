package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"mcpgw/domain/secrets"
	"mcpgw/store"
	"mcpgw/store/postgres"
	"mcpgw/store/postgres/pgtest"
)

// TestCleanupJobReplicasPostgres runs the cleanup job of two "replicas"
// (two connection pools) against one real Postgres: concurrent passes
// never both run (the advisory lock of store.TryLeader), expired OAuth
// artifacts, stale rate-limit windows and old audit rows are deleted, live
// ones survive, and the rows-removed metrics add up.
func TestCleanupJobReplicasPostgres(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	open := func() store.Store {
		st, err := postgres.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(st.Close)
		return st
	}
	a, b := open(), open()
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

	// Seed: a user with an old and a live session, an expired and a live
	// refresh token, an old rate-limit window, old and recent audit rows.
	u, err := a.CreateUser(ctx, store.User{ID: store.NewID(), Email: "c@example.com", Status: store.UserActive, CreatedAt: now, UpdatedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	oldSess, liveSess := secrets.Hash("old-session"), secrets.Hash("live-session")
	for _, s := range []store.Session{
		{IDHash: oldSess, UserID: u.ID, CSRFHash: secrets.Hash("x"), CreatedAt: now.Add(-90 * 24 * time.Hour), ExpiresAt: now.Add(-60 * 24 * time.Hour)},
		{IDHash: liveSess, UserID: u.ID, CSRFHash: secrets.Hash("y"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
	} {
		if err := a.CreateSession(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	cl, err := a.CreateClient(ctx, store.OAuthClient{ID: "dcr:" + store.NewID(), RegistrationTokenHash: secrets.Hash("reg"),
		RedirectURIs: []string{"http://127.0.0.1:3000/cb"}, GrantTypes: []string{"authorization_code", "refresh_token"},
		ResponseTypes: []string{"code"}, TokenEndpointAuthMethod: "none", Scope: "mcp:access", Metadata: json.RawMessage(`{}`), CreatedAt: now, UpdatedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := a.CreateConfig(ctx, store.Config{ID: store.NewID(), OwnerScope: store.ScopeUser, OwnerID: u.ID, Name: "c",
		RemoteURL: "https://mcp.example.com/", AuthMode: store.AuthNone, SharingMode: store.SingleUser, CreatedAt: now, UpdatedAt: now},
		store.NewID(), "cleanup-route-key-0123456789abcdef", nil)
	if err != nil {
		t.Fatal(err)
	}
	inst, _, err := a.GetOrCreateInstance(ctx, store.ScopeUser, u.ID, u.ID, cfg.ID, store.NewID())
	if err != nil {
		t.Fatal(err)
	}
	oldRT, liveRT := secrets.Hash("old-rt"), secrets.Hash("live-rt")
	for _, rt := range []store.RefreshToken{
		{Hash: oldRT, FamilyID: store.NewID(), CreatedAt: now.Add(-60 * 24 * time.Hour), ExpiresAt: now.Add(-30 * 24 * time.Hour)},
		{Hash: liveRT, FamilyID: store.NewID(), CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)},
	} {
		rt.ClientID, rt.UserID, rt.InstanceID, rt.ConfigID, rt.ConfigVersion = cl.ID, u.ID, inst.ID, cfg.ID, cfg.Version
		rt.Resource, rt.Scopes, rt.ExecutionContext = "https://gw.example.com/mcp-connect/user/"+u.ID+"/"+cfg.ID+"/k", []string{"mcp:access"}, "personal"
		if err := a.CreateRefreshToken(ctx, rt); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := a.HitRateLimit(ctx, "register:203.0.113.9", time.Minute, 10, now.Add(-2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := a.AppendAudit(ctx,
		store.AuditEvent{Time: now.Add(-61 * 24 * time.Hour), Type: "config.create", Outcome: "success"},
		store.AuditEvent{Time: now.Add(-59 * 24 * time.Hour), Type: "config.create", Outcome: "success"}); err != nil {
		t.Fatal(err)
	}

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	regA, regB := prometheus.NewRegistry(), prometheus.NewRegistry()
	clock := func() time.Time { return now }
	ja := newCleanupJob(a, 60*24*time.Hour, quiet, regA, clock)
	jb := newCleanupJob(b, 60*24*time.Hour, quiet, regB, clock)

	// Replica B holds the lock: A's pass is skipped, on another pool.
	held, release := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		b.TryLeader(ctx, cleanupLock, func(context.Context) error { close(held); <-release; return nil })
	}()
	<-held
	if _, ran, err := ja.once(ctx); err != nil || ran {
		t.Fatalf("pass while another replica holds the lock: ran=%v err=%v", ran, err)
	}
	close(release)
	wg.Wait()

	// Concurrent passes: the work is done once (counts add up to one pass).
	type result struct {
		c   store.CleanupCounts
		ran bool
		err error
	}
	res := make(chan result, 2)
	for _, j := range []*cleanupJob{ja, jb} {
		go func() { c, ran, err := j.once(ctx); res <- result{c, ran, err} }()
	}
	var total store.CleanupCounts
	for range 2 {
		r := <-res
		if r.err != nil {
			t.Fatal(r.err)
		}
		total.AuditEvents += r.c.AuditEvents
		total.Sessions += r.c.Sessions
		total.RateLimits += r.c.RateLimits
		total.RefreshTokens += r.c.RefreshTokens
	}
	if total.AuditEvents != 1 || total.Sessions != 1 || total.RateLimits != 1 {
		t.Fatalf("deleted across both replicas: %+v", total)
	}
	if total.RefreshTokens != 1 {
		t.Fatalf("expired refresh token not deleted: %+v", total)
	}
	if _, err := a.GetSession(ctx, liveSess, now); err != nil {
		t.Fatalf("live session removed: %v", err)
	}
	if _, err := a.GetSession(ctx, oldSess, now); err == nil {
		t.Fatal("expired session survived")
	}
	if _, err := a.GetRefreshToken(ctx, liveRT); err != nil {
		t.Fatalf("live refresh token removed: %v", err)
	}
	if _, err := a.GetRefreshToken(ctx, oldRT); err == nil {
		t.Fatal("expired refresh token survived")
	}
	evs, _, err := a.QueryAudit(ctx, store.AuditFilter{Type: "config.create"})
	if err != nil || len(evs) != 1 {
		t.Fatalf("audit after cleanup: %d %v", len(evs), err)
	}
	sum := testutil.ToFloat64(ja.deleted.WithLabelValues("audit_events")) + testutil.ToFloat64(jb.deleted.WithLabelValues("audit_events"))
	if sum != 1 {
		t.Fatalf("mcpgw_cleanup_deleted_total{kind=audit_events} across replicas = %v", sum)
	}
	if testutil.ToFloat64(ja.runs.WithLabelValues("skipped")) < 1 {
		t.Fatal("skipped pass not counted")
	}
}
