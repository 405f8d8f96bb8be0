package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"mcpgw/domain"
	"mcpgw/store"
)

// watchDeadline bounds every wait on the change feed. Waits end as soon as
// the change arrives; the deadline only turns a lost change into a failure.
const watchDeadline = 15 * time.Second

// waitChange reads ch until a change for configID arrives (resyncs and
// other configs' changes are skipped) or the deadline passes.
func waitChange(t *testing.T, ch <-chan store.Change, configID, what string) store.Change {
	t.Helper()
	deadline := time.NewTimer(watchDeadline)
	defer deadline.Stop()
	for {
		select {
		case c, ok := <-ch:
			if !ok {
				t.Fatalf("%s: change feed closed while waiting", what)
			}
			if c.Kind != store.ChangeResync && c.ConfigID == configID {
				switch c.Kind {
				case store.ChangeConfig, store.ChangeRoute, store.ChangeAssignment:
				default:
					t.Fatalf("%s: unknown change kind %q", what, c.Kind)
				}
				return c
			}
		case <-deadline.C:
			t.Fatalf("%s: no change for config %s within %v", what, configID, watchDeadline)
		}
	}
}

// testWatch covers the change feed (DESIGN §8): every config, route and
// assignment change is delivered; the channel closes when ctx ends.
func testWatch(t *testing.T, newStore NewStore) {
	// Every subtest watches for its own configs in one shared store.
	shared := open(t, newStore)
	t.Run("Delivers", func(t *testing.T) {
		x := shared.sub(t)
		owner := x.user()
		o := x.org(owner.ID)
		m := x.user()
		x.member(o.ID, m.ID, store.RoleMember)
		ctx, cancel := context.WithCancel(x.ctx)
		defer cancel()
		ch, err := x.s.Watch(ctx)
		wantErr(t, "Watch", err, nil)

		c, _ := x.config(store.ScopeOrg, o.ID, store.AuthNone, store.MultiUser)
		waitChange(t, ch, c.ID, "CreateConfig")
		steps := []struct {
			name string
			do   func() error
		}{
			{"UpdateConfig", func() error {
				_, _, err := x.s.UpdateConfig(x.ctx, c.ID, func(c *store.Config) error { c.Name = "renamed"; return nil }, nil)
				return err
			}},
			{"UpdateConfigMaterial", func() error {
				_, _, err := x.s.UpdateConfig(x.ctx, c.ID, func(c *store.Config) error { c.RemoteURL = "https://new.example.com/mcp"; return nil }, nil)
				return err
			}},
			{"RotateRoute", func() error {
				_, err := x.s.RotateRoute(x.ctx, c.ID, store.NewID(), domain.NewRouteKey(), nil)
				return err
			}},
			{"Disable", func() error { _, err := x.s.SetConfigStatus(x.ctx, c.ID, store.ConfigDisabled, nil); return err }},
			{"Enable", func() error { _, err := x.s.SetConfigStatus(x.ctx, c.ID, store.ConfigEnabled, nil); return err }},
			{"Assign", func() error {
				_, err := x.s.Assign(x.ctx, store.Assignment{ConfigID: c.ID, UserID: m.ID, CreatedAt: t0}, nil)
				return err
			}},
			{"Unassign", func() error { return x.s.Unassign(x.ctx, c.ID, m.ID, nil) }},
			{"DeleteConfig", func() error { return x.s.DeleteConfig(x.ctx, c.ID, nil) }},
		}
		for _, st := range steps {
			wantErr(t, st.name, st.do(), nil)
			waitChange(t, ch, c.ID, st.name)
		}
	})

	// Cascades that remove assignments change them too.
	t.Run("CascadedAssignmentChanges", func(t *testing.T) {
		x := shared.sub(t)
		owner := x.user()
		o := x.org(owner.ID)
		a, b := x.user(), x.user()
		x.member(o.ID, a.ID, store.RoleMember)
		x.member(o.ID, b.ID, store.RoleMember)
		c1, _ := x.config(store.ScopeOrg, o.ID, store.AuthNone, store.MultiUser)
		c2, _ := x.config(store.ScopeOrg, o.ID, store.AuthNone, store.SingleUser)
		x.assign(c1.ID, a.ID)
		x.assign(c2.ID, b.ID)
		ctx, cancel := context.WithCancel(x.ctx)
		defer cancel()
		ch, err := x.s.Watch(ctx)
		wantErr(t, "Watch", err, nil)
		wantErr(t, "RemoveMember", x.s.RemoveMember(x.ctx, o.ID, a.ID, nil), nil)
		waitChange(t, ch, c1.ID, "RemoveMember")
		wantErr(t, "SoftDeleteUser", x.s.SoftDeleteUser(x.ctx, b.ID, nil), nil)
		waitChange(t, ch, c2.ID, "SoftDeleteUser")
	})

	t.Run("TwoWatchers", func(t *testing.T) {
		x := shared.sub(t)
		u := x.user()
		ctx, cancel := context.WithCancel(x.ctx)
		defer cancel()
		a, err := x.s.Watch(ctx)
		wantErr(t, "Watch a", err, nil)
		b, err := x.s.Watch(ctx)
		wantErr(t, "Watch b", err, nil)
		c, _ := x.personal(u.ID, store.AuthNone)
		waitChange(t, a, c.ID, "watcher a")
		waitChange(t, b, c.ID, "watcher b")
	})

	t.Run("ClosesOnCancel", func(t *testing.T) {
		x := shared.sub(t)
		ctx, cancel := context.WithCancel(x.ctx)
		ch, err := x.s.Watch(ctx)
		wantErr(t, "Watch", err, nil)
		cancel()
		deadline := time.NewTimer(watchDeadline)
		defer deadline.Stop()
		for {
			select {
			case _, ok := <-ch:
				if !ok {
					return
				}
			case <-deadline.C:
				t.Fatalf("change feed not closed within %v of cancel", watchDeadline)
			}
		}
	})
}

// testCleanup covers Cleanup (DESIGN §9): what is deleted is counted, what
// is live survives.
func testCleanup(t *testing.T, newStore NewStore) {
	x := open(t, newStore)
	w := x.oauthWorld()
	now := at(90 * 24 * time.Hour) // long after every expiry below
	longAgo := at(time.Hour)       // expired ~90 days before now
	live := now.Add(time.Hour)

	// Auth requests: one expired, one live.
	oldReq, liveReq := w.authRequest(longAgo), w.authRequest(live)
	for _, r := range []store.AuthRequest{oldReq, liveReq} {
		wantErr(t, "CreateAuthRequest", x.s.CreateAuthRequest(x.ctx, r), nil)
	}
	// Consent tickets.
	for _, ct := range []store.ConsentTicket{w.consentTicket("old", liveReq.ID, longAgo), w.consentTicket("live", liveReq.ID, live)} {
		wantErr(t, "CreateConsentTicket", x.s.CreateConsentTicket(x.ctx, ct), nil)
	}
	// Codes.
	for _, c := range []store.AuthCode{w.authCode("old", longAgo), w.authCode("live", live)} {
		wantErr(t, "CreateAuthCode", x.s.CreateAuthCode(x.ctx, c), nil)
	}
	// Refresh tokens.
	oldRT, liveRT := w.refreshToken("old", store.NewID(), longAgo), w.refreshToken("live", store.NewID(), live)
	for _, r := range []store.RefreshToken{oldRT, liveRT} {
		wantErr(t, "CreateRefreshToken", x.s.CreateRefreshToken(x.ctx, r), nil)
	}
	// Pending provider state.
	oldP := pendingState("old", w.user.ID, w.cfg, w.inst.ID, longAgo)
	liveP := pendingState("live", w.user.ID, w.cfg, w.inst.ID, live)
	for _, p := range []store.PendingProviderState{oldP, liveP} {
		wantErr(t, "CreatePendingState", x.s.CreatePendingState(x.ctx, p), nil)
	}
	// Sessions: expired ~90 days ago (past any grace) and live.
	oldS := store.Session{IDHash: hash("cleanup-session-old"), UserID: w.user.ID, CreatedAt: t0, ExpiresAt: longAgo}
	liveS := store.Session{IDHash: hash("cleanup-session-live"), UserID: w.user.ID, CreatedAt: t0, ExpiresAt: live}
	for _, s := range []store.Session{oldS, liveS} {
		wantErr(t, "CreateSession", x.s.CreateSession(x.ctx, s), nil)
	}
	// Rate-limit windows: one ended long ago, one current.
	if _, _, err := x.s.HitRateLimit(x.ctx, "cleanup:old", time.Minute, 5, t0); err != nil {
		t.Fatalf("HitRateLimit: %v", err)
	}
	if _, _, err := x.s.HitRateLimit(x.ctx, "cleanup:live", time.Hour, 1, now); err != nil {
		t.Fatalf("HitRateLimit: %v", err)
	}
	// Audit: two old, one recent.
	auditBefore := now.Add(-60 * 24 * time.Hour)
	wantErr(t, "AppendAudit", x.s.AppendAudit(x.ctx,
		store.AuditEvent{Time: t0, Type: "old.one", Outcome: "success"},
		store.AuditEvent{Time: at(time.Minute), Type: "old.two", Outcome: "success"},
		store.AuditEvent{Time: now.Add(-time.Hour), Type: "recent", Outcome: "success"},
	), nil)

	counts, err := x.s.Cleanup(x.ctx, now, auditBefore)
	wantErr(t, "Cleanup", err, nil)
	want := store.CleanupCounts{AuthRequests: 1, ConsentTickets: 1, AuthCodes: 1, RefreshTokens: 1, PendingStates: 1, Sessions: 1, RateLimits: 1, AuditEvents: 2}
	if counts != want {
		t.Fatalf("Cleanup = %+v, want %+v", counts, want)
	}

	// Before LiveSurvives consumes anything (consumed = terminal).
	t.Run("SecondPassIsEmpty", func(t *testing.T) {
		counts, err := x.s.Cleanup(x.ctx, now, auditBefore)
		wantErr(t, "Cleanup", err, nil)
		if counts != (store.CleanupCounts{}) {
			t.Fatalf("second Cleanup = %+v, want zero", counts)
		}
	})
	t.Run("LiveSurvives", func(t *testing.T) {
		x := x.sub(t)
		if _, err := x.s.GetAuthRequest(x.ctx, liveReq.ID, now); err != nil {
			t.Fatalf("live auth request: %v", err)
		}
		_, err := x.s.GetAuthRequest(x.ctx, oldReq.ID, now)
		wantErr(t, "old auth request", err, store.ErrNotFound)
		if _, err := x.s.GetRefreshToken(x.ctx, liveRT.Hash); err != nil {
			t.Fatalf("live refresh token: %v", err)
		}
		_, err = x.s.GetRefreshToken(x.ctx, oldRT.Hash)
		wantErr(t, "old refresh token", err, store.ErrNotFound)
		if _, err := x.s.GetSession(x.ctx, liveS.IDHash, now); err != nil {
			t.Fatalf("live session: %v", err)
		}
		_, err = x.s.GetSession(x.ctx, oldS.IDHash, now)
		wantErr(t, "old session", err, store.ErrNotFound)
		_, err = x.s.ConsumePendingState(x.ctx, oldP.StateHash, now)
		wantErr(t, "old pending state", err, store.ErrNotFound)
		_, err = x.s.ConsumeAuthCode(x.ctx, w.hash("code-old"), now)
		wantErr(t, "old code", err, store.ErrNotFound)
		_, err = x.s.ConsumeConsentTicket(x.ctx, w.hash("consent-old"), now)
		wantErr(t, "old consent ticket", err, store.ErrNotFound)
		if _, err := x.s.ConsumeAuthCode(x.ctx, w.hash("code-live"), now); err != nil {
			t.Fatalf("live code: %v", err)
		}
		if _, err := x.s.ConsumeConsentTicket(x.ctx, w.hash("consent-live"), now); err != nil {
			t.Fatalf("live consent ticket: %v", err)
		}
		if _, err := x.s.ConsumePendingState(x.ctx, liveP.StateHash, now); err != nil {
			t.Fatalf("live pending state: %v", err)
		}
		// The live window still counts: limit 1 was used.
		if ok, _, err := x.s.HitRateLimit(x.ctx, "cleanup:live", time.Hour, 1, now.Add(time.Second)); err != nil || ok {
			t.Fatalf("live rate-limit window lost: ok=%v err=%v", ok, err)
		}
		evs, _, err := x.s.QueryAudit(x.ctx, store.AuditFilter{})
		wantErr(t, "QueryAudit", err, nil)
		if len(evs) != 1 || evs[0].Type != "recent" {
			t.Fatalf("audit after cleanup = %+v, want only the recent event", evs)
		}
		// Durable state is untouched.
		x.wantState(w.inst.ID, store.InstanceActive)
		if _, err := x.s.GetClient(x.ctx, w.client.ID); err != nil {
			t.Fatalf("client lost: %v", err)
		}
	})
}

// testTryLeader covers the maintenance lock.
func testTryLeader(t *testing.T, newStore NewStore) {
	x := open(t, newStore)
	t.Run("RunsAndExcludes", func(t *testing.T) {
		ran, err := x.s.TryLeader(x.ctx, "cleanup", func(ctx context.Context) error {
			inner, err := x.s.TryLeader(ctx, "cleanup", func(context.Context) error {
				t.Errorf("nested holder of the same lock ran")
				return nil
			})
			if err != nil || inner {
				t.Errorf("nested TryLeader(same) = %v, %v; want false, nil", inner, err)
			}
			other, err := x.s.TryLeader(ctx, "resync", func(context.Context) error { return nil })
			if err != nil || !other {
				t.Errorf("nested TryLeader(other name) = %v, %v; want true, nil", other, err)
			}
			return nil
		})
		if err != nil || !ran {
			t.Fatalf("TryLeader = %v, %v; want true, nil", ran, err)
		}
	})
	t.Run("ReleasedAfterRun", func(t *testing.T) {
		ran, err := x.s.TryLeader(x.ctx, "cleanup", func(context.Context) error { return nil })
		if err != nil || !ran {
			t.Fatalf("TryLeader after release = %v, %v", ran, err)
		}
	})
	t.Run("ErrorPropagatesAndReleases", func(t *testing.T) {
		boom := errors.New("job failed")
		ran, err := x.s.TryLeader(x.ctx, "cleanup", func(context.Context) error { return boom })
		if !ran || !errors.Is(err, boom) {
			t.Fatalf("TryLeader(failing fn) = %v, %v; want true, %v", ran, err, boom)
		}
		ran, err = x.s.TryLeader(x.ctx, "cleanup", func(context.Context) error { return nil })
		if err != nil || !ran {
			t.Fatalf("lock not released after failing fn: %v, %v", ran, err)
		}
	})
	t.Run("Ping", func(t *testing.T) {
		wantErr(t, "Ping", x.s.Ping(x.ctx), nil)
	})
}

// testCancelled covers calls made with a context that has already ended:
// they fail (never a stale allow) and change nothing.
func testCancelled(t *testing.T, newStore NewStore) {
	x := open(t, newStore)
	w := x.runtimeWorld()
	ctx, cancel := context.WithCancel(x.ctx)
	cancel()
	if _, err := x.s.ResolveRuntime(ctx, w.q(w.pNone)); err == nil {
		t.Fatalf("ResolveRuntime with a cancelled context succeeded")
	}
	id := store.NewID()
	if _, err := x.s.CreateUser(ctx, store.User{ID: id, Email: "late@example.test", DisplayName: "Late", Status: store.UserActive, CreatedAt: t0}); err == nil {
		t.Fatalf("CreateUser with a cancelled context succeeded")
	}
	_, err := x.s.GetUser(x.ctx, id)
	wantErr(t, "GetUser(not created)", err, store.ErrNotFound)
	if err := x.s.DeleteConfig(ctx, w.pNone.ID, nil); err == nil {
		t.Fatalf("DeleteConfig with a cancelled context succeeded")
	}
	if c := x.getConfig(w.pNone.ID); c.Status != store.ConfigEnabled {
		t.Fatalf("config status %s after a cancelled delete", c.Status)
	}
	if rs, err := x.s.ResolveRuntime(x.ctx, w.q(w.pNone)); err != nil || !rs.OK() {
		t.Fatalf("store unusable after cancelled calls: %+v, %v", rs, err)
	}
}

// testClosed covers fail-closed behaviour: a closed store answers every call
// with ErrUnavailable (never a stale allow).
func testClosed(t *testing.T, newStore NewStore) {
	x := open(t, newStore)
	w := x.runtimeWorld()
	q := w.q(w.pNone)
	if rs, err := x.s.ResolveRuntime(x.ctx, q); err != nil || !rs.OK() {
		t.Fatalf("ResolveRuntime before Close = %+v, %v", rs, err)
	}
	x.s.Close()
	wantErr(t, "Ping", x.s.Ping(x.ctx), store.ErrUnavailable)
	// (A zero RuntimeState has Reason "" = ok: callers must check err first.)
	_, err := x.s.ResolveRuntime(x.ctx, q)
	wantErr(t, "ResolveRuntime", err, store.ErrUnavailable)
	_, err = x.s.GetUser(x.ctx, w.alice.ID)
	wantErr(t, "GetUser", err, store.ErrUnavailable)
	_, _, err = x.s.GetOrCreateInstance(x.ctx, store.ScopeUser, w.alice.ID, w.alice.ID, w.pNone.ID, store.NewID())
	wantErr(t, "GetOrCreateInstance", err, store.ErrUnavailable)
}
