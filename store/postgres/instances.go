package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"mcpgw/store"
)

const instanceCols = `id::text, owner_scope, owner_id::text, user_id::text, config_id::text, state, grant_version, created_at, updated_at`

// instanceColsI selects an instance through alias i, all nullable (LEFT
// JOIN).
const instanceColsI = `i.id::text, i.owner_scope, i.owner_id::text, i.user_id::text, i.config_id::text, i.state, i.grant_version, i.created_at, i.updated_at`

func scanInstance(row pgx.Row) (store.Instance, error) {
	var in store.Instance
	var scope, state string
	err := row.Scan(&in.ID, &scope, &in.OwnerID, &in.UserID, &in.ConfigID, &state, &in.GrantVersion, &in.CreatedAt, &in.UpdatedAt)
	in.OwnerScope, in.State = store.OwnerScope(scope), store.InstanceState(state)
	in.CreatedAt, in.UpdatedAt = utc(in.CreatedAt), utc(in.UpdatedAt)
	return in, err
}

// nullInstance scans instanceColsI from a LEFT JOIN.
type nullInstance struct {
	id, scope, owner, user, config, state *string
	gv                                    *int64
	created, updated                      *time.Time
}

func (n *nullInstance) targets() []any {
	return []any{&n.id, &n.scope, &n.owner, &n.user, &n.config, &n.state, &n.gv, &n.created, &n.updated}
}

func (n *nullInstance) instance() *store.Instance {
	if n.id == nil {
		return nil
	}
	return &store.Instance{ID: *n.id, OwnerScope: store.OwnerScope(*n.scope), OwnerID: *n.owner, UserID: *n.user,
		ConfigID: *n.config, State: store.InstanceState(*n.state), GrantVersion: *n.gv,
		CreatedAt: utc(*n.created), UpdatedAt: utc(*n.updated)}
}

// GetOrCreateInstance returns the one non-terminal instance of the tuple,
// creating it when none exists. The partial unique index instances_one_live
// is the arbiter: of concurrent inserts exactly one wins and the others
// read the winner.
func (s *Store) GetOrCreateInstance(ctx context.Context, scope store.OwnerScope, ownerID, userID, configID, newID string) (store.Instance, bool, error) {
	if err := store.ValidateInstanceKey(scope, ownerID, userID, configID, newID); err != nil {
		return store.Instance{}, false, err
	}
	for attempt := 0; attempt < 10; attempt++ {
		in, err := scanInstance(s.pool.QueryRow(ctx, `INSERT INTO instances
			(id, owner_scope, owner_id, user_id, config_id, state, grant_version, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, 'active', 0, now(), now())
			ON CONFLICT (owner_scope, owner_id, user_id, config_id) WHERE state IN ('active', 'needs_reauth') DO NOTHING
			RETURNING `+instanceCols, newID, string(scope), ownerID, userID, configID))
		if err == nil {
			return in, true, nil
		}
		if !isNoRows(err) {
			return store.Instance{}, false, mapErr("get or create instance", err)
		}
		in, err = scanInstance(s.pool.QueryRow(ctx, `SELECT `+instanceCols+` FROM instances
			WHERE owner_scope = $1 AND owner_id = $2 AND user_id = $3 AND config_id = $4 AND state IN ('active', 'needs_reauth')`,
			string(scope), ownerID, userID, configID))
		if err == nil {
			return in, false, nil
		}
		if !isNoRows(err) {
			return store.Instance{}, false, mapErr("get or create instance", err)
		}
		// The live instance ended between the two statements: try again.
	}
	return store.Instance{}, false, fmt.Errorf("postgres: get or create instance: %w", store.ErrConflict)
}

// GetInstance returns an instance by id.
func (s *Store) GetInstance(ctx context.Context, id string) (store.Instance, error) {
	if err := store.ValidateID("instance.id", id); err != nil {
		return store.Instance{}, err
	}
	in, err := scanInstance(s.pool.QueryRow(ctx, `SELECT `+instanceCols+` FROM instances WHERE id = $1`, id))
	if err != nil {
		return store.Instance{}, mapErr("get instance", err)
	}
	return in, nil
}

// ListInstances lists instances by user and/or config, newest first.
func (s *Store) ListInstances(ctx context.Context, userID, configID string, includeTerminal bool) ([]store.Instance, error) {
	if err := first(store.ValidateOptionalID("user_id", userID), store.ValidateOptionalID("config_id", configID)); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT `+instanceCols+` FROM instances
		WHERE ($1::uuid IS NULL OR user_id = $1) AND ($2::uuid IS NULL OR config_id = $2)
		AND ($3 OR state IN ('active', 'needs_reauth'))
		ORDER BY created_at DESC, id DESC`, nullStr(userID), nullStr(configID), includeTerminal)
	if err != nil {
		return nil, mapErr("list instances", err)
	}
	out, err := collect(rows, scanInstance)
	return out, mapErr("list instances", err)
}

// lockInstance reads an instance FOR UPDATE with its grant.
func lockInstance(ctx context.Context, tx pgx.Tx, id string) (store.Instance, *store.Grant, error) {
	return readInstance(ctx, tx, id, " FOR UPDATE")
}

// readInstance reads an instance with its grant; suffix is a locking clause.
func readInstance(ctx context.Context, tx querier, id, suffix string) (store.Instance, *store.Grant, error) {
	var in store.Instance
	var scope, state string
	var g store.Grant
	var tokenType, scopeStr *string
	var updated *time.Time
	err := tx.QueryRow(ctx, `SELECT `+instanceCols+`, grant_access_token, grant_refresh_token, grant_token_type,
		grant_scope, grant_expires_at, grant_updated_at FROM instances WHERE id = $1`+suffix, id).Scan(
		&in.ID, &scope, &in.OwnerID, &in.UserID, &in.ConfigID, &state, &in.GrantVersion, &in.CreatedAt, &in.UpdatedAt,
		&g.AccessToken, &g.RefreshToken, &tokenType, &scopeStr, &g.ExpiresAt, &updated)
	if err != nil {
		return store.Instance{}, nil, err
	}
	in.OwnerScope, in.State = store.OwnerScope(scope), store.InstanceState(state)
	in.CreatedAt, in.UpdatedAt = utc(in.CreatedAt), utc(in.UpdatedAt)
	if tokenType == nil {
		return in, nil, nil
	}
	g.InstanceID, g.Version, g.TokenType = in.ID, in.GrantVersion, *tokenType
	if scopeStr != nil {
		g.Scope = *scopeStr
	}
	g.ExpiresAt = utcp(g.ExpiresAt)
	if updated != nil {
		g.UpdatedAt = utc(*updated)
	}
	if len(g.RefreshToken) == 0 {
		g.RefreshToken = nil
	}
	return in, &g, nil
}

// EndInstance moves a non-terminal instance to revoked or removed and
// deletes its grant and pending provider state.
func (s *Store) EndInstance(ctx context.Context, id string, state store.InstanceState, ev *store.AuditEvent) (store.Instance, error) {
	if err := first(store.ValidateID("instance.id", id), store.ValidateEndState(state), validateEvent(ev)); err != nil {
		return store.Instance{}, err
	}
	var out store.Instance
	err := s.tx(ctx, "end instance", func(tx pgx.Tx) error {
		in, _, err := lockInstance(ctx, tx, id)
		if err != nil {
			return err
		}
		if in.State.Terminal() {
			return fmt.Errorf("postgres: end instance: already terminal: %w", store.ErrConflict)
		}
		out, err = scanInstance(tx.QueryRow(ctx, `UPDATE instances SET state = $2, grant_version = grant_version + 1,
			grant_access_token = NULL, grant_refresh_token = NULL, grant_token_type = NULL, grant_scope = NULL,
			grant_expires_at = NULL, grant_updated_at = NULL, updated_at = now()
			WHERE id = $1 RETURNING `+instanceCols, id, string(state)))
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM pending_provider_states WHERE instance_id = $1`, id); err != nil {
			return err
		}
		return appendAudit(ctx, tx, ev)
	})
	return out, err
}

// writeGrant stores g on the locked instance, advancing the grant version
// and moving the instance to active.
func writeGrant(ctx context.Context, tx pgx.Tx, id string, g store.Grant) (store.Grant, error) {
	if g.TokenType == "" {
		g.TokenType = "Bearer"
	}
	g.TokenType = "Bearer" // validated as Bearer (case-insensitive); stored canonical
	var updated time.Time
	err := tx.QueryRow(ctx, `UPDATE instances SET state = 'active', grant_version = grant_version + 1,
		grant_access_token = $2, grant_refresh_token = $3, grant_token_type = $4, grant_scope = $5,
		grant_expires_at = $6, grant_updated_at = COALESCE($7, now()), updated_at = now()
		WHERE id = $1 RETURNING grant_version, grant_updated_at`,
		id, g.AccessToken, bytesOrNil(g.RefreshToken), g.TokenType, g.Scope, tsp(g.ExpiresAt), ts(g.UpdatedAt)).Scan(&g.Version, &updated)
	g.InstanceID, g.UpdatedAt = id, utc(updated)
	g.ExpiresAt = utcp(g.ExpiresAt)
	if len(g.RefreshToken) == 0 {
		g.RefreshToken = nil
	}
	return g, err
}

// PutGrant writes the instance's grant (version advances).
func (s *Store) PutGrant(ctx context.Context, g store.Grant, expectVersion int64, ev *store.AuditEvent) (store.Grant, error) {
	if err := first(g.Validate(), store.ValidateExpectVersion(expectVersion), validateEvent(ev)); err != nil {
		return store.Grant{}, err
	}
	var out store.Grant
	err := s.tx(ctx, "put grant", func(tx pgx.Tx) error {
		in, _, err := lockInstance(ctx, tx, g.InstanceID)
		if err != nil {
			return err
		}
		if in.State.Terminal() {
			return fmt.Errorf("postgres: put grant: instance terminal: %w", store.ErrConflict)
		}
		if expectVersion >= 0 && in.GrantVersion != expectVersion {
			return fmt.Errorf("postgres: put grant: %w", store.ErrStale)
		}
		out, err = writeGrant(ctx, tx, g.InstanceID, g)
		if err != nil {
			return err
		}
		return appendAudit(ctx, tx, ev)
	})
	return out, err
}

// GetGrant returns the instance's current grant.
func (s *Store) GetGrant(ctx context.Context, instanceID string) (store.Grant, error) {
	if err := store.ValidateID("instance_id", instanceID); err != nil {
		return store.Grant{}, err
	}
	_, g, err := readInstance(ctx, s.pool, instanceID, "")
	if err != nil {
		return store.Grant{}, mapErr("get grant", err)
	}
	if g == nil {
		return store.Grant{}, fmt.Errorf("postgres: get grant: %w", store.ErrNotFound)
	}
	return *g, nil
}

// RevokeGrant deletes the instance's grant; the version advances even when
// there was none.
func (s *Store) RevokeGrant(ctx context.Context, instanceID string, ev *store.AuditEvent) (int64, error) {
	if err := first(store.ValidateID("instance_id", instanceID), validateEvent(ev)); err != nil {
		return 0, err
	}
	var v int64
	err := s.tx(ctx, "revoke grant", func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `UPDATE instances SET grant_version = grant_version + 1,
			grant_access_token = NULL, grant_refresh_token = NULL, grant_token_type = NULL, grant_scope = NULL,
			grant_expires_at = NULL, grant_updated_at = NULL, updated_at = now()
			WHERE id = $1 RETURNING grant_version`, instanceID).Scan(&v)
		if err != nil {
			return err
		}
		return appendAudit(ctx, tx, ev)
	})
	return v, err
}

// MarkNeedsReauth moves an active instance to needs_reauth only if its
// grant version is still grantVersion (one conditional UPDATE).
func (s *Store) MarkNeedsReauth(ctx context.Context, instanceID string, grantVersion int64, ev *store.AuditEvent) (bool, error) {
	if err := first(store.ValidateID("instance_id", instanceID), store.ValidateGrantVersion(grantVersion), validateEvent(ev)); err != nil {
		return false, err
	}
	var done bool
	err := s.tx(ctx, "mark needs reauth", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE instances SET state = 'needs_reauth', grant_version = grant_version + 1,
			grant_access_token = NULL, grant_refresh_token = NULL, grant_token_type = NULL, grant_scope = NULL,
			grant_expires_at = NULL, grant_updated_at = NULL, updated_at = now()
			WHERE id = $1 AND state = 'active' AND grant_version = $2`, instanceID, grantVersion)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			var one int
			return tx.QueryRow(ctx, `SELECT 1 FROM instances WHERE id = $1`, instanceID).Scan(&one)
		}
		done = true
		return appendAudit(ctx, tx, ev)
	})
	return done, err
}

// LockGrant runs fn holding the instance row lock (SELECT ... FOR UPDATE),
// which every replica shares; a grant fn returns is written like PutGrant.
func (s *Store) LockGrant(ctx context.Context, instanceID string, fn func(current *store.Grant) (*store.Grant, error)) (*store.Grant, error) {
	if err := store.ValidateID("instance_id", instanceID); err != nil {
		return nil, err
	}
	if fn == nil {
		return nil, store.Invalid("fn", "required")
	}
	var out *store.Grant
	var fnErr error
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		in, cur, err := lockInstance(ctx, tx, instanceID)
		if err != nil {
			return err
		}
		if in.State.Terminal() {
			return fmt.Errorf("postgres: lock grant: instance terminal: %w", store.ErrConflict)
		}
		next, err := fn(cur)
		if err != nil {
			fnErr = err
			return err
		}
		if next == nil {
			out = cur
			return nil
		}
		g := *next
		g.InstanceID = instanceID
		if err := g.Validate(); err != nil {
			fnErr = err
			return err
		}
		w, err := writeGrant(ctx, tx, instanceID, g)
		if err != nil {
			return err
		}
		out = &w
		return nil
	})
	if fnErr != nil {
		return nil, fnErr // fn's own error, untouched
	}
	if err != nil {
		return nil, mapErr("lock grant", err)
	}
	return out, nil
}
