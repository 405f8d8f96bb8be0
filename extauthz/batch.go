package extauthz

import (
	"context"
	"sync"
	"time"

	"mcpgw/store"
)

// BatchResolver is implemented by stores that can answer several runtime
// rechecks in one database round trip (store/postgres). It is optional:
// Options.BatchRecheck uses it when the store has it.
type BatchResolver interface {
	ResolveRuntimeBatch(ctx context.Context, qs []store.RuntimeQuery) ([]store.RuntimeState, []error)
}

// batcher coalesces rechecks that are in flight at the same moment into one
// round trip, without ever waiting for company. It has no goroutines of its
// own (flat combining): a Check that finds a free slot runs its recheck
// itself, together with whatever rechecks queued meanwhile (up to max), and
// hands each its answer; a Check that finds every slot busy queues and
// waits. When a slot's batch ends with rechecks still queued, the slot
// passes to the oldest of them, which runs the next batch.
//
// At low load a recheck therefore costs exactly one query on the caller's
// goroutine — no hand-off to a worker and back, which at concurrency 1 was
// two goroutine wake-ups per request. Under load the round trips, syscalls
// and Postgres wake-ups are shared. Every request still gets a fresh read
// sent after it arrived (DESIGN §6 step 6): nothing is cached or reused
// between requests.
type batcher struct {
	br      BatchResolver
	slots   int // batches allowed in flight at once (match the pool size)
	max     int // rechecks per batch
	timeout time.Duration

	mu      sync.Mutex
	running int               // slots in use
	queue   []*pendingRecheck // waiting; non-empty only while running == slots
}

type pendingRecheck struct {
	q        store.RuntimeQuery
	deadline time.Time          // the request's own deadline; zero: none
	out      chan recheckResult // buffered 1: one answer, or one promotion
}

type recheckResult struct {
	st   store.RuntimeState
	err  error
	lead bool // no answer: the slot is yours, run the next batch
}

var pendingPool = sync.Pool{New: func() any { return &pendingRecheck{out: make(chan recheckResult, 1)} }}

// batchBuf is one batch's scratch space, reused.
type batchBuf struct {
	batch []*pendingRecheck
	qs    []store.RuntimeQuery
}

var batchPool = sync.Pool{New: func() any { return &batchBuf{} }}

func newBatcher(br BatchResolver, slots, max int, timeout time.Duration) *batcher {
	return &batcher{br: br, slots: slots, max: max, timeout: timeout}
}

// resolve answers q, running the round trip itself when a slot is free.
func (b *batcher) resolve(ctx context.Context, q store.RuntimeQuery) (store.RuntimeState, error) {
	p := pendingPool.Get().(*pendingRecheck)
	p.q = q
	p.deadline, _ = ctx.Deadline()
	b.mu.Lock()
	if b.running < b.slots {
		b.running++
		b.mu.Unlock()
		return b.leadAndRecycle(ctx, p)
	}
	b.queue = append(b.queue, p)
	b.mu.Unlock()

	select {
	case r := <-p.out:
		if r.lead {
			return b.leadAndRecycle(ctx, p)
		}
		pendingPool.Put(p)
		return r.st, r.err
	case <-ctx.Done():
	}
	// Gone before its turn: leave the queue if still in it. Otherwise a
	// batch holding it is already running (bounded by the timeout) or it was
	// just promoted; it must then take its answer, or run the batch it now
	// owns, so that the slot is never lost.
	b.mu.Lock()
	for i, w := range b.queue {
		if w == p {
			n := copy(b.queue[i:], b.queue[i+1:]) + i
			b.queue[n] = nil
			b.queue = b.queue[:n]
			b.mu.Unlock()
			pendingPool.Put(p)
			return store.RuntimeState{}, ctx.Err()
		}
	}
	b.mu.Unlock()
	if r := <-p.out; r.lead {
		// Promoted: run the batch it now owns (the others queued behind
		// it still need their answers; a batch of only p ends at once).
		b.lead(ctx, p)
	}
	pendingPool.Put(p)
	return store.RuntimeState{}, ctx.Err()
}

// leadAndRecycle runs lead and returns p to the pool: p was never queued
// (or was promoted out of the queue), so nothing can send to it any more.
func (b *batcher) leadAndRecycle(ctx context.Context, p *pendingRecheck) (store.RuntimeState, error) {
	st, err := b.lead(ctx, p)
	pendingPool.Put(p)
	return st, err
}

// lead runs one batch on a slot the caller holds: own first, then what is
// queued (up to max); answers the others; then passes the slot to the
// oldest recheck still queued, or frees it. own is not returned to the
// pool here: the caller owns it.
func (b *batcher) lead(callerCtx context.Context, own *pendingRecheck) (store.RuntimeState, error) {
	buf := batchPool.Get().(*batchBuf)
	buf.batch = append(buf.batch[:0], own)
	b.mu.Lock()
	k := min(len(b.queue), b.max-1)
	buf.batch = append(buf.batch, b.queue[:k]...)
	n := copy(b.queue, b.queue[k:])
	clear(b.queue[n:])
	b.queue = b.queue[:n]
	b.mu.Unlock()

	buf.qs = buf.qs[:0]
	for _, p := range buf.batch {
		buf.qs = append(buf.qs, p.q)
	}
	// A batch of one belongs to its caller alone: it ends with the caller's
	// context. A shared batch must not end because one of its requests did:
	// it runs until the timeout or the latest deadline among its requests,
	// whichever comes first (after that nobody is waiting for it).
	var ctx context.Context
	var cancel context.CancelFunc
	if len(buf.batch) == 1 {
		ctx, cancel = withTimeoutIfSooner(callerCtx, b.timeout)
	} else {
		end := time.Now().Add(b.timeout)
		if latest, ok := latestDeadline(buf.batch); ok && latest.Before(end) {
			end = latest
		}
		ctx, cancel = context.WithDeadline(context.Background(), end)
	}
	states, errs := b.br.ResolveRuntimeBatch(ctx, buf.qs)
	cancel()
	for i, p := range buf.batch[1:] {
		p.out <- recheckResult{st: states[i+1], err: errs[i+1]}
	}
	clear(buf.batch)
	clear(buf.qs)
	batchPool.Put(buf)

	b.mu.Lock()
	if len(b.queue) > 0 {
		next := b.queue[0]
		n := copy(b.queue, b.queue[1:])
		b.queue[n] = nil
		b.queue = b.queue[:n]
		b.mu.Unlock()
		next.out <- recheckResult{lead: true}
	} else {
		b.running--
		b.mu.Unlock()
	}
	return states[0], errs[0]
}

// latestDeadline is the latest of the batch's deadlines; ok is false when
// any request has none.
func latestDeadline(batch []*pendingRecheck) (latest time.Time, ok bool) {
	for _, p := range batch {
		if p.deadline.IsZero() {
			return time.Time{}, false
		}
		if p.deadline.After(latest) {
			latest = p.deadline
		}
	}
	return latest, true
}
