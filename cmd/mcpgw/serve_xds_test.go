package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// TestServeXDS runs `mcpgw dev --components=xds` in-process: health turns
// SERVING once the first snapshot exists, and an ADS client receives the
// configured listener. Stopping the process with that ADS stream and
// health Watch streams still open ends them (UNAVAILABLE; the watchers are
// told NOT_SERVING first) and returns: the shutdown timeout is 10 minutes,
// so a graceful stop that waited for the endless streams would hang past
// the one-minute bound below (and `go test`'s default deadline) instead of
// passing slowly.
func TestServeXDS(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lw := &lineWriter{lines: make(chan string, 16)}
	var errb bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, &app{stdout: lw, stderr: &errb}, []string{"dev", "--components=xds",
			"--listen-http=127.0.0.1:0", "--listen-authz=127.0.0.1:0", "--listen-xds=127.0.0.1:0", "--listen-metrics=127.0.0.1:0",
			"--xds-listener-addr=127.0.0.1:10123", "--shutdown-timeout=10m"})
	}()
	ready := waitLine(t, lw.lines, "mcpgw ready", 30*time.Second)
	addr := field(ready, "xds")
	if addr == "" {
		t.Fatalf("ready line without xds: %s\n%s", ready, errb.String())
	}
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: discoveryv3.AggregatedDiscoveryService_ServiceDesc.ServiceName})
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("xds health not SERVING within 30s: %v %v\n%s", resp, err, errb.String())
		}
		time.Sleep(20 * time.Millisecond) // polling for convergence
	}

	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Minute) // not ctx: the stop must end it
	defer scancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "e1", Cluster: "dev"}, TypeUrl: resourcev3.ListenerType}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	if len(resp.GetResources()) != 1 {
		t.Fatalf("want one listener, got %d", len(resp.GetResources()))
	}
	l := &listenerv3.Listener{}
	if err := resp.GetResources()[0].UnmarshalTo(l); err != nil {
		t.Fatal(err)
	}
	if sa := l.GetAddress().GetSocketAddress(); sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() != 10123 {
		t.Errorf("listener address %v, want 127.0.0.1:10123", sa)
	}
	watches := []*healthWatch{
		openHealthWatch(t, conn, "", healthpb.HealthCheckResponse_SERVING),
		openHealthWatch(t, conn, discoveryv3.AggregatedDiscoveryService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING),
	}
	streamEnd := make(chan error, 1)
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				streamEnd <- err
				return
			}
		}
	}()
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d\n%s", code, errb.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("serve did not return within 1m of the stop (shutdown timeout 10m): an open ADS or health Watch stream blocks the graceful stop\n%s", errb.String())
	}
	for _, w := range watches {
		w.assertDrained(t)
	}
	select {
	case err := <-streamEnd:
		if status.Code(err) != codes.Unavailable {
			t.Errorf("ADS stream ended with %v, want UNAVAILABLE", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("ADS stream still open after serve returned")
	}
}
