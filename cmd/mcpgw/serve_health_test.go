package main

import (
	"context"
	"net"
	"slices"
	"sync"
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

// fakeWatchStream is the server side of a health Watch stream. Each Send
// announces its status on sends and, when release is not nil, returns only
// once the test receives from release, so a test can hold a Send in
// flight. delivered lists the statuses whose Send has returned.
type fakeWatchStream struct {
	grpc.ServerStream // nil: only Context and Send are used
	ctx               context.Context
	sends             chan healthpb.HealthCheckResponse_ServingStatus
	release           chan struct{}

	mu        sync.Mutex
	delivered []healthpb.HealthCheckResponse_ServingStatus
}

func newFakeWatchStream(t *testing.T, blocking bool) *fakeWatchStream {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	f := &fakeWatchStream{ctx: ctx, sends: make(chan healthpb.HealthCheckResponse_ServingStatus, 16)}
	if blocking {
		f.sends = make(chan healthpb.HealthCheckResponse_ServingStatus)
		f.release = make(chan struct{})
	}
	return f
}

func (f *fakeWatchStream) Context() context.Context { return f.ctx }

func (f *fakeWatchStream) Send(m *healthpb.HealthCheckResponse) error {
	select {
	case f.sends <- m.GetStatus():
	case <-f.ctx.Done():
		return f.ctx.Err()
	}
	if f.release != nil {
		select {
		case <-f.release:
		case <-f.ctx.Done():
			return f.ctx.Err()
		}
	}
	f.mu.Lock()
	f.delivered = append(f.delivered, m.GetStatus())
	f.mu.Unlock()
	return nil
}

func (f *fakeWatchStream) deliveredStatuses() []healthpb.HealthCheckResponse_ServingStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.delivered)
}

// TestHealthWatchDrainWaitsForSendInFlight: a drain that arrives while a
// SERVING is being sent after a NOT_SERVING (the database came back just
// as the server stops) does not end the stream on the strength of the
// earlier NOT_SERVING. The stream stays open until the SERVING has gone
// out, then the NOT_SERVING that Shutdown queued is sent, and only then
// does the stream end with UNAVAILABLE, so the client's last status is
// NOT_SERVING. The fake stream's blocking Send pins the interleaving.
func TestHealthWatchDrainWaitsForSendInFlight(t *testing.T) {
	hs := newHealthServer()
	hs.SetServingStatus("db", healthpb.HealthCheckResponse_NOT_SERVING)
	f := newFakeWatchStream(t, true)
	done := make(chan error, 1)
	go func() { done <- hs.Watch(&healthpb.HealthCheckRequest{Service: "db"}, f) }()

	// expectSend waits for the next Send, which must carry want; the
	// one-minute bound is a test deadline, not a timing assertion.
	expectSend := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		select {
		case got := <-f.sends:
			if got != want {
				t.Fatalf("Send(%v), want Send(%v)", got, want)
			}
		case err := <-done:
			t.Fatalf("Watch returned %v before sending %v (delivered %v)", err, want, f.deliveredStatuses())
		case <-time.After(time.Minute):
			t.Fatalf("no Send(%v) within 1m", want)
		}
	}
	release := func() { f.release <- struct{}{} }

	expectSend(healthpb.HealthCheckResponse_NOT_SERVING) // the initial status
	release()
	hs.SetServingStatus("db", healthpb.HealthCheckResponse_SERVING)
	expectSend(healthpb.HealthCheckResponse_SERVING) // now in flight
	hs.drain()

	hs.mu.Lock()
	if len(hs.streams) != 1 {
		hs.mu.Unlock()
		t.Fatalf("%d registered Watch streams, want 1", len(hs.streams))
	}
	var ws *watchStream
	for ws = range hs.streams {
	}
	hs.mu.Unlock()
	if err := ws.ctx.Err(); err != nil {
		t.Fatalf("stream context ended (%v) while SERVING was in flight; the client would not be told NOT_SERVING", err)
	}

	release() // SERVING delivered
	expectSend(healthpb.HealthCheckResponse_NOT_SERVING)
	release()
	select {
	case err := <-done:
		if status.Code(err) != codes.Unavailable {
			t.Errorf("Watch returned %v, want UNAVAILABLE", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Watch still running 1m after NOT_SERVING was delivered on a drained server")
	}
	want := []healthpb.HealthCheckResponse_ServingStatus{
		healthpb.HealthCheckResponse_NOT_SERVING,
		healthpb.HealthCheckResponse_SERVING,
		healthpb.HealthCheckResponse_NOT_SERVING,
	}
	if got := f.deliveredStatuses(); !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
}

// TestHealthWatchStreamSendsNothingAfterEnd: once drain has ended a stream
// whose client was told NOT_SERVING, a status health.Server.Watch took
// from its queue just before (a SERVING on its way to Send) is refused,
// not delivered, so it cannot become the client's last status.
func TestHealthWatchStreamSendsNothingAfterEnd(t *testing.T) {
	f := newFakeWatchStream(t, false)
	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	ws := &watchStream{Health_WatchServer: f, ctx: ctx, cancel: cancel, last: -1}

	if err := ws.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_NOT_SERVING}); err != nil {
		t.Fatal(err)
	}
	ws.drain()
	if ctx.Err() == nil {
		t.Fatal("drain did not end a stream whose last delivered status is NOT_SERVING and which has no send in flight")
	}
	if err := ws.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}); err == nil {
		t.Error("Send(SERVING) after the stream ended succeeded, want an error")
	}
	want := []healthpb.HealthCheckResponse_ServingStatus{healthpb.HealthCheckResponse_NOT_SERVING}
	if got := f.deliveredStatuses(); !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
}

// TestHealthWatchAfterDrain: a Watch opened after the drain gets the
// status Shutdown left (NOT_SERVING, or SERVICE_UNKNOWN) and then ends
// with UNAVAILABLE.
func TestHealthWatchAfterDrain(t *testing.T) {
	hs := newHealthServer()
	hs.drain()
	for service, want := range map[string]healthpb.HealthCheckResponse_ServingStatus{
		"":        healthpb.HealthCheckResponse_NOT_SERVING,
		"unknown": healthpb.HealthCheckResponse_SERVICE_UNKNOWN,
	} {
		f := newFakeWatchStream(t, false)
		err := hs.Watch(&healthpb.HealthCheckRequest{Service: service}, f)
		if status.Code(err) != codes.Unavailable {
			t.Errorf("watch %q after drain returned %v, want UNAVAILABLE", service, err)
		}
		if got := f.deliveredStatuses(); !slices.Equal(got, []healthpb.HealthCheckResponse_ServingStatus{want}) {
			t.Errorf("watch %q after drain delivered %v, want [%v]", service, got, want)
		}
	}
}
