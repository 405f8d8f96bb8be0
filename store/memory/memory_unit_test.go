package memory

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"mcpgw/domain"
	"mcpgw/store"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fixture builds a user, an org config and an instance with a grant.
type fixture struct {
	s    *Store
	user store.User
	org  store.Org
	cfg  store.Config
	rt   store.Route
	inst store.Instance
}

func newFixture(t *testing.T, opts ...Option) *fixture {
	t.Helper()
	ctx := context.Background()
	s := New(append([]Option{WithClock(func() time.Time { return t0 })}, opts...)...)
	t.Cleanup(s.Close)
	f := &fixture{s: s}
	var err error
	f.user, err = s.CreateUser(ctx, store.User{ID: store.NewID(), Email: "a@example.test", DisplayName: "A"})
	must(t, err)
	f.org, err = s.CreateOrg(ctx, store.Org{ID: store.NewID(), Name: "acme"}, f.user.ID, nil)
	must(t, err)
	f.cfg, f.rt, err = s.CreateConfig(ctx, store.Config{
		ID: store.NewID(), OwnerScope: store.ScopeOrg, OwnerID: f.org.ID, Name: "c", RemoteURL: "https://mcp.example.com/mcp",
		AuthMode: store.AuthOAuthDynamic, SharingMode: store.MultiUser,
		AuxHeaders: map[string]string{"x-tenant": "t1"}, Provider: store.ProviderSettings{Scopes: []string{"read"}},
		StaticHeaders: []byte("ct"), StaticHeaderNames: []string{"x-api-key"},
	}, store.NewID(), "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk", nil)
	must(t, err)
	_, err = s.Assign(ctx, store.Assignment{ConfigID: f.cfg.ID, UserID: f.user.ID}, nil)
	must(t, err)
	f.inst, _, err = s.GetOrCreateInstance(ctx, store.ScopeOrg, f.org.ID, f.user.ID, f.cfg.ID, store.NewID())
	must(t, err)
	_, err = s.PutGrant(ctx, store.Grant{InstanceID: f.inst.ID, AccessToken: []byte("access"), RefreshToken: []byte("refresh")}, -1, nil)
	must(t, err)
	return f
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestDeepCopyIsolation mutates everything a caller passed in or got back
// and checks the stored state did not move.
func TestDeepCopyIsolation(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	s := f.s

	t.Run("config out", func(t *testing.T) {
		c, err := s.GetConfig(ctx, f.cfg.ID)
		must(t, err)
		c.AuxHeaders["x-tenant"] = "evil"
		c.StaticHeaders[0] = 'X'
		c.StaticHeaderNames[0] = "cookie"
		c.Provider.Scopes[0] = "admin"
		again, err := s.GetConfig(ctx, f.cfg.ID)
		must(t, err)
		if again.AuxHeaders["x-tenant"] != "t1" || string(again.StaticHeaders) != "ct" ||
			again.StaticHeaderNames[0] != "x-api-key" || again.Provider.Scopes[0] != "read" {
			t.Fatalf("stored config changed through a returned value: %+v", again)
		}
	})

	t.Run("config in", func(t *testing.T) {
		aux := map[string]string{"x-a": "1"}
		names := []string{"x-key"}
		_, material, err := s.UpdateConfig(ctx, f.cfg.ID, func(c *store.Config) error {
			c.AuxHeaders = aux
			c.StaticHeaderNames = names
			return nil
		}, nil)
		must(t, err)
		if material {
			t.Fatal("header change reported as material")
		}
		aux["x-a"] = "2"
		names[0] = "cookie"
		again, err := s.GetConfig(ctx, f.cfg.ID)
		must(t, err)
		if again.AuxHeaders["x-a"] != "1" || again.StaticHeaderNames[0] != "x-key" {
			t.Fatalf("stored config changed through an input value: %+v", again)
		}
	})

	t.Run("grant out", func(t *testing.T) {
		g, err := s.GetGrant(ctx, f.inst.ID)
		must(t, err)
		g.AccessToken[0] = 'X'
		st, err := s.ResolveRuntime(ctx, f.query())
		must(t, err)
		if !st.OK() {
			t.Fatalf("reason %s", st.Reason)
		}
		st.Grant.RefreshToken[0] = 'X'
		st.Config.AuxHeaders["x-tenant"] = "evil"
		g2, err := s.GetGrant(ctx, f.inst.ID)
		must(t, err)
		if string(g2.AccessToken) != "access" || string(g2.RefreshToken) != "refresh" {
			t.Fatalf("stored grant changed: %q %q", g2.AccessToken, g2.RefreshToken)
		}
		if c, _ := s.GetConfig(ctx, f.cfg.ID); c.AuxHeaders["x-tenant"] == "evil" {
			t.Fatal("stored config changed through RuntimeState")
		}
	})

	t.Run("code in and out", func(t *testing.T) {
		h := make([]byte, 32)
		h[0] = 1
		code := store.AuthCode{Hash: h, FamilyID: "fam", ClientID: "dcr:x", RedirectURI: "https://app/cb",
			Resource: "https://gw/r", Scopes: []string{"mcp:access"}, CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
			ConfigID: f.cfg.ID, RouteKey: f.rt.Key, OwnerScope: store.ScopeOrg, OwnerID: f.org.ID,
			ExecutionContext: "org:" + f.org.ID, UserID: f.user.ID, InstanceID: f.inst.ID, ConfigVersion: 1, ExpiresAt: t0.Add(time.Minute)}
		must(t, s.CreateAuthCode(ctx, code))
		code.Scopes[0] = "profile"
		h[0] = 2 // the caller reuses its buffer: the stored key must not move
		orig := make([]byte, 32)
		orig[0] = 1
		got, err := s.ConsumeAuthCode(ctx, orig, t0)
		must(t, err)
		if got.Scopes[0] != "mcp:access" {
			t.Fatalf("stored scopes changed: %v", got.Scopes)
		}
		got.Hash[0] = 9
		if _, err := s.ConsumeAuthCode(ctx, orig, t0); !errors.Is(err, store.ErrConsumed) {
			t.Fatalf("second consume: %v, want ErrConsumed", err)
		}
	})

	t.Run("audit metadata", func(t *testing.T) {
		md := map[string]string{"k": "v"}
		must(t, s.AppendAudit(ctx, store.AuditEvent{Type: "t", Metadata: md}))
		md["k"] = "changed"
		evs, _, err := s.QueryAudit(ctx, store.AuditFilter{Type: "t"})
		must(t, err)
		evs[0].Metadata["k"] = "changed-out"
		evs2, _, err := s.QueryAudit(ctx, store.AuditFilter{Type: "t"})
		must(t, err)
		if evs2[0].Metadata["k"] != "v" {
			t.Fatalf("stored metadata changed: %v", evs2[0].Metadata)
		}
	})
}

func (f *fixture) query() store.RuntimeQuery {
	return store.RuntimeQuery{ConfigID: f.cfg.ID, RouteKey: f.rt.Key, OwnerScope: store.ScopeOrg, OwnerID: f.org.ID,
		UserID: f.user.ID, InstanceID: f.inst.ID, ConfigVersion: f.cfg.Version, ExecutionContext: "org:" + f.org.ID}
}

// TestWatchSlowReaderGetsResync: a reader that does not read must not block
// writers, and when it catches up it is told to resync.
func TestWatchSlowReaderGetsResync(t *testing.T) {
	f := newFixture(t, WithWatchBuffer(4))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch, err := f.s.Watch(ctx)
	must(t, err)

	// 50 writes with nobody reading: they must all complete (a blocked
	// writer would hang here until the test deadline).
	for i := 0; i < 50; i++ {
		_, err := f.s.SetConfigStatus(ctx, f.cfg.ID, store.ConfigEnabled, nil)
		must(t, err)
	}
	sawResync := false
	for !sawResync {
		select {
		case c, ok := <-ch:
			if !ok {
				t.Fatal("watch closed early")
			}
			sawResync = c.Kind == store.ChangeResync
		case <-ctx.Done():
			t.Fatal("no ChangeResync delivered to a slow reader")
		}
	}
	// After catching up, individual changes flow again. The Resync read
	// above may be one the pump took while the writes were still going on,
	// so the backlog can still be full and fold the next change into a
	// further Resync (the contract: a Resync stands for every change it
	// replaced). There are at most two such older Resyncs (one in the
	// batch the pump holds, one at the head of the queue); each one read
	// means everything before it was delivered, so by the third rotation
	// the route change must arrive as itself.
	for range 3 {
		_, err = f.s.RotateRoute(ctx, f.cfg.ID, store.NewID(), domain.NewRouteKey(), nil)
		must(t, err)
		if awaitRouteChange(ctx, t, ch, f.cfg.ID) {
			return
		}
	}
	t.Fatal("route change not delivered after resync")
}

// awaitRouteChange reads ch until a ChangeRoute for configID (true) or a
// ChangeResync (false).
func awaitRouteChange(ctx context.Context, t *testing.T, ch <-chan store.Change, configID string) bool {
	t.Helper()
	for {
		select {
		case c := <-ch:
			switch {
			case c.Kind == store.ChangeRoute && c.ConfigID == configID:
				return true
			case c.Kind == store.ChangeResync:
				return false
			}
		case <-ctx.Done():
			t.Fatal("route change not delivered after resync")
		}
	}
}

// TestWatchClosesOnCancelAndClose checks both ways a feed ends.
func TestWatchClosesOnCancelAndClose(t *testing.T) {
	f := newFixture(t)
	deadline, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	waitClosed := func(ch <-chan store.Change) {
		t.Helper()
		for {
			select {
			case _, ok := <-ch:
				if !ok {
					return
				}
			case <-deadline.Done():
				t.Fatal("watch channel not closed")
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := f.s.Watch(ctx)
	must(t, err)
	cancel()
	waitClosed(ch)

	ch2, err := f.s.Watch(context.Background())
	must(t, err)
	f.s.Close()
	waitClosed(ch2)
	if _, err := f.s.GetUser(context.Background(), f.user.ID); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("after Close: %v, want ErrUnavailable", err)
	}
	if err := f.s.Ping(context.Background()); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Ping after Close: %v, want ErrUnavailable", err)
	}
}

// TestLockGrantHonoursContext: a caller waiting for another holder's lock
// gives up when its context ends.
func TestLockGrantHonoursContext(t *testing.T) {
	f := newFixture(t)
	held := make(chan struct{})
	release := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, err := f.s.LockGrant(context.Background(), f.inst.ID, func(*store.Grant) (*store.Grant, error) {
			close(held)
			<-release
			return nil, nil
		})
		if err != nil {
			t.Error(err)
		}
	}()
	<-held
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := f.s.LockGrant(ctx, f.inst.ID, func(*store.Grant) (*store.Grant, error) {
		t.Error("fn ran without the lock")
		return nil, nil
	})
	if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("LockGrant with a cancelled ctx: %v", err)
	}
	close(release)
	wg.Wait()
	if n := len(f.s.grantLocks); n != 0 {
		t.Fatalf("%d grant locks left behind", n)
	}
}

// TestLockGrantNeverClobbers: a grant written outside LockGrant while fn
// runs makes fn's write fail with ErrStale instead of overwriting it.
func TestLockGrantNeverClobbers(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	_, err := f.s.LockGrant(ctx, f.inst.ID, func(cur *store.Grant) (*store.Grant, error) {
		if _, err := f.s.PutGrant(ctx, store.Grant{InstanceID: f.inst.ID, AccessToken: []byte("newer")}, -1, nil); err != nil {
			return nil, err
		}
		return &store.Grant{AccessToken: []byte("refreshed")}, nil
	})
	if !errors.Is(err, store.ErrStale) {
		t.Fatalf("LockGrant after a concurrent write: %v, want ErrStale", err)
	}
	g, err := f.s.GetGrant(ctx, f.inst.ID)
	must(t, err)
	if string(g.AccessToken) != "newer" {
		t.Fatalf("grant = %q, want the newer one", g.AccessToken)
	}
}

// TestRateLimitWindows checks fixed windows aligned to the epoch with an
// injected now.
func TestRateLimitWindows(t *testing.T) {
	ctx := context.Background()
	s := New()
	defer s.Close()
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := 0; i < 3; i++ {
		ok, _, err := s.HitRateLimit(ctx, "k", time.Minute, 3, start.Add(time.Duration(i)*time.Second))
		must(t, err)
		if !ok {
			t.Fatalf("hit %d denied", i)
		}
	}
	ok, retry, err := s.HitRateLimit(ctx, "k", time.Minute, 3, start.Add(20*time.Second))
	must(t, err)
	if ok || retry != 40*time.Second {
		t.Fatalf("4th hit: ok=%v retry=%v, want denied with 40s", ok, retry)
	}
	if ok, _, _ := s.HitRateLimit(ctx, "other", time.Minute, 3, start.Add(20*time.Second)); !ok {
		t.Fatal("other key limited")
	}
	if ok, _, _ := s.HitRateLimit(ctx, "k", time.Minute, 3, start.Add(time.Minute)); !ok {
		t.Fatal("next window still limited")
	}
	n, err := s.Cleanup(ctx, start.Add(time.Minute), time.Time{})
	must(t, err)
	if n.RateLimits != 2 {
		t.Fatalf("cleaned %d windows, want 2 (k and other, first minute)", n.RateLimits)
	}
}

// TestTryLeaderExclusive: while one caller leads, another does not run.
func TestTryLeaderExclusive(t *testing.T) {
	s := New()
	defer s.Close()
	ctx := context.Background()
	ran, err := s.TryLeader(ctx, "cleanup", func(ctx context.Context) error {
		inner, err := s.TryLeader(ctx, "cleanup", func(context.Context) error { return nil })
		if err != nil || inner {
			t.Errorf("nested TryLeader ran=%v err=%v, want false", inner, err)
		}
		other, err := s.TryLeader(ctx, "other", func(context.Context) error { return nil })
		if err != nil || !other {
			t.Errorf("independent lock ran=%v err=%v, want true", other, err)
		}
		return nil
	})
	if err != nil || !ran {
		t.Fatalf("TryLeader ran=%v err=%v", ran, err)
	}
	if ran, _ := s.TryLeader(ctx, "cleanup", func(context.Context) error { return nil }); !ran {
		t.Fatal("lock not released")
	}
}

// TestCanceledContext: a dead context yields ErrUnavailable and changes
// nothing.
func TestCanceledContext(t *testing.T) {
	s := New()
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.CreateUser(ctx, store.User{ID: store.NewID(), Email: "a@b.c"})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("CreateUser with cancelled ctx: %v", err)
	}
	if us, _ := s.ListUsers(context.Background(), true); len(us) != 0 {
		t.Fatal("user created")
	}
}

// TestUpdateConfigNoLostUpdate: concurrent read-modify-writes of one config
// all land, and an update function may read the store without deadlock.
func TestUpdateConfigNoLostUpdate(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := f.s.UpdateConfig(ctx, f.cfg.ID, func(c *store.Config) error {
				if _, err := f.s.GetUser(ctx, f.user.ID); err != nil { // reading the store inside update
					return err
				}
				c.AuxHeaders[fmt.Sprintf("x-h%d", i)] = "v"
				return nil
			}, nil)
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	c, err := f.s.GetConfig(ctx, f.cfg.ID)
	must(t, err)
	if len(c.AuxHeaders) != n+1 {
		t.Fatalf("aux headers = %d, want %d: an update was lost", len(c.AuxHeaders), n+1)
	}
	if c.Version != f.cfg.Version {
		t.Fatalf("version moved on non-material updates: %d", c.Version)
	}
}
