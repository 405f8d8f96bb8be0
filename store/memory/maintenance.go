package memory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"mcpgw/store"
)

// DefaultWatchBuffer is how many undelivered changes one Watch reader may
// fall behind before its backlog collapses into a single ChangeResync.
const DefaultWatchBuffer = 1024

// SessionCleanupGrace is how long an expired session is kept before Cleanup
// deletes it, so that a user coming back shortly after expiry is told the
// session expired rather than that it is unknown.
const SessionCleanupGrace = time.Hour

// WithWatchBuffer sets the per-reader backlog of Watch (minimum 1).
func WithWatchBuffer(n int) Option {
	return func(s *Store) {
		if n < 1 {
			n = 1
		}
		s.watchBuffer = n
	}
}

// watcher is one Watch reader. Writers append to queue under qmu and never
// block; a pump goroutine moves the queue to out at the reader's pace. When
// the backlog reaches its limit it collapses into one ChangeResync, which
// tells the reader to rebuild everything (store.MaintenanceStore.Watch).
type watcher struct {
	limit  int
	qmu    sync.Mutex
	queue  []store.Change
	signal chan struct{} // one-slot wake-up for the pump
	done   chan struct{} // closed by stop
	once   sync.Once
}

func (w *watcher) push(c store.Change) {
	w.qmu.Lock()
	if len(w.queue) >= w.limit {
		w.queue = append(w.queue[:0], store.Change{Kind: store.ChangeResync})
	} else {
		w.queue = append(w.queue, c)
	}
	w.qmu.Unlock()
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

func (w *watcher) take() []store.Change {
	w.qmu.Lock()
	defer w.qmu.Unlock()
	q := w.queue
	w.queue = nil
	return q
}

func (w *watcher) stop() { w.once.Do(func() { close(w.done) }) }

// emitLocked hands a change to every reader. Called with s.mu held, after
// the change is applied, so readers see changes in commit order.
func (s *Store) emitLocked(c store.Change) {
	for w := range s.watchers {
		w.push(c)
	}
}

// Watch delivers config, route and assignment changes until ctx ends or the
// store closes; then the channel closes. A slow reader never blocks writers:
// its backlog is capped and replaced by one ChangeResync.
func (s *Store) Watch(ctx context.Context) (<-chan store.Change, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	limit := s.watchBuffer
	if limit == 0 {
		limit = DefaultWatchBuffer
	}
	w := &watcher{limit: limit, signal: make(chan struct{}, 1), done: make(chan struct{})}
	s.watchers[w] = struct{}{}
	s.mu.Unlock()

	out := make(chan store.Change)
	go func() {
		defer func() {
			s.mu.Lock()
			delete(s.watchers, w)
			s.mu.Unlock()
			close(out)
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.done:
				return
			case <-w.signal:
			}
			for _, c := range w.take() {
				select {
				case out <- c:
				case <-ctx.Done():
					return
				case <-w.done:
					return
				}
			}
		}
	}()
	return out, nil
}

// Cleanup deletes what can no longer be used. Consumed authorization codes
// and consumed (not revoked) refresh tokens are kept until they expire:
// presenting one again must still be recognised as reuse (DESIGN §4).
func (s *Store) Cleanup(ctx context.Context, now, auditBefore time.Time) (store.CleanupCounts, error) {
	if err := store.ValidateTime("now", now); err != nil {
		return store.CleanupCounts{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.CleanupCounts{}, err
	}
	defer s.mu.Unlock()
	var n store.CleanupCounts
	for k, r := range s.authReqs {
		if expired(r.ExpiresAt, now) {
			delete(s.authReqs, k)
			n.AuthRequests++
		}
	}
	for k, t := range s.consents {
		if t.ConsumedAt != nil || expired(t.ExpiresAt, now) {
			delete(s.consents, k)
			n.ConsentTickets++
		}
	}
	for k, c := range s.codes {
		if expired(c.ExpiresAt, now) {
			delete(s.codes, k)
			n.AuthCodes++
		}
	}
	for k, t := range s.refresh {
		if t.RevokedAt != nil || expired(t.ExpiresAt, now) {
			delete(s.refresh, k)
			n.RefreshTokens++
		}
	}
	for k, p := range s.pending {
		if p.ConsumedAt != nil || expired(p.ExpiresAt, now) {
			delete(s.pending, k)
			n.PendingStates++
		}
	}
	for k, se := range s.sessions {
		if se.RevokedAt != nil || expired(se.ExpiresAt.Add(SessionCleanupGrace), now) {
			delete(s.sessions, k)
			n.Sessions++
		}
	}
	for k, w := range s.rates {
		if !w.end.After(now) {
			delete(s.rates, k)
			n.RateLimits++
		}
	}
	if !auditBefore.IsZero() {
		kept := s.audit[:0]
		for _, e := range s.audit {
			if e.Time.Before(auditBefore) {
				n.AuditEvents++
				continue
			}
			kept = append(kept, e)
		}
		clear(s.audit[len(kept):])
		s.audit = kept
	}
	return n, nil
}

// TryLeader runs fn if no other caller in this process holds the named
// lock (the memory store is one process, so that is every "replica").
func (s *Store) TryLeader(ctx context.Context, name string, fn func(ctx context.Context) error) (bool, error) {
	if err := store.ValidateLockName(name); err != nil {
		return false, err
	}
	if fn == nil {
		return false, store.Invalid("fn", "required")
	}
	if err := s.lock(ctx); err != nil {
		return false, err
	}
	if s.leaders[name] {
		s.mu.Unlock()
		return false, nil
	}
	s.leaders[name] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.leaders, name)
		s.mu.Unlock()
	}()
	if err := fn(ctx); err != nil {
		return true, fmt.Errorf("leader %s: %w", name, err)
	}
	return true, nil
}
