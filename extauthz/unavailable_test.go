package extauthz

import (
	"context"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"mcpgw/store"
	"mcpgw/store/postgres"
	"mcpgw/store/postgres/pgtest"
)

// cutProxy is a loopback TCP proxy in front of Postgres that the test can
// cut (every connection closed, new ones refused) and restore: a network
// partition without touching the server.
type cutProxy struct {
	lis    net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]bool
}

func newCutProxy(t *testing.T, target string) *cutProxy {
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
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.mu.Unlock()
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
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
	p.conns = map[net.Conn]bool{}
}

func (p *cutProxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// TestDatabaseDownThenBack: with Postgres unreachable Check answers gRPC
// Unavailable (so Envoy fails closed with 503); once it is reachable again
// Checks succeed without restarting anything.
func TestDatabaseDownThenBack(t *testing.T) {
	for _, batch := range []int{0, 2} {
		t.Run(map[int]string{0: "direct", 2: "batched"}[batch], func(t *testing.T) { testDatabaseDownThenBack(t, batch) })
	}
}

func testDatabaseDownThenBack(t *testing.T, batch int) {
	dsn := pgtest.DSN(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newCutProxy(t, u.Host)
	u.Host = proxy.lis.Addr().String()
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

	proxy.cut()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = e.client.Check(cctx, fixture(t, "envoy_post_initialize.json", w.r, "", tok))
	cancel()
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("database down: err = %v, want code Unavailable", err)
	}

	proxy.restore()
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
