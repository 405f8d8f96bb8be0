package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"mcpgw/store"
)

const userCols = `id::text, email, display_name, status, system_admin, COALESCE(oidc_issuer, ''), COALESCE(oidc_subject, ''), created_at, updated_at`

func scanUser(row pgx.Row) (store.User, error) {
	var u store.User
	var status string
	err := row.Scan(&u.ID, &u.Email, &u.DisplayName, &status, &u.SystemAdmin, &u.OIDCIssuer, &u.OIDCSubject, &u.CreatedAt, &u.UpdatedAt)
	u.Status = store.UserStatus(status)
	u.CreatedAt, u.UpdatedAt = utc(u.CreatedAt), utc(u.UpdatedAt)
	return u, err
}

// CreateUser inserts u (status "" means active).
func (s *Store) CreateUser(ctx context.Context, u store.User) (store.User, error) {
	if err := u.Validate(); err != nil {
		return store.User{}, err
	}
	if u.Status == "" {
		u.Status = store.UserActive
	}
	out, err := scanUser(s.pool.QueryRow(ctx, `INSERT INTO users
		(id, email, display_name, status, system_admin, oidc_issuer, oidc_subject, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, COALESCE($8, now()), COALESCE($9, $8, now()))
		RETURNING `+userCols,
		u.ID, u.Email, u.DisplayName, string(u.Status), u.SystemAdmin, nullStr(u.OIDCIssuer), nullStr(u.OIDCSubject),
		ts(u.CreatedAt), ts(u.UpdatedAt)))
	if err != nil {
		return store.User{}, mapErr("create user", err)
	}
	return out, nil
}

// GetUser returns a user by id, deleted ones included.
func (s *Store) GetUser(ctx context.Context, id string) (store.User, error) {
	if err := store.ValidateID("user.id", id); err != nil {
		return store.User{}, err
	}
	u, err := scanUser(s.pool.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE id = $1`, id))
	if err != nil {
		return store.User{}, mapErr("get user", err)
	}
	return u, nil
}

// GetUserByEmail returns the non-deleted user with that email.
func (s *Store) GetUserByEmail(ctx context.Context, email string) (store.User, error) {
	if err := store.ValidateEmail("email", email); err != nil {
		return store.User{}, err
	}
	u, err := scanUser(s.pool.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE email = $1 AND status <> 'deleted'`, email))
	if err != nil {
		return store.User{}, mapErr("get user by email", err)
	}
	return u, nil
}

// GetUserByOIDC returns the non-deleted user with that issuer+subject.
func (s *Store) GetUserByOIDC(ctx context.Context, issuer, subject string) (store.User, error) {
	if err := store.ValidateOIDCIdentity(issuer, subject); err != nil {
		return store.User{}, err
	}
	u, err := scanUser(s.pool.QueryRow(ctx, `SELECT `+userCols+` FROM users
		WHERE oidc_issuer = $1 AND oidc_subject = $2 AND status <> 'deleted'`, issuer, subject))
	if err != nil {
		return store.User{}, mapErr("get user by oidc", err)
	}
	return u, nil
}

// ListUsers returns users ordered by email.
func (s *Store) ListUsers(ctx context.Context, includeDeleted bool) ([]store.User, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+userCols+` FROM users
		WHERE $1 OR status <> 'deleted' ORDER BY email, id`, includeDeleted)
	if err != nil {
		return nil, mapErr("list users", err)
	}
	out, err := collect(rows, scanUser)
	return out, mapErr("list users", err)
}

// collect scans every row with scan.
func collect[T any](rows pgx.Rows, scan func(pgx.Row) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// lockUser locks a user row and returns its status.
func lockUser(ctx context.Context, tx pgx.Tx, id string) (store.UserStatus, error) {
	var st string
	err := tx.QueryRow(ctx, `SELECT status FROM users WHERE id = $1 FOR UPDATE`, id).Scan(&st)
	return store.UserStatus(st), err
}

// SetUserStatus moves a user to active, blocked or provisional.
func (s *Store) SetUserStatus(ctx context.Context, id string, status store.UserStatus, ev *store.AuditEvent) (store.User, error) {
	if err := first(store.ValidateID("user.id", id), store.ValidateUserStatusChange(status), validateEvent(ev)); err != nil {
		return store.User{}, err
	}
	var out store.User
	err := s.tx(ctx, "set user status", func(tx pgx.Tx) error {
		cur, err := lockUser(ctx, tx, id)
		if err != nil {
			return err
		}
		if cur == store.UserDeleted {
			return fmt.Errorf("postgres: set user status: user deleted: %w", store.ErrConflict)
		}
		out, err = scanUser(tx.QueryRow(ctx, `UPDATE users SET status = $2, updated_at = now()
			WHERE id = $1 RETURNING `+userCols, id, string(status)))
		if err != nil {
			return err
		}
		return appendAudit(ctx, tx, ev)
	})
	return out, err
}

// SetSystemAdmin sets or clears the system-admin flag. ErrConflict for a
// deleted user.
func (s *Store) SetSystemAdmin(ctx context.Context, id string, admin bool, ev *store.AuditEvent) (store.User, error) {
	if err := first(store.ValidateID("user.id", id), validateEvent(ev)); err != nil {
		return store.User{}, err
	}
	var out store.User
	err := s.tx(ctx, "set system admin", func(tx pgx.Tx) error {
		cur, err := lockUser(ctx, tx, id)
		if err != nil {
			return err
		}
		if cur == store.UserDeleted {
			return fmt.Errorf("postgres: set system admin: user deleted: %w", store.ErrConflict)
		}
		out, err = scanUser(tx.QueryRow(ctx, `UPDATE users SET system_admin = $2, updated_at = now()
			WHERE id = $1 RETURNING `+userCols, id, admin))
		if err != nil {
			return err
		}
		return appendAudit(ctx, tx, ev)
	})
	return out, err
}

// endInstancesSQL ends non-terminal instances chosen by a WHERE clause:
// state removed, grant deleted, grant version advanced (DESIGN §5: delete
// advances). It is shared by every cascade.
const endInstancesSQL = `UPDATE instances SET state = 'removed', grant_version = grant_version + 1,
	grant_access_token = NULL, grant_refresh_token = NULL, grant_token_type = NULL, grant_scope = NULL,
	grant_expires_at = NULL, grant_updated_at = NULL, updated_at = now()
	WHERE state IN ('active', 'needs_reauth') AND `

// SoftDeleteUser marks the user deleted, anonymizes it and removes its
// instances, grants, pending state, refresh tokens, sessions, API tokens,
// assignments and memberships in one transaction (DESIGN §7).
func (s *Store) SoftDeleteUser(ctx context.Context, id string, ev *store.AuditEvent) error {
	if err := first(store.ValidateID("user.id", id), validateEvent(ev)); err != nil {
		return err
	}
	return s.tx(ctx, "soft delete user", func(tx pgx.Tx) error {
		cur, err := lockUser(ctx, tx, id)
		if err != nil {
			return err
		}
		if cur == store.UserDeleted {
			return nil
		}
		stmts := []string{
			`UPDATE users SET status = 'deleted', email = '', display_name = '', oidc_issuer = NULL,
				oidc_subject = NULL, system_admin = false, updated_at = now() WHERE id = $1`,
			endInstancesSQL + `user_id = $1`,
			`DELETE FROM pending_provider_states WHERE user_id = $1`,
			`DELETE FROM refresh_tokens WHERE user_id = $1`,
			`DELETE FROM sessions WHERE user_id = $1`,
			`DELETE FROM api_tokens WHERE user_id = $1`,
			`DELETE FROM assignments WHERE user_id = $1`,
			`DELETE FROM org_members WHERE user_id = $1`,
		}
		for _, q := range stmts {
			if _, err := tx.Exec(ctx, q, id); err != nil {
				return err
			}
		}
		return appendAudit(ctx, tx, ev)
	})
}

const apiTokenCols = `id::text, user_id::text, name, hash, created_at, expires_at, last_used_at, revoked_at`

func scanAPIToken(row pgx.Row) (store.APIToken, error) {
	var t store.APIToken
	err := row.Scan(&t.ID, &t.UserID, &t.Name, &t.Hash, &t.CreatedAt, &t.ExpiresAt, &t.LastUsedAt, &t.RevokedAt)
	t.CreatedAt, t.ExpiresAt, t.LastUsedAt, t.RevokedAt = utc(t.CreatedAt), utcp(t.ExpiresAt), utcp(t.LastUsedAt), utcp(t.RevokedAt)
	return t, err
}

// CreateAPIToken stores a token (hash only).
func (s *Store) CreateAPIToken(ctx context.Context, t store.APIToken) (store.APIToken, error) {
	if err := t.Validate(); err != nil {
		return store.APIToken{}, err
	}
	var out store.APIToken
	err := s.tx(ctx, "create api token", func(tx pgx.Tx) error {
		st, err := lockUser(ctx, tx, t.UserID)
		if err != nil {
			return err
		}
		if st == store.UserDeleted {
			return fmt.Errorf("postgres: create api token: user deleted: %w", store.ErrNotFound)
		}
		out, err = scanAPIToken(tx.QueryRow(ctx, `INSERT INTO api_tokens
			(id, user_id, name, hash, created_at, expires_at, last_used_at, revoked_at)
			VALUES ($1, $2, $3, $4, COALESCE($5, now()), $6, $7, $8) RETURNING `+apiTokenCols,
			t.ID, t.UserID, t.Name, t.Hash, ts(t.CreatedAt), tsp(t.ExpiresAt), tsp(t.LastUsedAt), tsp(t.RevokedAt)))
		return err
	})
	return out, err
}

// GetAPITokenByHash returns the live token with that hash.
func (s *Store) GetAPITokenByHash(ctx context.Context, hash []byte, now time.Time) (store.APIToken, error) {
	if err := first(store.ValidateHash("hash", hash), store.ValidateTime("now", now)); err != nil {
		return store.APIToken{}, err
	}
	t, err := scanAPIToken(s.pool.QueryRow(ctx, `SELECT `+apiTokenCols+` FROM api_tokens t
		WHERE hash = $1 AND EXISTS (SELECT 1 FROM users u WHERE u.id = t.user_id AND u.status <> 'deleted')`, hash))
	if err != nil {
		return store.APIToken{}, mapErr("get api token", err)
	}
	if t.RevokedAt != nil {
		return store.APIToken{}, fmt.Errorf("postgres: get api token: %w", store.ErrRevoked)
	}
	if t.ExpiresAt != nil && !now.Before(*t.ExpiresAt) {
		return store.APIToken{}, fmt.Errorf("postgres: get api token: %w", store.ErrExpired)
	}
	return t, nil
}

// ListAPITokens lists a user's tokens, newest first.
func (s *Store) ListAPITokens(ctx context.Context, userID string) ([]store.APIToken, error) {
	if err := store.ValidateID("user_id", userID); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT `+apiTokenCols+` FROM api_tokens WHERE user_id = $1
		ORDER BY created_at DESC, id DESC`, userID)
	if err != nil {
		return nil, mapErr("list api tokens", err)
	}
	out, err := collect(rows, scanAPIToken)
	return out, mapErr("list api tokens", err)
}

// RevokeAPIToken revokes one of userID's tokens.
func (s *Store) RevokeAPIToken(ctx context.Context, userID, tokenID string, now time.Time) error {
	if err := first(store.ValidateID("user_id", userID), store.ValidateID("token_id", tokenID), store.ValidateTime("now", now)); err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, `UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $3)
		WHERE id = $1 AND user_id = $2`, tokenID, userID, now)
	if err != nil {
		return mapErr("revoke api token", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: revoke api token: %w", store.ErrNotFound)
	}
	return nil
}

const sessionCols = `id_hash, user_id::text, csrf_hash, created_at, expires_at, revoked_at`

func scanSession(row pgx.Row) (store.Session, error) {
	var x store.Session
	err := row.Scan(&x.IDHash, &x.UserID, &x.CSRFHash, &x.CreatedAt, &x.ExpiresAt, &x.RevokedAt)
	x.CreatedAt, x.ExpiresAt, x.RevokedAt = utc(x.CreatedAt), utc(x.ExpiresAt), utcp(x.RevokedAt)
	return x, err
}

// CreateSession stores a session (id hash only).
func (s *Store) CreateSession(ctx context.Context, x store.Session) error {
	if err := x.Validate(); err != nil {
		return err
	}
	return s.tx(ctx, "create session", func(tx pgx.Tx) error {
		st, err := lockUser(ctx, tx, x.UserID)
		if err != nil {
			return err
		}
		if st == store.UserDeleted {
			return fmt.Errorf("postgres: create session: user deleted: %w", store.ErrNotFound)
		}
		_, err = tx.Exec(ctx, `INSERT INTO sessions (id_hash, user_id, csrf_hash, created_at, expires_at, revoked_at)
			VALUES ($1, $2, $3, COALESCE($4, now()), $5, $6)`,
			x.IDHash, x.UserID, bytesOrNil(x.CSRFHash), ts(x.CreatedAt), x.ExpiresAt, tsp(x.RevokedAt))
		return err
	})
}

// GetSession returns a live session.
func (s *Store) GetSession(ctx context.Context, idHash []byte, now time.Time) (store.Session, error) {
	if err := first(store.ValidateHash("id_hash", idHash), store.ValidateTime("now", now)); err != nil {
		return store.Session{}, err
	}
	x, err := scanSession(s.pool.QueryRow(ctx, `SELECT `+sessionCols+` FROM sessions WHERE id_hash = $1`, idHash))
	if err != nil {
		return store.Session{}, mapErr("get session", err)
	}
	if x.RevokedAt != nil {
		return store.Session{}, fmt.Errorf("postgres: get session: %w", store.ErrRevoked)
	}
	if !now.Before(x.ExpiresAt) {
		return store.Session{}, fmt.Errorf("postgres: get session: %w", store.ErrExpired)
	}
	return x, nil
}

// RevokeSession revokes a session; unknown is not an error.
func (s *Store) RevokeSession(ctx context.Context, idHash []byte, now time.Time) error {
	if err := first(store.ValidateHash("id_hash", idHash), store.ValidateTime("now", now)); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `UPDATE sessions SET revoked_at = COALESCE(revoked_at, $2) WHERE id_hash = $1`, idHash, now)
	return mapErr("revoke session", err)
}

// isNoRows reports whether err is pgx.ErrNoRows.
func isNoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }
