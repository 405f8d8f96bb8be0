package oauthserver

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"mcpgw/domain/signing"
	"mcpgw/store/postgres"
	"mcpgw/store/postgres/pgtest"
)

// cutProxy is a loopback TCP proxy in front of Postgres that the test can
// cut (every connection closed, new ones refused) and restore: a network
// partition without touching the shared server (as in extauthz's
// unavailable_test.go and e2e's faults test).
type cutProxy struct {
	lis    net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]bool
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{lis: lis, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { lis.Close(); p.cut() })
	go p.serve()
	return p
}

func (p *cutProxy) serve() {
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			up.Close()
			continue
		}
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); up.Close() }()
		go func() { _, _ = io.Copy(c, up); c.Close() }()
	}
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *cutProxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// TestHealthDatabaseOutage: /health follows Postgres reachability with no
// lag. With the path to the database cut it answers 503 (fail closed, on
// every call); on the first call after the path is restored it answers
// 200, although the pool still holds connections that died in the outage.
//
// "unchecked" hands pooled connections out without pgxpool's liveness
// ping, which is what pgxpool does for a connection released less than a
// second earlier (ShouldPing's default): the pool then holds four dead
// connections, each of which fails one ping. "default" is pgxpool's own
// configuration; the connections were released just before the cut, so
// it hands them out unchecked as well. With a single ping per request
// (the handler before healthPings), both answered 503 on the first call
// after the restore.
func TestHealthDatabaseOutage(t *testing.T) {
	for _, tc := range []struct {
		name      string
		unchecked bool
	}{{"unchecked", true}, {"default", false}} {
		t.Run(tc.name, func(t *testing.T) {
			const poolSize = 4 // ≤ healthPings-1 on any machine
			dsn := pgtest.DSN(t)
			u, err := url.Parse(dsn)
			if err != nil {
				t.Fatal(err)
			}
			proxy := newCutProxy(t, u.Host)
			u.Host = proxy.lis.Addr().String()
			q := u.Query()
			q.Set("connect_timeout", "5")
			u.RawQuery = q.Encode()
			ctx := context.Background()
			st, err := postgres.Open(ctx, u.String(), postgres.WithMaxConns(poolSize), postgres.WithPoolConfig(func(c *pgxpool.Config) {
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

			// Fill the pool, so the outage leaves poolSize dead connections.
			var conns []*pgxpool.Conn
			for range poolSize {
				c, err := st.Pool().Acquire(ctx)
				if err != nil {
					t.Fatal(err)
				}
				conns = append(conns, c)
			}
			for _, c := range conns {
				c.Release()
			}
			if n := st.Pool().Stat().IdleConns(); n != poolSize {
				t.Fatalf("pool holds %d idle connections, want %d", n, poolSize)
			}
			if code, body := health(); code != http.StatusOK || body != `{"status":"ok","service":"mcpgw"}`+"\n" {
				t.Fatalf("healthy: %d %q", code, body)
			}

			proxy.cut()
			for i := range 2 {
				if code, body := health(); code != http.StatusServiceUnavailable || body != "unavailable\n" {
					t.Fatalf("database down, call %d: %d %q, want 503 unavailable", i, code, body)
				}
			}

			proxy.restore()
			for i := range 3 {
				if code, _ := health(); code != http.StatusOK {
					t.Fatalf("database back, call %d: %d, want 200 from the first call on", i, code)
				}
			}
		})
	}
}
