package xds

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"mcpgw/domain"
	"mcpgw/store"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testEnv is a running xds Server on a loopback gRPC listener.
type testEnv struct {
	srv   *Server
	store *fakeStore
	res   *fakeResolver
	clock *fakeClock
	reg   *prometheus.Registry
	logs  *syncBuffer
	addr  string
}

func startEnv(t *testing.T, setup func(*testEnv, *Options), rcs ...store.RoutableConfig) *testEnv {
	t.Helper()
	env := &testEnv{
		store: newFakeStore(rcs...),
		res:   newFakeResolver(),
		clock: &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		reg:   prometheus.NewRegistry(),
		logs:  &syncBuffer{},
	}
	opts := Options{
		Store:           env.store,
		Resolver:        env.res,
		OAuthServerAddr: "127.0.0.1:8081",
		Registerer:      env.reg,
		Logger:          slog.New(slog.NewJSONHandler(env.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:             env.clock.Now,
	}
	if setup != nil {
		setup(env, &opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	env.srv = srv
	g := grpc.NewServer(ServerOptions()...)
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	env.addr = lis.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = g.Serve(lis) }()
	go func() { defer close(done); _ = srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		g.Stop()
		<-done
	})
	return env
}

// waitReady waits (bounded) for the first snapshot.
func (e *testEnv) waitReady(t *testing.T) {
	t.Helper()
	select {
	case <-e.srv.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("xds server not ready within 10s")
	}
}

// adsClient is a minimal Envoy-like ADS client: it sends requests and
// collects responses, waiting with deadlines.
type adsClient struct {
	t      testing.TB
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node   *corev3.Node
	resp   chan *discoveryv3.DiscoveryResponse
	first  bool
}

func dialADS(t testing.TB, addr, nodeID, cluster string, callOpts ...grpc.CallOption) *adsClient {
	t.Helper()
	return dialADSWith(t, addr, nodeID, cluster, nil, callOpts...)
}

// dialADSWith is dialADS with extra dial options (benchmarks).
func dialADSWith(t testing.TB, addr, nodeID, cluster string, dialOpts []grpc.DialOption, callOpts ...grpc.CallOption) *adsClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(append([]grpc.CallOption{grpc.MaxCallRecvMsgSize(256 << 20)}, callOpts...)...),
		// Envoy's HTTP/2 defaults for its gRPC clients (256 MiB stream
		// window) so large RDS pushes are not throttled by Go's small
		// default windows.
		grpc.WithInitialWindowSize(256 << 20), grpc.WithInitialConnWindowSize(256 << 20),
		grpc.WithReadBufferSize(1 << 20)}, dialOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); conn.Close() })
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &adsClient{t: t, stream: stream, node: &corev3.Node{Id: nodeID, Cluster: cluster},
		resp: make(chan *discoveryv3.DiscoveryResponse, 64), first: true}
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				close(c.resp)
				return
			}
			c.resp <- r
		}
	}()
	return c
}

func (c *adsClient) send(req *discoveryv3.DiscoveryRequest) {
	c.t.Helper()
	req.Node = c.node // Envoy sends the node on the first request; repeating is allowed
	if err := c.stream.Send(req); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// recv waits for the next response of typeURL (skipping none: responses of
// another type fail the test, since ADS ordering is part of the contract).
func (c *adsClient) recv(typeURL string) *discoveryv3.DiscoveryResponse {
	c.t.Helper()
	select {
	case r, ok := <-c.resp:
		if !ok {
			c.t.Fatal("stream closed")
		}
		if r.GetTypeUrl() != typeURL {
			c.t.Fatalf("got %s, want %s", r.GetTypeUrl(), typeURL)
		}
		if r.GetNonce() == "" || r.GetVersionInfo() == "" {
			c.t.Fatalf("response without nonce or version: %v", r)
		}
		return r
	case <-time.After(10 * time.Second):
		c.t.Fatalf("no %s response within 10s", typeURL)
	}
	return nil
}

// expectQuiet asserts no response arrives within a short window (a
// negative check: used only where a push would be a bug).
func (c *adsClient) expectQuiet(d time.Duration) {
	c.t.Helper()
	select {
	case r := <-c.resp:
		c.t.Fatalf("unexpected push of %s", r.GetTypeUrl())
	case <-time.After(d):
	}
}

// subscribe performs Envoy's initial ADS exchange (LDS, CDS, then RDS and
// EDS for the names they reference), ACKing each, and returns the route
// configuration and clusters received.
func (c *adsClient) subscribe(routeName string) (*routev3.RouteConfiguration, []*clusterv3.Cluster, map[string]*discoveryv3.DiscoveryResponse) {
	c.t.Helper()
	last := map[string]*discoveryv3.DiscoveryResponse{}
	c.send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ClusterType})
	cds := c.recv(resourcev3.ClusterType)
	c.ack(cds)
	last[resourcev3.ClusterType] = cds
	var clusters []*clusterv3.Cluster
	var edsNames []string
	for _, a := range cds.GetResources() {
		cl := &clusterv3.Cluster{}
		if err := a.UnmarshalTo(cl); err != nil {
			c.t.Fatal(err)
		}
		clusters = append(clusters, cl)
		if cl.GetType() == clusterv3.Cluster_EDS {
			edsNames = append(edsNames, cl.GetName())
		}
	}
	c.send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: edsNames})
	eds := c.recv(resourcev3.EndpointType)
	c.ack(eds)
	last[resourcev3.EndpointType] = eds
	c.send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ListenerType})
	lds := c.recv(resourcev3.ListenerType)
	c.ack(lds)
	last[resourcev3.ListenerType] = lds
	c.send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.RouteType, ResourceNames: []string{routeName}})
	rds := c.recv(resourcev3.RouteType)
	c.ack(rds)
	last[resourcev3.RouteType] = rds
	return routeConfig(c.t, rds), clusters, last
}

// ack sends the ACK of r (same type, its version and nonce, same names).
func (c *adsClient) ack(r *discoveryv3.DiscoveryResponse) {
	c.t.Helper()
	req := &discoveryv3.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()}
	switch r.GetTypeUrl() {
	case resourcev3.RouteType:
		req.ResourceNames = []string{DefaultRouteConfigName}
	case resourcev3.EndpointType:
		for _, a := range r.GetResources() {
			req.ResourceNames = append(req.ResourceNames, resourceName(c.t, a.GetTypeUrl(), a.GetValue()))
		}
	}
	c.send(req)
}

func resourceName(t testing.TB, typeURL string, b []byte) string {
	t.Helper()
	if typeURL == resourcev3.EndpointType {
		cla := &endpointv3.ClusterLoadAssignment{}
		if err := proto.Unmarshal(b, cla); err != nil {
			t.Fatal(err)
		}
		return cla.GetClusterName()
	}
	t.Fatalf("resourceName: unsupported %s", typeURL)
	return ""
}

func routeConfig(t testing.TB, r *discoveryv3.DiscoveryResponse) *routev3.RouteConfiguration {
	t.Helper()
	if len(r.GetResources()) != 1 {
		t.Fatalf("want 1 route configuration, got %d", len(r.GetResources()))
	}
	rc := &routev3.RouteConfiguration{}
	if err := r.GetResources()[0].UnmarshalTo(rc); err != nil {
		t.Fatal(err)
	}
	return rc
}

// paths returns every exact-path and path-separated-prefix match.
func paths(rc *routev3.RouteConfiguration) []string {
	var out []string
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			if p := r.GetMatch().GetPath(); p != "" {
				out = append(out, p)
			}
			if p := r.GetMatch().GetPathSeparatedPrefix(); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func hasPath(rc *routev3.RouteConfiguration, p string) bool {
	for _, x := range paths(rc) {
		if x == p {
			return true
		}
	}
	return false
}

func routePath(rc store.RoutableConfig) string {
	return domain.RouteRef{Scope: rc.Config.OwnerScope, OwnerID: rc.Config.OwnerID, ConfigID: rc.Config.ID, Key: rc.Route.Key}.Path()
}

// TestADSRotationAndNACK runs a real gRPC ADS stream through the initial
// exchange, a route-key rotation (the next RouteConfiguration lacks the old
// path and has the new one; nothing else is pushed), a NACK (logged and
// counted) and a later good snapshot that is accepted.
func TestADSRotationAndNACK(t *testing.T) {
	a := routable(cfgExact, store.ScopeUser, userA, "https://mcp.example.com/v1/mcp", keyA, false)
	b := routable(cfgPass, store.ScopeOrg, orgB, "https://tools.example.net/mcp", keyB, true)
	env := startEnv(t, func(e *testEnv, _ *Options) {
		e.res.set("mcp.example.com", time.Minute, "1.1.1.1")
		e.res.set("tools.example.net", time.Minute, "2606:4700:4700::1001")
	}, a, b)
	env.waitReady(t)

	c := dialADS(t, env.addr, "envoy-1", "edge")
	rc, clusters, last := c.subscribe(DefaultRouteConfigName)
	if !hasPath(rc, routePath(a)) || !hasPath(rc, routePath(b)) {
		t.Fatalf("initial routes lack config paths: %v", paths(rc))
	}
	if len(clusters) != 3 { // oauthserver + 2 upstreams
		t.Fatalf("want 3 clusters, got %d", len(clusters))
	}

	// Rotate a's key: the next push is RDS only.
	oldPath := routePath(a)
	newKey := domain.NewRouteKey()
	env.store.rotate(a.Config.ID, newKey)
	a.Route.Key = newKey
	rds := c.recv(resourcev3.RouteType)
	if rds.GetVersionInfo() == last[resourcev3.RouteType].GetVersionInfo() {
		t.Fatal("rotation did not change the route version")
	}
	rc = routeConfig(t, rds)
	if hasPath(rc, oldPath) {
		t.Errorf("rotated route config still has the old path %s", oldPath)
	}
	if !hasPath(rc, routePath(a)) {
		t.Errorf("rotated route config lacks the new path %s", routePath(a))
	}

	// NACK it, as an Envoy that rejected the config would: previous
	// version, this nonce, an error detail.
	c.send(&discoveryv3.DiscoveryRequest{
		TypeUrl: resourcev3.RouteType, ResourceNames: []string{DefaultRouteConfigName},
		VersionInfo:   last[resourcev3.RouteType].GetVersionInfo(),
		ResponseNonce: rds.GetNonce(),
		ErrorDetail:   &statuspb.Status{Code: 3, Message: "planted rejection"},
	})
	waitFor(t, "NACK counted", func() bool {
		return testutil.ToFloat64(env.srv.metrics.nacks.WithLabelValues(resourcev3.RouteType)) == 1
	})
	// The rejected version is not re-sent in a loop.
	c.expectQuiet(200 * time.Millisecond)
	if logs := env.logs.String(); !strings.Contains(logs, "NACK") || !strings.Contains(logs, "planted rejection") {
		t.Errorf("NACK not logged with its detail; logs:\n%s", logs)
	}

	// The next good snapshot is pushed and accepted.
	key3 := domain.NewRouteKey()
	env.store.rotate(a.Config.ID, key3)
	a.Route.Key = key3
	rds2 := c.recv(resourcev3.RouteType)
	rc = routeConfig(t, rds2)
	if !hasPath(rc, routePath(a)) {
		t.Fatalf("push after NACK lacks new path")
	}
	c.ack(rds2)
	c.expectQuiet(200 * time.Millisecond)
	if n := testutil.ToFloat64(env.srv.metrics.nacks.WithLabelValues(resourcev3.RouteType)); n != 1 {
		t.Errorf("nacks = %v after a good ACK, want 1", n)
	}

	// A second node group gets the same, current snapshot. The route
	// configuration both got is the encoder's own wire bytes, shared: it
	// was never marshaled per stream or per version.
	c2 := dialADS(t, env.addr, "envoy-2", "other-group")
	rc2, _, last2 := c2.subscribe(DefaultRouteConfigName)
	env.srv.shared.mu.Lock()
	if env.srv.shared.marshals != 0 {
		t.Errorf("route configuration marshaled %d times, want 0 (pre-encoded bytes shared)", env.srv.shared.marshals)
	}
	env.srv.shared.mu.Unlock()
	if last2[resourcev3.RouteType].GetVersionInfo() != rds2.GetVersionInfo() || !hasPath(rc2, routePath(a)) {
		t.Errorf("second node group got version %s, want %s", last2[resourcev3.RouteType].GetVersionInfo(), rds2.GetVersionInfo())
	}
}

// TestRotationReachesEveryEnvoy pins DESIGN §8 "a rotation removes the
// old route from every Envoy": with several Envoys connected at once — two
// of one node group, one of another — a route-key rotation is pushed to
// each of them, as RDS alone, without the old path and with the new one.
func TestRotationReachesEveryEnvoy(t *testing.T) {
	a := routable(cfgExact, store.ScopeUser, userA, "https://mcp.example.com/v1/mcp", keyA, false)
	env := startEnv(t, func(e *testEnv, _ *Options) { e.res.set("mcp.example.com", time.Minute, "1.1.1.1") }, a)
	env.waitReady(t)
	clients := []*adsClient{
		dialADS(t, env.addr, "envoy-1", "edge"),
		dialADS(t, env.addr, "envoy-2", "edge"),
		dialADS(t, env.addr, "envoy-3", "other-group"),
	}
	for _, c := range clients {
		if rc, _, _ := c.subscribe(DefaultRouteConfigName); !hasPath(rc, routePath(a)) {
			t.Fatalf("%s: initial routes lack %s", c.node.GetId(), routePath(a))
		}
	}
	oldPath := routePath(a)
	env.store.rotate(a.Config.ID, keyB)
	a.Route.Key = keyB
	for _, c := range clients {
		rc := routeConfig(t, c.recv(resourcev3.RouteType)) // anything but RDS first fails
		if hasPath(rc, oldPath) || !hasPath(rc, routePath(a)) {
			t.Errorf("%s: after rotation routes are %v, want %s and not %s", c.node.GetId(), paths(rc), routePath(a), oldPath)
		}
	}
}

// waitFor polls cond until it holds or a 10s deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDeltaADS: an Envoy using the incremental (delta) protocol gets the
// route configuration and, after a rotation, the updated one.
func TestDeltaADS(t *testing.T) {
	a := routable(cfgExact, store.ScopeUser, userA, "https://mcp.example.com/v1/mcp", keyA, false)
	env := startEnv(t, func(e *testEnv, _ *Options) { e.res.set("mcp.example.com", time.Minute, "1.1.1.1") }, a)
	env.waitReady(t)
	conn, err := grpc.NewClient(env.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := &corev3.Node{Id: "delta-1", Cluster: "edge"}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.RouteType,
		ResourceNamesSubscribe: []string{DefaultRouteConfigName}}); err != nil {
		t.Fatal(err)
	}
	recvRoutes := func() *routev3.RouteConfiguration {
		t.Helper()
		r, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if len(r.GetResources()) != 1 {
			t.Fatalf("delta response with %d resources", len(r.GetResources()))
		}
		rc := &routev3.RouteConfiguration{}
		if err := r.GetResources()[0].GetResource().UnmarshalTo(rc); err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.RouteType, ResponseNonce: r.GetNonce()}); err != nil {
			t.Fatal(err)
		}
		return rc
	}
	if rc := recvRoutes(); !hasPath(rc, routePath(a)) {
		t.Fatal("initial delta routes lack the config path")
	}
	old := routePath(a)
	env.store.rotate(a.Config.ID, "DDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD")
	a.Route.Key = "DDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD"
	rc := recvRoutes()
	if hasPath(rc, old) || !hasPath(rc, routePath(a)) {
		t.Fatal("delta push after rotation is wrong")
	}
}
