// Package testsupport holds the test scaffolding that the oauthserver and
// provider test environments share: both store backends, an injectable
// clock, a concurrency-safe log buffer and the DESIGN §9 leak search.
package testsupport

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"mcpgw/store"
	"mcpgw/store/memory"
	"mcpgw/store/postgres/pgtest"
)

// Backends runs fn against the memory store and a fresh Postgres database.
func Backends(t *testing.T, fn func(t *testing.T, newStore func(t *testing.T) store.Store)) {
	t.Run("memory", func(t *testing.T) {
		fn(t, func(t *testing.T) store.Store { return memory.New() })
	})
	t.Run("postgres", func(t *testing.T) {
		fn(t, func(t *testing.T) store.Store { return pgtest.Store(t) })
	})
}

// Clock is an injectable clock: tests advance it instead of sleeping.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock starts a clock at now, truncated to the second, in UTC.
func NewClock() *Clock { return &Clock{t: time.Now().UTC().Truncate(time.Second)} }

func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// SyncBuffer is a bytes.Buffer that a logger may write from many
// goroutines while the test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Reset empties the buffer.
func (s *SyncBuffer) Reset() {
	s.mu.Lock()
	s.b.Reset()
	s.mu.Unlock()
}

// Leaked returns the planted secrets found anywhere DESIGN §9 forbids
// them: the logs, the audit rows of st, every metric of reg, and shown
// (whatever the test recorded as seen by clients or browsers: error
// bodies, pages, Location headers). A failed audit query fails the test,
// so the search can never silently skip the audit rows.
func Leaked(t testing.TB, planted []string, logs string, st store.Store, reg prometheus.Gatherer, shown []string) []string {
	t.Helper()
	var hay strings.Builder
	hay.WriteString(logs)
	events, _, err := st.QueryAudit(context.Background(), store.AuditFilter{Limit: 1000})
	if err != nil {
		t.Errorf("query audit: %v", err)
	}
	ab, _ := json.Marshal(events)
	hay.Write(ab)
	mfs, err := reg.Gather()
	if err != nil {
		t.Errorf("gather metrics: %v", err)
	}
	for _, mf := range mfs {
		hay.WriteString(mf.String())
	}
	for _, s := range shown {
		hay.WriteString(s)
	}
	all := hay.String()
	var found []string
	for _, p := range planted {
		if strings.Contains(all, p) {
			found = append(found, p)
		}
	}
	return found
}
