package memory

import (
	"bytes"
	"context"
	"maps"
	"slices"

	"mcpgw/store"
)

// ResolveRuntime applies the rules of DESIGN §6 step 6 in exactly the order
// listed on store.RuntimeStore, returning the first failing rule as the
// Reason.
func (s *Store) ResolveRuntime(ctx context.Context, q store.RuntimeQuery) (store.RuntimeState, error) {
	if err := q.Validate(); err != nil {
		return store.RuntimeState{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.RuntimeState{}, err
	}
	defer s.mu.Unlock()
	st := store.RuntimeState{Checked: s.now()}
	deny := func(r store.Reason) (store.RuntimeState, error) {
		st.Reason = r
		return st, nil
	}

	c, ok := s.configs[q.ConfigID]
	if !ok || c.OwnerScope != q.OwnerScope || c.OwnerID != q.OwnerID {
		return deny(store.ReasonRouteNotFound)
	}
	if c.Status == store.ConfigDeleted {
		return deny(store.ReasonConfigDeleted)
	}
	rid, ok := s.activeRoute[c.ID]
	if !ok || s.routes[rid].Key != q.RouteKey {
		return deny(store.ReasonRouteKeyMismatch)
	}
	if c.Status != store.ConfigEnabled {
		return deny(store.ReasonConfigDisabled)
	}
	if c.Version != q.ConfigVersion {
		return deny(store.ReasonVersionMismatch)
	}
	if q.ExecutionContext != store.ExecutionContext(c.OwnerScope, c.OwnerID) {
		return deny(store.ReasonContextMismatch)
	}
	u, ok := s.users[q.UserID]
	if !ok {
		return deny(store.ReasonUserNotFound)
	}
	switch u.Status {
	case store.UserActive:
	case store.UserDeleted:
		return deny(store.ReasonUserDeleted)
	case store.UserBlocked:
		return deny(store.ReasonUserBlocked)
	case store.UserProvisional:
		return deny(store.ReasonUserProvisional)
	default:
		return deny(store.ReasonUserBlocked) // unknown status: fail closed
	}
	switch c.OwnerScope {
	case store.ScopeUser:
		if c.OwnerID != q.UserID {
			return deny(store.ReasonNotOwner)
		}
	case store.ScopeOrg:
		if _, ok := s.members[memberKey{c.OwnerID, q.UserID}]; !ok {
			return deny(store.ReasonNotMember)
		}
		if _, ok := s.assignments[assignKey{c.ID, q.UserID}]; !ok {
			return deny(store.ReasonNotAssigned)
		}
	}
	in, ok := s.instances[q.InstanceID]
	if !ok {
		return deny(store.ReasonInstanceNotFound)
	}
	if in.UserID != q.UserID || in.ConfigID != c.ID || in.OwnerScope != c.OwnerScope || in.OwnerID != c.OwnerID {
		return deny(store.ReasonInstanceMismatch)
	}
	if in.State != store.InstanceActive {
		return deny(store.ReasonInstanceNotActive)
	}
	g, hasGrant := s.grants[in.ID]
	if c.AuthMode.IsOAuth() && !hasGrant {
		return deny(store.ReasonGrantMissing)
	}

	st.Config = store.RuntimeConfig{
		ID:                c.ID,
		AuthMode:          c.AuthMode,
		Version:           c.Version,
		PathPassthrough:   c.PathPassthrough,
		RemoteURL:         c.RemoteURL,
		StaticHeaders:     bytes.Clone(c.StaticHeaders),
		StaticHeaderNames: slices.Clone(c.StaticHeaderNames),
		AuxHeaders:        maps.Clone(c.AuxHeaders),
	}
	st.InstanceID = in.ID
	st.GrantVersion = in.GrantVersion
	if c.AuthMode.IsOAuth() {
		st.Grant = cloneGrantPtr(g)
	}
	return st, nil
}
