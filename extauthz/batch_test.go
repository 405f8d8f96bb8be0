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
	calls   atomic.Int32
	maxSeen atomic.Int32
	gate    chan struct{} // if set, each batch waits for it
}

const failUser = "00000000-0000-4000-8000-00000000dead"

func (e *echoResolver) ResolveRuntimeBatch(ctx context.Context, qs []store.RuntimeQuery) ([]store.RuntimeState, []error) {
	e.calls.Add(1)
	for {
		m := e.maxSeen.Load()
		if int32(len(qs)) <= m || e.maxSeen.CompareAndSwap(m, int32(len(qs))) {
			break
		}
	}
	if e.gate != nil {
		<-e.gate
	}
	st := make([]store.RuntimeState, len(qs))
	errs := make([]error, len(qs))
	for i, q := range qs {
		if q.UserID == failUser {
			errs[i] = fmt.Errorf("boom: %w", store.ErrUnavailable)
			continue
		}
		st[i] = store.RuntimeState{InstanceID: q.InstanceID}
	}
	return st, errs
}

// TestBatcherRoutesAnswers: many concurrent rechecks each get their own
// answer (or error), batches form under concurrency, and a request whose
// context ends stops waiting.
func TestBatcherRoutesAnswers(t *testing.T) {
	er := &echoResolver{}
	b := newBatcher(er, 2, 8, time.Second)
	defer b.close()
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
	t.Logf("400 rechecks in %d round trips (largest batch %d)", er.calls.Load(), er.maxSeen.Load())

	// A cancelled request returns promptly even while its batch is stuck.
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
	sb.close()
}
