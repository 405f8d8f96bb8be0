package xds

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"mcpgw/store"
)

// TestStopEndsOpenStreams: when Run returns, every kind of open xDS stream
// (state-of-the-world ADS, delta ADS, a per-type service) ends with
// UNAVAILABLE and grpc.Server.GracefulStop completes, instead of waiting
// for streams that would never end on their own (the serve framework's
// shutdown then took its full timeout).
func TestStopEndsOpenStreams(t *testing.T) {
	a := routable(cfgExact, store.ScopeUser, userA, "https://mcp.example.com/v1/mcp", keyA, false)
	st := newFakeStore(a)
	res := newFakeResolver()
	res.set("mcp.example.com", time.Minute, "1.1.1.1")
	srv, err := New(Options{Store: st, Resolver: res, OAuthServerAddr: "127.0.0.1:8081",
		Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(ServerOptions()...)
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- g.Serve(lis) }()
	t.Cleanup(g.Stop) // only matters if the test fails before GracefulStop
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("xds server not ready within 10s")
	}

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sctx, scancel := context.WithCancel(context.Background())
	defer scancel()
	node := &corev3.Node{Id: "stop-1", Cluster: "edge"}
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	lds := listenerservice.NewListenerDiscoveryServiceClient(conn)

	// Each stream is opened and has received its first response, so it
	// is established server-side; recv then waits for the stream's end.
	type stream struct {
		name string
		recv func() error
	}
	var streams []stream
	{
		s, err := ads.StreamAggregatedResources(sctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ListenerType}); err != nil {
			t.Fatal(err)
		}
		streams = append(streams, stream{"ads", func() error { _, err := s.Recv(); return err }})
	}
	{
		s, err := ads.DeltaAggregatedResources(sctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ListenerType,
			ResourceNamesSubscribe: []string{"*"}}); err != nil {
			t.Fatal(err)
		}
		streams = append(streams, stream{"delta-ads", func() error { _, err := s.Recv(); return err }})
	}
	{
		s, err := lds.StreamListeners(sctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ListenerType}); err != nil {
			t.Fatal(err)
		}
		streams = append(streams, stream{"lds", func() error { _, err := s.Recv(); return err }})
	}
	ended := make(chan error, len(streams))
	for _, s := range streams {
		if err := s.recv(); err != nil {
			t.Fatalf("%s: first response: %v", s.name, err)
		}
		go func() {
			for {
				if err := s.recv(); err != nil {
					ended <- status.Error(status.Code(err), s.name+": "+status.Convert(err).Message())
					return
				}
			}
		}()
	}

	cancel()
	if err := waitErr(t, runErr, "Run to return"); err != nil {
		t.Fatalf("Run: %v", err)
	}
	stopped := make(chan error, 1)
	go func() { g.GracefulStop(); stopped <- nil }()
	waitErr(t, stopped, "GracefulStop to return")
	waitErr(t, serveErr, "Serve to return")
	for range streams {
		err := waitErr(t, ended, "a stream to end")
		if status.Code(err) != codes.Unavailable {
			t.Errorf("stream ended with %v, want UNAVAILABLE", err)
		}
	}
}

// waitErr waits for one value from c. The bound only turns a hang into a
// failure with a message; it is far above the expected milliseconds and
// far below any shutdown timeout this guards against.
func waitErr(t *testing.T, c <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-c:
		return err
	case <-time.After(time.Minute):
		t.Fatalf("timed out waiting for %s", what)
		return nil
	}
}
