package memory

import (
	"bytes"
	"context"
	"time"

	"mcpgw/store"
)

// --- clients (RFC 7591/7592) ---

func (s *Store) CreateClient(ctx context.Context, c store.OAuthClient) (store.OAuthClient, error) {
	if err := c.Validate(); err != nil {
		return store.OAuthClient{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.OAuthClient{}, err
	}
	defer s.mu.Unlock()
	if _, ok := s.clients[c.ID]; ok {
		return store.OAuthClient{}, conflict("client id taken")
	}
	c = cloneClient(c)
	c.CreatedAt = s.stamp(c.CreatedAt)
	if c.UpdatedAt.IsZero() {
		c.UpdatedAt = c.CreatedAt
	}
	s.clients[c.ID] = &c
	return cloneClient(c), nil
}

func (s *Store) GetClient(ctx context.Context, id string) (store.OAuthClient, error) {
	if err := store.ValidateClientID(id); err != nil {
		return store.OAuthClient{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.OAuthClient{}, err
	}
	defer s.mu.Unlock()
	c, ok := s.clients[id]
	if !ok {
		return store.OAuthClient{}, notFound("client")
	}
	return cloneClient(*c), nil
}

// UpdateClient replaces a client's metadata. A client that becomes public
// (auth method none) loses its secret; one that becomes confidential must
// end up with a secret (ErrInvalid otherwise).
func (s *Store) UpdateClient(ctx context.Context, c store.OAuthClient) (store.OAuthClient, error) {
	if err := c.ValidateUpdate(); err != nil {
		return store.OAuthClient{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.OAuthClient{}, err
	}
	defer s.mu.Unlock()
	old, ok := s.clients[c.ID]
	if !ok {
		return store.OAuthClient{}, notFound("client")
	}
	next := cloneClient(c)
	if next.SecretHash == nil {
		next.SecretHash = bytes.Clone(old.SecretHash)
	}
	if next.RegistrationTokenHash == nil {
		next.RegistrationTokenHash = bytes.Clone(old.RegistrationTokenHash)
	}
	if next.TokenEndpointAuthMethod == store.AuthMethodNone {
		next.SecretHash = nil
	}
	if err := next.Validate(); err != nil {
		return store.OAuthClient{}, err
	}
	next.CreatedAt = old.CreatedAt
	next.UpdatedAt = s.now()
	s.clients[c.ID] = &next
	return cloneClient(next), nil
}

func (s *Store) DeleteClient(ctx context.Context, id string) error {
	if err := store.ValidateClientID(id); err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, ok := s.clients[id]; !ok {
		return notFound("client")
	}
	delete(s.clients, id)
	now := s.now()
	for _, t := range s.refresh {
		if t.ClientID == id && t.RevokedAt == nil {
			t.RevokedAt = ptr(now)
		}
	}
	return nil
}

// --- authorization requests ---

func (s *Store) CreateAuthRequest(ctx context.Context, r store.AuthRequest) error {
	if err := r.Validate(); err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, ok := s.authReqs[r.ID]; ok {
		return conflict("auth request id taken")
	}
	r = cloneAuthRequest(r)
	r.CreatedAt = s.stamp(r.CreatedAt)
	s.authReqs[r.ID] = &r
	return nil
}

func (s *Store) GetAuthRequest(ctx context.Context, id string, now time.Time) (store.AuthRequest, error) {
	if err := store.ValidateOpaqueID("auth_request_id", id); err != nil {
		return store.AuthRequest{}, err
	}
	if err := store.ValidateTime("now", now); err != nil {
		return store.AuthRequest{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.AuthRequest{}, err
	}
	defer s.mu.Unlock()
	r, ok := s.authReqs[id]
	if !ok {
		return store.AuthRequest{}, notFound("auth request")
	}
	if expired(r.ExpiresAt, now) {
		return store.AuthRequest{}, errExpired("auth request")
	}
	return cloneAuthRequest(*r), nil
}

func (s *Store) SetAuthRequestUser(ctx context.Context, id, userID string) error {
	if err := store.ValidateOpaqueID("auth_request_id", id); err != nil {
		return err
	}
	if err := store.ValidateID("user_id", userID); err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	r, ok := s.authReqs[id]
	if !ok {
		return notFound("auth request")
	}
	r.UserID = userID
	return nil
}

// DeleteAuthRequest deletes a request; deleting an unknown one is not an
// error (the request may have been cleaned up already).
func (s *Store) DeleteAuthRequest(ctx context.Context, id string) error {
	if err := store.ValidateOpaqueID("auth_request_id", id); err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	delete(s.authReqs, id)
	return nil
}

// --- consent tickets ---

func (s *Store) CreateConsentTicket(ctx context.Context, t store.ConsentTicket) error {
	if err := t.Validate(); err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, ok := s.consents[string(t.Hash)]; ok {
		return conflict("consent ticket exists")
	}
	t = cloneConsent(t)
	t.ConsumedAt = nil
	t.CreatedAt = s.stamp(t.CreatedAt)
	s.consents[string(t.Hash)] = &t
	return nil
}

func (s *Store) ConsumeConsentTicket(ctx context.Context, hash []byte, now time.Time) (store.ConsentTicket, error) {
	if err := store.ValidateHash("hash", hash); err != nil {
		return store.ConsentTicket{}, err
	}
	if err := store.ValidateTime("now", now); err != nil {
		return store.ConsentTicket{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.ConsentTicket{}, err
	}
	defer s.mu.Unlock()
	t, ok := s.consents[string(hash)]
	switch {
	case !ok:
		return store.ConsentTicket{}, notFound("consent ticket")
	case t.ConsumedAt != nil:
		return store.ConsentTicket{}, errConsumed("consent ticket")
	case expired(t.ExpiresAt, now):
		return store.ConsentTicket{}, errExpired("consent ticket")
	}
	t.ConsumedAt = ptr(now)
	return cloneConsent(*t), nil
}

// --- authorization codes ---

func (s *Store) CreateAuthCode(ctx context.Context, c store.AuthCode) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, ok := s.codes[string(c.Hash)]; ok {
		return conflict("auth code exists")
	}
	c = cloneCode(c)
	c.ConsumedAt = nil
	c.CreatedAt = s.stamp(c.CreatedAt)
	s.codes[string(c.Hash)] = &c
	return nil
}

// ConsumeAuthCode returns the code with ErrConsumed on a second use so the
// caller can revoke its token family (RFC 9700 §4.2.4 / DESIGN §4).
func (s *Store) ConsumeAuthCode(ctx context.Context, hash []byte, now time.Time) (store.AuthCode, error) {
	if err := store.ValidateHash("hash", hash); err != nil {
		return store.AuthCode{}, err
	}
	if err := store.ValidateTime("now", now); err != nil {
		return store.AuthCode{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.AuthCode{}, err
	}
	defer s.mu.Unlock()
	c, ok := s.codes[string(hash)]
	switch {
	case !ok:
		return store.AuthCode{}, notFound("auth code")
	case c.ConsumedAt != nil:
		return cloneCode(*c), errConsumed("auth code")
	case expired(c.ExpiresAt, now):
		return cloneCode(*c), errExpired("auth code")
	}
	c.ConsumedAt = ptr(now)
	return cloneCode(*c), nil
}

// --- refresh tokens ---

func (s *Store) CreateRefreshToken(ctx context.Context, t store.RefreshToken) error {
	if err := t.Validate(); err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	return s.insertRefreshLocked(t)
}

func (s *Store) insertRefreshLocked(t store.RefreshToken) error {
	if _, ok := s.refresh[string(t.Hash)]; ok {
		return conflict("refresh token exists")
	}
	t = cloneRefresh(t)
	t.ConsumedAt, t.RevokedAt = nil, nil
	t.CreatedAt = s.stamp(t.CreatedAt)
	s.refresh[string(t.Hash)] = &t
	return nil
}

// RotateRefreshToken consumes the old token and stores next atomically. A
// consumed token presented again is returned with ErrConsumed: refresh
// token reuse means theft, and the caller revokes the family (RFC 9700
// §4.14.2).
func (s *Store) RotateRefreshToken(ctx context.Context, oldHash []byte, next store.RefreshToken, now time.Time) (store.RefreshToken, error) {
	if err := store.ValidateHash("hash", oldHash); err != nil {
		return store.RefreshToken{}, err
	}
	if err := next.Validate(); err != nil {
		return store.RefreshToken{}, err
	}
	if err := store.ValidateTime("now", now); err != nil {
		return store.RefreshToken{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.RefreshToken{}, err
	}
	defer s.mu.Unlock()
	t, ok := s.refresh[string(oldHash)]
	switch {
	case !ok:
		return store.RefreshToken{}, notFound("refresh token")
	case t.ConsumedAt != nil:
		return cloneRefresh(*t), errConsumed("refresh token")
	case t.RevokedAt != nil:
		return cloneRefresh(*t), errRevoked("refresh token")
	case expired(t.ExpiresAt, now):
		return cloneRefresh(*t), errExpired("refresh token")
	}
	if err := s.insertRefreshLocked(next); err != nil {
		return store.RefreshToken{}, err
	}
	t.ConsumedAt = ptr(now)
	return cloneRefresh(*t), nil
}

func (s *Store) GetRefreshToken(ctx context.Context, hash []byte) (store.RefreshToken, error) {
	if err := store.ValidateHash("hash", hash); err != nil {
		return store.RefreshToken{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.RefreshToken{}, err
	}
	defer s.mu.Unlock()
	t, ok := s.refresh[string(hash)]
	if !ok {
		return store.RefreshToken{}, notFound("refresh token")
	}
	return cloneRefresh(*t), nil
}

func (s *Store) RevokeRefreshToken(ctx context.Context, hash []byte, now time.Time) error {
	if err := store.ValidateHash("hash", hash); err != nil {
		return err
	}
	if err := store.ValidateTime("now", now); err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if t, ok := s.refresh[string(hash)]; ok && t.RevokedAt == nil {
		t.RevokedAt = ptr(now)
	}
	return nil
}

// RevokeFamily revokes every not yet revoked token of the family and
// reports how many it revoked.
func (s *Store) RevokeFamily(ctx context.Context, familyID string, now time.Time) (int64, error) {
	if err := store.ValidateOpaqueID("family_id", familyID); err != nil {
		return 0, err
	}
	if err := store.ValidateTime("now", now); err != nil {
		return 0, err
	}
	if err := s.lock(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	var n int64
	for _, t := range s.refresh {
		if t.FamilyID == familyID && t.RevokedAt == nil {
			t.RevokedAt = ptr(now)
			n++
		}
	}
	return n, nil
}

// --- rate limits ---

type rateKey struct {
	key   string
	start int64 // window start, Unix nanoseconds
}

type rateWindow struct {
	end   time.Time
	count int
}

// HitRateLimit counts hits in fixed windows aligned to the Unix epoch
// (window start = floor(now / window) * window), the same alignment a SQL
// implementation gets from epoch arithmetic.
func (s *Store) HitRateLimit(ctx context.Context, key string, window time.Duration, limit int, now time.Time) (bool, time.Duration, error) {
	if err := store.ValidateRateLimit(key, window, limit, now); err != nil {
		return false, 0, err
	}
	if err := s.lock(ctx); err != nil {
		return false, 0, err
	}
	defer s.mu.Unlock()
	start := windowStart(now, window)
	k := rateKey{key, start.UnixNano()}
	w, ok := s.rates[k]
	if !ok {
		w = &rateWindow{end: start.Add(window)}
		s.rates[k] = w
	}
	w.count++
	if w.count <= limit {
		return true, 0, nil
	}
	return false, w.end.Sub(now), nil
}

func windowStart(now time.Time, window time.Duration) time.Time {
	n, w := now.UnixNano(), int64(window)
	r := n % w
	if r < 0 {
		r += w
	}
	return time.Unix(0, n-r).In(now.Location())
}
