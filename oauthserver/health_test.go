package oauthserver

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"mcpgw/domain/signing"
	"mcpgw/store/postgres"
	"mcpgw/store/postgres/pgtest"
)

// TestHealthDatabaseOutage: /health follows Postgres reachability with no
// lag. The path to the database goes through a proxy the test cuts
// (every connection closed, new ones refused: a network partition without
// touching the shared server) and restores. On the first call after a
// restore it answers 200 although the pool still holds poolSize
// connections that died in the cut; with the path cut it answers 503 (fail
// closed) on every call.
//
// "unchecked" hands pooled connections out without pgxpool's liveness
// ping; "default" is pgxpool's own configuration, which skips that ping
// for connections used less than a second earlier, as these were. Before
// the store skipped dead connections (store/postgres/conncheck.go), each
// dead connection failed one ping and both answered 503 on the first call
// after the restore.
func TestHealthDatabaseOutage(t *testing.T) {
	for _, tc := range []struct {
		name      string
		unchecked bool
	}{{"unchecked", true}, {"default", false}} {
		t.Run(tc.name, func(t *testing.T) {
			const poolSize = 4
			proxy, dsn := pgtest.NewProxy(t, pgtest.DSN(t))
			ctx := context.Background()
			st, err := postgres.Open(ctx, dsn, postgres.WithMaxConns(poolSize), postgres.WithPoolConfig(func(c *pgxpool.Config) {
				if tc.unchecked {
					c.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
				}
			}))
			if err != nil {
				t.Fatalf("open through proxy: %v", err)
			}
			t.Cleanup(st.Close)
			srv, err := New(Options{Store: st, Issuer: "http://127.0.0.1", Keys: signing.Set{Current: testSigningKeys(t)[0]}, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			hs := httptest.NewServer(srv)
			t.Cleanup(hs.Close)
			health := func() (int, string) {
				t.Helper()
				resp, err := http.Get(hs.URL + "/health")
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			// cut fills the pool, cuts the path, waits until every pooled
			// connection has seen the cut and returns them to the pool,
			// which then holds poolSize dead connections.
			cut := func() {
				t.Helper()
				var conns []*pgxpool.Conn
				for range poolSize {
					c, err := st.Pool().Acquire(ctx)
					if err != nil {
						t.Fatal(err)
					}
					conns = append(conns, c)
				}
				proxy.Cut()
				for _, c := range conns {
					proxy.AwaitCut(t, c.Conn())
					c.Release()
				}
				if n := st.Pool().Stat().IdleConns(); n != poolSize {
					t.Fatalf("pool holds %d idle connections, want %d", n, poolSize)
				}
			}

			if code, body := health(); code != http.StatusOK || body != `{"status":"ok","service":"mcpgw"}`+"\n" {
				t.Fatalf("healthy: %d %q", code, body)
			}

			cut()
			proxy.Restore()
			for i := range 3 {
				if code, _ := health(); code != http.StatusOK {
					t.Fatalf("database back, call %d: %d, want 200 from the first call on", i, code)
				}
			}

			cut()
			for i := range 2 {
				if code, body := health(); code != http.StatusServiceUnavailable || body != "unavailable\n" {
					t.Fatalf("database down, call %d: %d %q, want 503 unavailable", i, code, body)
				}
			}
			proxy.Restore()
			if code, _ := health(); code != http.StatusOK {
				t.Fatalf("database back again: %d, want 200", code)
			}
		})
	}
}
