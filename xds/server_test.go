package xds

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"mcpgw/store"
)

// currentRoutes decodes the served route configuration.
func currentRoutes(t *testing.T, s *Server) *routev3.RouteConfiguration {
	t.Helper()
	r, ok := s.Current().GetResources(resourcev3.RouteType)[DefaultRouteConfigName]
	if !ok {
		t.Fatal("no route configuration")
	}
	rc, err := decodeRouteConfig(r.(*routev3.RouteConfiguration))
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// TestEncodedRouteConfigMatchesTyped: the pre-encoded route configuration
// decodes to exactly the typed build.
func TestEncodedRouteConfigMatchesTyped(t *testing.T) {
	rcs, _, opts := goldenFixture()
	o, _ := opts.withDefaults()
	b := &builder{opts: o}
	var typed []*routev3.Route
	var enc [][]byte
	for _, rc := range rcs {
		up, err := parseUpstream(rc.Config.RemoteURL)
		if err != nil {
			continue
		}
		r := b.configRoute(rc, up)
		typed = append(typed, r)
		enc = append(enc, mustMarshal(r))
	}
	served, wire := b.newRouteEncoder().encode(enc)
	if m := mustMarshal(served); !bytes.Equal(m, wire) {
		t.Fatal("marshal of the served route configuration differs from its pre-encoded wire bytes")
	}
	got, err := decodeRouteConfig(served)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(b.buildRouteConfig(typed), got, protocmp.Transform()); d != "" {
		t.Fatalf("encoded route config differs (-typed +encoded):\n%s", d)
	}
	if err := got.ValidateAll(); err != nil {
		t.Fatal(err)
	}
}

// TestChangeFeed: disable → route and cluster gone; a resync picks up
// changes that were never notified; assignments do not rebuild.
func TestChangeFeed(t *testing.T) {
	a := routable(cfgExact, store.ScopeUser, userA, "https://a.example/mcp", keyA, false)
	b := routable(cfgPass, store.ScopeOrg, orgB, "https://b.example/mcp", keyB, true)
	env := startEnv(t, func(e *testEnv, _ *Options) {
		e.res.set("a.example", time.Minute, "1.1.1.1")
		e.res.set("b.example", time.Minute, "1.0.0.1")
	}, a, b)
	env.waitReady(t)

	// Disable b: GetRoutable says not found.
	env.store.mu.Lock()
	delete(env.store.configs, b.Config.ID)
	env.store.mu.Unlock()
	env.store.feed <- store.Change{Kind: store.ChangeConfig, ConfigID: b.Config.ID}
	waitFor(t, "config b removed", func() bool {
		_, ok := env.srv.Current().GetResources(resourcev3.ClusterType)[clusterName(b.Config.ID)]
		return !ok && !hasPath(currentRoutes(t, env.srv), routePath(b))
	})

	// A change nobody announced, then a resync.
	v := env.srv.Current().GetVersion(resourcev3.RouteType)
	env.store.mu.Lock()
	env.store.configs[b.Config.ID] = b
	env.store.mu.Unlock()
	env.store.feed <- store.Change{Kind: store.ChangeAssignment, ConfigID: a.Config.ID}
	env.store.feed <- store.Change{Kind: store.ChangeResync}
	waitFor(t, "resync restores b", func() bool { return hasPath(currentRoutes(t, env.srv), routePath(b)) })
	if env.srv.Current().GetVersion(resourcev3.RouteType) == v {
		t.Error("route version unchanged after the resync added a route")
	}
}

// TestBuildFailureKeepsSnapshot: when the database fails, the previous
// snapshot stays in force and a later build succeeds.
func TestBuildFailureKeepsSnapshot(t *testing.T) {
	a := routable(cfgExact, store.ScopeUser, userA, "https://a.example/mcp", keyA, false)
	env := startEnv(t, func(e *testEnv, _ *Options) { e.res.set("a.example", time.Minute, "1.1.1.1") }, a)
	env.waitReady(t)
	before := env.srv.Current()
	env.store.mu.Lock()
	env.store.listErr = fmt.Errorf("list: %w", store.ErrUnavailable)
	env.store.mu.Unlock()
	env.store.feed <- store.Change{Kind: store.ChangeResync}
	waitFor(t, "failed build counted", func() bool {
		return metricValue(t, env, "mcpgw_xds_snapshot_builds_total", "result", "error") >= 1
	})
	if env.srv.Current() != before {
		t.Fatal("snapshot replaced although the build failed")
	}
	env.store.mu.Lock()
	env.store.listErr = nil
	env.store.mu.Unlock()
	env.store.feed <- store.Change{Kind: store.ChangeResync}
	waitFor(t, "successful rebuild", func() bool {
		return metricValue(t, env, "mcpgw_xds_snapshot_builds_total", "result", "ok") >= 2
	})
}

// metricValue sums a metric's samples with label name=value.
func metricValue(t *testing.T, env *testEnv, metric, name, value string) float64 {
	t.Helper()
	mfs, err := env.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != metric {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == name && l.GetValue() == value {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

// TestWatchReconnect: when the change feed closes (listen connection lost),
// Run subscribes again and rebuilds.
func TestWatchReconnect(t *testing.T) {
	a := routable(cfgExact, store.ScopeUser, userA, "https://a.example/mcp", keyA, false)
	fs := &closingStore{fakeStore: newFakeStore(a), closeNow: make(chan struct{})}
	res := newFakeResolver()
	res.set("a.example", time.Minute, "1.1.1.1")
	s, err := New(Options{Store: fs, Resolver: res, OAuthServerAddr: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-s.Ready()
	close(fs.closeNow) // drop the first subscription
	waitFor(t, "second subscription", func() bool { return fs.watches() >= 2 })
}

// closingStore's first Watch channel closes on demand.
type closingStore struct {
	*fakeStore
	closeNow chan struct{}
	n        int
}

func (c *closingStore) watches() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func (c *closingStore) Watch(ctx context.Context) (<-chan store.Change, error) {
	c.mu.Lock()
	c.n++
	first := c.n == 1
	c.mu.Unlock()
	if !first {
		return c.fakeStore.Watch(ctx)
	}
	out := make(chan store.Change)
	go func() {
		defer close(out)
		select {
		case <-c.closeNow:
		case <-ctx.Done():
		}
	}()
	return out, nil
}

// TestPlantedSecretNeverLogged: a remote URL carrying credentials is not
// routed, and the credentials appear in no log line and no audit event.
func TestPlantedSecretNeverLogged(t *testing.T) {
	const secret = "PLANTED-s3cr3t-9f8e7d"
	rc := routable(cfgExact, store.ScopeUser, userA, "https://admin:"+secret+"@h.example/mcp?token="+secret, keyA, false)
	env := startEnv(t, nil, rc)
	env.waitReady(t)
	waitFor(t, "audit event", func() bool { return len(env.store.auditEvents()) == 1 })
	if hasPath(currentRoutes(t, env.srv), routePath(rc)) {
		t.Error("config with credentials in its URL was routed")
	}
	if ev := env.store.auditEvents()[0]; ev.Reason != problemBadURL || strings.Contains(fmt.Sprintf("%+v", ev), secret) {
		t.Errorf("audit event %+v", ev)
	}
	if strings.Contains(env.logs.String(), secret) {
		t.Error("secret in logs")
	}
	for _, r := range env.srv.Current().GetResources(resourcev3.ClusterType) {
		if strings.Contains(fmt.Sprint(r), secret) {
			t.Error("secret in a cluster")
		}
	}
}

// TestSnapshotsAlwaysConsistent drives the state through adds, removals,
// rotations, URL changes and unroutable URLs and checks every snapshot it
// produces with go-control-plane's Consistent() directly — including the
// ones for which state reused the previous check (content-only changes) —
// and every resource in it with Envoy's generated ValidateAll, and its
// delta version map against go-control-plane's.
func TestSnapshotsAlwaysConsistent(t *testing.T) {
	_, res, opts := goldenFixture()
	res.set("x.example", time.Minute, "1.1.1.1")
	res.set("y.example", time.Minute, "1.0.0.1")
	o, _ := opts.withDefaults()
	st := newState(&builder{opts: o})
	r := newResolver(o, newMetrics(nil))
	ids := []string{cfgExact, cfgRootPass, cfgPass, cfgPrivate}
	urls := []string{"https://x.example/a", "https://y.example/", "ftp://bad/", "https://x.example/b"}
	keys := []string{keyA, keyB, "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC"}
	reused := 0
	var lastProblems map[string]int
	var prevOurs, prevTheirs map[string]map[string]string
	for step := 0; step < 200; step++ {
		id := ids[step%len(ids)]
		switch (step * 7) % 5 {
		case 0, 1:
			st.upsert(routable(id, store.ScopeUser, userA, urls[(step/3)%len(urls)], keys[step%len(keys)], step%2 == 0))
		case 2:
			st.remove(id)
		default: // rotation only
			if e, ok := st.entries[id]; ok {
				rc := e.rc
				rc.Route.Key = keys[(step/2)%len(keys)]
				st.upsert(rc)
			}
		}
		var hosts []string
		for h := range st.hosts() {
			hosts = append(hosts, h)
		}
		r.ensure(context.Background(), hosts)
		st.refreshEndpoints(r, nil, nil)
		wasDirty := st.namesDirty
		snap, err := st.snapshot()
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if err := snap.Consistent(); err != nil {
			t.Fatalf("step %d: snapshot not consistent: %v", step, err)
		}
		// The incremental bookkeeping matches a recount from the map.
		if len(st.order) != len(st.ids) || len(st.ids) != len(st.entries) {
			t.Fatalf("step %d: %d ordered entries, %d ids, %d entries", step, len(st.order), len(st.ids), len(st.entries))
		}
		for i, id := range st.ids {
			if st.order[i] != st.entries[id] {
				t.Fatalf("step %d: order[%d] is not the entry of %s", step, i, id)
			}
		}
		// A step that left problemsDirty unset changed no entry's
		// problem: the recount equals the previous one.
		now := map[string]int{}
		for _, e := range st.entries {
			if e.problem != "" {
				now[e.problem]++
			}
		}
		if lastProblems != nil && !st.problemsDirty && !maps.Equal(now, lastProblems) {
			t.Fatalf("step %d: problems changed to %v from %v without problemsDirty", step, now, lastProblems)
		}
		if got, changed := st.problemCounts(); changed {
			for k, v := range now {
				if got[k] != v {
					t.Fatalf("step %d: problem %s counted %d, want %d", step, k, got[k], v)
				}
			}
		}
		lastProblems = now
		for typeURL := range kindDirs {
			for name, r := range snap.GetResources(typeURL) {
				if err := roundTrip(t, r).(validator).ValidateAll(); err != nil {
					t.Fatalf("step %d: %s %q fails Envoy validation: %v", step, typeURL, name, err)
				}
			}
		}
		if !wasDirty {
			reused++
		}
		// The per-resource versions state hands to delta xDS name exactly
		// the served resources and change exactly when go-control-plane's
		// own hashes (which state's map spares it) change.
		ref := &cache.Snapshot{Resources: snap.Resources}
		if err := ref.ConstructVersionMap(); err != nil {
			t.Fatal(err)
		}
		for typeURL := range kindDirs {
			ours, theirs := snap.GetVersionMap(typeURL), ref.GetVersionMap(typeURL)
			if len(ours) != len(theirs) {
				t.Fatalf("step %d: %s version map has %d names, want %d", step, typeURL, len(ours), len(theirs))
			}
			for name, v := range theirs {
				if ours[name] == "" {
					t.Fatalf("step %d: %s %q has no version", step, typeURL, name)
				}
				pv, known := prevTheirs[typeURL][name]
				if known && (pv != v) != (prevOurs[typeURL][name] != ours[name]) {
					t.Fatalf("step %d: %s %q: content changed %v, version changed %v", step, typeURL, name, pv != v, prevOurs[typeURL][name] != ours[name])
				}
			}
		}
		prevOurs, prevTheirs = snap.VersionMap, ref.VersionMap
	}
	if reused == 0 {
		t.Error("the consistency memo was never exercised")
	}
}
