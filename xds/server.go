package xds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	xdsserver "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"mcpgw/store"
)

// Server is the xds control plane: it builds snapshots from the store and
// serves them over ADS (state of the world and delta, both from
// go-control-plane's snapshot cache).
type Server struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics
	res     *resolver
	cache   cache.SnapshotCache
	shared  *sharedMarshalCache // what the gRPC server reads from
	xds     xdsserver.Server
	xdsOnce sync.Once

	// hostChanged carries hosts whose resolution changed from the resolve
	// loop to the build loop.
	hostChanged chan []string

	mu      sync.Mutex
	groups  map[string]bool
	current *cache.Snapshot

	ready     chan struct{}
	readyOnce sync.Once
	audits    sync.WaitGroup
	bg        sync.WaitGroup // first resolutions of new hosts

	// streamsCtx is the context go-control-plane's stream loops select
	// on; endStreams (called when Run returns) ends every open ADS stream.
	streamsCtx context.Context
	endStreams context.CancelFunc

	// published is signalled (non-blocking) after every SetSnapshot; tests
	// and benchmarks wait on it.
	published chan struct{}

	// sent remembers, per stream and type, the nonce and version of the
	// last response, so a NACK can be matched to the version it rejects.
	sentMu sync.Mutex
	sent   map[int64]map[string]sentResponse
	// onSend, when set (tests, benchmarks), is called just before a
	// response is sent on a stream.
	onSend func(stream int64, typeURL, version string)
}

type sentResponse struct{ nonce, version string }

// groupHash keys the snapshot cache by the Envoy node's cluster (its node
// group), so every Envoy of one deployment shares one snapshot and a
// node group gets its snapshot the first time one of its Envoys connects.
type groupHash struct{}

func (groupHash) ID(n *corev3.Node) string {
	if c := n.GetCluster(); c != "" {
		return c
	}
	return DefaultNodeGroup
}

// New validates opts and returns a Server. Call Register to attach it to a
// gRPC server and Run to start building.
func New(opts Options) (*Server, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	m := newMetrics(o.Registerer)
	s := &Server{
		opts:        o,
		log:         o.Logger.With("component", "xds"),
		metrics:     m,
		res:         newResolver(o, m),
		hostChanged: make(chan []string, 16),
		groups:      map[string]bool{},
		ready:       make(chan struct{}),
		published:   make(chan struct{}, 1),
		sent:        map[int64]map[string]sentResponse{},
	}
	s.streamsCtx, s.endStreams = context.WithCancel(context.Background())
	s.cache = cache.NewSnapshotCache(true, groupHash{}, cacheLogger{s.log})
	s.shared = newSharedMarshalCache(s.cache)
	return s, nil
}

// Register attaches the ADS service (and the per-type discovery services,
// for clients that do not aggregate) to g. Streams opened before the first
// snapshot wait for it; every stream ends with codes.Unavailable when Run
// returns (see endingServer), so grpc.Server.GracefulStop can complete.
func (s *Server) Register(g *grpc.Server) {
	s.initXDS()
	w := endingServer{Server: s.xds, ended: s.streamsCtx.Done()}
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g, w)
	listenerservice.RegisterListenerDiscoveryServiceServer(g, w)
	routeservice.RegisterRouteDiscoveryServiceServer(g, w)
	clusterservice.RegisterClusterDiscoveryServiceServer(g, w)
	endpointservice.RegisterEndpointDiscoveryServiceServer(g, w)
}

// initXDS creates the go-control-plane server once. Its context is
// streamsCtx, not Run's: the server may be registered before Run starts,
// and its stream loops return when that context ends.
func (s *Server) initXDS() {
	s.xdsOnce.Do(func() { s.xds = xdsserver.NewServer(s.streamsCtx, s.shared, s.callbacks()) })
}

// ServerOptions are the gRPC server options xds is tuned and benchmarked
// with: large transport buffers (a 10k-config route configuration is
// several MB and goes to every Envoy on every push), a keepalive policy that
// lets Envoys ping idle ADS streams, and no message size limit surprises.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(newDiscoveryCodec()),
		grpc.WriteBufferSize(1 << 20),
		grpc.ReadBufferSize(256 << 10),
		grpc.InitialWindowSize(1 << 20),
		grpc.InitialConnWindowSize(1 << 20),
		grpc.MaxRecvMsgSize(16 << 20),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
}

// Ready is closed once the first snapshot is published.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// callbacks log and count NACKs and register node groups.
func (s *Server) callbacks() xdsserver.Callbacks {
	return xdsserver.CallbackFuncs{
		StreamOpenFunc: func(context.Context, int64, string) error {
			s.metrics.streams.Inc()
			return nil
		},
		StreamClosedFunc: func(id int64, _ *corev3.Node) {
			s.metrics.streams.Dec()
			s.sentMu.Lock()
			delete(s.sent, id)
			s.sentMu.Unlock()
		},
		StreamResponseFunc: func(_ context.Context, id int64, _ *discoverygrpc.DiscoveryRequest, resp *discoverygrpc.DiscoveryResponse) {
			s.sentMu.Lock()
			m := s.sent[id]
			if m == nil {
				m = map[string]sentResponse{}
				s.sent[id] = m
			}
			m[resp.GetTypeUrl()] = sentResponse{nonce: resp.GetNonce(), version: resp.GetVersionInfo()}
			s.sentMu.Unlock()
			if s.onSend != nil {
				s.onSend(id, resp.GetTypeUrl(), resp.GetVersionInfo())
			}
		},
		DeltaStreamOpenFunc: func(context.Context, int64, string) error {
			s.metrics.streams.Inc()
			return nil
		},
		DeltaStreamClosedFunc: func(int64, *corev3.Node) { s.metrics.streams.Dec() },
		StreamRequestFunc: func(id int64, req *discoverygrpc.DiscoveryRequest) error {
			nack := req.GetErrorDetail() != nil
			rejected := req.GetVersionInfo()
			if nack {
				s.sentMu.Lock()
				if last, ok := s.sent[id][req.GetTypeUrl()]; ok && last.nonce == req.GetResponseNonce() {
					rejected = last.version
					// Treat the rejected version as the one the Envoy
					// has, so the cache waits for the next snapshot
					// instead of re-sending the same rejected config in
					// a tight NACK loop (the Envoy keeps serving its
					// last good config meanwhile).
					req.VersionInfo = last.version
				}
				s.sentMu.Unlock()
			}
			s.onRequest(id, req.GetNode(), req.GetTypeUrl(), rejected, req.GetResponseNonce(), req.GetErrorDetail().GetMessage(), nack)
			return nil
		},
		StreamDeltaRequestFunc: func(id int64, req *discoverygrpc.DeltaDiscoveryRequest) error {
			s.onRequest(id, req.GetNode(), req.GetTypeUrl(), "", req.GetResponseNonce(), req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil)
			return nil
		},
	}
}

func (s *Server) onRequest(stream int64, node *corev3.Node, typeURL, version, nonce, errMsg string, nack bool) {
	s.metrics.requests.WithLabelValues(typeURL).Inc()
	if nack {
		// The Envoy keeps its last good config for this type; we keep
		// pushing newer snapshots, and the next good one is accepted.
		s.metrics.nacks.WithLabelValues(typeURL).Inc()
		s.log.Warn("xds: envoy rejected configuration (NACK)",
			"stream", stream, "node", node.GetId(), "node_cluster", node.GetCluster(),
			"type_url", typeURL, "rejected_version", version, "nonce", nonce, "error", errMsg)
	}
	if node != nil {
		s.addGroup(groupHash{}.ID(node))
	}
}

// addGroup gives a newly seen node group the current snapshot.
func (s *Server) addGroup(g string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.groups[g] {
		return
	}
	s.groups[g] = true
	if s.current != nil {
		if err := s.cache.SetSnapshot(context.Background(), g, s.current); err != nil {
			s.log.Error("xds: set snapshot for new node group", "node_cluster", g, "error", err)
		}
	}
}

// publish makes snap current for every node group.
func (s *Server) publish(ctx context.Context, snap *cache.Snapshot) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.current = snap
	for g := range s.groups {
		if err := s.cache.SetSnapshot(ctx, g, snap); err != nil {
			return fmt.Errorf("xds: set snapshot for %q: %w", g, err)
		}
	}
	s.readyOnce.Do(func() { close(s.ready) })
	select {
	case s.published <- struct{}{}:
	default:
	}
	return nil
}

// Current returns the current snapshot (nil before the first build).
func (s *Server) Current() *cache.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current
}

// Run builds the first snapshot, then follows the change feed, resyncs
// periodically and re-resolves upstream hosts until ctx ends. Store errors
// are retried (the previous snapshot stays in force); Run returns nil on
// cancellation.
//
// When Run returns, every open xDS stream is ended with codes.Unavailable.
// ADS streams never end on their own, so without this a graceful stop of
// the gRPC server would wait for them until its shutdown timeout; a
// stopped control plane would also keep streams open that no longer get
// updates. Envoy keeps its last good configuration and reconnects (to
// another replica behind the same address, if any). A Server is run once:
// streams opened after Run returned end at once.
func (s *Server) Run(ctx context.Context) error {
	s.initXDS()
	defer s.endStreams()
	defer s.audits.Wait()
	defer s.bg.Wait()
	go s.resolveLoop(ctx)
	st := newState(&builder{opts: s.opts})
	backoff := time.Second
	for {
		changes, err := s.opts.Store.Watch(ctx)
		if err == nil {
			backoff = time.Second // subscribed: a later loss starts over
			err = s.follow(ctx, st, changes)
		}
		if ctx.Err() != nil {
			return nil
		}
		s.log.Warn("xds: change feed unavailable, retrying", "error", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// follow runs the build loop on one change feed subscription; it returns
// when the feed closes or ctx ends. The full build happens after
// subscribing so no change between the two is lost.
func (s *Server) follow(ctx context.Context, st *state, changes <-chan store.Change) error {
	needFull := true
	resync := time.NewTicker(s.opts.ResyncInterval)
	defer resync.Stop()
	var retry <-chan time.Time
	for {
		if needFull {
			if err := s.rebuild(ctx, st, nil, true); err != nil {
				s.log.Error("xds: full build failed; keeping the previous snapshot", "error", err)
				retry = time.After(defaultRetryAfterBuildFailure)
			} else {
				needFull, retry = false, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case ch, ok := <-changes:
			if !ok {
				return errors.New("change feed closed")
			}
			ids, full := coalesce(ch, changes)
			if full {
				needFull = true
				continue
			}
			if err := s.rebuild(ctx, st, ids, false); err != nil {
				s.log.Error("xds: incremental build failed; scheduling a full build", "error", err)
				needFull = true
			}
		case hosts := <-s.hostChanged:
			s.refreshHosts(ctx, st, hosts)
		case <-resync.C:
			needFull = true
		case <-retry:
			needFull = true
		}
	}
}

// coalesce drains what is already queued on the feed so a burst of
// changes costs one build. It reports full when a resync was requested.
func coalesce(first store.Change, changes <-chan store.Change) (ids []string, full bool) {
	seen := map[string]bool{}
	add := func(c store.Change) {
		switch {
		case c.Kind == store.ChangeResync || c.ConfigID == "":
			full = true
		case c.Kind == store.ChangeAssignment:
			// Assignments do not change Envoy config.
		case !seen[c.ConfigID]:
			seen[c.ConfigID] = true
			ids = append(ids, c.ConfigID)
		}
	}
	add(first)
	for range 1024 {
		select {
		case c, ok := <-changes:
			if !ok {
				return ids, full
			}
			add(c)
		default:
			return ids, full
		}
	}
	return ids, full
}

// rebuild applies a full reload (full) or the given configs, resolves new
// hosts, refreshes endpoints and publishes.
func (s *Server) rebuild(ctx context.Context, st *state, ids []string, full bool) (err error) {
	start := time.Now()
	kind := "incremental"
	if full {
		kind = "full"
	}
	defer func() {
		result := "ok"
		if err != nil {
			result = "error"
		}
		s.metrics.builds.WithLabelValues(kind, result).Inc()
		s.metrics.buildSeconds.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	}()
	if full {
		list, err := s.opts.Store.ListRoutable(ctx)
		if err != nil {
			return fmt.Errorf("list routable configs: %w", err)
		}
		keep := make(map[string]bool, len(list))
		for _, rc := range list {
			keep[rc.Config.ID] = true
			st.upsert(rc)
		}
		for _, id := range append([]string(nil), st.ids...) {
			if !keep[id] {
				st.remove(id)
			}
		}
	} else {
		for _, id := range ids {
			rc, err := s.opts.Store.GetRoutable(ctx, id)
			switch {
			case errors.Is(err, store.ErrNotFound):
				st.remove(id)
			case err != nil:
				return fmt.Errorf("get routable config: %w", err)
			default:
				st.upsert(rc)
			}
		}
	}
	if full {
		used := st.hosts()
		hosts := make([]string, 0, len(used))
		for h := range used {
			hosts = append(hosts, h)
		}
		s.res.ensure(ctx, hosts)
		s.res.retain(used)
		return s.finish(ctx, st, st.refreshEndpoints(s.res, nil, nil))
	}
	// New hosts are resolved off the build loop: the config is published
	// at once without endpoints (fail closed: 503 until resolved), and the
	// outcome arrives as an endpoint update. A slow DNS server therefore
	// never delays other changes — route rotations above all.
	var hosts []string
	for _, id := range ids {
		if e, ok := st.entries[id]; ok && !e.unroutable {
			hosts = append(hosts, e.up.Host)
		}
	}
	if pending := s.res.addPending(hosts, s.opts.Now()); len(pending) > 0 {
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			if changed := s.res.resolveAll(ctx, pending); len(changed) > 0 {
				select {
				case s.hostChanged <- changed:
				case <-ctx.Done():
				}
			}
		}()
	}
	return s.finish(ctx, st, st.refreshEndpoints(s.res, nil, ids))
}

// refreshHosts rebuilds the endpoints of configs using hosts whose
// resolution changed, and publishes.
func (s *Server) refreshHosts(ctx context.Context, st *state, hosts []string) {
	start := time.Now()
	err := s.finish(ctx, st, st.refreshEndpoints(s.res, hosts, nil))
	result := "ok"
	if err != nil {
		result = "error"
		s.log.Error("xds: endpoint refresh failed", "error", err)
	}
	s.metrics.builds.WithLabelValues("endpoints", result).Inc()
	s.metrics.buildSeconds.WithLabelValues("endpoints").Observe(time.Since(start).Seconds())
}

// finish audits problem transitions, assembles and publishes the snapshot.
func (s *Server) finish(ctx context.Context, st *state, trans []transition) error {
	s.audit(trans)
	snap, err := st.snapshot()
	if err != nil {
		return err
	}
	s.shared.preset(st.routeWire)
	s.metrics.configs.Set(float64(len(st.ids)))
	if down, changed := st.problemCounts(); changed {
		for k, v := range down {
			s.metrics.upstreamsDown.WithLabelValues(k).Set(float64(v))
		}
	}
	return s.publish(ctx, snap)
}

// audit records each transition of a config to "no endpoints" as an audit
// event and a metric, and logs recoveries. Writing is asynchronous so the
// build loop (and route rotations behind it) never waits on it.
func (s *Server) audit(trans []transition) {
	var evs []store.AuditEvent
	for _, t := range trans {
		c := t.rc.Config
		if t.to == problemPending || (t.to == "" && t.from == problemPending) {
			continue // first resolution of a new host: only its outcome counts
		}
		if t.to == "" {
			s.log.Info("xds: upstream endpoints restored", "config_id", c.ID, "host", t.host)
			continue
		}
		s.metrics.rejections.WithLabelValues(t.to).Inc()
		s.log.Warn("xds: config has no upstream endpoints", "config_id", c.ID, "host", t.host, "reason", t.to, "detail", t.detail)
		md := map[string]string{"host": t.host}
		if t.detail != "" {
			md["address_class"] = t.detail
		}
		if t.from != "" {
			md["previous"] = t.from
		}
		evs = append(evs, store.AuditEvent{
			Type: "xds.upstream_rejected", Outcome: "denied", Reason: t.to,
			OwnerScope: c.OwnerScope, OwnerID: c.OwnerID, ConfigID: c.ID, RouteID: t.rc.Route.ID,
			Metadata: md,
		})
	}
	if len(evs) == 0 {
		return
	}
	s.audits.Add(1)
	go func() {
		defer s.audits.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for i := 0; i < len(evs); i += 500 {
			if err := s.opts.Store.AppendAudit(ctx, evs[i:min(i+500, len(evs))]...); err != nil {
				s.log.Error("xds: writing audit events failed", "error", err, "events", len(evs))
				return
			}
		}
	}()
}

// resolveLoop re-resolves due hosts and hands changes to the build loop.
func (s *Server) resolveLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.resolveTick(ctx)
		}
	}
}

// resolveTick runs one re-resolution pass (tests call it after advancing
// the clock).
func (s *Server) resolveTick(ctx context.Context) {
	if changed := s.res.resolveDue(ctx); len(changed) > 0 {
		select {
		case s.hostChanged <- changed:
		case <-ctx.Done():
		}
	}
}

// cacheLogger routes go-control-plane's logs to slog (debug noise at
// debug level).
type cacheLogger struct{ l *slog.Logger }

func (c cacheLogger) Debugf(f string, a ...any) {}
func (c cacheLogger) Infof(f string, a ...any)  { c.l.Debug(fmt.Sprintf(f, a...)) }
func (c cacheLogger) Warnf(f string, a ...any)  { c.l.Warn(fmt.Sprintf(f, a...)) }
func (c cacheLogger) Errorf(f string, a ...any) { c.l.Error(fmt.Sprintf(f, a...)) }
