package extauthz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"mcpgw/domain/signing"
	"mcpgw/store"
)

// TestJWKS: keys come from the oauthserver's JWKS URL; an unknown kid
// triggers a refetch (a rotation), but at most once per MinRefresh, and a
// Check verified through JWKS is allowed.
func TestJWKS(t *testing.T) {
	key, other, _ := fixtureKeys(t)
	var mu sync.Mutex
	set, _ := signing.NewSet(key)
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(set.JWKS())
	}))
	defer srv.Close()
	clk := newClock()
	j, err := NewJWKS(JWKSOptions{URL: srv.URL, MinRefresh: 10 * time.Second, Now: clk.Now})
	must(t, err)
	ctx := context.Background()

	if _, err := j.PublicKey(ctx, key.ID); err != nil {
		t.Fatalf("known kid: %v", err)
	}
	if _, err := j.PublicKey(ctx, other.ID); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown kid right after a fetch: %v", err)
	}
	if n := fetches.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1 (rate limited)", n)
	}
	// Rotation: the oauthserver now publishes other as current.
	mu.Lock()
	set, _ = signing.NewSet(other, key)
	mu.Unlock()
	for i := 0; i < 5; i++ {
		_, _ = j.PublicKey(ctx, "nope-"+string(rune('a'+i)))
	}
	if n := fetches.Load(); n != 1 {
		t.Fatalf("fetches = %d within MinRefresh, want 1", n)
	}
	clk.Advance(11 * time.Second)
	if _, err := j.PublicKey(ctx, other.ID); err != nil {
		t.Fatalf("rotated kid after MinRefresh: %v", err)
	}
	if n := fetches.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2", n)
	}

	// Through Check.
	fs := &fakeStore{}
	e := newEnv(t, fs, func(o *Options) { o.Keys = j })
	r := newRoute(store.ScopeUser)
	fs.state = okState(r, store.AuthNone)
	tok := mint(t, other, r.claims(e.clock.Now()))
	if got := checkStatus(t, e, r, tok); got != 200 {
		t.Fatalf("Check with JWKS key: %d", got)
	}

	// A broken JWKS endpoint keeps the old keys.
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", 500) })
	clk.Advance(11 * time.Second)
	if err := j.Refresh(ctx); err == nil {
		t.Fatal("refresh against a 500 succeeded")
	}
	if _, err := j.PublicKey(ctx, other.ID); err != nil {
		t.Fatalf("kept key after failed refresh: %v", err)
	}
}

// blockingAudit never returns until released: the audit writer is stuck.
type blockingAudit struct {
	fakeStore
	release chan struct{}
}

func (b *blockingAudit) AppendAudit(ctx context.Context, evs ...store.AuditEvent) error {
	<-b.release
	return b.fakeStore.AppendAudit(ctx, evs...)
}

// TestAuditNeverBlocks: with the audit writer stuck and the window full of
// distinct usage rows, Checks still answer and the drops are counted; once
// released, what was held is written coalesced (one row per distinct usage
// with a count) and written + dropped accounts for every request.
func TestAuditNeverBlocks(t *testing.T) {
	b := &blockingAudit{release: make(chan struct{})}
	e := newEnv(t, b, func(o *Options) { o.Audit = AuditOptions{QueueSize: 4, FlushInterval: time.Millisecond, MaxRows: 1} })
	r := newRoute(store.ScopeUser)
	b.state = okState(r, store.AuthNone)
	const n = 20
	for i := 0; i < n; i++ {
		// Each token names another instance: the recheck answers for r's
		// instance, so these are denied (instance_mismatch), each its own
		// usage row. Every third request repeats r's own allowed usage.
		ri := r
		want := 200
		if i%3 != 0 {
			ri.instanceID = store.NewID()
			want = 403
		}
		tok := mint(t, e.key, ri.claims(e.clock.Now()))
		if got := checkStatus(t, e, r, tok); got != want {
			t.Fatalf("Check %d: %d, want %d", i, got, want)
		}
	}
	if d := testutil.ToFloat64(e.srv.m.auditDropped); d < 1 {
		t.Fatalf("audit drops = %v, want > 0 with a stuck writer", d)
	}
	close(b.release)
	e.srv.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.audit) == 0 {
		t.Fatal("no audit rows after release")
	}
	var total int
	for _, ev := range b.audit {
		if ev.Type != "runtime.usage" || ev.UserID != r.userID || ev.ConfigID != r.ref.ConfigID {
			t.Errorf("unexpected row %+v", ev)
		}
		if (ev.Outcome == "allowed") != (ev.InstanceID == r.instanceID) {
			t.Errorf("row outcome %q for instance %q", ev.Outcome, ev.InstanceID)
		}
		c, err := strconv.Atoi(ev.Metadata["requests"])
		if err != nil {
			t.Fatalf("requests = %q", ev.Metadata["requests"])
		}
		total += c
	}
	if dropped := int(testutil.ToFloat64(e.srv.m.auditDropped)); total+dropped != n {
		t.Errorf("written %d + dropped %d != %d requests", total, dropped, n)
	}
}

// TestAuditMaxRowsFlushesEarly: a window reaching MaxRows distinct rows is
// written at once, not at the next tick, in writes of at most MaxRows rows.
func TestAuditMaxRowsFlushesEarly(t *testing.T) {
	fs := &fakeStore{}
	e := newEnv(t, fs, func(o *Options) { o.Audit = AuditOptions{FlushInterval: time.Hour, MaxRows: 3} })
	r := newRoute(store.ScopeUser)
	fs.state = okState(r, store.AuthNone)
	for i := 0; i < 3; i++ {
		ri := r
		ri.instanceID = store.NewID()
		checkStatus(t, e, r, mint(t, e.key, ri.claims(e.clock.Now())))
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		fs.mu.Lock()
		rows, calls := len(fs.audit), fs.auditCalls
		fs.mu.Unlock()
		if rows == 3 {
			if calls != 1 {
				t.Fatalf("3 rows in %d writes, want 1", calls)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("window of MaxRows rows not written before the hour-long tick (rows=%d)", rows)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestAuditCoalesces: many requests of one usage become one row.
func TestAuditCoalesces(t *testing.T) {
	fs := &fakeStore{}
	e := newEnv(t, fs, func(o *Options) { o.Audit = AuditOptions{FlushInterval: time.Hour} })
	r := newRoute(store.ScopeUser)
	fs.state = okState(r, store.AuthNone)
	tok := mint(t, e.key, r.claims(e.clock.Now()))
	for i := 0; i < 10; i++ {
		checkStatus(t, e, r, tok)
	}
	fs.state = store.RuntimeState{Reason: store.ReasonUserBlocked}
	checkStatus(t, e, r, tok)
	e.srv.Close()
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if len(fs.audit) != 2 {
		t.Fatalf("rows = %d (%+v), want 2 (allowed x10, denied x1)", len(fs.audit), fs.audit)
	}
	for _, ev := range fs.audit {
		want := map[string]string{"allowed": "10", "denied": "1"}[ev.Outcome]
		if ev.Metadata["requests"] != want {
			t.Errorf("%s row requests = %q, want %q", ev.Outcome, ev.Metadata["requests"], want)
		}
		if ev.Outcome == "denied" && ev.Reason != "user_blocked" {
			t.Errorf("denied reason = %q", ev.Reason)
		}
	}
}

func TestLogLimiter(t *testing.T) {
	var l logLimiter
	t0 := time.Unix(1000, 0)
	if _, ok := l.allow(t0); !ok {
		t.Fatal("first line suppressed")
	}
	for i := 0; i < 5; i++ {
		if _, ok := l.allow(t0.Add(time.Duration(i) * 100 * time.Millisecond)); ok {
			t.Fatal("line within the second let through")
		}
	}
	n, ok := l.allow(t0.Add(1500 * time.Millisecond))
	if !ok || n != 5 {
		t.Fatalf("after a second: ok=%v suppressed=%d, want true 5", ok, n)
	}
}

// flakyAudit fails the first failN AppendAudit calls and records every
// call's context deadline.
type flakyAudit struct {
	fakeStore
	failN     int // calls failFrom..failFrom+failN-1 fail (failFrom 0 means 1)
	failFrom  int
	deadlines []time.Time
}

func (f *flakyAudit) AppendAudit(ctx context.Context, evs ...store.AuditEvent) error {
	d, _ := ctx.Deadline()
	f.mu.Lock()
	f.deadlines = append(f.deadlines, d)
	from := max(f.failFrom, 1)
	fail := len(f.deadlines) >= from && len(f.deadlines) < from+f.failN
	f.mu.Unlock()
	if fail {
		return fmt.Errorf("audit insert: %w", store.ErrUnavailable)
	}
	return f.fakeStore.AppendAudit(ctx, evs...)
}

// TestAuditWindowDeadlineAndFailure: a window is written in MaxRows chunks
// under one deadline (bounded, whatever the window size); after a failed
// chunk the rest of the window is not attempted.
func TestAuditWindowDeadlineAndFailure(t *testing.T) {
	for _, tc := range []struct {
		name                            string
		failN                           int
		wantCalls, wantRows, wantFailed int
	}{
		{"first chunk fails", 1, 1, 0, 1},
		{"second chunk fails", 1, 2, 1, 1},
		{"all chunks written", 0, 3, 3, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := &flakyAudit{failN: tc.failN}
			if tc.name == "second chunk fails" {
				fs.failFrom = 2
			}
			m, err := newMetrics(nil)
			if err != nil {
				t.Fatal(err)
			}
			a := newAuditor(fs, AuditOptions{FlushInterval: time.Hour, MaxRows: 1}, m, slog.New(slog.DiscardHandler), time.Now)
			defer a.close()
			window := map[usage]int{}
			for i := 0; i < 3; i++ {
				window[usage{outcome: "allowed", instanceID: fmt.Sprint("i", i)}] = i + 1
			}
			a.write(window, time.Now())
			fs.mu.Lock()
			defer fs.mu.Unlock()
			if len(fs.deadlines) != tc.wantCalls || len(fs.audit) != tc.wantRows {
				t.Fatalf("calls %d rows %d, want %d %d", len(fs.deadlines), len(fs.audit), tc.wantCalls, tc.wantRows)
			}
			if got := int(testutil.ToFloat64(m.auditFailures)); got != tc.wantFailed {
				t.Fatalf("failures %d, want %d", got, tc.wantFailed)
			}
			for _, d := range fs.deadlines {
				if d.IsZero() || !d.Equal(fs.deadlines[0]) {
					t.Fatalf("chunk deadlines %v: want one shared deadline", fs.deadlines)
				}
			}
		})
	}
}
