package memory

import (
	"cmp"
	"context"
	"maps"
	"slices"

	"mcpgw/store"
)

func (s *Store) CreateOrg(ctx context.Context, o store.Org, ownerID string, ev *store.AuditEvent) (store.Org, error) {
	if err := o.Validate(); err != nil {
		return store.Org{}, err
	}
	if err := store.ValidateID("owner_id", ownerID); err != nil {
		return store.Org{}, err
	}
	if err := validateEvent(ev); err != nil {
		return store.Org{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.Org{}, err
	}
	defer s.mu.Unlock()
	if u, ok := s.users[ownerID]; !ok || u.Status == store.UserDeleted {
		return store.Org{}, notFound("owner user")
	}
	if _, ok := s.orgs[o.ID]; ok {
		return store.Org{}, conflict("org id taken")
	}
	for _, x := range s.orgs {
		if x.Name == o.Name {
			return store.Org{}, conflict("org name taken")
		}
	}
	o.CreatedAt = s.stamp(o.CreatedAt)
	v := o
	s.orgs[o.ID] = &v
	s.members[memberKey{o.ID, ownerID}] = &store.Member{OrgID: o.ID, UserID: ownerID, Role: store.RoleOwner, CreatedAt: o.CreatedAt}
	s.auditLocked(ev)
	return v, nil
}

func (s *Store) GetOrg(ctx context.Context, id string) (store.Org, error) {
	if err := store.ValidateID("org_id", id); err != nil {
		return store.Org{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.Org{}, err
	}
	defer s.mu.Unlock()
	o, ok := s.orgs[id]
	if !ok {
		return store.Org{}, notFound("org")
	}
	return *o, nil
}

// ListOrgs returns every org ordered by name, then id.
func (s *Store) ListOrgs(ctx context.Context) ([]store.Org, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := make([]store.Org, 0, len(s.orgs))
	for _, o := range s.orgs {
		out = append(out, *o)
	}
	slices.SortFunc(out, func(a, b store.Org) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID)) })
	return out, nil
}

func (s *Store) AddMember(ctx context.Context, m store.Member, ev *store.AuditEvent) (store.Member, error) {
	if err := m.Validate(); err != nil {
		return store.Member{}, err
	}
	if err := validateEvent(ev); err != nil {
		return store.Member{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.Member{}, err
	}
	defer s.mu.Unlock()
	if _, ok := s.orgs[m.OrgID]; !ok {
		return store.Member{}, notFound("org")
	}
	if u, ok := s.users[m.UserID]; !ok || u.Status == store.UserDeleted {
		return store.Member{}, notFound("user")
	}
	k := memberKey{m.OrgID, m.UserID}
	if _, ok := s.members[k]; ok {
		return store.Member{}, conflict("already a member")
	}
	m.CreatedAt = s.stamp(m.CreatedAt)
	v := m
	s.members[k] = &v
	s.auditLocked(ev)
	return v, nil
}

// ownersLocked counts the org's owners.
func (s *Store) ownersLocked(orgID string) int {
	n := 0
	for k, m := range s.members {
		if k.org == orgID && m.Role == store.RoleOwner {
			n++
		}
	}
	return n
}

func (s *Store) SetMemberRole(ctx context.Context, orgID, userID string, role store.Role, ev *store.AuditEvent) (store.Member, error) {
	if err := store.ValidateID("org_id", orgID); err != nil {
		return store.Member{}, err
	}
	if err := store.ValidateID("user_id", userID); err != nil {
		return store.Member{}, err
	}
	if err := store.ValidateRole(role); err != nil {
		return store.Member{}, err
	}
	if err := validateEvent(ev); err != nil {
		return store.Member{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.Member{}, err
	}
	defer s.mu.Unlock()
	m, ok := s.members[memberKey{orgID, userID}]
	if !ok {
		return store.Member{}, notFound("member")
	}
	if m.Role == store.RoleOwner && role != store.RoleOwner && s.ownersLocked(orgID) == 1 {
		return store.Member{}, conflict("org would have no owner")
	}
	m.Role = role
	s.auditLocked(ev)
	return *m, nil
}

// RemoveMember implements the membership-removal cascade of DESIGN §7.
func (s *Store) RemoveMember(ctx context.Context, orgID, userID string, ev *store.AuditEvent) error {
	if err := store.ValidateID("org_id", orgID); err != nil {
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
	k := memberKey{orgID, userID}
	m, ok := s.members[k]
	if !ok {
		return notFound("member")
	}
	if m.Role == store.RoleOwner && s.ownersLocked(orgID) == 1 {
		return conflict("org would have no owner")
	}
	delete(s.members, k)
	now := s.now()
	orgConfig := func(configID string) bool {
		c, ok := s.configs[configID]
		return ok && c.OwnerScope == store.ScopeOrg && c.OwnerID == orgID
	}
	changed := map[string]bool{}
	for ak := range s.assignments {
		if ak.user == userID && orgConfig(ak.config) {
			delete(s.assignments, ak)
			changed[ak.config] = true
		}
	}
	for _, in := range s.instances {
		if in.UserID == userID && in.OwnerScope == store.ScopeOrg && in.OwnerID == orgID && !in.State.Terminal() {
			s.endInstanceLocked(in, store.InstanceRemoved, now)
		}
	}
	s.deletePendingLocked(func(p *store.PendingProviderState) bool {
		return p.UserID == userID && orgConfig(p.ConfigID)
	})
	s.auditLocked(ev)
	for _, cid := range slices.Sorted(maps.Keys(changed)) {
		s.emitLocked(store.Change{Kind: store.ChangeAssignment, ConfigID: cid})
	}
	return nil
}

func (s *Store) GetMember(ctx context.Context, orgID, userID string) (store.Member, error) {
	if err := store.ValidateID("org_id", orgID); err != nil {
		return store.Member{}, err
	}
	if err := store.ValidateID("user_id", userID); err != nil {
		return store.Member{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.Member{}, err
	}
	defer s.mu.Unlock()
	m, ok := s.members[memberKey{orgID, userID}]
	if !ok {
		return store.Member{}, notFound("member")
	}
	return *m, nil
}

func (s *Store) ListMembers(ctx context.Context, orgID string) ([]store.Member, error) {
	if err := store.ValidateID("org_id", orgID); err != nil {
		return nil, err
	}
	return s.listMembers(ctx, func(k memberKey) bool { return k.org == orgID },
		func(a, b store.Member) int { return cmp.Compare(a.UserID, b.UserID) })
}

func (s *Store) ListMemberships(ctx context.Context, userID string) ([]store.Member, error) {
	if err := store.ValidateID("user_id", userID); err != nil {
		return nil, err
	}
	return s.listMembers(ctx, func(k memberKey) bool { return k.user == userID },
		func(a, b store.Member) int { return cmp.Compare(a.OrgID, b.OrgID) })
}

func (s *Store) listMembers(ctx context.Context, keep func(memberKey) bool, order func(a, b store.Member) int) ([]store.Member, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := []store.Member{}
	for k, m := range s.members {
		if keep(k) {
			out = append(out, *m)
		}
	}
	slices.SortFunc(out, order)
	return out, nil
}
