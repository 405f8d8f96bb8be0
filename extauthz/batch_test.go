package extauthz

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mcpgw/store"
)

// echoResolver answers each query with a state naming the query's
// instance, so a mix-up between concurrent requests is visible. A query
// whose user id is failUser gets an error.
type echoResolver struct {
	calls    atomic.Int32
	maxSeen  atomic.Int32
	inFlight atomic.Int32
	maxConc  atomic.Int32
	gate     chan struct{} // if set, each batch waits for it (or its ctx)
	started  chan int      // if set, receives each batch's size as it starts
	mu       sync.Mutex
	ctxEnds  []time.Time // each batch's context deadline (zero: none)
}

const failUser = "00000000-0000-4000-8000-00000000dead"

func (e *echoResolver) ResolveRuntimeBatch(ctx context.Context, qs []store.RuntimeQuery) ([]store.RuntimeState, []error) {
	e.calls.Add(1)
	d, _ := ctx.Deadline()
	e.mu.Lock()
	e.ctxEnds = append(e.ctxEnds, d)
	e.mu.Unlock()
	raise(&e.maxSeen, int32(len(qs)))
	raise(&e.maxConc, e.inFlight.Add(1))
	defer e.inFlight.Add(-1)
	if e.started != nil {
		e.started <- len(qs)
	}
	st := make([]store.RuntimeState, len(qs))
	errs := make([]error, len(qs))
	if e.gate != nil {
		select {
		case <-e.gate:
		case <-ctx.Done():
			for i := range errs {
				errs[i] = ctx.Err()
			}
			return st, errs
		}
	}
	for i, q := range qs {
		if q.UserID == failUser {
			errs[i] = fmt.Errorf("boom: %w", store.ErrUnavailable)
			continue
		}
		st[i] = store.RuntimeState{InstanceID: q.InstanceID}
	}
	return st, errs
}

func raise(a *atomic.Int32, v int32) {
	for {
		m := a.Load()
		if v <= m || a.CompareAndSwap(m, v) {
			return
		}
	}
}

// idle reports whether the batcher holds no slot and no queued recheck.
func (b *batcher) idle() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.running == 0 && len(b.queue) == 0
}

// TestBatcherRoutesAnswers: many concurrent rechecks each get their own
// answer (or error), batches form under concurrency, and a request whose
// context ends stops waiting.
func TestBatcherRoutesAnswers(t *testing.T) {
	er := &echoResolver{}
	b := newBatcher(er, 2, 8, time.Second)
	var wg sync.WaitGroup
	errc := make(chan error, 400)
	for i := 0; i < 400; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			q := store.RuntimeQuery{InstanceID: fmt.Sprintf("inst-%d", i), UserID: "u"}
			if i%50 == 0 {
				q.UserID = failUser
			}
			st, err := b.resolve(context.Background(), q)
			switch {
			case q.UserID == failUser && !errors.Is(err, store.ErrUnavailable):
				errc <- fmt.Errorf("query %d: err %v, want unavailable", i, err)
			case q.UserID != failUser && (err != nil || st.InstanceID != q.InstanceID):
				errc <- fmt.Errorf("query %d: got %q %v", i, st.InstanceID, err)
			}
		}(i)
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if er.maxSeen.Load() > 8 {
		t.Errorf("batch of %d exceeds max 8", er.maxSeen.Load())
	}
	if er.maxConc.Load() > 2 {
		t.Errorf("%d batches in flight at once, slots = 2", er.maxConc.Load())
	}
	if !b.idle() {
		t.Error("slots or queue left over after every recheck returned")
	}
	t.Logf("400 rechecks in %d round trips (largest batch %d)", er.calls.Load(), er.maxSeen.Load())

	// A cancelled request returns promptly even while its batch is stuck
	// (a batch of one runs on the caller's context).
	stuck := &echoResolver{gate: make(chan struct{})}
	sb := newBatcher(stuck, 1, 8, time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := sb.resolve(ctx, store.RuntimeQuery{InstanceID: "x"})
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled recheck: %v", err)
	}
	close(stuck.gate)
	if !sb.idle() {
		t.Error("slot not freed after a cancelled batch of one")
	}
}

// TestBatcherCancelledWhileQueued: with the only slot busy, a queued
// recheck whose context ends leaves the queue at once; the others are
// answered by the next batch (one round trip), which a cancelled request
// in it does not cut short; the slot is free at the end.
func TestBatcherCancelledWhileQueued(t *testing.T) {
	er := &echoResolver{gate: make(chan struct{}), started: make(chan int, 16)}
	b := newBatcher(er, 1, 8, time.Minute)
	type res struct {
		i   int
		st  store.RuntimeState
		err error
	}
	out := make(chan res, 8)
	ctxs := make([]context.CancelFunc, 5)
	start := func(i int) {
		ctx, cancel := context.WithCancel(context.Background())
		ctxs[i] = cancel
		go func() {
			st, err := b.resolve(ctx, store.RuntimeQuery{InstanceID: fmt.Sprint("inst-", i), UserID: "u"})
			out <- res{i, st, err}
		}()
	}
	start(0) // takes the slot, stuck at the gate
	if n := <-er.started; n != 1 {
		t.Fatalf("first batch of %d, want 1", n)
	}
	for i := 1; i < 5; i++ {
		start(i)
	}
	waitQueued(t, b, 4)
	ctxs[2]() // leaves the queue
	if r := <-out; r.i != 2 || !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled queued recheck: %+v", r)
	}
	waitQueued(t, b, 3)
	er.gate <- struct{}{} // first batch answers; 1, 3, 4 go as one batch
	if r := <-out; r.i != 0 || r.err != nil || r.st.InstanceID != "inst-0" {
		t.Fatalf("first batch: %+v", r)
	}
	if n := <-er.started; n != 3 {
		t.Fatalf("second batch of %d, want the 3 still queued", n)
	}
	ctxs[3]() // in a running shared batch: it waits for its answer
	close(er.gate)
	got := map[int]res{}
	for range 3 {
		r := <-out
		got[r.i] = r
	}
	for _, i := range []int{1, 4} {
		if r := got[i]; r.err != nil || r.st.InstanceID != fmt.Sprint("inst-", i) {
			t.Errorf("recheck %d in a batch with a cancelled request: %+v", i, r)
		}
	}
	// Its answer and its cancellation race; either is right, another's
	// answer never is.
	if r := got[3]; !errors.Is(r.err, context.Canceled) && (r.err != nil || r.st.InstanceID != "inst-3") {
		t.Errorf("cancelled member of a shared batch: %+v", r)
	}
	if !b.idle() {
		t.Error("slot not freed")
	}
	for _, c := range ctxs {
		c()
	}
}

func waitQueued(t *testing.T, b *batcher, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b.mu.Lock()
		q := len(b.queue)
		b.mu.Unlock()
		if q == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue holds %d, want %d", q, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestBatcherRaceCancellations: 64 goroutines × 50 rechecks with random
// cancellations through 3 slots; every recheck gets its own answer or its
// context's error, never another's; no slot or queue entry is lost.
func TestBatcherRaceCancellations(t *testing.T) {
	er := &echoResolver{}
	b := newBatcher(er, 3, 8, time.Minute)
	var wg sync.WaitGroup
	var bad atomic.Int32
	for g := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				ctx, cancel := context.WithCancel(context.Background())
				if (g+i)%7 == 0 {
					cancel()
				} else if (g+i)%11 == 0 {
					go cancel()
				}
				want := fmt.Sprint("inst-", g, "-", i)
				st, err := b.resolve(ctx, store.RuntimeQuery{InstanceID: want, UserID: "u"})
				if err == nil && st.InstanceID != want || err != nil && !errors.Is(err, context.Canceled) {
					bad.Add(1)
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	if n := bad.Load(); n > 0 {
		t.Fatalf("%d rechecks got another's answer or a wrong error", n)
	}
	if er.maxConc.Load() > 3 {
		t.Errorf("%d batches in flight, slots = 3", er.maxConc.Load())
	}
	if !b.idle() {
		t.Fatal("slot or queue entry lost")
	}
	if st, err := b.resolve(context.Background(), store.RuntimeQuery{InstanceID: "after"}); err != nil || st.InstanceID != "after" {
		t.Fatalf("recheck after the race: %+v %v", st, err)
	}
}

// TestBatcherSharedBatchDeadline: a shared batch runs until the latest
// deadline among its requests when that comes before the batcher's timeout
// (nobody waits for it after that), and until the timeout when any request
// has no deadline; a batch of one runs on its caller's deadline.
func TestBatcherSharedBatchDeadline(t *testing.T) {
	base := time.Now()
	for _, tc := range []struct {
		name       string
		deadlines  []time.Duration // of the two queued requests; 0: none
		wantLatest bool
	}{
		{"both have deadlines", []time.Duration{20 * time.Second, 40 * time.Second}, true},
		{"one has none", []time.Duration{20 * time.Second, 0}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			er := &echoResolver{gate: make(chan struct{}), started: make(chan int, 4)}
			b := newBatcher(er, 1, 8, time.Hour)
			out := make(chan error, 3)
			go func() { _, err := b.resolve(context.Background(), store.RuntimeQuery{InstanceID: "first"}); out <- err }()
			<-er.started
			for i, d := range tc.deadlines {
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				if d > 0 {
					ctx, cancel = context.WithDeadline(ctx, base.Add(d))
				}
				defer cancel()
				go func() { _, err := b.resolve(ctx, store.RuntimeQuery{InstanceID: fmt.Sprint("q", i)}); out <- err }()
			}
			waitQueued(t, b, 2)
			close(er.gate)
			for range 3 {
				if err := <-out; err != nil {
					t.Fatal(err)
				}
			}
			er.mu.Lock()
			defer er.mu.Unlock()
			if len(er.ctxEnds) != 2 {
				t.Fatalf("%d batches, want 2", len(er.ctxEnds))
			}
			if first := er.ctxEnds[0]; first.Before(base.Add(59 * time.Minute)) {
				t.Errorf("batch of one without a caller deadline ends at %v, want the 1 h timeout", first.Sub(base))
			}
			got := er.ctxEnds[1]
			if tc.wantLatest && !got.Equal(base.Add(40*time.Second)) {
				t.Errorf("shared batch ends %v after start, want the latest request deadline (40s)", got.Sub(base))
			}
			if !tc.wantLatest && got.Before(base.Add(59*time.Minute)) {
				t.Errorf("shared batch with a deadline-less request ends %v after start, want the 1 h timeout", got.Sub(base))
			}
		})
	}
}
