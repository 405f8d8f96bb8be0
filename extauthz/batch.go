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
// round trip, without ever waiting for company: a worker takes the first
// queued recheck and whatever else is already queued (up to max), sends
// them together, and hands each request its own answer. At low load every
// batch has one query and latency is that of a single query; under load the
// round trips, syscalls and Postgres wake-ups are shared. Every request
// still gets a fresh read made after it arrived (DESIGN §6 step 6): nothing
// is cached or reused between requests.
type batcher struct {
	br      BatchResolver
	in      chan *pendingRecheck
	max     int
	timeout time.Duration
	stop    chan struct{}
	wg      sync.WaitGroup
}

type pendingRecheck struct {
	q   store.RuntimeQuery
	out chan recheckResult
}

type recheckResult struct {
	st  store.RuntimeState
	err error
}

var pendingPool = sync.Pool{New: func() any { return &pendingRecheck{out: make(chan recheckResult, 1)} }}

func newBatcher(br BatchResolver, workers, max int, timeout time.Duration) *batcher {
	b := &batcher{br: br, in: make(chan *pendingRecheck, workers*max), max: max, timeout: timeout, stop: make(chan struct{})}
	for i := 0; i < workers; i++ {
		b.wg.Add(1)
		go b.work()
	}
	return b
}

// resolve queues q and waits for its answer or ctx.
func (b *batcher) resolve(ctx context.Context, q store.RuntimeQuery) (store.RuntimeState, error) {
	p := pendingPool.Get().(*pendingRecheck)
	p.q = q
	select {
	case b.in <- p:
	case <-ctx.Done():
		pendingPool.Put(p)
		return store.RuntimeState{}, ctx.Err()
	}
	select {
	case r := <-p.out:
		pendingPool.Put(p)
		return r.st, r.err
	case <-ctx.Done():
		// The worker will still answer into p.out (buffered); p is not
		// reused, so the late answer is simply dropped.
		return store.RuntimeState{}, ctx.Err()
	}
}

func (b *batcher) work() {
	defer b.wg.Done()
	batch := make([]*pendingRecheck, 0, b.max)
	qs := make([]store.RuntimeQuery, 0, b.max)
	for {
		select {
		case p := <-b.in:
			batch = append(batch[:0], p)
		case <-b.stop:
			return
		}
	drain:
		for len(batch) < b.max {
			select {
			case p := <-b.in:
				batch = append(batch, p)
			default:
				break drain
			}
		}
		qs = qs[:0]
		for _, p := range batch {
			qs = append(qs, p.q)
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
		states, errs := b.br.ResolveRuntimeBatch(ctx, qs)
		cancel()
		for i, p := range batch {
			p.out <- recheckResult{st: states[i], err: errs[i]}
		}
		clear(batch)
	}
}

func (b *batcher) close() {
	close(b.stop)
	b.wg.Wait()
}
