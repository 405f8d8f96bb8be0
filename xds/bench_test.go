package xds

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/experimental"

	"mcpgw/domain"
	"mcpgw/store"
	"mcpgw/store/postgres"
	"mcpgw/store/postgres/pgtest"
)

// benchConfigs is the database size of the xds benchmarks (issue 6).
const benchConfigs = 10_000

// anyPublic answers every host with one public v4 and one public v6
// address, so 10k distinct upstream hosts resolve without a network.
type anyPublic struct{}

func (anyPublic) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return []netip.Addr{netip.MustParseAddr("1.1.1.1"), netip.MustParseAddr("2606:4700:4700::1111")}, nil
}

// seedConfigs fills a fresh, migrated database with n personal configs (one
// active route each, distinct upstream hosts, every third path_passthrough)
// owned by 100 users, in a few set-based statements with triggers off (no
// NOTIFY storm). Returns the DSN and the config ids.
func seedConfigs(b testing.TB, n int) (string, []string) {
	b.Helper()
	dsn := pgtest.DSN(b)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	stmts := []string{
		`SET session_replication_role = replica`,
		`INSERT INTO users (id, email, display_name, status, created_at, updated_at)
			SELECT md5('u' || g)::uuid, 'user' || g || '@example.test', 'User ' || g, 'active', now(), now()
			FROM generate_series(1, 100) g`,
		fmt.Sprintf(`INSERT INTO configs (id, owner_scope, owner_id, name, remote_url, auth_mode, sharing_mode, status,
				version, path_passthrough, created_at, updated_at, active_route_key)
			SELECT md5('c' || k)::uuid, 'user', md5('u' || (k %% 100 + 1))::uuid, 'config ' || k,
				'https://mcp' || k || '.example.com/v1/mcp', 'none', 'single_user', 'enabled', 1, k %% 3 = 0,
				now(), now(), md5('k' || k) || md5('k2' || k)
			FROM generate_series(1, %d) k`, n),
		`INSERT INTO routes (id, config_id, owner_scope, owner_id, key, active, created_at)
			SELECT md5('r' || id::text)::uuid, id, owner_scope, owner_id, active_route_key, true, now() FROM configs`,
	}
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			b.Fatalf("seed: %v", err)
		}
	}
	rows, err := conn.Query(ctx, `SELECT id::text FROM configs ORDER BY id`)
	if err != nil {
		b.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		b.Fatal(err)
	}
	return dsn, ids
}

func openStore(b testing.TB, dsn string) *postgres.Store {
	b.Helper()
	s, err := postgres.Open(context.Background(), dsn, postgres.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	return s
}

// cpuTime is the process's user+system CPU time: on a shared 2-core
// machine wall-clock latencies depend on the neighbours' load, CPU per
// operation much less.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkFullSnapshot10k measures a full snapshot build from Postgres
// with 10,000 configs: ListRoutable, building every listener, route,
// cluster and endpoint set from scratch (resolution answered from memory),
// hashing versions, Consistent, SetSnapshot. It reports the retained heap
// of the built state + snapshot.
//
//	go test ./xds -run '^$' -bench FullSnapshot10k -benchtime 5x
func BenchmarkFullSnapshot10k(b *testing.B) {
	dsn, _ := seedConfigs(b, benchConfigs)
	st := openStore(b, dsn)
	s, err := New(Options{Store: st, Resolver: anyPublic{}, OAuthServerAddr: "127.0.0.1:8081",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	s.addGroup("bench")
	ctx := context.Background()
	var heap uint64
	var cpu time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s.res = newResolver(s.opts, s.metrics) // cold: every host resolved again
		s.mu.Lock()
		s.current = nil
		s.mu.Unlock()
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		c0 := cpuTime()
		b.StartTimer()
		state := newState(&builder{opts: s.opts})
		if err := s.rebuild(ctx, state, nil, true); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		cpu += cpuTime() - c0
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		heap = after.HeapAlloc - min(before.HeapAlloc, after.HeapAlloc)
		if n := len(s.Current().GetResources(resourcev3.ClusterType)); n != benchConfigs+1 {
			b.Fatalf("%d clusters, want %d", n, benchConfigs+1)
		}
		runtime.KeepAlive(state)
		b.StartTimer()
	}
	b.ReportMetric(float64(heap)/(1<<20), "retained-MiB")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/build")
}

// BenchmarkResync10kNoChange measures the periodic safety-net resync when
// nothing changed (every entry reused, no version change, no push).
//
//	go test ./xds -run '^$' -bench Resync10kNoChange -benchtime 5x
func BenchmarkResync10kNoChange(b *testing.B) {
	dsn, _ := seedConfigs(b, benchConfigs)
	st := openStore(b, dsn)
	s, err := New(Options{Store: st, Resolver: anyPublic{}, OAuthServerAddr: "127.0.0.1:8081",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	state := newState(&builder{opts: s.opts})
	if err := s.rebuild(ctx, state, nil, true); err != nil {
		b.Fatal(err)
	}
	v := s.Current().GetVersion(resourcev3.RouteType)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.rebuild(ctx, state, nil, true); err != nil {
			b.Fatal(err)
		}
	}
	if s.Current().GetVersion(resourcev3.RouteType) != v {
		b.Fatal("version changed without a change")
	}
}

// BenchmarkRotationLatency10k measures, with 10,000 configs in Postgres and
// 10 ADS clients subscribed to everything, the time from a route-key
// rotation commit (RotateRoute returned) to the new RouteConfiguration
// version being handed to gRPC on each open stream (p50/p99 over all
// clients and ≥100 rotations), plus the time until each client received
// it. The change travels the real path: Postgres NOTIFY → LISTEN → Watch →
// GetRoutable → incremental rebuild → SetSnapshot → stream send.
//
//	go test ./xds -run '^$' -bench RotationLatency10k -benchtime 100x
func BenchmarkRotationLatency10k(b *testing.B) {
	clients := 10
	if v, err := strconv.Atoi(os.Getenv("XDS_BENCH_CLIENTS")); err == nil && v > 0 {
		clients = v
	}
	dsn, ids := seedConfigs(b, benchConfigs)
	st := openStore(b, dsn)
	s, err := New(Options{Store: st, Resolver: anyPublic{}, OAuthServerAddr: "127.0.0.1:8081",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	var (
		mu       sync.Mutex
		lastRDS  = map[int64]string{}
		sentAt   = map[int64]time.Time{} // stream → time the newest RDS version was sent
		recvAt   = make([]time.Time, clients)
		recvVers = make([]string, clients)
		cond     = sync.NewCond(&mu)
	)
	s.onSend = func(stream int64, typeURL, version string) {
		if typeURL != resourcev3.RouteType {
			return
		}
		now := time.Now()
		mu.Lock()
		if lastRDS[stream] != version {
			lastRDS[stream] = version
			sentAt[stream] = now
		}
		mu.Unlock()
	}
	g := grpc.NewServer(ServerOptions()...)
	s.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = g.Serve(lis) }()
	go func() { defer close(done); _ = s.Run(ctx) }()
	b.Cleanup(func() { cancel(); g.Stop(); <-done })
	select {
	case <-s.Ready():
	case <-time.After(2 * time.Minute):
		b.Fatal("no snapshot within 2 minutes")
	}

	// Subscribe 10 clients (full initial exchange), then let a goroutine
	// per client ACK every RDS push and note when it arrived.
	for i := 0; i < clients; i++ {
		codec := newLeanCodec()
		c := dialADSWith(b, lis.Addr().String(), fmt.Sprintf("envoy-%d", i), "bench",
			[]grpc.DialOption{experimental.WithBufferPool(newDirtyPool())}, grpc.ForceCodecV2(codec))
		c.subscribe(DefaultRouteConfigName)
		codec.lean.Store(true) // from now on read only the envelope (see leanCodec)
		go func(i int, c *adsClient) {
			for r := range c.resp {
				if r.GetTypeUrl() != resourcev3.RouteType {
					continue
				}
				now := time.Now()
				_ = c.stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), VersionInfo: r.GetVersionInfo(),
					ResponseNonce: r.GetNonce(), ResourceNames: []string{DefaultRouteConfigName}})
				mu.Lock()
				recvAt[i], recvVers[i] = now, r.GetVersionInfo()
				cond.Broadcast()
				mu.Unlock()
			}
		}(i, c)
	}

	var sendLat, recvLat []time.Duration
	cpu0 := cpuTime()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		id := ids[(n*7919)%len(ids)]
		key := domain.NewRouteKey()
		mu.Lock()
		before := slices.Clone(recvVers)
		mu.Unlock()
		// t0 is taken before the call: the commit happens inside it, and
		// the push can reach the clients before RotateRoute returns. The
		// reported latency therefore includes the transaction's own round
		// trip (an upper bound on commit → send).
		t0 := time.Now()
		if _, err := st.RotateRoute(ctx, id, store.NewID(), key, nil); err != nil {
			b.Fatal(err)
		}
		mu.Lock()
		deadline := time.AfterFunc(10*time.Second, func() { mu.Lock(); cond.Broadcast(); mu.Unlock() })
		for {
			all := true
			for i := range recvVers {
				if recvVers[i] == before[i] {
					all = false
				}
			}
			if all || time.Since(t0) > 10*time.Second {
				break
			}
			cond.Wait()
		}
		deadline.Stop()
		for i := range recvAt {
			if recvVers[i] == before[i] {
				mu.Unlock()
				rc, err := st.GetRoutable(ctx, id)
				cur := s.Current().GetVersion(resourcev3.RouteType)
				b.Fatalf("client %d did not get the rotation within 10s (client has %s, server serves %s, db key matches: %v %v)",
					i, before[i], cur, rc.Route.Key == key, err)
			}
			recvLat = append(recvLat, recvAt[i].Sub(t0))
		}
		for _, at := range sentAt {
			if at.After(t0) {
				sendLat = append(sendLat, at.Sub(t0))
			}
		}
		mu.Unlock()
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/rotation")
	// The last rotation is what is being served.
	last := ids[((b.N-1)*7919)%len(ids)]
	rc, err := st.GetRoutable(ctx, last)
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range s.Current().GetResources(resourcev3.RouteType) {
		dec, err := decodeRouteConfig(r.(*routev3.RouteConfiguration))
		if err != nil || !hasPath(dec, routePath(rc)) {
			b.Fatal("current snapshot lacks the last rotated route")
		}
	}
	report := func(name string, d []time.Duration) {
		slices.Sort(d)
		if len(d) == 0 {
			return
		}
		p := func(q float64) float64 { return float64(d[int(q*float64(len(d)-1))].Microseconds()) / 1000 }
		b.ReportMetric(p(0.50), name+"-p50-ms")
		b.ReportMetric(p(0.99), name+"-p99-ms")
	}
	report("sent", sendLat)
	report("recv", recvLat)
}
