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
	// QueueSize bounds the in-memory queue; when it is full, events are
	// dropped and counted (mcpgw_extauthz_audit_dropped_total) rather than
	// blocking Check. Default 8192.
	QueueSize int
	// FlushInterval is how often coalesced rows are written. Default 1 s.
	FlushInterval time.Duration
	// MaxRows caps distinct rows per flush; reaching it flushes early.
	// Default 500.
	MaxRows int
}

// usage is one request's audit facts, queued by value (no allocation).
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
type auditor struct {
	st      store.AuditStore
	opts    AuditOptions
	m       *metrics
	log     *slog.Logger
	now     func() time.Time
	q       chan usage
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
	a := &auditor{st: st, opts: o, m: m, log: log, now: now,
		q: make(chan usage, o.QueueSize), stop: make(chan struct{}), done: make(chan struct{})}
	go a.run()
	return a
}

// record queues u without ever blocking.
func (a *auditor) record(u usage) {
	select {
	case a.q <- u:
	default:
		a.m.auditDropped.Inc()
	}
}

func (a *auditor) run() {
	defer close(a.done)
	t := time.NewTicker(a.opts.FlushInterval)
	defer t.Stop()
	pending := map[usage]int{}
	var since time.Time
	flush := func() {
		if len(pending) == 0 {
			return
		}
		a.write(pending, since)
		pending = map[usage]int{}
	}
	add := func(u usage) {
		if len(pending) == 0 {
			since = a.now()
		}
		pending[u]++
		if len(pending) >= a.opts.MaxRows {
			flush()
		}
	}
	for {
		select {
		case u := <-a.q:
			add(u)
		case <-t.C:
			flush()
		case <-a.stop:
			for {
				select {
				case u := <-a.q:
					add(u)
				default:
					flush()
					return
				}
			}
		}
	}
}

func (a *auditor) write(pending map[usage]int, since time.Time) {
	now := a.now()
	evs := make([]store.AuditEvent, 0, len(pending))
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
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.st.AppendAudit(ctx, evs...); err != nil {
		a.m.auditFailures.Inc()
		a.log.Warn("extauthz: usage audit write failed", "rows", len(evs), "err", err)
		return
	}
	a.m.auditWritten.Add(float64(len(evs)))
}

// close flushes what is queued and stops the worker.
func (a *auditor) close() {
	a.closeMu.Do(func() { close(a.stop) })
	<-a.done
}
