package memory

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"time"

	"mcpgw/store"
)

func (s *Store) CreateUser(ctx context.Context, u store.User) (store.User, error) {
	if err := u.Validate(); err != nil {
		return store.User{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.User{}, err
	}
	defer s.mu.Unlock()
	if _, ok := s.users[u.ID]; ok {
		return store.User{}, conflict("user id taken")
	}
	if _, ok := s.emails[u.Email]; ok {
		return store.User{}, conflict("email taken")
	}
	if _, ok := s.oidc[[2]string{u.OIDCIssuer, u.OIDCSubject}]; ok && u.OIDCIssuer != "" {
		return store.User{}, conflict("OIDC identity taken")
	}
	if u.Status == "" {
		u.Status = store.UserActive
	}
	u.CreatedAt = s.stamp(u.CreatedAt)
	if u.UpdatedAt.IsZero() {
		u.UpdatedAt = u.CreatedAt
	}
	v := cloneUser(u)
	s.users[u.ID] = &v
	s.emails[u.Email] = u.ID
	if u.OIDCIssuer != "" {
		s.oidc[[2]string{u.OIDCIssuer, u.OIDCSubject}] = u.ID
	}
	return cloneUser(v), nil
}

func (s *Store) GetUser(ctx context.Context, id string) (store.User, error) {
	if err := store.ValidateID("user_id", id); err != nil {
		return store.User{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.User{}, err
	}
	defer s.mu.Unlock()
	u, ok := s.users[id]
	if !ok {
		return store.User{}, notFound("user")
	}
	return cloneUser(*u), nil
}

func (s *Store) GetUserByEmail(ctx context.Context, email string) (store.User, error) {
	if err := store.ValidateEmail("email", email); err != nil {
		return store.User{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.User{}, err
	}
	defer s.mu.Unlock()
	if id, ok := s.emails[email]; ok {
		return cloneUser(*s.users[id]), nil
	}
	return store.User{}, notFound("user")
}

func (s *Store) GetUserByOIDC(ctx context.Context, issuer, subject string) (store.User, error) {
	if err := store.ValidateOIDCIdentity(issuer, subject); err != nil {
		return store.User{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.User{}, err
	}
	defer s.mu.Unlock()
	if id, ok := s.oidc[[2]string{issuer, subject}]; ok {
		return cloneUser(*s.users[id]), nil
	}
	return store.User{}, notFound("user")
}

func (s *Store) ListUsers(ctx context.Context, includeDeleted bool) ([]store.User, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := []store.User{}
	for _, u := range s.users {
		if includeDeleted || u.Status != store.UserDeleted {
			out = append(out, cloneUser(*u))
		}
	}
	slices.SortFunc(out, func(a, b store.User) int {
		return cmp.Or(cmp.Compare(a.Email, b.Email), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

func (s *Store) SetUserStatus(ctx context.Context, id string, status store.UserStatus, ev *store.AuditEvent) (store.User, error) {
	if err := store.ValidateID("user_id", id); err != nil {
		return store.User{}, err
	}
	if err := store.ValidateUserStatusChange(status); err != nil {
		return store.User{}, err
	}
	if err := validateEvent(ev); err != nil {
		return store.User{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.User{}, err
	}
	defer s.mu.Unlock()
	u, ok := s.users[id]
	if !ok {
		return store.User{}, notFound("user")
	}
	if u.Status == store.UserDeleted {
		return store.User{}, conflict("user is deleted")
	}
	u.Status = status
	u.UpdatedAt = s.now()
	s.auditLocked(ev)
	return cloneUser(*u), nil
}

func (s *Store) SetSystemAdmin(ctx context.Context, id string, admin bool, ev *store.AuditEvent) (store.User, error) {
	if err := store.ValidateID("user_id", id); err != nil {
		return store.User{}, err
	}
	if err := validateEvent(ev); err != nil {
		return store.User{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.User{}, err
	}
	defer s.mu.Unlock()
	u, ok := s.users[id]
	if !ok {
		return store.User{}, notFound("user")
	}
	if u.Status == store.UserDeleted && admin {
		return store.User{}, conflict("user is deleted")
	}
	u.SystemAdmin = admin
	u.UpdatedAt = s.now()
	s.auditLocked(ev)
	return cloneUser(*u), nil
}

// SoftDeleteUser implements the user-deletion cascade of DESIGN §7. The
// anonymized email keeps the row unique without saying anything about the
// person; the system-admin flag is cleared so a deleted account can never
// act as an admin.
func (s *Store) SoftDeleteUser(ctx context.Context, id string, ev *store.AuditEvent) error {
	if err := store.ValidateID("user_id", id); err != nil {
		return err
	}
	if err := validateEvent(ev); err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	u, ok := s.users[id]
	if !ok {
		return notFound("user")
	}
	if u.Status == store.UserDeleted {
		return nil
	}
	now := s.now()
	delete(s.emails, u.Email)
	if u.OIDCIssuer != "" {
		delete(s.oidc, [2]string{u.OIDCIssuer, u.OIDCSubject})
	}
	u.Status = store.UserDeleted
	u.Email = "deleted-" + id + "@deleted.invalid"
	u.DisplayName = ""
	u.OIDCIssuer, u.OIDCSubject = "", ""
	u.SystemAdmin = false
	u.UpdatedAt = now

	for _, in := range s.instances {
		if in.UserID == id && !in.State.Terminal() {
			s.endInstanceLocked(in, store.InstanceRemoved, now)
		}
	}
	s.deletePendingLocked(func(p *store.PendingProviderState) bool { return p.UserID == id })
	for k, t := range s.refresh {
		if t.UserID == id {
			delete(s.refresh, k)
		}
	}
	for k, se := range s.sessions {
		if se.UserID == id {
			delete(s.sessions, k)
		}
	}
	for k, t := range s.apiTokens {
		if t.UserID == id {
			delete(s.apiTokens, k)
			delete(s.tokenHash, string(t.Hash))
		}
	}
	changed := map[string]bool{}
	for k := range s.assignments {
		if k.user == id {
			delete(s.assignments, k)
			changed[k.config] = true
		}
	}
	for k := range s.members {
		if k.user == id {
			delete(s.members, k)
		}
	}
	s.auditLocked(ev)
	for _, cid := range slices.Sorted(maps.Keys(changed)) {
		s.emitLocked(store.Change{Kind: store.ChangeAssignment, ConfigID: cid})
	}
	return nil
}

// --- API tokens ---

func (s *Store) CreateAPIToken(ctx context.Context, t store.APIToken) (store.APIToken, error) {
	if err := t.Validate(); err != nil {
		return store.APIToken{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.APIToken{}, err
	}
	defer s.mu.Unlock()
	if u, ok := s.users[t.UserID]; !ok || u.Status == store.UserDeleted {
		return store.APIToken{}, notFound("user")
	}
	if _, ok := s.apiTokens[t.ID]; ok {
		return store.APIToken{}, conflict("api token id taken")
	}
	if _, ok := s.tokenHash[string(t.Hash)]; ok {
		return store.APIToken{}, conflict("api token hash taken")
	}
	t.CreatedAt = s.stamp(t.CreatedAt)
	v := cloneAPIToken(t)
	s.apiTokens[t.ID] = &v
	s.tokenHash[string(t.Hash)] = t.ID
	return cloneAPIToken(v), nil
}

func (s *Store) GetAPITokenByHash(ctx context.Context, hash []byte, now time.Time) (store.APIToken, error) {
	if err := store.ValidateHash("hash", hash); err != nil {
		return store.APIToken{}, err
	}
	if err := store.ValidateTime("now", now); err != nil {
		return store.APIToken{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.APIToken{}, err
	}
	defer s.mu.Unlock()
	if id, ok := s.tokenHash[string(hash)]; ok {
		t := s.apiTokens[id]
		if u, ok := s.users[t.UserID]; !ok || u.Status == store.UserDeleted {
			return store.APIToken{}, notFound("api token")
		}
		if t.RevokedAt != nil {
			return store.APIToken{}, errRevoked("api token")
		}
		if t.ExpiresAt != nil && expired(*t.ExpiresAt, now) {
			return store.APIToken{}, errExpired("api token")
		}
		return cloneAPIToken(*t), nil
	}
	return store.APIToken{}, notFound("api token")
}

func (s *Store) ListAPITokens(ctx context.Context, userID string) ([]store.APIToken, error) {
	if err := store.ValidateID("user_id", userID); err != nil {
		return nil, err
	}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := []store.APIToken{}
	for _, t := range s.apiTokens {
		if t.UserID == userID {
			out = append(out, cloneAPIToken(*t))
		}
	}
	slices.SortFunc(out, func(a, b store.APIToken) int {
		return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), cmp.Compare(b.ID, a.ID))
	})
	return out, nil
}

func (s *Store) RevokeAPIToken(ctx context.Context, userID, tokenID string, now time.Time) error {
	if err := store.ValidateID("user_id", userID); err != nil {
		return err
	}
	if err := store.ValidateID("token_id", tokenID); err != nil {
		return err
	}
	if err := store.ValidateTime("now", now); err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	t, ok := s.apiTokens[tokenID]
	if !ok || t.UserID != userID {
		return notFound("api token")
	}
	if t.RevokedAt == nil {
		t.RevokedAt = ptr(now)
	}
	return nil
}

// --- sessions ---

func (s *Store) CreateSession(ctx context.Context, se store.Session) error {
	if err := se.Validate(); err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if u, ok := s.users[se.UserID]; !ok || u.Status == store.UserDeleted {
		return notFound("user")
	}
	if _, ok := s.sessions[string(se.IDHash)]; ok {
		return conflict("session exists")
	}
	se.CreatedAt = s.stamp(se.CreatedAt)
	v := cloneSession(se)
	s.sessions[string(se.IDHash)] = &v
	return nil
}

func (s *Store) GetSession(ctx context.Context, idHash []byte, now time.Time) (store.Session, error) {
	if err := store.ValidateHash("id_hash", idHash); err != nil {
		return store.Session{}, err
	}
	if err := store.ValidateTime("now", now); err != nil {
		return store.Session{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.Session{}, err
	}
	defer s.mu.Unlock()
	se, ok := s.sessions[string(idHash)]
	if !ok {
		return store.Session{}, notFound("session")
	}
	if se.RevokedAt != nil {
		return store.Session{}, errRevoked("session")
	}
	if expired(se.ExpiresAt, now) {
		return store.Session{}, errExpired("session")
	}
	return cloneSession(*se), nil
}

func (s *Store) RevokeSession(ctx context.Context, idHash []byte, now time.Time) error {
	if err := store.ValidateHash("id_hash", idHash); err != nil {
		return err
	}
	if err := store.ValidateTime("now", now); err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if se, ok := s.sessions[string(idHash)]; ok && se.RevokedAt == nil {
		se.RevokedAt = ptr(now)
	}
	return nil
}
