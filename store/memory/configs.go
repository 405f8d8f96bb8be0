package memory

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"mcpgw/store"
)

// ownerExistsLocked reports whether a config owner exists: a non-deleted
// user for user scope, an org for org scope.
func (s *Store) ownerExistsLocked(scope store.OwnerScope, ownerID string) bool {
	if scope == store.ScopeUser {
		u, ok := s.users[ownerID]
		return ok && u.Status != store.UserDeleted
	}
	_, ok := s.orgs[ownerID]
	return ok
}

func (s *Store) CreateConfig(ctx context.Context, c store.Config, routeID, routeKey string, ev *store.AuditEvent) (store.Config, store.Route, error) {
	if err := c.Validate(); err != nil {
		return store.Config{}, store.Route{}, err
	}
	if err := store.ValidateID("route_id", routeID); err != nil {
		return store.Config{}, store.Route{}, err
	}
	if err := store.ValidateRouteKey("route_key", routeKey); err != nil {
		return store.Config{}, store.Route{}, err
	}
	if err := validateEvent(ev); err != nil {
		return store.Config{}, store.Route{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.Config{}, store.Route{}, err
	}
	defer s.mu.Unlock()
	if !s.ownerExistsLocked(c.OwnerScope, c.OwnerID) {
		return store.Config{}, store.Route{}, notFound("config owner")
	}
	if _, ok := s.configs[c.ID]; ok {
		return store.Config{}, store.Route{}, conflict("config id taken")
	}
	if _, ok := s.routes[routeID]; ok {
		return store.Config{}, store.Route{}, conflict("route id taken")
	}
	if _, ok := s.routeKeys[routeKey]; ok {
		return store.Config{}, store.Route{}, conflict("route key used before")
	}
	now := s.now()
	c = cloneConfig(c)
	c.Version = 1
	if c.Status == "" {
		c.Status = store.ConfigEnabled
	}
	c.CreatedAt = s.stamp(c.CreatedAt)
	if c.UpdatedAt.IsZero() {
		c.UpdatedAt = c.CreatedAt
	}
	r := store.Route{ID: routeID, ConfigID: c.ID, OwnerScope: c.OwnerScope, OwnerID: c.OwnerID, Key: routeKey, Active: true, CreatedAt: now}
	s.configs[c.ID] = &c
	s.routes[routeID] = &r
	s.routeKeys[routeKey] = routeID
	s.activeRoute[c.ID] = routeID
	s.auditLocked(ev)
	s.emitLocked(store.Change{Kind: store.ChangeConfig, ConfigID: c.ID})
	return cloneConfig(c), cloneRoute(r), nil
}

func (s *Store) GetConfig(ctx context.Context, id string) (store.Config, error) {
	if err := store.ValidateID("config_id", id); err != nil {
		return store.Config{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.Config{}, err
	}
	defer s.mu.Unlock()
	c, ok := s.configs[id]
	if !ok {
		return store.Config{}, notFound("config")
	}
	return cloneConfig(*c), nil
}

func (s *Store) ListConfigs(ctx context.Context, scope store.OwnerScope, ownerID string) ([]store.Config, error) {
	if scope == "" {
		if ownerID != "" {
			return nil, store.Invalid("owner_id", "given without a scope")
		}
	} else {
		if !scope.Valid() {
			return nil, store.Invalid("owner_scope", "unknown owner scope")
		}
		if err := store.ValidateID("owner_id", ownerID); err != nil {
			return nil, err
		}
	}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := []store.Config{}
	for _, c := range s.configs {
		if c.Status == store.ConfigDeleted {
			continue
		}
		if scope != "" && (c.OwnerScope != scope || c.OwnerID != ownerID) {
			continue
		}
		out = append(out, cloneConfig(*c))
	}
	slices.SortFunc(out, func(a, b store.Config) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID)) })
	return out, nil
}

// maxUpdateAttempts bounds UpdateConfig's optimistic retries.
const maxUpdateAttempts = 64

// UpdateConfig is the read-modify-write of a config. update runs without
// the store lock, on a private copy, so it may take time (address checks)
// or read the store without stalling every other caller; the result is
// written only if the config did not change meanwhile (a per-config
// revision), otherwise update runs again on the fresh config. This gives
// the same no-lost-update guarantee as Postgres's SELECT ... FOR UPDATE.
// Without contention update runs exactly once.
func (s *Store) UpdateConfig(ctx context.Context, id string, update func(*store.Config) error, ev *store.AuditEvent) (store.Config, bool, error) {
	if err := store.ValidateID("config_id", id); err != nil {
		return store.Config{}, false, err
	}
	if update == nil {
		return store.Config{}, false, store.Invalid("update", "required")
	}
	if err := validateEvent(ev); err != nil {
		return store.Config{}, false, err
	}
	for range maxUpdateAttempts {
		if err := s.lock(ctx); err != nil {
			return store.Config{}, false, err
		}
		old, ok := s.configs[id]
		if !ok || old.Status == store.ConfigDeleted {
			s.mu.Unlock()
			return store.Config{}, false, notFound("config")
		}
		rev := s.configRev[id]
		next := cloneConfig(*old)
		s.mu.Unlock()

		if err := update(&next); err != nil {
			return store.Config{}, false, fmt.Errorf("update config: %w", err)
		}
		next = cloneConfig(next) // update may keep references to what it set

		if err := s.lock(ctx); err != nil {
			return store.Config{}, false, err
		}
		if s.configRev[id] != rev {
			s.mu.Unlock()
			continue
		}
		c, material, err := s.applyConfigUpdateLocked(s.configs[id], next, ev)
		s.mu.Unlock()
		return c, material, err
	}
	return store.Config{}, false, fmt.Errorf("%w: config kept changing during update", store.ErrStale)
}

// applyConfigUpdateLocked writes next over old with the cascades of a
// material change (store.ConfigStore.UpdateConfig).
func (s *Store) applyConfigUpdateLocked(old *store.Config, next store.Config, ev *store.AuditEvent) (store.Config, bool, error) {
	id := old.ID
	// Only the fields update may change survive (store.ConfigStore).
	next.ID, next.OwnerScope, next.OwnerID = old.ID, old.OwnerScope, old.OwnerID
	next.Status, next.Version, next.CreatedBy = old.Status, old.Version, old.CreatedBy
	next.CreatedAt, next.UpdatedAt = old.CreatedAt, old.UpdatedAt
	if err := next.Validate(); err != nil {
		return store.Config{}, false, err
	}
	if next.OwnerScope == store.ScopeOrg && old.SharingMode == store.MultiUser && next.SharingMode == store.SingleUser {
		n := 0
		for k := range s.assignments {
			if k.config == id {
				n++
			}
		}
		if n > 1 {
			return store.Config{}, false, conflict("more than one assignee for single_user")
		}
	}
	now := s.now()
	material := store.MaterialChange(old, &next)
	if material {
		next.Version = old.Version + 1
		for _, in := range s.instances {
			if in.ConfigID != id || in.State.Terminal() {
				continue
			}
			s.bumpGrantLocked(in, now)
			if next.AuthMode.IsOAuth() {
				in.State = store.InstanceNeedsReauth
			}
		}
		s.deletePendingLocked(func(p *store.PendingProviderState) bool { return p.ConfigID == id })
		s.deleteRegistrationsLocked(id)
	}
	next.UpdatedAt = now
	s.configs[id] = &next
	s.configRev[id]++
	s.auditLocked(ev)
	s.emitLocked(store.Change{Kind: store.ChangeConfig, ConfigID: id})
	return cloneConfig(next), material, nil
}

func (s *Store) SetConfigStatus(ctx context.Context, id string, status store.ConfigStatus, ev *store.AuditEvent) (store.Config, error) {
	if err := store.ValidateID("config_id", id); err != nil {
		return store.Config{}, err
	}
	if err := store.ValidateConfigStatusChange(status); err != nil {
		return store.Config{}, err
	}
	if err := validateEvent(ev); err != nil {
		return store.Config{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.Config{}, err
	}
	defer s.mu.Unlock()
	c, ok := s.configs[id]
	if !ok || c.Status == store.ConfigDeleted {
		return store.Config{}, notFound("config")
	}
	c.Status = status
	c.UpdatedAt = s.now()
	s.configRev[id]++
	s.auditLocked(ev)
	s.emitLocked(store.Change{Kind: store.ChangeConfig, ConfigID: id})
	return cloneConfig(*c), nil
}

// DeleteConfig implements the config-deletion cascade of DESIGN §7.
func (s *Store) DeleteConfig(ctx context.Context, id string, ev *store.AuditEvent) error {
	if err := store.ValidateID("config_id", id); err != nil {
		return err
	}
	if err := validateEvent(ev); err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	c, ok := s.configs[id]
	if !ok {
		return notFound("config")
	}
	if c.Status == store.ConfigDeleted {
		return nil
	}
	now := s.now()
	c.Status = store.ConfigDeleted
	c.UpdatedAt = now
	s.configRev[id]++
	if rid, ok := s.activeRoute[id]; ok {
		r := s.routes[rid]
		r.Active = false
		r.DeactivatedAt = ptr(now)
		delete(s.activeRoute, id)
	}
	for _, in := range s.instances {
		if in.ConfigID == id && !in.State.Terminal() {
			s.endInstanceLocked(in, store.InstanceRemoved, now)
		}
	}
	for k := range s.assignments {
		if k.config == id {
			delete(s.assignments, k)
		}
	}
	s.deletePendingLocked(func(p *store.PendingProviderState) bool { return p.ConfigID == id })
	s.deleteRegistrationsLocked(id)
	s.auditLocked(ev)
	s.emitLocked(store.Change{Kind: store.ChangeConfig, ConfigID: id})
	return nil
}

func (s *Store) deleteRegistrationsLocked(configID string) {
	for k := range s.regs {
		if k.config == configID {
			delete(s.regs, k)
		}
	}
}

// --- routes ---

func (s *Store) RotateRoute(ctx context.Context, configID, routeID, newKey string, ev *store.AuditEvent) (store.Route, error) {
	if err := store.ValidateID("config_id", configID); err != nil {
		return store.Route{}, err
	}
	if err := store.ValidateID("route_id", routeID); err != nil {
		return store.Route{}, err
	}
	if err := store.ValidateRouteKey("route_key", newKey); err != nil {
		return store.Route{}, err
	}
	if err := validateEvent(ev); err != nil {
		return store.Route{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.Route{}, err
	}
	defer s.mu.Unlock()
	c, ok := s.configs[configID]
	if !ok || c.Status == store.ConfigDeleted {
		return store.Route{}, notFound("config")
	}
	if _, ok := s.routeKeys[newKey]; ok {
		return store.Route{}, conflict("route key used before")
	}
	if _, ok := s.routes[routeID]; ok {
		return store.Route{}, conflict("route id taken")
	}
	now := s.now()
	if rid, ok := s.activeRoute[configID]; ok {
		old := s.routes[rid]
		old.Active = false
		old.DeactivatedAt = ptr(now)
	}
	r := store.Route{ID: routeID, ConfigID: configID, OwnerScope: c.OwnerScope, OwnerID: c.OwnerID, Key: newKey, Active: true, CreatedAt: now}
	s.routes[routeID] = &r
	s.routeKeys[newKey] = routeID
	s.activeRoute[configID] = routeID
	s.auditLocked(ev)
	s.emitLocked(store.Change{Kind: store.ChangeRoute, ConfigID: configID})
	return cloneRoute(r), nil
}

func (s *Store) GetActiveRoute(ctx context.Context, configID string) (store.Route, error) {
	if err := store.ValidateID("config_id", configID); err != nil {
		return store.Route{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.Route{}, err
	}
	defer s.mu.Unlock()
	rid, ok := s.activeRoute[configID]
	if !ok {
		return store.Route{}, notFound("route")
	}
	return cloneRoute(*s.routes[rid]), nil
}

func (s *Store) LookupRoute(ctx context.Context, scope store.OwnerScope, ownerID, configID, routeKey string) (store.Config, store.Route, error) {
	if !scope.Valid() {
		return store.Config{}, store.Route{}, store.Invalid("owner_scope", "unknown owner scope")
	}
	if err := store.ValidateID("owner_id", ownerID); err != nil {
		return store.Config{}, store.Route{}, err
	}
	if err := store.ValidateID("config_id", configID); err != nil {
		return store.Config{}, store.Route{}, err
	}
	if err := store.ValidateRouteKey("route_key", routeKey); err != nil {
		return store.Config{}, store.Route{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.Config{}, store.Route{}, err
	}
	defer s.mu.Unlock()
	c, r, ok := s.routableLocked(configID)
	if !ok || c.OwnerScope != scope || c.OwnerID != ownerID || r.Key != routeKey {
		return store.Config{}, store.Route{}, notFound("route")
	}
	return cloneConfig(*c), cloneRoute(*r), nil
}

// routableLocked returns an enabled config and its active route.
func (s *Store) routableLocked(configID string) (*store.Config, *store.Route, bool) {
	c, ok := s.configs[configID]
	if !ok || c.Status != store.ConfigEnabled {
		return nil, nil, false
	}
	rid, ok := s.activeRoute[configID]
	if !ok {
		return nil, nil, false
	}
	return c, s.routes[rid], true
}

func (s *Store) ListRoutable(ctx context.Context) ([]store.RoutableConfig, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := []store.RoutableConfig{}
	for id := range s.configs {
		if c, r, ok := s.routableLocked(id); ok {
			out = append(out, store.RoutableConfig{Config: cloneConfig(*c), Route: cloneRoute(*r)})
		}
	}
	slices.SortFunc(out, func(a, b store.RoutableConfig) int { return cmp.Compare(a.Config.ID, b.Config.ID) })
	return out, nil
}

func (s *Store) GetRoutable(ctx context.Context, configID string) (store.RoutableConfig, error) {
	if err := store.ValidateID("config_id", configID); err != nil {
		return store.RoutableConfig{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.RoutableConfig{}, err
	}
	defer s.mu.Unlock()
	c, r, ok := s.routableLocked(configID)
	if !ok {
		return store.RoutableConfig{}, notFound("routable config")
	}
	return store.RoutableConfig{Config: cloneConfig(*c), Route: cloneRoute(*r)}, nil
}

// --- assignments ---

func (s *Store) Assign(ctx context.Context, a store.Assignment, ev *store.AuditEvent) (store.Assignment, error) {
	if err := a.Validate(); err != nil {
		return store.Assignment{}, err
	}
	if err := validateEvent(ev); err != nil {
		return store.Assignment{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.Assignment{}, err
	}
	defer s.mu.Unlock()
	c, ok := s.configs[a.ConfigID]
	if !ok || c.Status == store.ConfigDeleted {
		return store.Assignment{}, notFound("config")
	}
	if c.OwnerScope != store.ScopeOrg {
		return store.Assignment{}, conflict("personal configs have no assignments")
	}
	if _, ok := s.members[memberKey{c.OwnerID, a.UserID}]; !ok {
		return store.Assignment{}, conflict("user is not a member of the org")
	}
	k := assignKey{a.ConfigID, a.UserID}
	if cur, ok := s.assignments[k]; ok {
		return *cur, nil
	}
	now := s.now()
	if c.SharingMode == store.SingleUser {
		// DESIGN §3 rule 3: the previous assignee loses assignment,
		// instance, grant and pending state in this same operation.
		for pk := range s.assignments {
			if pk.config == a.ConfigID {
				s.unassignLocked(pk, now)
			}
		}
	}
	a.CreatedAt = s.stamp(a.CreatedAt)
	v := a
	s.assignments[k] = &v
	s.auditLocked(ev)
	s.emitLocked(store.Change{Kind: store.ChangeAssignment, ConfigID: a.ConfigID})
	return v, nil
}

// unassignLocked removes an assignment and the user's non-terminal instance
// of the config (removed), its grant and the user's pending state for the
// config.
func (s *Store) unassignLocked(k assignKey, now time.Time) {
	delete(s.assignments, k)
	for _, in := range s.instances {
		if in.ConfigID == k.config && in.UserID == k.user && !in.State.Terminal() {
			s.endInstanceLocked(in, store.InstanceRemoved, now)
		}
	}
	s.deletePendingLocked(func(p *store.PendingProviderState) bool {
		return p.ConfigID == k.config && p.UserID == k.user
	})
}

func (s *Store) Unassign(ctx context.Context, configID, userID string, ev *store.AuditEvent) error {
	if err := store.ValidateID("config_id", configID); err != nil {
		return err
	}
	if err := store.ValidateID("user_id", userID); err != nil {
		return err
	}
	if err := validateEvent(ev); err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	k := assignKey{configID, userID}
	if _, ok := s.assignments[k]; !ok {
		return notFound("assignment")
	}
	s.unassignLocked(k, s.now())
	s.auditLocked(ev)
	s.emitLocked(store.Change{Kind: store.ChangeAssignment, ConfigID: configID})
	return nil
}

func (s *Store) ListAssignments(ctx context.Context, configID string) ([]store.Assignment, error) {
	if err := store.ValidateID("config_id", configID); err != nil {
		return nil, err
	}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := []store.Assignment{}
	for k, a := range s.assignments {
		if k.config == configID {
			out = append(out, *a)
		}
	}
	slices.SortFunc(out, func(a, b store.Assignment) int { return cmp.Compare(a.UserID, b.UserID) })
	return out, nil
}

// ListUsable applies DESIGN §3 to every config: the user must be active;
// personal configs only for their owner; org configs only when assigned
// while a member.
func (s *Store) ListUsable(ctx context.Context, userID string) ([]store.UsableConfig, error) {
	if err := store.ValidateID("user_id", userID); err != nil {
		return nil, err
	}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := []store.UsableConfig{}
	u, ok := s.users[userID]
	if !ok || u.Status != store.UserActive {
		return out, nil
	}
	for id := range s.configs {
		c, r, ok := s.routableLocked(id)
		if !ok {
			continue
		}
		switch c.OwnerScope {
		case store.ScopeUser:
			if c.OwnerID != userID {
				continue
			}
		case store.ScopeOrg:
			if _, ok := s.members[memberKey{c.OwnerID, userID}]; !ok {
				continue
			}
			if _, ok := s.assignments[assignKey{id, userID}]; !ok {
				continue
			}
		}
		uc := store.UsableConfig{Config: cloneConfig(*c), Route: cloneRoute(*r)}
		if in := s.liveInstanceLocked(c.OwnerScope, c.OwnerID, userID, id); in != nil {
			v := *in
			uc.Instance = &v
		}
		out = append(out, uc)
	}
	slices.SortFunc(out, func(a, b store.UsableConfig) int { return cmp.Compare(a.Config.ID, b.Config.ID) })
	return out, nil
}
