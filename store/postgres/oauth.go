package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"mcpgw/store"
)

const clientCols = `id, secret_hash, registration_token_hash, redirect_uris, grant_types, response_types,
	token_endpoint_auth_method, scope, client_name, client_uri, logo_uri, application_type, metadata::text, created_at, updated_at`

func scanClient(row pgx.Row) (store.OAuthClient, error) {
	var c store.OAuthClient
	var md *string
	err := row.Scan(&c.ID, &c.SecretHash, &c.RegistrationTokenHash, &c.RedirectURIs, &c.GrantTypes, &c.ResponseTypes,
		&c.TokenEndpointAuthMethod, &c.Scope, &c.ClientName, &c.ClientURI, &c.LogoURI, &c.ApplicationType, &md,
		&c.CreatedAt, &c.UpdatedAt)
	if md != nil {
		c.Metadata = json.RawMessage(*md)
	}
	c.GrantTypes, c.ResponseTypes = nilIfEmpty(c.GrantTypes), nilIfEmpty(c.ResponseTypes)
	c.CreatedAt, c.UpdatedAt = utc(c.CreatedAt), utc(c.UpdatedAt)
	return c, err
}

// CreateClient stores a first-level OAuth client.
func (s *Store) CreateClient(ctx context.Context, c store.OAuthClient) (store.OAuthClient, error) {
	if err := c.Validate(); err != nil {
		return store.OAuthClient{}, err
	}
	out, err := scanClient(s.pool.QueryRow(ctx, `INSERT INTO oauth_clients
		(id, secret_hash, registration_token_hash, redirect_uris, grant_types, response_types,
		 token_endpoint_auth_method, scope, client_name, client_uri, logo_uri, application_type, metadata, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, COALESCE($14, now()), COALESCE($15, $14, now()))
		RETURNING `+clientCols,
		c.ID, bytesOrNil(c.SecretHash), bytesOrNil(c.RegistrationTokenHash), strs(c.RedirectURIs), strs(c.GrantTypes),
		strs(c.ResponseTypes), c.TokenEndpointAuthMethod, c.Scope, c.ClientName, c.ClientURI, c.LogoURI, c.ApplicationType,
		rawJSON(c.Metadata), ts(c.CreatedAt), ts(c.UpdatedAt)))
	if err != nil {
		return store.OAuthClient{}, mapErr("create client", err)
	}
	return out, nil
}

// GetClient returns a client by id.
func (s *Store) GetClient(ctx context.Context, id string) (store.OAuthClient, error) {
	if err := store.ValidateClientID(id); err != nil {
		return store.OAuthClient{}, err
	}
	c, err := scanClient(s.pool.QueryRow(ctx, `SELECT `+clientCols+` FROM oauth_clients WHERE id = $1`, id))
	if err != nil {
		return store.OAuthClient{}, mapErr("get client", err)
	}
	return c, nil
}

// UpdateClient replaces a client's metadata (RFC 7592), keeping ID,
// CreatedAt and any hash passed as nil.
func (s *Store) UpdateClient(ctx context.Context, c store.OAuthClient) (store.OAuthClient, error) {
	if err := c.ValidateUpdate(); err != nil {
		return store.OAuthClient{}, err
	}
	var out store.OAuthClient
	err := s.tx(ctx, "update client", func(tx pgx.Tx) error {
		var err error
		out, err = scanClient(tx.QueryRow(ctx, `UPDATE oauth_clients SET
			secret_hash = CASE WHEN $2::bytea IS NULL THEN secret_hash ELSE $2 END,
			registration_token_hash = COALESCE($3, registration_token_hash),
			redirect_uris = $4, grant_types = $5, response_types = $6, token_endpoint_auth_method = $7, scope = $8,
			client_name = $9, client_uri = $10, logo_uri = $11, application_type = $12, metadata = $13, updated_at = COALESCE($14, now())
			WHERE id = $1 RETURNING `+clientCols,
			c.ID, bytesOrNil(c.SecretHash), bytesOrNil(c.RegistrationTokenHash), strs(c.RedirectURIs), strs(c.GrantTypes),
			strs(c.ResponseTypes), c.TokenEndpointAuthMethod, c.Scope, c.ClientName, c.ClientURI, c.LogoURI,
			c.ApplicationType, rawJSON(c.Metadata), ts(c.UpdatedAt)))
		if err != nil {
			return err
		}
		// The complete rules (confidential clients have a secret, public
		// ones none) apply to the merged result.
		if out.TokenEndpointAuthMethod == store.AuthMethodNone && c.SecretHash == nil {
			out.SecretHash = nil
			if _, err := tx.Exec(ctx, `UPDATE oauth_clients SET secret_hash = NULL WHERE id = $1`, c.ID); err != nil {
				return err
			}
		}
		return out.Validate()
	})
	if err != nil {
		return store.OAuthClient{}, err
	}
	return out, nil
}

// DeleteClient deletes a client and revokes its refresh tokens.
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	if err := store.ValidateClientID(id); err != nil {
		return err
	}
	return s.tx(ctx, "delete client", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM oauth_clients WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("postgres: delete client: %w", store.ErrNotFound)
		}
		_, err = tx.Exec(ctx, `UPDATE refresh_tokens SET revoked_at = now() WHERE client_id = $1 AND revoked_at IS NULL`, id)
		return err
	})
}

const authRequestCols = `id, client_id, redirect_uri, resource, scopes, state, code_challenge, COALESCE(config_id::text, ''),
	route_key, COALESCE(owner_scope, ''), COALESCE(owner_id::text, ''), COALESCE(user_id::text, ''), created_at, expires_at`

func scanAuthRequest(row pgx.Row) (store.AuthRequest, error) {
	var r store.AuthRequest
	var scope string
	err := row.Scan(&r.ID, &r.ClientID, &r.RedirectURI, &r.Resource, &r.Scopes, &r.State, &r.CodeChallenge, &r.ConfigID,
		&r.RouteKey, &scope, &r.OwnerID, &r.UserID, &r.CreatedAt, &r.ExpiresAt)
	r.OwnerScope = store.OwnerScope(scope)
	r.Scopes = nilIfEmpty(r.Scopes)
	r.CreatedAt, r.ExpiresAt = utc(r.CreatedAt), utc(r.ExpiresAt)
	return r, err
}

// CreateAuthRequest stores a pending authorization request.
func (s *Store) CreateAuthRequest(ctx context.Context, r store.AuthRequest) error {
	if err := r.Validate(); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO auth_requests
		(id, client_id, redirect_uri, resource, scopes, state, code_challenge, config_id, route_key, owner_scope, owner_id,
		 user_id, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, COALESCE($13, now()), $14)`,
		r.ID, r.ClientID, r.RedirectURI, r.Resource, strs(r.Scopes), r.State, r.CodeChallenge, nullStr(r.ConfigID),
		r.RouteKey, nullStr(string(r.OwnerScope)), nullStr(r.OwnerID), nullStr(r.UserID), ts(r.CreatedAt), r.ExpiresAt)
	return mapErr("create auth request", err)
}

// GetAuthRequest returns a pending request; ErrExpired once past ExpiresAt.
func (s *Store) GetAuthRequest(ctx context.Context, id string, now time.Time) (store.AuthRequest, error) {
	if err := first(store.ValidateOpaqueID("auth_request.id", id), store.ValidateTime("now", now)); err != nil {
		return store.AuthRequest{}, err
	}
	r, err := scanAuthRequest(s.pool.QueryRow(ctx, `SELECT `+authRequestCols+` FROM auth_requests WHERE id = $1`, id))
	if err != nil {
		return store.AuthRequest{}, mapErr("get auth request", err)
	}
	if !now.Before(r.ExpiresAt) {
		return store.AuthRequest{}, fmt.Errorf("postgres: get auth request: %w", store.ErrExpired)
	}
	return r, nil
}

// SetAuthRequestUser records who logged in for the request.
func (s *Store) SetAuthRequestUser(ctx context.Context, id, userID string) error {
	if err := first(store.ValidateOpaqueID("auth_request.id", id), store.ValidateID("user_id", userID)); err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, `UPDATE auth_requests SET user_id = $2 WHERE id = $1`, id, userID)
	if err != nil {
		return mapErr("set auth request user", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: set auth request user: %w", store.ErrNotFound)
	}
	return nil
}

// DeleteAuthRequest deletes a request; unknown is ErrNotFound.
func (s *Store) DeleteAuthRequest(ctx context.Context, id string) error {
	if err := store.ValidateOpaqueID("auth_request.id", id); err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM auth_requests WHERE id = $1`, id)
	if err != nil {
		return mapErr("delete auth request", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: delete auth request: %w", store.ErrNotFound)
	}
	return nil
}

const consentCols = `hash, auth_request_id, user_id::text, client_id, redirect_uri, resource, scopes, state, code_challenge,
	execution_context, created_at, expires_at, consumed_at`

func scanConsent(row pgx.Row) (store.ConsentTicket, error) {
	var t store.ConsentTicket
	err := row.Scan(&t.Hash, &t.AuthRequestID, &t.UserID, &t.ClientID, &t.RedirectURI, &t.Resource, &t.Scopes, &t.State,
		&t.CodeChallenge, &t.ExecutionContext, &t.CreatedAt, &t.ExpiresAt, &t.ConsumedAt)
	t.Scopes = nilIfEmpty(t.Scopes)
	t.CreatedAt, t.ExpiresAt, t.ConsumedAt = utc(t.CreatedAt), utc(t.ExpiresAt), utcp(t.ConsumedAt)
	return t, err
}

// CreateConsentTicket stores a consent ticket.
func (s *Store) CreateConsentTicket(ctx context.Context, t store.ConsentTicket) error {
	if err := t.Validate(); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO consent_tickets
		(hash, auth_request_id, user_id, client_id, redirect_uri, resource, scopes, state, code_challenge,
		 execution_context, created_at, expires_at, consumed_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, COALESCE($11, now()), $12, $13)`,
		t.Hash, t.AuthRequestID, t.UserID, t.ClientID, t.RedirectURI, t.Resource, strs(t.Scopes), t.State, t.CodeChallenge,
		t.ExecutionContext, ts(t.CreatedAt), t.ExpiresAt, tsp(t.ConsumedAt))
	return mapErr("create consent ticket", err)
}

// consume runs the one conditional UPDATE of a one-time value and, when it
// matched nothing, one SELECT to say why: ErrNotFound, ErrConsumed (row
// returned) or ErrExpired (row returned). The UPDATE's WHERE clause is the
// whole atomicity argument: of concurrent callers exactly one sees
// consumed_at IS NULL.
func consume[T any](ctx context.Context, q querier, op, table, cols, keyCol string, key []byte, now time.Time,
	scan func(pgx.Row) (T, error), consumedAt func(T) *time.Time) (T, error) {
	var zero T
	v, err := scan(q.QueryRow(ctx, `UPDATE `+table+` SET consumed_at = $2
		WHERE `+keyCol+` = $1 AND consumed_at IS NULL AND expires_at > $2 RETURNING `+cols, key, now))
	if err == nil {
		return v, nil
	}
	if !isNoRows(err) {
		return zero, mapErr(op, err)
	}
	v, err = scan(q.QueryRow(ctx, `SELECT `+cols+` FROM `+table+` WHERE `+keyCol+` = $1`, key))
	if err != nil {
		return zero, mapErr(op, err)
	}
	if consumedAt(v) != nil {
		return v, fmt.Errorf("postgres: %s: %w", op, store.ErrConsumed)
	}
	return v, fmt.Errorf("postgres: %s: %w", op, store.ErrExpired)
}

// ConsumeConsentTicket consumes a ticket atomically.
func (s *Store) ConsumeConsentTicket(ctx context.Context, hash []byte, now time.Time) (store.ConsentTicket, error) {
	if err := first(store.ValidateHash("hash", hash), store.ValidateTime("now", now)); err != nil {
		return store.ConsentTicket{}, err
	}
	return consume(ctx, s.pool, "consume consent ticket", "consent_tickets", consentCols, "hash", hash, now, scanConsent,
		func(t store.ConsentTicket) *time.Time { return t.ConsumedAt })
}

const codeCols = `hash, family_id, client_id, redirect_uri, resource, scopes, code_challenge, config_id::text, route_key,
	owner_scope, owner_id::text, execution_context, user_id::text, COALESCE(instance_id::text, ''), config_version,
	created_at, expires_at, consumed_at`

func scanCode(row pgx.Row) (store.AuthCode, error) {
	var c store.AuthCode
	var scope string
	err := row.Scan(&c.Hash, &c.FamilyID, &c.ClientID, &c.RedirectURI, &c.Resource, &c.Scopes, &c.CodeChallenge, &c.ConfigID,
		&c.RouteKey, &scope, &c.OwnerID, &c.ExecutionContext, &c.UserID, &c.InstanceID, &c.ConfigVersion,
		&c.CreatedAt, &c.ExpiresAt, &c.ConsumedAt)
	c.OwnerScope = store.OwnerScope(scope)
	c.Scopes = nilIfEmpty(c.Scopes)
	c.CreatedAt, c.ExpiresAt, c.ConsumedAt = utc(c.CreatedAt), utc(c.ExpiresAt), utcp(c.ConsumedAt)
	return c, err
}

// CreateAuthCode stores an authorization code (hash only).
func (s *Store) CreateAuthCode(ctx context.Context, c store.AuthCode) error {
	if err := c.Validate(); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO auth_codes
		(hash, family_id, client_id, redirect_uri, resource, scopes, code_challenge, config_id, route_key, owner_scope,
		 owner_id, execution_context, user_id, instance_id, config_version, created_at, expires_at, consumed_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, COALESCE($16, now()), $17, $18)`,
		c.Hash, c.FamilyID, c.ClientID, c.RedirectURI, c.Resource, strs(c.Scopes), c.CodeChallenge, c.ConfigID, c.RouteKey,
		string(c.OwnerScope), c.OwnerID, c.ExecutionContext, c.UserID, nullStr(c.InstanceID), c.ConfigVersion,
		ts(c.CreatedAt), c.ExpiresAt, tsp(c.ConsumedAt))
	return mapErr("create auth code", err)
}

// ConsumeAuthCode consumes a code atomically (one conditional UPDATE that
// also checks expiry, DESIGN §4).
func (s *Store) ConsumeAuthCode(ctx context.Context, hash []byte, now time.Time) (store.AuthCode, error) {
	if err := first(store.ValidateHash("hash", hash), store.ValidateTime("now", now)); err != nil {
		return store.AuthCode{}, err
	}
	return consume(ctx, s.pool, "consume auth code", "auth_codes", codeCols, "hash", hash, now, scanCode,
		func(c store.AuthCode) *time.Time { return c.ConsumedAt })
}

const refreshCols = `hash, family_id, client_id, user_id::text, COALESCE(instance_id::text, ''), COALESCE(config_id::text, ''),
	resource, scopes, execution_context, config_version, created_at, expires_at, consumed_at, revoked_at`

func scanRefresh(row pgx.Row) (store.RefreshToken, error) {
	var t store.RefreshToken
	err := row.Scan(&t.Hash, &t.FamilyID, &t.ClientID, &t.UserID, &t.InstanceID, &t.ConfigID, &t.Resource, &t.Scopes,
		&t.ExecutionContext, &t.ConfigVersion, &t.CreatedAt, &t.ExpiresAt, &t.ConsumedAt, &t.RevokedAt)
	t.Scopes = nilIfEmpty(t.Scopes)
	t.CreatedAt, t.ExpiresAt, t.ConsumedAt, t.RevokedAt = utc(t.CreatedAt), utc(t.ExpiresAt), utcp(t.ConsumedAt), utcp(t.RevokedAt)
	return t, err
}

func insertRefresh(ctx context.Context, q querier, t store.RefreshToken) error {
	_, err := q.Exec(ctx, `INSERT INTO refresh_tokens
		(hash, family_id, client_id, user_id, instance_id, config_id, resource, scopes, execution_context,
		 config_version, created_at, expires_at, consumed_at, revoked_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, COALESCE($11, now()), $12, $13, $14)`,
		t.Hash, t.FamilyID, t.ClientID, t.UserID, nullStr(t.InstanceID), nullStr(t.ConfigID), t.Resource, strs(t.Scopes),
		t.ExecutionContext, t.ConfigVersion, ts(t.CreatedAt), t.ExpiresAt, tsp(t.ConsumedAt), tsp(t.RevokedAt))
	return err
}

// CreateRefreshToken stores a refresh token (hash only).
func (s *Store) CreateRefreshToken(ctx context.Context, t store.RefreshToken) error {
	if err := t.Validate(); err != nil {
		return err
	}
	return mapErr("create refresh token", insertRefresh(ctx, s.pool, t))
}

// RotateRefreshToken consumes oldHash and stores next in one transaction.
func (s *Store) RotateRefreshToken(ctx context.Context, oldHash []byte, next store.RefreshToken, now time.Time) (store.RefreshToken, error) {
	if err := first(store.ValidateHash("old_hash", oldHash), next.Validate(), store.ValidateTime("now", now)); err != nil {
		return store.RefreshToken{}, err
	}
	var out store.RefreshToken
	var reason error
	err := s.tx(ctx, "rotate refresh token", func(tx pgx.Tx) error {
		reason = nil
		var err error
		out, err = scanRefresh(tx.QueryRow(ctx, `UPDATE refresh_tokens SET consumed_at = $2
			WHERE hash = $1 AND consumed_at IS NULL AND revoked_at IS NULL AND expires_at > $2
			RETURNING `+refreshCols, oldHash, now))
		if err == nil {
			return insertRefresh(ctx, tx, next)
		}
		if !isNoRows(err) {
			return err
		}
		out, err = scanRefresh(tx.QueryRow(ctx, `SELECT `+refreshCols+` FROM refresh_tokens WHERE hash = $1`, oldHash))
		if err != nil {
			return err
		}
		switch {
		case out.ConsumedAt != nil:
			reason = store.ErrConsumed
		case out.RevokedAt != nil:
			reason = store.ErrRevoked
		default:
			reason = store.ErrExpired
		}
		return nil // nothing changed; commit is harmless
	})
	if err != nil {
		return store.RefreshToken{}, err
	}
	if reason != nil {
		if reason == store.ErrConsumed {
			return out, fmt.Errorf("postgres: rotate refresh token: %w", reason)
		}
		return store.RefreshToken{}, fmt.Errorf("postgres: rotate refresh token: %w", reason)
	}
	return out, nil
}

// GetRefreshToken returns a token by hash regardless of state.
func (s *Store) GetRefreshToken(ctx context.Context, hash []byte) (store.RefreshToken, error) {
	if err := store.ValidateHash("hash", hash); err != nil {
		return store.RefreshToken{}, err
	}
	t, err := scanRefresh(s.pool.QueryRow(ctx, `SELECT `+refreshCols+` FROM refresh_tokens WHERE hash = $1`, hash))
	if err != nil {
		return store.RefreshToken{}, mapErr("get refresh token", err)
	}
	return t, nil
}

// RevokeRefreshToken revokes one token; unknown is not an error (RFC 7009
// §2.2).
func (s *Store) RevokeRefreshToken(ctx context.Context, hash []byte, now time.Time) error {
	if err := first(store.ValidateHash("hash", hash), store.ValidateTime("now", now)); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `UPDATE refresh_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE hash = $1`, hash, now)
	return mapErr("revoke refresh token", err)
}

// RevokeFamily revokes every not yet revoked token of a family.
func (s *Store) RevokeFamily(ctx context.Context, familyID string, now time.Time) (int64, error) {
	if err := first(store.ValidateOpaqueID("family_id", familyID), store.ValidateTime("now", now)); err != nil {
		return 0, err
	}
	tag, err := s.pool.Exec(ctx, `UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL`, familyID, now)
	if err != nil {
		return 0, mapErr("revoke family", err)
	}
	return tag.RowsAffected(), nil
}

// HitRateLimit counts a hit in the fixed window containing now with one
// INSERT ... ON CONFLICT DO UPDATE (atomic across replicas).
func (s *Store) HitRateLimit(ctx context.Context, key string, window time.Duration, limit int, now time.Time) (bool, time.Duration, error) {
	if err := store.ValidateRateLimit(key, window, limit, now); err != nil {
		return false, 0, err
	}
	start := now.Truncate(window)
	end := start.Add(window)
	var hits int
	err := s.pool.QueryRow(ctx, `INSERT INTO rate_limit_windows AS w (key, window_start, window_end, hits)
		VALUES ($1, $2, $3, 1)
		ON CONFLICT (key, window_start) DO UPDATE SET hits = w.hits + 1
		RETURNING hits`, key, start, end).Scan(&hits)
	if err != nil {
		return false, 0, mapErr("hit rate limit", err)
	}
	if hits > limit {
		return false, end.Sub(now), nil
	}
	return true, 0, nil
}
