package xds

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"time"

	"mcpgw/store"
)

// fakeStore is an in-memory Store for xds unit tests: the routable set, a
// change feed the test drives, injectable failures, and recorded audit
// events.
type fakeStore struct {
	mu      sync.Mutex
	configs map[string]store.RoutableConfig
	feed    chan store.Change
	listErr error
	audits  []store.AuditEvent
}

func newFakeStore(rcs ...store.RoutableConfig) *fakeStore {
	f := &fakeStore{configs: map[string]store.RoutableConfig{}, feed: make(chan store.Change, 128)}
	for _, rc := range rcs {
		f.configs[rc.Config.ID] = rc
	}
	return f
}

func (f *fakeStore) ListRoutable(ctx context.Context) ([]store.RoutableConfig, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.listErr != nil {
		return nil, f.listErr
	}
	out := make([]store.RoutableConfig, 0, len(f.configs))
	for _, rc := range f.configs {
		out = append(out, rc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Config.ID < out[j].Config.ID })
	return out, nil
}

func (f *fakeStore) GetRoutable(ctx context.Context, id string) (store.RoutableConfig, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rc, ok := f.configs[id]
	if !ok {
		return store.RoutableConfig{}, fmt.Errorf("get %s: %w", id, store.ErrNotFound)
	}
	return rc, nil
}

func (f *fakeStore) Watch(ctx context.Context) (<-chan store.Change, error) {
	out := make(chan store.Change)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case c := <-f.feed:
				select {
				case out <- c:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

func (f *fakeStore) AppendAudit(ctx context.Context, evs ...store.AuditEvent) error {
	for _, ev := range evs {
		if err := ev.Validate(); err != nil { // as the real stores do
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.audits = append(f.audits, evs...)
	return nil
}

func (f *fakeStore) auditEvents() []store.AuditEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]store.AuditEvent(nil), f.audits...)
}

// put stores rc and announces it on the feed.
func (f *fakeStore) put(rc store.RoutableConfig) {
	f.mu.Lock()
	f.configs[rc.Config.ID] = rc
	f.mu.Unlock()
	f.feed <- store.Change{Kind: store.ChangeConfig, ConfigID: rc.Config.ID}
}

// rotate gives a config a new route key and announces it.
func (f *fakeStore) rotate(id, key string) {
	f.mu.Lock()
	rc := f.configs[id]
	rc.Route.Key = key
	rc.Route.ID = store.NewID()
	f.configs[id] = rc
	f.mu.Unlock()
	f.feed <- store.Change{Kind: store.ChangeRoute, ConfigID: id}
}

// fakeResolver answers from a table; it implements Resolver and
// TTLResolver. Unknown hosts fail like NXDOMAIN.
type fakeResolver struct {
	mu      sync.Mutex
	answers map[string]fakeAnswer
	calls   map[string]int
}

type fakeAnswer struct {
	addrs []netip.Addr
	ttl   time.Duration
	err   error
}

func newFakeResolver() *fakeResolver {
	return &fakeResolver{answers: map[string]fakeAnswer{}, calls: map[string]int{}}
}

func (r *fakeResolver) set(host string, ttl time.Duration, addrs ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := fakeAnswer{ttl: ttl}
	for _, s := range addrs {
		a.addrs = append(a.addrs, netip.MustParseAddr(s))
	}
	r.answers[host] = a
}

func (r *fakeResolver) fail(host string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.answers[host] = fakeAnswer{err: errors.New("SERVFAIL")}
}

func (r *fakeResolver) LookupNetIPTTL(ctx context.Context, host string) ([]netip.Addr, time.Duration, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls[host]++
	a, ok := r.answers[host]
	if !ok {
		return nil, 0, fmt.Errorf("lookup %s: no such host", host)
	}
	return a.addrs, a.ttl, a.err
}

func (r *fakeResolver) LookupNetIP(ctx context.Context, _, host string) ([]netip.Addr, error) {
	a, _, err := r.LookupNetIPTTL(ctx, host)
	return a, err
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// routable returns a routable config fixture.
func routable(id string, scope store.OwnerScope, owner, remote, key string, passthrough bool) store.RoutableConfig {
	return store.RoutableConfig{
		Config: store.Config{ID: id, OwnerScope: scope, OwnerID: owner, Name: "cfg " + id, RemoteURL: remote,
			AuthMode: store.AuthNone, SharingMode: store.SingleUser, Status: store.ConfigEnabled, Version: 1,
			PathPassthrough: passthrough},
		Route: store.Route{ID: store.NewID(), ConfigID: id, OwnerScope: scope, OwnerID: owner, Key: key, Active: true},
	}
}
