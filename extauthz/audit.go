package extauthz

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"mcpgw/store"
)

// AuditOptions tune the asynchronous usage audit (DESIGN §6 step 9).
type AuditOptions struct {
	// QueueSize bounds the distinct usage rows held in memory waiting to be
	// written; a request whose usage would add a row beyond it is dropped
	// and counted (mcpgw_extauthz_audit_dropped_total) rather than blocking
	// Check. A request with the same usage as a waiting row only adds to
	// its count, so it is never dropped. Default 8192.
	QueueSize int
	// FlushInterval is how often coalesced rows are written. Default 1 s.
	FlushInterval time.Duration
	// MaxRows caps the rows of one write; reaching it flushes early.
	// Default 500.
	MaxRows int
}

// usage is one request's audit facts, coalesced by value (no allocation).
type usage struct {
	outcome    string // "allowed" or "denied"
	reason     string
	ownerScope store.OwnerScope
	ownerID    string
	configID   string
	instanceID string
	userID     string
	clientID   string
}

// auditor coalesces usage into one row per distinct usage per flush window
// with a request count, so the audit table grows with distinct activity,
// not with request rate, and writes them in batches off the hot path.
//
// Check adds to the window under a mutex held for one map update; it never
// wakes the writer except when a window reaches MaxRows rows. (A channel
// per request would wake the writer goroutine, and so an idle OS thread,
// on every Check: measurable latency and CPU at low concurrency.)
type auditor struct {
	st   store.AuditStore
	opts AuditOptions
	m    *metrics
	log  *slog.Logger
	now  func() time.Time

	mu      sync.Mutex
	pending map[usage]int // the open window
	since   time.Time     // when the open window got its first row

	kick    chan struct{} // buffered 1: the window reached MaxRows
	stop    chan struct{}
	done    chan struct{}
	closeMu sync.Once
}

func newAuditor(st store.AuditStore, o AuditOptions, m *metrics, log *slog.Logger, now func() time.Time) *auditor {
	if o.QueueSize <= 0 {
		o.QueueSize = 8192
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Second
	}
	if o.MaxRows <= 0 {
		o.MaxRows = 500
	}
	a := &auditor{st: st, opts: o, m: m, log: log, now: now, pending: map[usage]int{},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go a.run()
	return a
}

// record adds u to the open window without ever blocking on the writer.
func (a *auditor) record(u usage) {
	a.mu.Lock()
	if n, ok := a.pending[u]; ok {
		a.pending[u] = n + 1
		a.mu.Unlock()
		return
	}
	if len(a.pending) >= a.opts.QueueSize {
		a.mu.Unlock()
		a.m.auditDropped.Inc()
		return
	}
	if len(a.pending) == 0 {
		a.since = a.now()
	}
	a.pending[u] = 1
	full := len(a.pending) == a.opts.MaxRows
	a.mu.Unlock()
	if full {
		select {
		case a.kick <- struct{}{}:
		default:
		}
	}
}

// take closes the open window and returns it (nil when empty).
func (a *auditor) take() (map[usage]int, time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.pending) == 0 {
		return nil, time.Time{}
	}
	p, since := a.pending, a.since
	a.pending = make(map[usage]int, len(p))
	return p, since
}

func (a *auditor) run() {
	defer close(a.done)
	t := time.NewTicker(a.opts.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-a.kick:
		case <-a.stop:
			if p, since := a.take(); p != nil {
				a.write(p, since)
			}
			return
		}
		if p, since := a.take(); p != nil {
			a.write(p, since)
		}
	}
}

// write stores one closed window, MaxRows rows per AppendAudit call, all
// within one deadline: a database that hangs costs one window at most
// writeTimeout (so shutdown, which writes the last window, stays bounded).
// After a failed chunk the rest of the window is not attempted; its rows
// are counted as failed with it.
func (a *auditor) write(pending map[usage]int, since time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), auditWriteTimeout)
	defer cancel()
	now := a.now()
	evs := make([]store.AuditEvent, 0, min(len(pending), a.opts.MaxRows))
	left := len(pending)
	for u, n := range pending {
		evs = append(evs, store.AuditEvent{
			Time:       now,
			Type:       "runtime.usage",
			Outcome:    u.outcome,
			OwnerScope: u.ownerScope,
			OwnerID:    u.ownerID,
			ConfigID:   u.configID,
			InstanceID: u.instanceID,
			UserID:     u.userID,
			ClientID:   u.clientID,
			Reason:     u.reason,
			Metadata: map[string]string{
				"requests":     strconv.Itoa(n),
				"window_start": since.UTC().Format(time.RFC3339Nano),
			},
		})
		if len(evs) == a.opts.MaxRows || len(evs) == left {
			if !a.append(ctx, evs, left) {
				return
			}
			left -= len(evs)
			evs = make([]store.AuditEvent, 0, min(left, a.opts.MaxRows))
		}
	}
}

// auditWriteTimeout bounds the writing of one window.
const auditWriteTimeout = 10 * time.Second

// append writes one chunk; on failure it counts the chunk and everything
// after it in the window (left rows) as failed and reports false.
func (a *auditor) append(ctx context.Context, evs []store.AuditEvent, left int) bool {
	if err := a.st.AppendAudit(ctx, evs...); err != nil {
		a.m.auditFailures.Inc()
		a.log.Warn("extauthz: usage audit write failed", "rows", len(evs), "rows_not_written", left, "err", err)
		return false
	}
	a.m.auditWritten.Add(float64(len(evs)))
	return true
}

// close writes the open window and stops the worker.
func (a *auditor) close() {
	a.closeMu.Do(func() { close(a.stop) })
	<-a.done
}
