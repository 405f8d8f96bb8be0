package extauthz

import (
	"context"
	"net/url"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"mcpgw/store"
	"mcpgw/store/postgres"
	"mcpgw/store/postgres/pgtest"
)

// TestDatabaseDownThenBack: with Postgres unreachable Check answers gRPC
// Unavailable (so Envoy fails closed with 503); once it is reachable again
// Checks succeed without restarting anything.
func TestDatabaseDownThenBack(t *testing.T) {
	for _, batch := range []int{0, 2} {
		t.Run(map[int]string{0: "direct", 2: "batched"}[batch], func(t *testing.T) { testDatabaseDownThenBack(t, batch) })
	}
}

func testDatabaseDownThenBack(t *testing.T, batch int) {
	// The store reaches Postgres only through proxy: cutting it is a
	// network partition without touching the server.
	proxy, dsn := pgtest.NewProxy(t, pgtest.DSN(t))
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("connect_timeout", "2")
	u.RawQuery = q.Encode()

	ctx := context.Background()
	st, err := postgres.Open(ctx, u.String())
	if err != nil {
		t.Fatalf("open through proxy: %v", err)
	}
	t.Cleanup(st.Close)
	_, _, kr := fixtureKeys(t)
	w := seedWorld(t, st, kr, store.ScopeOrg, store.AuthStaticHeaders)
	e := newEnv(t, st, func(o *Options) { o.BatchRecheck = batch; o.RecheckTimeout = 3 * time.Second })
	tok := mint(t, e.key, w.r.claims(e.clock.Now()))
	if got := checkStatus(t, e, w.r, tok); got != 200 {
		t.Fatalf("healthy: status %d", got)
	}

	proxy.Cut()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = e.client.Check(cctx, fixture(t, "envoy_post_initialize.json", w.r, "", tok))
	cancel()
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("database down: err = %v, want code Unavailable", err)
	}

	proxy.Restore()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := e.client.Check(ctx, fixture(t, "envoy_post_initialize.json", w.r, "", tok))
		if err == nil && resp.GetOkResponse() != nil {
			break
		}
		if err == nil {
			t.Fatalf("database back: denied %v", resp.GetDeniedResponse())
		}
		if time.Now().After(deadline) {
			t.Fatalf("database back: still failing after 30s: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // poll interval while waiting for convergence, not a timing assertion
	}
}
