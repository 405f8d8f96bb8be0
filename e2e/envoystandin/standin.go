package envoystandin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/proto"
)

// Options configure a stand-in. ADSAddr and NodeID are required.
type Options struct {
	// ADSAddr is the host:port of the xDS server (plaintext gRPC).
	ADSAddr string
	// NodeID and Cluster identify this data plane in every first
	// DiscoveryRequest, like Envoy's --service-node / --service-cluster.
	NodeID  string
	Cluster string
	// UseListenerAddress binds the served listener's own address (from LDS
	// or the static listener) once it is first configured, as Envoy does;
	// ListenAddr is then ignored and Addr is empty until bound. Used by the
	// envoy-standin command, which runs from an Envoy bootstrap.
	UseListenerAddress bool
	// ListenAddr is where HTTP is served; the LDS listener's own address is
	// ignored (tests need ephemeral ports). Default "127.0.0.1:0".
	ListenAddr string
	// ListenerName selects the LDS listener to serve when xDS sends more
	// than one. Empty means xDS must send exactly one.
	ListenerName string
	// Listener, when set, is a static listener as in Envoy's bootstrap
	// static_resources (mcpgw's "operator-owned listener" mode): LDS is not
	// subscribed and only RDS/CDS/EDS come over ADS.
	Listener *listenerv3.Listener
	// BootstrapClusters are static clusters as in Envoy's bootstrap
	// static_resources: name → host:port, plaintext HTTP/2 (for gRPC, e.g.
	// the ext_authz cluster). CDS may not redefine them.
	BootstrapClusters map[string]string
	// Logger receives NACKs and stream events. Default: discard.
	Logger *slog.Logger
	// RetryInterval is the first ADS reconnect backoff (doubling up to 2s).
	// Default 100ms.
	RetryInterval time.Duration
	// RequestHeadersTimeout bounds reading request headers (Envoy's
	// request_headers_timeout). Go's HTTP server fixes it at start, so it is
	// an option rather than taken from LDS. Default 10s.
	RequestHeadersTimeout time.Duration
}

// NACK records one rejected xDS response.
type NACK struct {
	TypeURL string
	Version string // the rejected version
	Nonce   string
	Error   string
}

// StandIn is a running Envoy stand-in. Close stops it.
type StandIn struct {
	opts Options
	log  *slog.Logger
	lnMu sync.Mutex
	ln   net.Listener // nil until bound (UseListenerAddress)
	srv  *http.Server
	cur  atomic.Pointer[state]

	mu        sync.Mutex
	changed   chan struct{}
	nacks     []NACK
	connected bool
	streams   int
	runtimes  map[string]*clusterRuntime

	boundTo  string // listener address bound with UseListenerAddress
	streamID atomic.Uint64
	cancel   context.CancelFunc
	done     chan struct{}
}

// state is one immutable accepted configuration; requests load it once.
type state struct {
	listeners map[string]*listenerConfig
	routes    map[string]*routeTable
	clusters  map[string]*clusterConfig
	endpoints map[string][]netip.AddrPort
	runtimes  map[string]*clusterRuntime
	versions  map[string]string
	active    *listenerConfig // the listener being served
	pending   *listenerConfig // its replacement, warming until its RDS arrives
}

// activeRoutes returns the served listener and its route table, or nils
// while the listener is absent or still warming (RDS not received).
//
// Envoy docs: Listener warming — "a listener ... is not used until all of
// its dependent resources (e.g. RDS) have been fetched".
func (s *state) activeRoutes() (*hcmConfig, *routeTable) {
	if s == nil || s.active == nil {
		return nil, nil
	}
	h := s.active.hcm
	if h.inline != nil {
		return h, h.inline
	}
	rt := s.routes[h.rdsName]
	if rt == nil {
		return nil, nil
	}
	return h, rt
}

// Start launches the stand-in: it binds ListenAddr, opens the ADS stream
// and returns at once. Requests before a listener is configured get their
// connection closed, like a port with no Envoy listener.
func Start(ctx context.Context, opts Options) (*StandIn, error) {
	if opts.ADSAddr == "" || opts.NodeID == "" {
		return nil, errors.New("envoystandin: ADSAddr and NodeID are required")
	}
	if opts.ListenAddr == "" {
		opts.ListenAddr = "127.0.0.1:0"
	}
	if opts.RequestHeadersTimeout <= 0 {
		opts.RequestHeadersTimeout = 10 * time.Second
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = 100 * time.Millisecond
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &StandIn{
		opts:     opts,
		log:      log,
		changed:  make(chan struct{}),
		runtimes: map[string]*clusterRuntime{},
		done:     make(chan struct{}),
	}
	st := &state{
		listeners: map[string]*listenerConfig{},
		routes:    map[string]*routeTable{},
		clusters:  map[string]*clusterConfig{},
		endpoints: map[string][]netip.AddrPort{},
		runtimes:  map[string]*clusterRuntime{},
		versions:  map[string]string{},
	}
	for name, addr := range opts.BootstrapClusters {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			return nil, fmt.Errorf("envoystandin: bootstrap cluster %q: %w", name, err)
		}
		c := &clusterConfig{name: name, static: []netip.AddrPort{ap}, connectTimeout: defaultConnectTimeout,
			idleTimeout: defaultConnIdleTimeout, http2: true, bootstrap: true}
		st.clusters[name] = c
	}
	if opts.Listener != nil {
		l, err := translateListener(opts.Listener)
		if err != nil {
			return nil, fmt.Errorf("envoystandin: static listener: %w", err)
		}
		st.listeners[l.name] = l
		st.active = l
	}
	s.rebuildRuntimes(st)
	s.cur.Store(st)

	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		Protocols:         &protos,
		ReadHeaderTimeout: opts.RequestHeadersTimeout,
		IdleTimeout:       defaultConnIdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
	}
	if !opts.UseListenerAddress {
		if err := s.bind(opts.ListenAddr); err != nil {
			return nil, err
		}
	} else if st.active != nil {
		if err := s.bind(st.active.address); err != nil {
			return nil, err
		}
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	go func() {
		defer close(s.done)
		s.runADS(runCtx)
	}()
	return s, nil
}

type connKey struct{}

// bind opens the HTTP socket and starts serving on it.
func (s *StandIn) bind(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("envoystandin: listen %s: %w", addr, err)
	}
	gl := &gateListener{Listener: ln, s: s}
	s.lnMu.Lock()
	s.ln = gl
	s.lnMu.Unlock()
	go func() { _ = s.srv.Serve(gl) }()
	s.log.Info("envoystandin: serving HTTP", "addr", ln.Addr().String())
	return nil
}

// gateListener closes accepted connections while no listener is configured
// or while it is warming, so clients see what they would see with a real
// Envoy that has no such listener.
type gateListener struct {
	net.Listener
	s *StandIn
}

func (g *gateListener) Accept() (net.Conn, error) {
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if h, _ := g.s.cur.Load().activeRoutes(); h == nil {
			c.Close()
			continue
		}
		return c, nil
	}
}

// Addr is the bound HTTP address (host:port).
// With UseListenerAddress it is empty until the listener is first
// configured.
func (s *StandIn) Addr() string {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// URL is "http://" + Addr().
func (s *StandIn) URL() string { return "http://" + s.Addr() }

// Close stops serving and the ADS stream.
func (s *StandIn) Close() error {
	s.cancel()
	err := s.srv.Close()
	<-s.done
	s.mu.Lock()
	for _, rt := range s.runtimes {
		rt.close()
	}
	s.mu.Unlock()
	return err
}

// Status is a snapshot of the stand-in's xDS state for tests.
type Status struct {
	// Connected reports an open ADS stream.
	Connected bool
	// Streams counts ADS streams opened so far (reconnects add one).
	Streams int
	// Versions is the last accepted version per type URL.
	Versions map[string]string
	// NACKs lists every rejected response, oldest first.
	NACKs []NACK
	st    *state
}

// Serving reports whether the listener and its routes are active.
func (st Status) Serving() bool {
	h, _ := st.st.activeRoutes()
	return h != nil
}

// Routes reports whether host+path (path without query) would be
// forwarded by a route (not a direct response) in the active config.
func (st Status) Routes(host, path string) bool {
	_, rt := st.st.activeRoutes()
	if rt == nil {
		return false
	}
	_, r := rt.match(host, path)
	return r != nil && r.action != nil
}

// Endpoints returns the current endpoints of a cluster (EDS or static).
func (st Status) Endpoints(cluster string) []netip.AddrPort {
	c := st.st.clusters[cluster]
	if c == nil {
		return nil
	}
	if !c.eds {
		return c.static
	}
	return st.st.endpoints[c.serviceName()]
}

// Status returns the current status.
func (s *StandIn) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.cur.Load()
	return Status{Connected: s.connected, Streams: s.streams, Versions: maps.Clone(st.versions),
		NACKs: append([]NACK(nil), s.nacks...), st: st}
}

// WaitFor blocks until cond holds for the current status or ctx ends. It
// wakes on every state change; it never polls on a timer.
func (s *StandIn) WaitFor(ctx context.Context, cond func(Status) bool) error {
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		st := s.Status()
		if cond(st) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("envoystandin: condition not reached (versions %v, %d NACKs): %w", st.Versions, len(st.NACKs), context.Cause(ctx))
		case <-ch:
		}
	}
}

// Ready waits until the listener and its routes are being served.
func (s *StandIn) Ready(ctx context.Context) error {
	return s.WaitFor(ctx, Status.Serving)
}

// WaitForRoutes waits until every path is forwarded by a route, using the
// stand-in's own address as :authority.
func (s *StandIn) WaitForRoutes(ctx context.Context, paths ...string) error {
	return s.WaitFor(ctx, func(st Status) bool {
		for _, p := range paths {
			if !st.Routes(s.Addr(), p) {
				return false
			}
		}
		return true
	})
}

// notifyLocked wakes WaitFor callers. s.mu must be held.
func (s *StandIn) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *StandIn) setConnected(c bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.connected = c
	if c {
		s.streams++
	}
	s.notifyLocked()
}

func (s *StandIn) recordNACK(n NACK) {
	s.log.Warn("envoystandin: NACK", "type", n.TypeURL, "version", n.Version, "error", n.Error)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nacks = append(s.nacks, n)
	s.notifyLocked()
}

// commit installs a new accepted state.
func (s *StandIn) commit(st *state) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rebuildRuntimes(st)
	s.cur.Store(st)
	if s.opts.UseListenerAddress && st.active != nil {
		if s.Addr() == "" {
			if err := s.bind(st.active.address); err != nil {
				s.log.Error("envoystandin: cannot bind the listener address", "err", err)
			}
		} else if s.boundTo != "" && s.boundTo != st.active.address {
			s.log.Warn("envoystandin: listener address changed; keeping the bound socket", "bound", s.boundTo, "new", st.active.address)
		}
		if s.Addr() != "" && s.boundTo == "" {
			s.boundTo = st.active.address
		}
	}
	s.notifyLocked()
}

// rebuildRuntimes keeps the pools of clusters whose config did not change
// and drains the others. Endpoint changes drain idle connections so no new
// request reuses a connection to a removed host. s.mu held (or not yet
// shared).
func (s *StandIn) rebuildRuntimes(st *state) {
	old := s.cur.Load()
	next := map[string]*clusterRuntime{}
	for name, c := range st.clusters {
		rt := s.runtimes[name]
		if rt != nil && (rt.cfg == c || (rt.cfg.src != nil && c.src != nil && proto.Equal(rt.cfg.src, c.src))) {
			next[name] = rt
			if old != nil && c.eds && !sameAddrs(old.endpoints[c.serviceName()], st.endpoints[c.serviceName()]) {
				rt.transport.CloseIdleConnections()
			}
			continue
		}
		if rt != nil {
			rt.close()
		}
		name := name
		next[name] = newClusterRuntime(c, func() []netip.AddrPort { return s.endpointsOf(name) })
	}
	for name, rt := range s.runtimes {
		if _, ok := next[name]; !ok {
			rt.close()
		}
	}
	s.runtimes = next
	st.runtimes = next
}

func sameAddrs(a, b []netip.AddrPort) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// endpointsOf reads the current endpoints of a cluster.
func (s *StandIn) endpointsOf(cluster string) []netip.AddrPort {
	st := s.cur.Load()
	c := st.clusters[cluster]
	if c == nil {
		return nil
	}
	if !c.eds {
		return c.static
	}
	return st.endpoints[c.serviceName()]
}
