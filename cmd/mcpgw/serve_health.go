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

	mu      sync.Mutex
	drained bool                      // set by drain
	streams map[*watchStream]struct{} // open Watch streams
}

func newHealthServer() *healthServer {
	return &healthServer{Server: health.NewServer(), streams: make(map[*watchStream]struct{})}
}

// drain marks every service NOT_SERVING for good and ends every Watch
// stream, open or opened later, once it has been sent a status other than
// SERVING. When drain returns, every open stream has been marked, so a
// stream whose last delivered status already said "not serving" and which
// has no send in flight has had its context cancelled. Safe to call more
// than once.
func (h *healthServer) drain() {
	// Shutdown first: by the time a stream is marked, NOT_SERVING is queued
	// for it (unless its service is unknown to the server).
	h.Server.Shutdown()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.drained = true
	for ws := range h.streams {
		ws.drain()
	}
}

// Watch implements grpc.health.v1.Health/Watch on top of health.Server's,
// ending the stream when the server drains (see healthServer).
func (h *healthServer) Watch(in *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	ws := &watchStream{Health_WatchServer: stream, ctx: ctx, cancel: cancel, last: -1}
	h.mu.Lock()
	h.streams[ws] = struct{}{}
	if h.drained {
		ws.drain()
	}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.streams, ws)
		h.mu.Unlock()
	}()
	err := h.Server.Watch(in, ws)
	if stream.Context().Err() == nil && ctx.Err() != nil {
		return status.Error(codes.Unavailable, "server is shutting down")
	}
	return err
}

// watchStream is a Watch stream whose context ends on drain, but only once
// the client has been told: when no Send is in flight and the last status
// delivered is not SERVING. Marking a send in flight and deciding to end
// happen under one mutex, so the stream is never ended while a SERVING
// that follows a NOT_SERVING is on its way (health.Server.Watch could then
// pick the ended context over the NOT_SERVING that Shutdown queued, and
// the client's last status would be SERVING), and nothing is sent once
// the stream has been ended.
type watchStream struct {
	healthpb.Health_WatchServer
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	last     healthpb.HealthCheckResponse_ServingStatus // last delivered; -1 before the first
	inFlight bool                                       // a Send is under way
	draining bool                                       // drain was called
	ended    bool                                       // cancel was called by endIfTold
}

func (w *watchStream) Context() context.Context { return w.ctx }

func (w *watchStream) Send(m *healthpb.HealthCheckResponse) error {
	w.mu.Lock()
	if w.ended {
		// The client's last status is already not SERVING and the stream
		// is ending; deliver nothing after it.
		w.mu.Unlock()
		return status.Error(codes.Unavailable, "server is shutting down")
	}
	w.inFlight = true
	w.mu.Unlock()

	err := w.Health_WatchServer.Send(m)

	w.mu.Lock()
	defer w.mu.Unlock()
	w.inFlight = false
	if err == nil {
		w.last = m.GetStatus()
	}
	w.endIfTold()
	return err
}

// drain marks the stream for ending and ends it now if the client has
// already been told. The caller holds healthServer.mu.
func (w *watchStream) drain() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.draining = true
	w.endIfTold()
}

// endIfTold cancels the stream's context if drain is pending, no Send is
// in flight, and a status other than SERVING has been delivered. The
// caller holds w.mu.
func (w *watchStream) endIfTold() {
	if !w.draining || w.ended || w.inFlight || w.last < 0 || w.last == healthpb.HealthCheckResponse_SERVING {
		return
	}
	w.ended = true
	w.cancel()
}
