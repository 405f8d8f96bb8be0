package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"mcpgw/domain"
	"mcpgw/store"
	"mcpgw/store/postgres"
	"mcpgw/store/postgres/pgtest"
)

// Database outages: the pool keeps the connections that died in the
// outage; the store must skip them (conncheck.go) so that the first call
// after the database is back succeeds, and fail every call with
// ErrUnavailable while it is away.

// outagePool is the pool size of the outage tests.
const outagePool = 4

// outageCallTimeout bounds each call. A call during the outage must end
// with ErrUnavailable before it: the cut path refuses connections, so
// waiting for the deadline would be a bug (a hang), not an answer.
const outageCallTimeout = 30 * time.Second

type outageEnv struct {
	st       *postgres.Store
	proxy    *pgtest.Proxy
	q        store.RuntimeQuery // resolves OK
	connects atomic.Int64       // connections the pool tried to open
}

// newOutageEnv opens a store of outagePool connections to a fresh database
// through a proxy the test can cut, with a config the runtime check
// accepts.
//
// pgxpool's liveness ping is off (ShouldPing never): it only runs for
// connections idle for more than a second, so it would not catch a
// connection used just before the outage, and with it off nothing but the
// store's own check can keep a dead connection from being used. (It also
// keeps round-trip counts independent of how long the test takes.)
func newOutageEnv(t *testing.T, opts ...postgres.Option) *outageEnv {
	t.Helper()
	proxy, dsn := pgtest.NewProxy(t, pgtest.DSN(t))
	e := &outageEnv{proxy: proxy}
	ctx := context.Background()
	opts = append([]postgres.Option{postgres.WithMaxConns(outagePool), postgres.WithPoolConfig(func(c *pgxpool.Config) {
		c.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
		c.BeforeConnect = func(context.Context, *pgx.ConnConfig) error { e.connects.Add(1); return nil }
	})}, opts...)
	st, err := postgres.Open(ctx, dsn, opts...)
	if err != nil {
		t.Fatalf("open through the proxy: %v", err)
	}
	t.Cleanup(st.Close)

	user, err := st.CreateUser(ctx, store.User{ID: store.NewID(), Email: "outage@example.test", Status: store.UserActive})
	if err != nil {
		t.Fatal(err)
	}
	key := domain.NewRouteKey()
	cfg, _, err := st.CreateConfig(ctx, store.Config{ID: store.NewID(), OwnerScope: store.ScopeUser, OwnerID: user.ID,
		Name: "outage", RemoteURL: "https://up.example.com/mcp", AuthMode: store.AuthNone, SharingMode: store.SingleUser,
		CreatedBy: user.ID}, store.NewID(), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	inst, _, err := st.GetOrCreateInstance(ctx, store.ScopeUser, user.ID, user.ID, cfg.ID, store.NewID())
	if err != nil {
		t.Fatal(err)
	}
	e.st = st
	e.q = store.RuntimeQuery{ConfigID: cfg.ID, RouteKey: key, OwnerScope: store.ScopeUser, OwnerID: user.ID,
		UserID: user.ID, InstanceID: inst.ID, ConfigVersion: cfg.Version, ExecutionContext: "personal"}
	return e
}

// cutWithFullPool fills the pool, cuts the path to the database, waits
// until every pooled connection has seen the cut and returns them all to
// the pool: the pool then holds outagePool dead connections it takes for
// idle ones, as after a real outage.
func (e *outageEnv) cutWithFullPool(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	conns := make([]*pgxpool.Conn, 0, outagePool)
	for range outagePool {
		c, err := e.st.Pool().Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	e.proxy.Cut()
	for _, c := range conns {
		e.proxy.AwaitCut(t, c.Conn())
	}
	for _, c := range conns {
		c.Release()
	}
	if n := e.st.Pool().Stat().IdleConns(); n != outagePool {
		t.Fatalf("the pool holds %d idle connections after the cut, want %d (all dead)", n, outagePool)
	}
}

// run is the scenario every outage test shares, for one kind of call:
//
//  1. outagePool dead connections in the pool, path restored: the first
//     call succeeds;
//  2. outagePool dead connections in the pool, path still cut: every call
//     fails with ErrUnavailable before its deadline, trying exactly one
//     new connection (the dead ones are dropped unused; the first new
//     connection that fails ends the attempt);
//  3. path restored: the first call succeeds.
//
// call returns nil when the call succeeded and gave the expected answer.
// failed(i) runs after the restore in step 3 for each call i of step 2
// (e.g. to prove a failed write changed nothing).
func (e *outageEnv) run(t *testing.T, call func(ctx context.Context, i int) error, failed func(i int)) {
	t.Helper()
	do := func(i int) (error, error) {
		ctx, cancel := context.WithTimeout(context.Background(), outageCallTimeout)
		defer cancel()
		err := call(ctx, i)
		return err, ctx.Err()
	}
	n := 0 // call number

	e.cutWithFullPool(t)
	e.proxy.Restore()
	if err, _ := do(n); err != nil {
		t.Fatalf("first call after the database is back (the pool held %d dead connections): %v", outagePool, err)
	}
	n++

	e.cutWithFullPool(t)
	var cutCalls []int
	for range 3 {
		connects := e.connects.Load()
		err, ctxErr := do(n)
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("call %d with the database cut: %v, want ErrUnavailable", n, err)
		}
		if ctxErr != nil {
			t.Errorf("call %d with the database cut ran into its deadline (%v), want a prompt ErrUnavailable", n, ctxErr)
		}
		if c := e.connects.Load() - connects; c != 1 {
			t.Errorf("call %d with the database cut tried %d new connections, want 1", n, c)
		}
		cutCalls = append(cutCalls, n)
		n++
	}

	e.proxy.Restore()
	if err, _ := do(n); err != nil {
		t.Fatalf("first call after the second restore: %v", err)
	}
	if failed != nil {
		for _, i := range cutCalls {
			failed(i)
		}
	}
}

func (e *outageEnv) resolve(ctx context.Context) error {
	st, err := e.st.ResolveRuntime(ctx, e.q)
	if err != nil {
		return err
	}
	if !st.OK() {
		return fmt.Errorf("resolved %q, want ok", st.Reason)
	}
	return nil
}

func TestOutageResolveRuntime(t *testing.T) {
	e := newOutageEnv(t)
	e.run(t, func(ctx context.Context, _ int) error { return e.resolve(ctx) }, nil)
}

func TestOutageResolveRuntimeBatch(t *testing.T) {
	e := newOutageEnv(t)
	other := e.q
	other.RouteKey = domain.NewRouteKey()
	qs := []store.RuntimeQuery{e.q, other, e.q}
	want := []store.Reason{store.ReasonOK, store.ReasonRouteKeyMismatch, store.ReasonOK}
	e.run(t, func(ctx context.Context, _ int) error {
		states, errs := e.st.ResolveRuntimeBatch(ctx, qs)
		for i := range qs {
			if errs[i] != nil {
				// Every query fails the same way; report the first
				// unless another differs.
				for j := range qs {
					if !errors.Is(errs[j], store.ErrUnavailable) {
						return fmt.Errorf("query %d: %v (query %d: %v)", j, errs[j], i, errs[i])
					}
				}
				return errs[i]
			}
			if states[i].Reason != want[i] {
				return fmt.Errorf("query %d: %q, want %q", i, states[i].Reason, want[i])
			}
		}
		return nil
	}, nil)
}

func TestOutagePing(t *testing.T) {
	e := newOutageEnv(t)
	e.run(t, func(ctx context.Context, _ int) error { return e.st.Ping(ctx) }, nil)
}

// TestOutageWrite: a write is not sent on a dead connection either, so the
// first one after the outage succeeds and is applied exactly once, and the
// ones made during the outage fail and leave nothing behind.
func TestOutageWrite(t *testing.T) {
	e := newOutageEnv(t)
	ids := map[int]string{}
	email := func(i int) string { return fmt.Sprintf("write%d@example.test", i) }
	e.run(t, func(ctx context.Context, i int) error {
		ids[i] = store.NewID()
		u, err := e.st.CreateUser(ctx, store.User{ID: ids[i], Email: email(i), Status: store.UserActive})
		if err == nil && u.ID != ids[i] {
			return fmt.Errorf("created %s, want %s", u.ID, ids[i])
		}
		return err
	}, func(i int) {
		if _, err := e.st.GetUser(context.Background(), ids[i]); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("user of failed call %d: %v, want ErrNotFound (nothing written)", i, err)
		}
	})
	// The successful calls (0 and 4) wrote their user once.
	for _, i := range []int{0, 4} {
		var n int
		if err := e.st.Pool().QueryRow(context.Background(), `SELECT count(*) FROM users WHERE email = $1`, email(i)).Scan(&n); err != nil || n != 1 {
			t.Errorf("user of call %d: %d rows (%v), want 1", i, n, err)
		}
	}
}

// TestOutageTransaction: a transaction (tx, BeginFunc) gets a live
// connection too: a cascade right after the outage commits.
func TestOutageTransaction(t *testing.T) {
	e := newOutageEnv(t)
	e.run(t, func(ctx context.Context, _ int) error {
		_, err := e.st.RotateRoute(ctx, e.q.ConfigID, store.NewID(), domain.NewRouteKey(), nil)
		return err
	}, nil)
}

// TestTerminatedBackendsAreSkipped: when the server ends the sessions
// itself (pg_terminate_backend, as on a fast shutdown or restart), each
// pooled connection holds a FATAL message and end of stream. The store
// reads that before sending anything (it pings a connection with bytes
// waiting), drops the connection, and the first call succeeds.
func TestTerminatedBackendsAreSkipped(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	st, err := postgres.Open(ctx, dsn, postgres.WithMaxConns(outagePool), postgres.WithPoolConfig(func(c *pgxpool.Config) {
		c.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) })

	var conns []*pgxpool.Conn
	for range outagePool {
		c, err := st.Pool().Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		var ok bool
		// With a timeout, pg_terminate_backend waits until the backend
		// has exited (Postgres 14+).
		if err := admin.QueryRow(ctx, `SELECT pg_terminate_backend($1, 60000)`, int32(c.Conn().PgConn().PID())).Scan(&ok); err != nil || !ok {
			t.Fatalf("terminate backend %d: %v %v", c.Conn().PgConn().PID(), ok, err)
		}
	}
	for _, c := range conns {
		c.Release()
	}
	if n := st.Pool().Stat().IdleConns(); n != outagePool {
		t.Fatalf("the pool holds %d idle connections, want %d (all terminated)", n, outagePool)
	}
	if err := st.Ping(ctx); err != nil {
		t.Fatalf("first ping after the backends were terminated: %v", err)
	}
	var one int
	if err := st.Pool().QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil || one != 1 {
		t.Fatalf("query after the backends were terminated: %d %v", one, err)
	}
}

// TestHealthyHotPathOneRoundTrip: the dead-connection check sends
// nothing. On a healthy pool ResolveRuntime is exactly one round trip
// (after the statement is prepared on the connection), a batch is one,
// and Ping is one. Round trips are counted at the proxy (Sync and simple
// Query messages, each of which the client waits on).
func TestHealthyHotPathOneRoundTrip(t *testing.T) {
	e := newOutageEnv(t, postgres.WithMaxConns(1))
	ctx := context.Background()
	if err := e.resolve(ctx); err != nil { // prepares the statement
		t.Fatal(err)
	}
	rt := func(name string, want int64, fn func() error) {
		t.Helper()
		before := e.proxy.RoundTrips()
		if err := fn(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := e.proxy.RoundTrips() - before; got != want {
			t.Errorf("%s: %d round trips, want %d", name, got, want)
		}
	}
	const calls = 20
	rt("ResolveRuntime ×20", calls, func() error {
		for range calls {
			if err := e.resolve(ctx); err != nil {
				return err
			}
		}
		return nil
	})
	rt("ResolveRuntimeBatch of 5", 1, func() error {
		_, errs := e.st.ResolveRuntimeBatch(ctx, []store.RuntimeQuery{e.q, e.q, e.q, e.q, e.q})
		return errors.Join(errs...)
	})
	rt("Ping", 1, func() error { return e.st.Ping(ctx) })
}
