// Package memory is the embedded store.Store: every table lives in process
// memory behind one mutex. It is the default for `mcpgw dev` and for tests
// of packages that need a store but not Postgres, and it runs the same
// conformance suite (store/storetest) as store/postgres.
//
// One sync.Mutex guards all state, so every method is trivially atomic: the
// mutex plays the part of a Postgres transaction. Values are deep-copied on
// the way in and on the way out, so a caller can never mutate stored state
// through a slice, map or pointer it passed in or got back.
//
// Two methods run caller code, and neither holds the store lock while it
// runs: UpdateConfig applies its update function optimistically (retrying
// if the config changed meanwhile) and LockGrant runs fn holding only a
// per-instance lock. Either may therefore take time or read the store.
package memory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"mcpgw/store"
)

// Store is the in-memory store.Store. Create it with New; it is safe for
// concurrent use.
type Store struct {
	now func() time.Time

	mu     sync.Mutex
	closed bool

	users       map[string]*store.User
	emails      map[string]string    // email of a non-deleted user → id
	oidc        map[[2]string]string // issuer+subject → user id
	orgs        map[string]*store.Org
	members     map[memberKey]*store.Member
	apiTokens   map[string]*store.APIToken // by id
	tokenHash   map[string]string          // string(Hash) → api token id
	sessions    map[string]*store.Session  // by string(IDHash)
	configs     map[string]*store.Config
	configRev   map[string]uint64       // bumped by every config write (UpdateConfig's optimistic check)
	routes      map[string]*store.Route // by route id
	routeKeys   map[string]string       // every route key ever used → route id
	activeRoute map[string]string       // config id → active route id
	assignments map[assignKey]*store.Assignment
	instances   map[string]*store.Instance
	live        map[instKey]string      // tuple → its non-terminal instance id
	grants      map[string]*store.Grant // by instance id
	regs        map[regKey]*store.ProviderRegistration
	pending     map[string]*store.PendingProviderState // by string(StateHash)
	clients     map[string]*store.OAuthClient
	authReqs    map[string]*store.AuthRequest
	consents    map[string]*store.ConsentTicket // by string(Hash)
	codes       map[string]*store.AuthCode      // by string(Hash)
	refresh     map[string]*store.RefreshToken  // by string(Hash)
	audit       []store.AuditEvent              // ascending ID
	auditSeq    int64
	rates       map[rateKey]*rateWindow
	leaders     map[string]bool
	grantLocks  map[string]*grantLock
	watchers    map[*watcher]struct{}
	watchBuffer int
}

type memberKey struct{ org, user string }
type assignKey struct{ config, user string }
type instKey struct {
	scope               store.OwnerScope
	owner, user, config string
}
type regKey struct {
	config  string
	version int64
}

// Option configures a Store.
type Option func(*Store)

// WithClock sets the clock used for CreatedAt/UpdatedAt defaults, audit
// times and RuntimeState.Checked (default time.Now). Expiry decisions never
// use it: every method that decides expiry takes `now` from its caller.
func WithClock(now func() time.Time) Option {
	return func(s *Store) {
		if now != nil {
			s.now = now
		}
	}
}

// New returns an empty, ready store.
func New(opts ...Option) *Store {
	s := &Store{
		now:         time.Now,
		users:       map[string]*store.User{},
		emails:      map[string]string{},
		oidc:        map[[2]string]string{},
		orgs:        map[string]*store.Org{},
		members:     map[memberKey]*store.Member{},
		apiTokens:   map[string]*store.APIToken{},
		tokenHash:   map[string]string{},
		sessions:    map[string]*store.Session{},
		configs:     map[string]*store.Config{},
		configRev:   map[string]uint64{},
		routes:      map[string]*store.Route{},
		routeKeys:   map[string]string{},
		activeRoute: map[string]string{},
		assignments: map[assignKey]*store.Assignment{},
		instances:   map[string]*store.Instance{},
		live:        map[instKey]string{},
		grants:      map[string]*store.Grant{},
		regs:        map[regKey]*store.ProviderRegistration{},
		pending:     map[string]*store.PendingProviderState{},
		clients:     map[string]*store.OAuthClient{},
		authReqs:    map[string]*store.AuthRequest{},
		consents:    map[string]*store.ConsentTicket{},
		codes:       map[string]*store.AuthCode{},
		refresh:     map[string]*store.RefreshToken{},
		rates:       map[rateKey]*rateWindow{},
		leaders:     map[string]bool{},
		grantLocks:  map[string]*grantLock{},
		watchers:    map[*watcher]struct{}{},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

var _ store.Store = (*Store)(nil)

// Ping reports ErrUnavailable once the store is closed.
func (s *Store) Ping(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.usable(ctx)
}

// Close makes the store unusable and ends every Watch channel.
func (s *Store) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	for w := range s.watchers {
		w.stop()
	}
}

// lock takes the store lock after checking ctx and that the store is open.
// On success the caller must s.mu.Unlock().
func (s *Store) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	s.mu.Lock()
	if err := s.usable(ctx); err != nil {
		s.mu.Unlock()
		return err
	}
	return nil
}

func (s *Store) usable(ctx context.Context) error {
	if s.closed {
		return fmt.Errorf("%w: memory store closed", store.ErrUnavailable)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return nil
}

// stamp returns t, or the store clock's time when t is zero.
func (s *Store) stamp(t time.Time) time.Time {
	if t.IsZero() {
		return s.now()
	}
	return t
}

// validateEvent checks an optional audit event before any change.
func validateEvent(ev *store.AuditEvent) error {
	if ev == nil {
		return nil
	}
	return ev.Validate()
}

// appendAuditLocked writes one audit event inside the current "transaction".
func (s *Store) appendAuditLocked(ev store.AuditEvent) {
	s.auditSeq++
	ev = cloneAudit(ev)
	ev.ID = s.auditSeq
	ev.Time = s.stamp(ev.Time)
	s.audit = append(s.audit, ev)
}

// auditLocked writes ev when non-nil.
func (s *Store) auditLocked(ev *store.AuditEvent) {
	if ev != nil {
		s.appendAuditLocked(*ev)
	}
}

func notFound(what string) error    { return fmt.Errorf("%w: %s", store.ErrNotFound, what) }
func conflict(what string) error    { return fmt.Errorf("%w: %s", store.ErrConflict, what) }
func errConsumed(what string) error { return fmt.Errorf("%w: %s", store.ErrConsumed, what) }
func errExpired(what string) error  { return fmt.Errorf("%w: %s", store.ErrExpired, what) }
func errRevoked(what string) error  { return fmt.Errorf("%w: %s", store.ErrRevoked, what) }

// expired reports whether an expiry has passed at now. A value is valid
// while now < expiresAt, matching the Postgres `expires_at > $now` rule.
func expired(expiresAt, now time.Time) bool { return !now.Before(expiresAt) }
