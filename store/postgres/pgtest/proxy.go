package pgtest

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Proxy is a loopback TCP proxy in front of the test Postgres server that a
// test can cut (every open connection closed, new ones refused) and
// restore: a database outage without stopping the server other tests
// share. It also counts the round trips its clients start (see RoundTrips).
// NewProxy stops it when the test ends.
type Proxy struct {
	lis    net.Listener
	target string // host:port of the real server

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]bool

	roundTrips atomic.Int64
}

// NewProxy starts a proxy in front of the server dsn names and returns it
// with dsn rewritten to go through it (same database, user and options).
// The server must be reached over TCP (MCPGW_TEST_PG is a TCP DSN by
// default). The rewritten DSN sets sslmode=disable: the proxy reads the
// protocol stream to count round trips.
func NewProxy(t testing.TB, dsn string) (*Proxy, string) {
	t.Helper()
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("pgtest: proxy: parse DSN: %v", err)
	}
	if len(cfg.Host) == 0 || cfg.Host[0] == '/' {
		t.Fatalf("pgtest: proxy: the test server must be reached over TCP, not %q", cfg.Host)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pgtest: proxy: %v", err)
	}
	p := &Proxy{lis: lis, target: net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))), conns: map[net.Conn]bool{}}
	t.Cleanup(func() { lis.Close(); p.Cut() })
	go p.serve()

	host, port, _ := net.SplitHostPort(lis.Addr().String())
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
		u.Host = net.JoinHostPort(host, port)
		q := u.Query()
		q.Del("host") // a host parameter would override the URL's
		q.Del("port")
		q.Set("sslmode", "disable")
		u.RawQuery = q.Encode()
		return p, u.String()
	}
	// keyword/value form: later keywords win.
	return p, dsn + " host=" + host + " port=" + port + " sslmode=disable"
}

// Cut closes every connection through the proxy and refuses new ones until
// Restore. When it returns, every client connection has been closed on
// the proxy's side; a client sees end of stream once its kernel has taken
// the close in (AwaitCut waits for that).
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// Restore accepts connections again. Connections cut earlier stay dead.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// RoundTrips is the number of Sync and simple Query messages clients have
// sent through the proxy: each one ends a request the client then waits
// for (ReadyForQuery), so it counts client round trips. A pipelined batch
// (many Bind/Execute, one Sync) is one.
func (p *Proxy) RoundTrips() int64 { return p.roundTrips.Load() }

// AwaitCut blocks until c, a connection made through the proxy before Cut,
// has seen the cut: end of stream (or a reset) on its socket. That is the
// state an outage leaves a pooled connection in; waiting for it makes a
// test independent of how fast the kernel delivers the close. It reads
// from c's socket, so call it only on a connection that was cut.
func (p *Proxy) AwaitCut(t testing.TB, c *pgx.Conn) {
	t.Helper()
	nc := c.PgConn().Conn()
	if err := nc.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
		t.Fatalf("pgtest: await cut: %v", err)
	}
	var b [1]byte
	n, err := nc.Read(b[:])
	_ = nc.SetReadDeadline(time.Time{})
	if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("pgtest: await cut: the connection was not cut (read %d bytes, %v)", n, err)
	}
}

func (p *Proxy) serve() {
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		go p.pipe(c)
	}
}

func (p *Proxy) pipe(c net.Conn) {
	p.mu.Lock()
	down := p.down
	p.mu.Unlock()
	if down {
		c.Close()
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = true, true
	p.mu.Unlock()
	go func() { p.forward(up, c); up.Close(); c.Close() }()
	_, _ = io.Copy(c, up)
	c.Close()
	up.Close()
}

// forward copies the client's messages to the server, counting round trips.
// The first messages have no type byte (SSLRequest, GSSENCRequest, then
// the StartupMessage); every later one is a type byte and a length.
func (p *Proxy) forward(dst io.Writer, src io.Reader) {
	r := bufio.NewReader(src)
	var hdr [5]byte
	startup := true
	for {
		var body []byte
		if startup {
			if _, err := io.ReadFull(r, hdr[:4]); err != nil {
				return
			}
			n := int(binary.BigEndian.Uint32(hdr[:4]))
			if n < 8 {
				return
			}
			body = make([]byte, n)
			copy(body, hdr[:4])
			if _, err := io.ReadFull(r, body[4:]); err != nil {
				return
			}
			switch binary.BigEndian.Uint32(body[4:8]) {
			case 80877103, 80877104: // SSLRequest, GSSENCRequest: another untyped message follows
			default:
				startup = false
			}
		} else {
			if _, err := io.ReadFull(r, hdr[:]); err != nil {
				return
			}
			n := int(binary.BigEndian.Uint32(hdr[1:]))
			if n < 4 {
				return
			}
			body = make([]byte, 1+n)
			copy(body, hdr[:])
			if _, err := io.ReadFull(r, body[5:]); err != nil {
				return
			}
			if hdr[0] == 'S' || hdr[0] == 'Q' {
				p.roundTrips.Add(1)
			}
		}
		if _, err := dst.Write(body); err != nil {
			return
		}
	}
}
