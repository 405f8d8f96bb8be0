package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"mcpgw/store"
	"mcpgw/store/postgres"
	"mcpgw/store/postgres/pgtest"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)

// world is a small org with one multi_user config and one assignee with an
// instance: enough for runtime and feed tests.
type world struct {
	s                *postgres.Store
	owner, user, org string
	cfg              store.Config
	route            store.Route
	inst             store.Instance
}

func newWorld(t *testing.T, opts ...postgres.Option) *world {
	t.Helper()
	ctx := context.Background()
	w := &world{s: pgtest.Store(t, opts...)}
	mk := func(email string) string {
		u, err := w.s.CreateUser(ctx, store.User{ID: store.NewID(), Email: email, CreatedAt: t0})
		if err != nil {
			t.Fatal(err)
		}
		return u.ID
	}
	w.owner, w.user = mk("owner@example.test"), mk("user@example.test")
	o, err := w.s.CreateOrg(ctx, store.Org{ID: store.NewID(), Name: "acme"}, w.owner, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.org = o.ID
	if _, err := w.s.AddMember(ctx, store.Member{OrgID: w.org, UserID: w.user, Role: store.RoleMember}, nil); err != nil {
		t.Fatal(err)
	}
	w.cfg, w.route = w.config(t)
	if _, err := w.s.Assign(ctx, store.Assignment{ConfigID: w.cfg.ID, UserID: w.user}, nil); err != nil {
		t.Fatal(err)
	}
	w.inst, _, err = w.s.GetOrCreateInstance(ctx, store.ScopeOrg, w.org, w.user, w.cfg.ID, store.NewID())
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *world) config(t *testing.T) (store.Config, store.Route) {
	t.Helper()
	c, r, err := w.s.CreateConfig(context.Background(), store.Config{ID: store.NewID(), OwnerScope: store.ScopeOrg, OwnerID: w.org,
		Name: "svc", RemoteURL: "https://mcp.example.com/mcp", AuthMode: store.AuthNone, SharingMode: store.MultiUser},
		store.NewID(), routeKey(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c, r
}

func routeKey() string { return strings.ReplaceAll(store.NewID(), "-", "") }

func (w *world) query() store.RuntimeQuery {
	return store.RuntimeQuery{ConfigID: w.cfg.ID, RouteKey: w.route.Key, OwnerScope: store.ScopeOrg, OwnerID: w.org,
		UserID: w.user, InstanceID: w.inst.ID, ConfigVersion: w.cfg.Version, ExecutionContext: "org:" + w.org}
}

// TestMembershipForeignKey: deleting a membership row by hand (outside the
// store) cascades to the assignment, so the runtime says not_member. This
// is what lets ResolveRuntime prove membership through the assignment.
func TestMembershipForeignKey(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	st, err := w.s.ResolveRuntime(ctx, w.query())
	if err != nil || !st.OK() {
		t.Fatalf("before: %q %v", st.Reason, err)
	}
	if _, err := w.s.Pool().Exec(ctx, `DELETE FROM org_members WHERE org_id = $1 AND user_id = $2`, w.org, w.user); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := w.s.Pool().QueryRow(ctx, `SELECT count(*) FROM assignments WHERE user_id = $1`, w.user).Scan(&n); err != nil || n != 0 {
		t.Fatalf("assignments left: %d %v", n, err)
	}
	st, err = w.s.ResolveRuntime(ctx, w.query())
	if err != nil || st.Reason != store.ReasonNotMember {
		t.Fatalf("after: %q %v, want not_member", st.Reason, err)
	}
	// An assignment without membership cannot even be written by hand.
	_, err = w.s.Pool().Exec(ctx, `INSERT INTO assignments (config_id, user_id, org_id, created_at) VALUES ($1, $2, $3, now())`,
		w.cfg.ID, w.user, w.org)
	if err == nil {
		t.Fatal("assignment without membership accepted")
	}
}

// next waits (with a deadline, never a fixed sleep) for the next change.
func next(t *testing.T, ch <-chan store.Change) store.Change {
	t.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatal("feed closed")
		}
		return c
	case <-time.After(20 * time.Second):
		t.Fatal("no change within 20s")
	}
	return store.Change{}
}

// TestWatchTransactionalAndReconnect: a rolled-back change sends nothing
// (NOTIFY is delivered at commit), and after the LISTEN connection is
// killed the feed reconnects, sends ChangeResync and keeps delivering.
func TestWatchTransactionalAndReconnect(t *testing.T) {
	w := newWorld(t, postgres.WithReconnectBackoff(10*time.Millisecond, 200*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := w.s.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Rolled back: the trigger's NOTIFY must vanish with it.
	err = pgx.BeginFunc(ctx, w.s.Pool(), func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE configs SET name = 'x' WHERE id = $1`, w.cfg.ID); err != nil {
			return err
		}
		return context.Canceled // force rollback
	})
	if err == nil {
		t.Fatal("expected rollback")
	}
	other, _ := w.config(t)
	// CreateConfig inserts a config and a route: both notify, in order.
	for _, want := range []store.ChangeKind{store.ChangeConfig, store.ChangeRoute} {
		if c := next(t, ch); c.Kind != want || c.ConfigID != other.ID {
			t.Fatalf("got %+v, want %s of %s (rolled-back change leaked?)", c, want, other.ID)
		}
	}
	// Kill the listener's backend.
	var killed int
	err = w.s.Pool().QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND query = 'LISTEN mcpgw_changes' AND pid <> pg_backend_pid()`).Scan(&killed)
	if err != nil || killed != 1 {
		t.Fatalf("terminate listener: %d %v", killed, err)
	}
	if c := next(t, ch); c.Kind != store.ChangeResync {
		t.Fatalf("after reconnect got %+v, want resync", c)
	}
	if _, err := w.s.Assign(ctx, store.Assignment{ConfigID: other.ID, UserID: w.user}, nil); err != nil {
		t.Fatal(err)
	}
	if c := next(t, ch); c.Kind != store.ChangeAssignment || c.ConfigID != other.ID {
		t.Fatalf("after reconnect got %+v, want assignment of %s", c, other.ID)
	}
	cancel()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("feed not closed after ctx ended")
		}
	}
}

// TestSendOverflowBecomesResync: a full feed buffer never blocks the
// listener; the reader gets ChangeResync instead of the lost changes.
func TestSendOverflowBecomesResync(t *testing.T) {
	ch := make(chan store.Change, 2)
	postgres.Send(ch, store.Change{Kind: store.ChangeConfig, ConfigID: "a"})
	postgres.Send(ch, store.Change{Kind: store.ChangeConfig, ConfigID: "b"})
	postgres.Send(ch, store.Change{Kind: store.ChangeConfig, ConfigID: "c"}) // overflow
	if len(ch) != 1 {
		t.Fatalf("buffer holds %d, want just the resync", len(ch))
	}
	if c := <-ch; c.Kind != store.ChangeResync {
		t.Fatalf("got %+v, want resync", c)
	}
}

// TestMigrateIdempotentAndStatus: Migrate twice is a no-op; status lists
// every embedded migration as applied.
func TestMigrateIdempotentAndStatus(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	if err := postgres.Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := postgres.MigrationStatus(ctx, dsn, &buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"00001_init.sql", "00002_assignment_membership_fk.sql", "00003_refresh_token_config_version.sql"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "pending") {
		t.Errorf("pending migrations after Migrate:\n%s", out)
	}
	if err := postgres.Migrate(ctx, "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=2"); !errorsIs(err, store.ErrUnavailable) {
		t.Errorf("unreachable migrate: %v, want ErrUnavailable", err)
	}
	if err := postgres.Migrate(ctx, "postgres://u:secretpw@[::1"); err == nil || strings.Contains(err.Error(), "secretpw") {
		t.Errorf("bad DSN: %v (must fail without echoing the password)", err)
	}
}

// TestTryLeaderAcrossPools: the advisory lock excludes a second replica
// (a separate pool on the same database).
func TestTryLeaderAcrossPools(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	a, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ran, err := a.TryLeader(ctx, "cleanup", func(ctx context.Context) error {
		ran, err := b.TryLeader(ctx, "cleanup", func(context.Context) error { return nil })
		if err != nil || ran {
			t.Errorf("second replica ran=%v err=%v while lock held", ran, err)
		}
		return nil
	})
	if err != nil || !ran {
		t.Fatalf("leader ran=%v err=%v", ran, err)
	}
	ran, err = b.TryLeader(ctx, "cleanup", func(context.Context) error { return nil })
	if err != nil || !ran {
		t.Fatalf("after release ran=%v err=%v", ran, err)
	}
}

// TestCallerErrorsPassThrough: an error returned by the caller's update or
// LockGrant function comes back as is (not disguised as ErrUnavailable)
// and nothing is written.
func TestCallerErrorsPassThrough(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	mine := errors.New("caller says no")
	_, _, err := w.s.UpdateConfig(ctx, w.cfg.ID, func(c *store.Config) error {
		c.Name = "changed"
		return mine
	}, nil)
	if !errors.Is(err, mine) || errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("UpdateConfig: %v", err)
	}
	_, err = w.s.LockGrant(ctx, w.inst.ID, func(*store.Grant) (*store.Grant, error) { return nil, mine })
	if !errors.Is(err, mine) || errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("LockGrant: %v", err)
	}
	c, err := w.s.GetConfig(ctx, w.cfg.ID)
	if err != nil || c.Name != w.cfg.Name {
		t.Fatalf("config changed: %+v %v", c, err)
	}
}

// countingConn counts the client's writes on one connection: pgconn
// flushes a whole pipeline (Bind, Execute, Sync) in one write, so one write
// per call is one round trip.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// TestResolveRuntimeOneStatement: every ResolveRuntime call, allowed or
// denied for any reason, is one write and so one round trip (DESIGN §6
// step 6) once the statement is prepared on the connection. The pool has
// one connection and never pings it, so nothing else is sent.
func TestResolveRuntimeOneStatement(t *testing.T) {
	var writes atomic.Int64
	w := newWorld(t, postgres.WithMaxConns(1), postgres.WithPoolConfig(func(c *pgxpool.Config) {
		c.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
		dial := c.ConnConfig.DialFunc
		c.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return countingConn{Conn: conn, writes: &writes}, nil
		}
	}))
	ctx := context.Background()
	if _, err := w.s.ResolveRuntime(ctx, w.query()); err != nil { // prepares
		t.Fatal(err)
	}
	other := w.query()
	other.UserID = w.owner // member (owner) but not assigned
	unknown := w.query()
	unknown.ConfigID = store.NewID()
	for _, tc := range []struct {
		name string
		q    store.RuntimeQuery
		want store.Reason
	}{
		{"ok", w.query(), store.ReasonOK},
		{"not_assigned", other, store.ReasonNotAssigned},
		{"route_not_found", unknown, store.ReasonRouteNotFound},
	} {
		before := writes.Load()
		st, err := w.s.ResolveRuntime(ctx, tc.q)
		if err != nil || st.Reason != tc.want {
			t.Fatalf("%s: reason %q err %v", tc.name, st.Reason, err)
		}
		if n := writes.Load() - before; n != 1 {
			t.Errorf("%s: %d writes, want 1", tc.name, n)
		}
	}
}

// TestDatabaseLossIsUnavailable: when the server kills the pool's
// connections and then the database disappears, every call fails with
// ErrUnavailable (callers fail closed), never with another sentinel that
// could be mistaken for a decision.
func TestDatabaseLossIsUnavailable(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	var name string
	if err := w.s.Pool().QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	admin, err := pgx.Connect(ctx, pgtest.BaseDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		t.Fatal(err)
	}
	checks := map[string]func() error{
		"ResolveRuntime": func() error { _, err := w.s.ResolveRuntime(ctx, w.query()); return err },
		"GetUser":        func() error { _, err := w.s.GetUser(ctx, w.user); return err },
		"Assign": func() error {
			_, err := w.s.Assign(ctx, store.Assignment{ConfigID: w.cfg.ID, UserID: w.owner}, nil)
			return err
		},
		"ConsumeAuthCode": func() error {
			_, err := w.s.ConsumeAuthCode(ctx, bytes.Repeat([]byte{1}, 32), t0)
			return err
		},
		"Ping":  func() error { return w.s.Ping(ctx) },
		"Watch": func() error { _, err := w.s.Watch(ctx); return err },
	}
	for name, fn := range checks {
		if err := fn(); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s after database loss: %v, want ErrUnavailable", name, err)
		}
	}
}
