package memory

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"mcpgw/store"
)

// liveInstanceLocked returns the one non-terminal instance of the tuple, or
// nil.
func (s *Store) liveInstanceLocked(scope store.OwnerScope, ownerID, userID, configID string) *store.Instance {
	if id, ok := s.live[instKey{scope, ownerID, userID, configID}]; ok {
		return s.instances[id]
	}
	return nil
}

// bumpGrantLocked deletes the instance's grant and advances its grant
// version: every grant change moves the version forward (DESIGN §5).
func (s *Store) bumpGrantLocked(in *store.Instance, now time.Time) {
	delete(s.grants, in.ID)
	in.GrantVersion++
	in.UpdatedAt = now
}

// endInstanceLocked moves an instance to a terminal state and deletes its
// grant (version advances) and pending provider state.
func (s *Store) endInstanceLocked(in *store.Instance, state store.InstanceState, now time.Time) {
	in.State = state
	delete(s.live, instKey{in.OwnerScope, in.OwnerID, in.UserID, in.ConfigID})
	s.bumpGrantLocked(in, now)
	id := in.ID
	s.deletePendingLocked(func(p *store.PendingProviderState) bool { return p.InstanceID == id })
}

func (s *Store) deletePendingLocked(match func(*store.PendingProviderState) bool) {
	for k, p := range s.pending {
		if match(p) {
			delete(s.pending, k)
		}
	}
}

// GetOrCreateInstance returns the tuple's non-terminal instance or creates
// one. It checks that the user and config exist (as the Postgres foreign
// keys do) but not eligibility.
func (s *Store) GetOrCreateInstance(ctx context.Context, scope store.OwnerScope, ownerID, userID, configID, newID string) (store.Instance, bool, error) {
	if err := store.ValidateInstanceKey(scope, ownerID, userID, configID, newID); err != nil {
		return store.Instance{}, false, err
	}
	if err := s.lock(ctx); err != nil {
		return store.Instance{}, false, err
	}
	defer s.mu.Unlock()
	if in := s.liveInstanceLocked(scope, ownerID, userID, configID); in != nil {
		return *in, false, nil
	}
	if _, ok := s.users[userID]; !ok {
		return store.Instance{}, false, notFound("user")
	}
	if _, ok := s.configs[configID]; !ok {
		return store.Instance{}, false, notFound("config")
	}
	if _, ok := s.instances[newID]; ok {
		return store.Instance{}, false, conflict("instance id taken")
	}
	now := s.now()
	in := &store.Instance{ID: newID, OwnerScope: scope, OwnerID: ownerID, UserID: userID, ConfigID: configID,
		State: store.InstanceActive, CreatedAt: now, UpdatedAt: now}
	s.instances[newID] = in
	s.live[instKey{scope, ownerID, userID, configID}] = newID
	return *in, true, nil
}

func (s *Store) GetInstance(ctx context.Context, id string) (store.Instance, error) {
	if err := store.ValidateID("instance_id", id); err != nil {
		return store.Instance{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.Instance{}, err
	}
	defer s.mu.Unlock()
	in, ok := s.instances[id]
	if !ok {
		return store.Instance{}, notFound("instance")
	}
	return *in, nil
}

func (s *Store) ListInstances(ctx context.Context, userID, configID string, includeTerminal bool) ([]store.Instance, error) {
	if err := store.ValidateOptionalID("user_id", userID); err != nil {
		return nil, err
	}
	if err := store.ValidateOptionalID("config_id", configID); err != nil {
		return nil, err
	}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := []store.Instance{}
	for _, in := range s.instances {
		if (userID != "" && in.UserID != userID) || (configID != "" && in.ConfigID != configID) {
			continue
		}
		if in.State.Terminal() && !includeTerminal {
			continue
		}
		out = append(out, *in)
	}
	slices.SortFunc(out, func(a, b store.Instance) int {
		return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), cmp.Compare(b.ID, a.ID))
	})
	return out, nil
}

func (s *Store) EndInstance(ctx context.Context, id string, state store.InstanceState, ev *store.AuditEvent) (store.Instance, error) {
	if err := store.ValidateID("instance_id", id); err != nil {
		return store.Instance{}, err
	}
	if err := store.ValidateEndState(state); err != nil {
		return store.Instance{}, err
	}
	if err := validateEvent(ev); err != nil {
		return store.Instance{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.Instance{}, err
	}
	defer s.mu.Unlock()
	in, ok := s.instances[id]
	if !ok {
		return store.Instance{}, notFound("instance")
	}
	if in.State.Terminal() {
		return store.Instance{}, conflict("instance already ended")
	}
	s.endInstanceLocked(in, state, s.now())
	s.auditLocked(ev)
	return *in, nil
}

// --- grants ---

// writeGrantLocked stores g as the instance's grant at the next grant
// version and makes the instance active.
func (s *Store) writeGrantLocked(in *store.Instance, g store.Grant, now time.Time) store.Grant {
	in.GrantVersion++
	in.State = store.InstanceActive
	in.UpdatedAt = now
	g = cloneGrant(g)
	g.InstanceID = in.ID
	g.Version = in.GrantVersion
	g.TokenType = "Bearer"
	g.UpdatedAt = now
	s.grants[in.ID] = &g
	return cloneGrant(g)
}

func (s *Store) PutGrant(ctx context.Context, g store.Grant, expectVersion int64, ev *store.AuditEvent) (store.Grant, error) {
	if err := g.Validate(); err != nil {
		return store.Grant{}, err
	}
	if err := store.ValidateExpectVersion(expectVersion); err != nil {
		return store.Grant{}, err
	}
	if err := validateEvent(ev); err != nil {
		return store.Grant{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.Grant{}, err
	}
	defer s.mu.Unlock()
	in, ok := s.instances[g.InstanceID]
	if !ok {
		return store.Grant{}, notFound("instance")
	}
	if in.State.Terminal() {
		return store.Grant{}, conflict("instance is terminal")
	}
	if expectVersion >= 0 && in.GrantVersion != expectVersion {
		return store.Grant{}, fmt.Errorf("%w: grant version moved", store.ErrStale)
	}
	out := s.writeGrantLocked(in, g, s.now())
	s.auditLocked(ev)
	return out, nil
}

func (s *Store) GetGrant(ctx context.Context, instanceID string) (store.Grant, error) {
	if err := store.ValidateID("instance_id", instanceID); err != nil {
		return store.Grant{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.Grant{}, err
	}
	defer s.mu.Unlock()
	g, ok := s.grants[instanceID]
	if !ok {
		return store.Grant{}, notFound("grant")
	}
	return cloneGrant(*g), nil
}

func (s *Store) RevokeGrant(ctx context.Context, instanceID string, ev *store.AuditEvent) (int64, error) {
	if err := store.ValidateID("instance_id", instanceID); err != nil {
		return 0, err
	}
	if err := validateEvent(ev); err != nil {
		return 0, err
	}
	if err := s.lock(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	in, ok := s.instances[instanceID]
	if !ok {
		return 0, notFound("instance")
	}
	s.bumpGrantLocked(in, s.now())
	s.auditLocked(ev)
	return in.GrantVersion, nil
}

func (s *Store) MarkNeedsReauth(ctx context.Context, instanceID string, grantVersion int64, ev *store.AuditEvent) (bool, error) {
	if err := store.ValidateID("instance_id", instanceID); err != nil {
		return false, err
	}
	if err := store.ValidateGrantVersion(grantVersion); err != nil {
		return false, err
	}
	if err := validateEvent(ev); err != nil {
		return false, err
	}
	if err := s.lock(ctx); err != nil {
		return false, err
	}
	defer s.mu.Unlock()
	in, ok := s.instances[instanceID]
	if !ok {
		return false, notFound("instance")
	}
	if in.State != store.InstanceActive || in.GrantVersion != grantVersion {
		return false, nil
	}
	in.State = store.InstanceNeedsReauth
	s.bumpGrantLocked(in, s.now())
	s.auditLocked(ev)
	return true, nil
}

// grantLock is one instance's LockGrant lock: a one-slot channel, so that
// waiting for it can honour ctx.
type grantLock struct {
	ch   chan struct{}
	refs int
}

// acquireGrantLock takes the instance's LockGrant lock or returns when ctx
// ends.
func (s *Store) acquireGrantLock(ctx context.Context, instanceID string) (release func(), err error) {
	s.mu.Lock()
	l, ok := s.grantLocks[instanceID]
	if !ok {
		l = &grantLock{ch: make(chan struct{}, 1)}
		s.grantLocks[instanceID] = l
	}
	l.refs++
	s.mu.Unlock()
	drop := func() {
		s.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(s.grantLocks, instanceID)
		}
		s.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; drop() }, nil
	case <-ctx.Done():
		drop()
		return nil, fmt.Errorf("%w: waiting for grant lock: %w", store.ErrUnavailable, ctx.Err())
	}
}

// LockGrant serializes every LockGrant caller of one instance with a
// per-instance lock (the counterpart of Postgres's row lock) and runs fn
// without holding the store lock, so fn may take time and may read the
// store. Writers that do not go through LockGrant (PutGrant, RevokeGrant,
// MarkNeedsReauth, cascades) are not blocked by it; if one of them changed
// the grant version while fn ran, fn's write is refused with ErrStale (and
// ErrConflict if the instance became terminal) — a newer grant is never
// clobbered.
func (s *Store) LockGrant(ctx context.Context, instanceID string, fn func(current *store.Grant) (*store.Grant, error)) (*store.Grant, error) {
	if err := store.ValidateID("instance_id", instanceID); err != nil {
		return nil, err
	}
	if fn == nil {
		return nil, store.Invalid("fn", "required")
	}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	s.mu.Unlock()
	release, err := s.acquireGrantLock(ctx, instanceID)
	if err != nil {
		return nil, err
	}
	defer release()

	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	in, ok := s.instances[instanceID]
	if !ok {
		s.mu.Unlock()
		return nil, notFound("instance")
	}
	if in.State.Terminal() {
		s.mu.Unlock()
		return nil, conflict("instance is terminal")
	}
	readVersion := in.GrantVersion
	var current *store.Grant
	if g, ok := s.grants[instanceID]; ok {
		current = cloneGrantPtr(g)
	}
	s.mu.Unlock()

	next, err := fn(cloneGrantPtr(current))
	if err != nil {
		return nil, err
	}
	if next == nil {
		return current, nil
	}
	w := cloneGrant(*next)
	if w.InstanceID == "" {
		w.InstanceID = instanceID
	}
	if w.InstanceID != instanceID {
		return nil, store.Invalid("grant.instance_id", "differs from the locked instance")
	}
	if err := w.Validate(); err != nil {
		return nil, err
	}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	in, ok = s.instances[instanceID]
	if !ok {
		return nil, notFound("instance")
	}
	if in.State.Terminal() {
		return nil, conflict("instance is terminal")
	}
	if in.GrantVersion != readVersion {
		return nil, fmt.Errorf("%w: grant changed while locked", store.ErrStale)
	}
	out := s.writeGrantLocked(in, w, s.now())
	return &out, nil
}
