package main

import (
	"context"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// healthServer is grpc-go's health service (grpc.health.v1.Health) whose
// Watch streams end when the server drains.
//
// health.Server.Shutdown turns every known service NOT_SERVING and makes
// later SetServingStatus calls no-ops (only Resume would undo that, and we
// never call it), but its Watch handlers return only when the client goes
// away. GracefulStop waits for every handler, so one idle Watch stream (a
// gRPC client doing client-side health checking, a load balancer) would
// hold the stop until Config.ShutdownTimeout and then be cut by Stop.
// drain closes that gap: each Watch stream is sent NOT_SERVING and then
// ended with UNAVAILABLE, the code a client sees for any stream a stopping
// server ends, so it reconnects elsewhere.
//
// The zero value is not usable; use newHealthServer.
type healthServer struct {
	*health.Server
	draining chan struct{} // closed by drain
	once     sync.Once
}

func newHealthServer() *healthServer {
	return &healthServer{Server: health.NewServer(), draining: make(chan struct{})}
}

// drain marks every service NOT_SERVING for good and ends every Watch
// stream, open or opened later, once it has been sent a status other than
// SERVING. Safe to call more than once.
func (h *healthServer) drain() {
	h.Server.Shutdown()
	h.once.Do(func() { close(h.draining) })
}

// Watch implements grpc.health.v1.Health/Watch on top of health.Server's,
// ending the stream when the server drains (see healthServer).
func (h *healthServer) Watch(in *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	ws := &watchStream{Health_WatchServer: stream, ctx: ctx, last: -1, sent: make(chan struct{})}
	go func() {
		select {
		case <-h.draining:
		case <-ctx.Done():
			return
		}
		// Shutdown has queued NOT_SERVING for this stream unless its last
		// status already said "not serving" (or the service is unknown).
		// End the stream only once the client has been told, so that a
		// client reading the stream learns the status before the end.
		for {
			last, sent := ws.lastSent()
			if last >= 0 && last != healthpb.HealthCheckResponse_SERVING {
				cancel()
				return
			}
			select {
			case <-sent:
			case <-ctx.Done():
				return
			}
		}
	}()
	err := h.Server.Watch(in, ws)
	if stream.Context().Err() == nil && ctx.Err() != nil {
		return status.Error(codes.Unavailable, "server is shutting down")
	}
	return err
}

// watchStream is a Watch stream whose context ends on drain and which
// remembers the last status it delivered.
type watchStream struct {
	healthpb.Health_WatchServer
	ctx context.Context

	mu   sync.Mutex
	last healthpb.HealthCheckResponse_ServingStatus // -1 before the first Send
	sent chan struct{}                              // closed (and replaced) by each Send
}

func (w *watchStream) Context() context.Context { return w.ctx }

func (w *watchStream) Send(m *healthpb.HealthCheckResponse) error {
	if err := w.Health_WatchServer.Send(m); err != nil {
		return err
	}
	w.mu.Lock()
	w.last = m.GetStatus()
	close(w.sent)
	w.sent = make(chan struct{})
	w.mu.Unlock()
	return nil
}

func (w *watchStream) lastSent() (healthpb.HealthCheckResponse_ServingStatus, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last, w.sent
}
