package main

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// TestServeGRPCDrainsHealthWatch: open health Watch streams do not hold a
// graceful stop. With a one-hour shutdown timeout, serveGRPC returns once
// its context ends (the one-minute bound below is only a test deadline: a
// stop that waited for the streams would take the hour), and every
// watcher is told NOT_SERVING before its stream ends with UNAVAILABLE. A
// stream whose last status already said "not serving" (a NOT_SERVING or
// an unknown service) ends without another message. After the drain, a
// status change (a late database-reachability update) is ignored.
func TestServeGRPCDrainsHealthWatch(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	hs := newHealthServer()
	healthpb.RegisterHealthServer(g, hs)
	hs.SetServingStatus("up", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("down", healthpb.HealthCheckResponse_NOT_SERVING)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- serveGRPC(ctx, ln, g, hs, time.Hour) }()

	conn, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	// Not ctx: the server's stop must be what ends these streams.
	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer scancel()

	type watch struct {
		service string
		first   healthpb.HealthCheckResponse_ServingStatus // the initial status
		final   []healthpb.HealthCheckResponse_ServingStatus
		stream  healthpb.Health_WatchClient
		ended   chan error
		seen    chan healthpb.HealthCheckResponse_ServingStatus
	}
	watches := []*watch{
		{service: "", first: healthpb.HealthCheckResponse_SERVING, final: []healthpb.HealthCheckResponse_ServingStatus{healthpb.HealthCheckResponse_NOT_SERVING}},
		{service: "up", first: healthpb.HealthCheckResponse_SERVING, final: []healthpb.HealthCheckResponse_ServingStatus{healthpb.HealthCheckResponse_NOT_SERVING}},
		{service: "down", first: healthpb.HealthCheckResponse_NOT_SERVING},
		{service: "unknown", first: healthpb.HealthCheckResponse_SERVICE_UNKNOWN},
	}
	for _, w := range watches {
		w.stream, err = hc.Watch(sctx, &healthpb.HealthCheckRequest{Service: w.service})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := w.stream.Recv()
		if err != nil {
			t.Fatalf("watch %q: first recv: %v", w.service, err)
		}
		if resp.GetStatus() != w.first {
			t.Fatalf("watch %q: first status %v, want %v", w.service, resp.GetStatus(), w.first)
		}
		w.ended = make(chan error, 1)
		w.seen = make(chan healthpb.HealthCheckResponse_ServingStatus, 8)
		go func() {
			for {
				resp, err := w.stream.Recv()
				if err != nil {
					close(w.seen)
					w.ended <- err
					return
				}
				w.seen <- resp.GetStatus()
			}
		}()
	}

	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("serveGRPC: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("serveGRPC did not return within 1m of the stop (shutdown timeout 1h): open health Watch streams hold the graceful stop")
	}
	for _, w := range watches {
		var err error
		select {
		case err = <-w.ended:
		case <-time.After(time.Minute):
			t.Fatalf("watch %q still open after the server stopped", w.service)
		}
		if status.Code(err) != codes.Unavailable {
			t.Errorf("watch %q ended with %v, want UNAVAILABLE", w.service, err)
		}
		var got []healthpb.HealthCheckResponse_ServingStatus
		for s := range w.seen {
			got = append(got, s)
		}
		if !slices.Equal(got, w.final) {
			t.Errorf("watch %q: statuses after the stop %v, want %v", w.service, got, w.final)
		}
	}

	hs.SetServingStatus("up", healthpb.HealthCheckResponse_SERVING)
	resp, err := hs.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "up"})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("status set after the drain: Check = %v, %v; want NOT_SERVING (Shutdown ignores later changes)", resp, err)
	}
}

// healthWatch is an open health Watch stream whose messages are collected
// in the background.
type healthWatch struct {
	service string
	seen    chan healthpb.HealthCheckResponse_ServingStatus
	ended   chan error
}

// openHealthWatch opens a Watch for service on conn and waits for its
// first status, which must be want. The stream lives on its own context
// (cancelled at the end of the test), so only the server can end it
// earlier.
func openHealthWatch(t *testing.T, conn *grpc.ClientConn, service string, want healthpb.HealthCheckResponse_ServingStatus) *healthWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("health watch %q: first recv: %v", service, err)
	}
	if resp.GetStatus() != want {
		t.Fatalf("health watch %q: first status %v, want %v", service, resp.GetStatus(), want)
	}
	w := &healthWatch{service: service, seen: make(chan healthpb.HealthCheckResponse_ServingStatus, 16), ended: make(chan error, 1)}
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				close(w.seen)
				w.ended <- err
				return
			}
			w.seen <- resp.GetStatus()
		}
	}()
	return w
}

// assertDrained checks that the server ended the stream (UNAVAILABLE)
// after telling it NOT_SERVING. Called once the server has stopped; the
// one-minute bound is a test deadline, not a timing assertion.
func (w *healthWatch) assertDrained(t *testing.T) {
	t.Helper()
	var err error
	select {
	case err = <-w.ended:
	case <-time.After(time.Minute):
		t.Fatalf("health watch %q still open after the server stopped", w.service)
	}
	if status.Code(err) != codes.Unavailable {
		t.Errorf("health watch %q ended with %v, want UNAVAILABLE", w.service, err)
	}
	var last healthpb.HealthCheckResponse_ServingStatus = -1
	for s := range w.seen {
		last = s
	}
	if last != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health watch %q: last status before the end %v, want NOT_SERVING", w.service, last)
	}
}
