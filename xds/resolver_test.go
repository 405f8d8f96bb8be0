package xds

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"mcpgw/domain"
	"mcpgw/domain/addrpolicy"
	"mcpgw/store"
)

// endpointsOf returns the endpoint addresses per cluster in an EDS
// response.
func endpointsOf(t *testing.T, r *discoveryv3.DiscoveryResponse) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, a := range r.GetResources() {
		cla := &endpointv3.ClusterLoadAssignment{}
		if err := a.UnmarshalTo(cla); err != nil {
			t.Fatal(err)
		}
		addrs := []string{}
		for _, l := range cla.GetEndpoints() {
			for _, e := range l.GetLbEndpoints() {
				addrs = append(addrs, e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
			}
		}
		out[cla.GetClusterName()] = addrs
	}
	return out
}

// snapshotEndpoints returns the addresses of one config in the current
// snapshot.
func snapshotEndpoints(t *testing.T, s *Server, configID string) []string {
	t.Helper()
	r, ok := s.Current().GetResources(resourcev3.EndpointType)[clusterName(configID)]
	if !ok {
		t.Fatalf("no endpoints resource for %s", configID)
	}
	var out []string
	for _, l := range r.(*endpointv3.ClusterLoadAssignment).GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			out = append(out, e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
		}
	}
	return out
}

// TestResolutionPolicy: what a config's endpoints are for each kind of DNS
// answer at the first build (DESIGN §6 "Upstream destinations").
func TestResolutionPolicy(t *testing.T) {
	loop := addrpolicy.Allowlist{Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	tests := []struct {
		name      string
		url       string
		answers   []string
		fail      bool
		allow     addrpolicy.Allowlist
		want      []string
		wantAudit string // reason of the audit event, "" for none
	}{
		{name: "public v4+v6", url: "https://h.example/mcp", answers: []string{"1.1.1.1", "2606:4700:4700::1111"},
			want: []string{"1.1.1.1", "2606:4700:4700::1111"}},
		{name: "AAAA only", url: "https://h.example/mcp", answers: []string{"2606:4700:4700::1001"},
			want: []string{"2606:4700:4700::1001"}},
		{name: "mixed public and private", url: "https://h.example/mcp", answers: []string{"1.1.1.1", "10.1.2.3"},
			wantAudit: problemNonPublic},
		{name: "loopback", url: "https://h.example/mcp", answers: []string{"127.0.0.1"}, wantAudit: problemNonPublic},
		{name: "v4-mapped private", url: "https://h.example/mcp", answers: []string{"::ffff:192.168.1.1"}, wantAudit: problemNonPublic},
		{name: "NAT64 of private", url: "https://h.example/mcp", answers: []string{"64:ff9b::a00:1"}, wantAudit: problemNonPublic},
		{name: "public plus link-local v6", url: "https://h.example/mcp", answers: []string{"2606:4700:4700::1111", "fe80::1"}, wantAudit: problemNonPublic},
		{name: "IP literal private", url: "https://10.0.0.1/mcp", wantAudit: problemNonPublic},
		{name: "resolution failure", url: "https://h.example/mcp", fail: true, wantAudit: problemResolve},
		{name: "plain http to public host", url: "http://h.example/mcp", answers: []string{"1.1.1.1"}, wantAudit: problemPlainHTTP},
		{name: "plain http allowlisted loopback", url: "http://h.example:8080/mcp", answers: []string{"127.0.0.1"}, allow: loop,
			want: []string{"127.0.0.1"}},
		{name: "allowlisted loopback over https", url: "https://h.example/mcp", answers: []string{"127.0.0.2"}, allow: loop,
			want: []string{"127.0.0.2"}},
		{name: "allowlist does not cover all answers", url: "http://h.example/mcp", answers: []string{"127.0.0.1", "10.0.0.1"}, allow: loop,
			wantAudit: problemNonPublic},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc := routable(cfgExact, store.ScopeUser, userA, tc.url, keyA, false)
			env := startEnv(t, func(e *testEnv, o *Options) {
				o.Allowlist = tc.allow
				if tc.fail {
					e.res.fail("h.example")
				} else {
					e.res.set("h.example", time.Minute, tc.answers...)
				}
			}, rc)
			env.waitReady(t)
			got := snapshotEndpoints(t, env.srv, cfgExact)
			if !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
				t.Errorf("endpoints = %v, want %v", got, tc.want)
			}
			if tc.wantAudit == "" {
				if ev := env.store.auditEvents(); len(ev) != 0 {
					t.Errorf("unexpected audit events %+v", ev)
				}
				return
			}
			waitFor(t, "audit event", func() bool { return len(env.store.auditEvents()) == 1 })
			ev := env.store.auditEvents()[0]
			if ev.Type != "xds.upstream_rejected" || ev.Reason != tc.wantAudit || ev.ConfigID != cfgExact || ev.OwnerID != userA {
				t.Errorf("audit event = %+v, want reason %s", ev, tc.wantAudit)
			}
			if n := testutil.ToFloat64(env.srv.metrics.rejections.WithLabelValues(tc.wantAudit)); n != 1 {
				t.Errorf("rejections{%s} = %v, want 1", tc.wantAudit, n)
			}
		})
	}
}

// TestReresolutionFlipsToPrivate: a host that re-resolves to a private
// address loses its endpoints, and the change is pushed over EDS; going
// public again restores them.
func TestReresolutionFlipsToPrivate(t *testing.T) {
	rc := routable(cfgExact, store.ScopeUser, userA, "https://h.example/mcp", keyA, false)
	env := startEnv(t, func(e *testEnv, _ *Options) { e.res.set("h.example", time.Minute, "1.1.1.1") }, rc)
	env.waitReady(t)
	c := dialADS(t, env.addr, "envoy-1", "edge")
	_, _, last := c.subscribe(DefaultRouteConfigName)
	if got := endpointsOf(t, last[resourcev3.EndpointType])[clusterName(cfgExact)]; !slices.Equal(got, []string{"1.1.1.1"}) {
		t.Fatalf("initial endpoints %v", got)
	}

	// DNS rebinding attempt: the name now points inside.
	env.res.set("h.example", time.Minute, "1.1.1.1", "192.168.0.10")
	env.clock.Advance(59 * time.Second)
	env.srv.resolveTick(context.Background()) // not due yet (TTL 60s)
	c.expectQuiet(100 * time.Millisecond)
	env.clock.Advance(time.Second)
	env.srv.resolveTick(context.Background())
	eds := c.recv(resourcev3.EndpointType)
	if got := endpointsOf(t, eds)[clusterName(cfgExact)]; len(got) != 0 {
		t.Fatalf("endpoints after flip to private = %v, want none", got)
	}
	c.ack(eds)
	waitFor(t, "audit event", func() bool { return len(env.store.auditEvents()) == 1 })
	if ev := env.store.auditEvents()[0]; ev.Reason != problemNonPublic || ev.Metadata["address_class"] != addrpolicy.ReasonPrivate {
		t.Errorf("audit event %+v", ev)
	}

	// Public again: endpoints come back (after MinResolveInterval).
	env.res.set("h.example", time.Minute, "1.0.0.1")
	env.clock.Advance(DefaultMinResolveInterval)
	env.srv.resolveTick(context.Background())
	eds = c.recv(resourcev3.EndpointType)
	if got := endpointsOf(t, eds)[clusterName(cfgExact)]; !slices.Equal(got, []string{"1.0.0.1"}) {
		t.Fatalf("endpoints after recovery = %v", got)
	}
}

// TestResolutionFailureGrace: a failing resolver keeps the last validated
// answer only within ResolveGrace, then the endpoints are dropped (fail
// closed) and the drop is pushed.
func TestResolutionFailureGrace(t *testing.T) {
	rc := routable(cfgExact, store.ScopeUser, userA, "https://h.example/mcp", keyA, false)
	env := startEnv(t, func(e *testEnv, o *Options) {
		e.res.set("h.example", time.Minute, "1.1.1.1")
		o.ResolveGrace = 2 * time.Minute
	}, rc)
	env.waitReady(t)
	c := dialADS(t, env.addr, "envoy-1", "edge")
	c.subscribe(DefaultRouteConfigName)

	env.res.fail("h.example")
	env.clock.Advance(time.Minute) // due; fails; within grace
	env.srv.resolveTick(context.Background())
	c.expectQuiet(100 * time.Millisecond)
	if got := snapshotEndpoints(t, env.srv, cfgExact); !slices.Equal(got, []string{"1.1.1.1"}) {
		t.Fatalf("within grace endpoints = %v, want the last good answer", got)
	}
	if testutil.ToFloat64(env.srv.metrics.resolveFailures) < 1 {
		t.Error("resolution failure not counted")
	}
	// Retries happen at MinResolveInterval and the grace ends at 2m after
	// the last success: by then nothing stale may remain.
	for i := 0; i < 4 && len(snapshotEndpoints(t, env.srv, cfgExact)) > 0; i++ {
		env.clock.Advance(DefaultMinResolveInterval)
		env.srv.resolveTick(context.Background())
		if env.clock.Now().Sub(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) >= 2*time.Minute {
			eds := c.recv(resourcev3.EndpointType)
			if got := endpointsOf(t, eds)[clusterName(cfgExact)]; len(got) != 0 {
				t.Fatalf("endpoints after grace = %v, want none", got)
			}
			break
		}
	}
	if got := snapshotEndpoints(t, env.srv, cfgExact); len(got) != 0 {
		t.Fatalf("stale endpoints beyond grace: %v", got)
	}
	waitFor(t, "audit event", func() bool { return len(env.store.auditEvents()) == 1 })
	if ev := env.store.auditEvents()[0]; ev.Reason != problemResolve {
		t.Errorf("audit reason %q, want %q", ev.Reason, problemResolve)
	}
}

// TestResolveInterval: TTLs are honoured within [min, max]; without TTLs the
// default interval applies.
func TestResolveInterval(t *testing.T) {
	o, err := Options{Store: newFakeStore(), OAuthServerAddr: "127.0.0.1:1"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	r := newResolver(o, newMetrics(nil))
	for _, tc := range []struct{ ttl, want time.Duration }{
		{0, DefaultResolveInterval},
		{time.Second, DefaultMinResolveInterval},
		{90 * time.Second, 90 * time.Second},
		{24 * time.Hour, DefaultMaxResolveInterval},
	} {
		if got := r.interval(tc.ttl); got != tc.want {
			t.Errorf("interval(%v) = %v, want %v", tc.ttl, got, tc.want)
		}
	}
	// TTL from the resolver sets the next resolution time.
	fr := newFakeResolver()
	fr.set("h.example", 90*time.Second, "1.1.1.1")
	o.Resolver = fr
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	o.Now = func() time.Time { return now }
	r = newResolver(o, newMetrics(nil))
	r.ensure(context.Background(), []string{"h.example"})
	st, _ := r.state("h.example")
	if want := now.Add(90 * time.Second); !st.nextAt.Equal(want) {
		t.Errorf("nextAt = %v, want %v", st.nextAt, want)
	}
}

// blockingResolver blocks lookups of one host until released.
type blockingResolver struct {
	*fakeResolver
	slow    string
	release chan struct{}
}

func (b *blockingResolver) LookupNetIPTTL(ctx context.Context, host string) ([]netip.Addr, time.Duration, error) {
	if host == b.slow {
		select {
		case <-b.release:
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
	return b.fakeResolver.LookupNetIPTTL(ctx, host)
}

// TestSlowDNSDoesNotDelayRotations: a new config whose host resolves
// slowly is published at once without endpoints (fail closed, no audit
// event for the pending state), a rotation of another config is pushed
// meanwhile, and the endpoints follow when the lookup completes.
func TestSlowDNSDoesNotDelayRotations(t *testing.T) {
	a := routable(cfgExact, store.ScopeUser, userA, "https://a.example/mcp", keyA, false)
	br := &blockingResolver{fakeResolver: newFakeResolver(), slow: "slow.example", release: make(chan struct{})}
	br.set("a.example", time.Minute, "1.1.1.1")
	br.set("slow.example", time.Minute, "1.0.0.1")
	env := startEnv(t, func(e *testEnv, o *Options) {
		o.Resolver = br
		o.ResolveTimeout = time.Minute
	}, a)
	env.waitReady(t)

	n := routable(cfgPass, store.ScopeUser, userA, "https://slow.example/mcp", keyB, false)
	env.store.put(n)
	waitFor(t, "new config published", func() bool { return hasPath(currentRoutes(t, env.srv), routePath(n)) })
	if got := snapshotEndpoints(t, env.srv, n.Config.ID); len(got) != 0 {
		t.Fatalf("endpoints before resolution: %v", got)
	}
	newKey := domain.NewRouteKey()
	env.store.rotate(a.Config.ID, newKey)
	a.Route.Key = newKey
	waitFor(t, "rotation while DNS is slow", func() bool { return hasPath(currentRoutes(t, env.srv), routePath(a)) })

	close(br.release)
	waitFor(t, "endpoints after resolution", func() bool {
		got := snapshotEndpoints(t, env.srv, n.Config.ID)
		return len(got) == 1 && got[0] == "1.0.0.1"
	})
	if ev := env.store.auditEvents(); len(ev) != 0 {
		t.Errorf("pending resolution was audited: %+v", ev)
	}
}
