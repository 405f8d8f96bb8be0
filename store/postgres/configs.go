package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5"

	"mcpgw/store"
)

const configCols = `c.id::text, c.owner_scope, c.owner_id::text, c.name, c.remote_url, c.auth_mode, c.sharing_mode,
	c.status, c.version, c.path_passthrough, c.static_headers, c.static_header_names, c.aux_headers, c.provider,
	c.provider_client_credentials, c.registry::text, COALESCE(c.created_by::text, ''), c.created_at, c.updated_at`

// configDest holds scan targets for configCols.
type configDest struct {
	c                            store.Config
	scope, auth, sharing, status string
	aux, provider                []byte
	registry                     *string
}

func (d *configDest) targets() []any {
	return []any{&d.c.ID, &d.scope, &d.c.OwnerID, &d.c.Name, &d.c.RemoteURL, &d.auth, &d.sharing,
		&d.status, &d.c.Version, &d.c.PathPassthrough, &d.c.StaticHeaders, &d.c.StaticHeaderNames, &d.aux, &d.provider,
		&d.c.Provider.ClientCredentials, &d.registry, &d.c.CreatedBy, &d.c.CreatedAt, &d.c.UpdatedAt}
}

func (d *configDest) finish() (store.Config, error) {
	c := d.c
	c.OwnerScope, c.AuthMode, c.SharingMode, c.Status = store.OwnerScope(d.scope), store.AuthMode(d.auth),
		store.SharingMode(d.sharing), store.ConfigStatus(d.status)
	c.StaticHeaderNames = nilIfEmpty(c.StaticHeaderNames)
	if len(c.StaticHeaders) == 0 {
		c.StaticHeaders = nil
	}
	var err error
	if c.AuxHeaders, err = parseMap(d.aux); err != nil {
		return store.Config{}, err
	}
	creds := c.Provider.ClientCredentials
	if len(d.provider) > 0 {
		if err := json.Unmarshal(d.provider, &c.Provider); err != nil {
			return store.Config{}, err
		}
	}
	c.Provider.ClientCredentials = nil
	if len(creds) > 0 {
		c.Provider.ClientCredentials = creds
	}
	if d.registry != nil {
		c.Registry = json.RawMessage(*d.registry)
	}
	c.CreatedAt, c.UpdatedAt = utc(c.CreatedAt), utc(c.UpdatedAt)
	return c, nil
}

func scanConfig(row pgx.Row) (store.Config, error) {
	var d configDest
	if err := row.Scan(d.targets()...); err != nil {
		return store.Config{}, err
	}
	return d.finish()
}

// providerJSON encodes provider settings without the client credentials,
// which live in their own bytea column.
func providerJSON(p store.ProviderSettings) []byte {
	p.ClientCredentials = nil
	b, _ := json.Marshal(p) // plain strings and slices always marshal
	return b
}

const routeCols = `r.id::text, r.config_id::text, r.owner_scope, r.owner_id::text, r.key, r.active, r.created_at, r.deactivated_at`

func routeTargets(r *store.Route, scope *string) []any {
	return []any{&r.ID, &r.ConfigID, scope, &r.OwnerID, &r.Key, &r.Active, &r.CreatedAt, &r.DeactivatedAt}
}

func finishRoute(r *store.Route, scope string) {
	r.OwnerScope = store.OwnerScope(scope)
	r.CreatedAt, r.DeactivatedAt = utc(r.CreatedAt), utcp(r.DeactivatedAt)
}

func scanRoute(row pgx.Row) (store.Route, error) {
	var r store.Route
	var scope string
	err := row.Scan(routeTargets(&r, &scope)...)
	finishRoute(&r, scope)
	return r, err
}

// CreateConfig inserts a config at version 1 with its first active route.
func (s *Store) CreateConfig(ctx context.Context, c store.Config, routeID, routeKey string, ev *store.AuditEvent) (store.Config, store.Route, error) {
	if err := first(c.Validate(), store.ValidateID("route.id", routeID), store.ValidateRouteKey("route.key", routeKey), validateEvent(ev)); err != nil {
		return store.Config{}, store.Route{}, err
	}
	if c.Status == "" {
		c.Status = store.ConfigEnabled
	}
	var outC store.Config
	var outR store.Route
	err := s.tx(ctx, "create config", func(tx pgx.Tx) error {
		switch c.OwnerScope {
		case store.ScopeUser:
			if err := liveUser(ctx, tx, c.OwnerID, "create config"); err != nil {
				return err
			}
		case store.ScopeOrg:
			var one int
			if err := tx.QueryRow(ctx, `SELECT 1 FROM orgs WHERE id = $1 FOR SHARE`, c.OwnerID).Scan(&one); err != nil {
				if isNoRows(err) {
					return fmt.Errorf("postgres: create config: owner org: %w", store.ErrNotFound)
				}
				return err
			}
		}
		var err error
		outC, err = scanConfig(tx.QueryRow(ctx, `INSERT INTO configs AS c
			(id, owner_scope, owner_id, name, remote_url, auth_mode, sharing_mode, status, version, path_passthrough,
			 static_headers, static_header_names, aux_headers, provider, provider_client_credentials, registry,
			 created_by, created_at, updated_at, active_route_key)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $10, $11, $12, $13, $14, $15, $16,
			 COALESCE($17, now()), COALESCE($18, $17, now()), $19)
			RETURNING `+configCols,
			c.ID, string(c.OwnerScope), c.OwnerID, c.Name, c.RemoteURL, string(c.AuthMode), string(c.SharingMode),
			string(c.Status), c.PathPassthrough, bytesOrNil(c.StaticHeaders), strs(c.StaticHeaderNames),
			jsonMap(c.AuxHeaders), providerJSON(c.Provider), bytesOrNil(c.Provider.ClientCredentials),
			rawJSON(c.Registry), nullStr(c.CreatedBy), ts(c.CreatedAt), ts(c.UpdatedAt), routeKey))
		if err != nil {
			return err
		}
		outR, err = scanRoute(tx.QueryRow(ctx, `INSERT INTO routes AS r (id, config_id, owner_scope, owner_id, key, active, created_at)
			VALUES ($1, $2, $3, $4, $5, true, $6) RETURNING `+routeCols,
			routeID, c.ID, string(c.OwnerScope), c.OwnerID, routeKey, outC.CreatedAt))
		if err != nil {
			return err
		}
		return appendAudit(ctx, tx, ev)
	})
	if err != nil {
		return store.Config{}, store.Route{}, err
	}
	return outC, outR, nil
}

// GetConfig returns a config by id (any status).
func (s *Store) GetConfig(ctx context.Context, id string) (store.Config, error) {
	if err := store.ValidateID("config.id", id); err != nil {
		return store.Config{}, err
	}
	c, err := scanConfig(s.pool.QueryRow(ctx, `SELECT `+configCols+` FROM configs c WHERE id = $1`, id))
	if err != nil {
		return store.Config{}, mapErr("get config", err)
	}
	return c, nil
}

// ListConfigs lists non-deleted configs of one owner (or all).
func (s *Store) ListConfigs(ctx context.Context, scope store.OwnerScope, ownerID string) ([]store.Config, error) {
	if scope != "" {
		if err := first(validScope(scope), store.ValidateID("owner_id", ownerID)); err != nil {
			return nil, err
		}
	} else if ownerID != "" {
		return nil, store.Invalid("owner_scope", "required with owner_id")
	}
	rows, err := s.pool.Query(ctx, `SELECT `+configCols+` FROM configs c
		WHERE status <> 'deleted' AND ($1 = '' OR (owner_scope = $1 AND owner_id = $2::uuid))
		ORDER BY name, id`, string(scope), nullStr(ownerID))
	if err != nil {
		return nil, mapErr("list configs", err)
	}
	out, err := collect(rows, scanConfig)
	return out, mapErr("list configs", err)
}

func validScope(s store.OwnerScope) error {
	if !s.Valid() {
		return store.Invalid("owner_scope", "unknown owner scope")
	}
	return nil
}

// lockConfig reads the config FOR UPDATE. Deleted configs are ErrNotFound
// unless allowDeleted.
func lockConfig(ctx context.Context, tx pgx.Tx, id, op string, allowDeleted bool) (store.Config, error) {
	c, err := scanConfig(tx.QueryRow(ctx, `SELECT `+configCols+` FROM configs c WHERE id = $1 FOR UPDATE`, id))
	if isNoRows(err) || (err == nil && c.Status == store.ConfigDeleted && !allowDeleted) {
		return store.Config{}, fmt.Errorf("postgres: %s: config: %w", op, store.ErrNotFound)
	}
	return c, err
}

func cloneConfig(c store.Config) store.Config {
	c.StaticHeaders = slices.Clone(c.StaticHeaders)
	c.StaticHeaderNames = slices.Clone(c.StaticHeaderNames)
	c.AuxHeaders = maps.Clone(c.AuxHeaders)
	c.Provider.Scopes = slices.Clone(c.Provider.Scopes)
	c.Provider.ClientCredentials = slices.Clone(c.Provider.ClientCredentials)
	c.Registry = slices.Clone(c.Registry)
	return c
}

// UpdateConfig is a read-modify-write in one transaction; a material change
// advances the version and revokes grants, pending state and provider
// registrations (DESIGN §5).
func (s *Store) UpdateConfig(ctx context.Context, id string, update func(*store.Config) error, ev *store.AuditEvent) (store.Config, bool, error) {
	if err := first(store.ValidateID("config.id", id), validateEvent(ev)); err != nil {
		return store.Config{}, false, err
	}
	if update == nil {
		return store.Config{}, false, store.Invalid("update", "required")
	}
	var out store.Config
	var material bool
	var updateErr error // the caller's own error, returned untouched
	err := s.tx(ctx, "update config", func(tx pgx.Tx) error {
		old, err := lockConfig(ctx, tx, id, "update config", false)
		if err != nil {
			return err
		}
		n := cloneConfig(old)
		if err := update(&n); err != nil {
			updateErr = err
			return err
		}
		// Only the documented fields may change.
		n.ID, n.OwnerScope, n.OwnerID, n.Status, n.Version = old.ID, old.OwnerScope, old.OwnerID, old.Status, old.Version
		n.CreatedBy, n.CreatedAt, n.UpdatedAt = old.CreatedBy, old.CreatedAt, old.UpdatedAt
		if err := n.Validate(); err != nil {
			return err
		}
		material = store.MaterialChange(&old, &n)
		if old.SharingMode == store.MultiUser && n.SharingMode == store.SingleUser {
			var count int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM assignments WHERE config_id = $1`, id).Scan(&count); err != nil {
				return err
			}
			if count > 1 {
				return fmt.Errorf("postgres: update config: more than one assignee: %w", store.ErrConflict)
			}
		}
		bump := 0
		if material {
			bump = 1
			// Revoke every grant; OAuth modes need a new provider
			// authorization, so live instances move to needs_reauth.
			if _, err := tx.Exec(ctx, `UPDATE instances SET grant_version = grant_version + 1,
				grant_access_token = NULL, grant_refresh_token = NULL, grant_token_type = NULL, grant_scope = NULL,
				grant_expires_at = NULL, grant_updated_at = NULL, updated_at = now(),
				state = CASE WHEN $2 THEN 'needs_reauth' ELSE state END
				WHERE config_id = $1 AND state IN ('active', 'needs_reauth')`, id, n.AuthMode.IsOAuth()); err != nil {
				return err
			}
			for _, q := range []string{
				`DELETE FROM pending_provider_states WHERE config_id = $1`,
				`DELETE FROM provider_registrations WHERE config_id = $1`,
			} {
				if _, err := tx.Exec(ctx, q, id); err != nil {
					return err
				}
			}
		}
		out, err = scanConfig(tx.QueryRow(ctx, `UPDATE configs AS c SET name = $2, remote_url = $3, auth_mode = $4,
			sharing_mode = $5, path_passthrough = $6, static_headers = $7, static_header_names = $8, aux_headers = $9,
			provider = $10, provider_client_credentials = $11, registry = $12, version = version + $13, updated_at = now()
			WHERE id = $1 RETURNING `+configCols,
			id, n.Name, n.RemoteURL, string(n.AuthMode), string(n.SharingMode), n.PathPassthrough,
			bytesOrNil(n.StaticHeaders), strs(n.StaticHeaderNames), jsonMap(n.AuxHeaders), providerJSON(n.Provider),
			bytesOrNil(n.Provider.ClientCredentials), rawJSON(n.Registry), bump))
		if err != nil {
			return err
		}
		return appendAudit(ctx, tx, ev)
	})
	if updateErr != nil {
		return store.Config{}, false, updateErr
	}
	if err != nil {
		return store.Config{}, false, err
	}
	return out, material, nil
}

// SetConfigStatus enables or disables a config.
func (s *Store) SetConfigStatus(ctx context.Context, id string, status store.ConfigStatus, ev *store.AuditEvent) (store.Config, error) {
	if err := first(store.ValidateID("config.id", id), store.ValidateConfigStatusChange(status), validateEvent(ev)); err != nil {
		return store.Config{}, err
	}
	var out store.Config
	err := s.tx(ctx, "set config status", func(tx pgx.Tx) error {
		if _, err := lockConfig(ctx, tx, id, "set config status", false); err != nil {
			return err
		}
		var err error
		out, err = scanConfig(tx.QueryRow(ctx, `UPDATE configs AS c SET status = $2, updated_at = now()
			WHERE id = $1 RETURNING `+configCols, id, string(status)))
		if err != nil {
			return err
		}
		return appendAudit(ctx, tx, ev)
	})
	return out, err
}

// DeleteConfig marks the config deleted and removes everything that
// depends on it, in one transaction (DESIGN §7). Idempotent.
func (s *Store) DeleteConfig(ctx context.Context, id string, ev *store.AuditEvent) error {
	if err := first(store.ValidateID("config.id", id), validateEvent(ev)); err != nil {
		return err
	}
	return s.tx(ctx, "delete config", func(tx pgx.Tx) error {
		c, err := lockConfig(ctx, tx, id, "delete config", true)
		if err != nil {
			return err
		}
		if c.Status == store.ConfigDeleted {
			return nil
		}
		for _, q := range []string{
			`UPDATE configs SET status = 'deleted', updated_at = now() WHERE id = $1`,
			`UPDATE routes SET active = false, deactivated_at = now() WHERE config_id = $1 AND active`,
			endInstancesSQL + `config_id = $1`,
			`DELETE FROM assignments WHERE config_id = $1`,
			`DELETE FROM pending_provider_states WHERE config_id = $1`,
			`DELETE FROM provider_registrations WHERE config_id = $1`,
		} {
			if _, err := tx.Exec(ctx, q, id); err != nil {
				return err
			}
		}
		return appendAudit(ctx, tx, ev)
	})
}

// RotateRoute replaces the config's active route in one transaction and
// keeps configs.active_route_key equal to it.
func (s *Store) RotateRoute(ctx context.Context, configID, routeID, newKey string, ev *store.AuditEvent) (store.Route, error) {
	if err := first(store.ValidateID("config_id", configID), store.ValidateID("route.id", routeID),
		store.ValidateRouteKey("route.key", newKey), validateEvent(ev)); err != nil {
		return store.Route{}, err
	}
	var out store.Route
	err := s.tx(ctx, "rotate route", func(tx pgx.Tx) error {
		c, err := lockConfig(ctx, tx, configID, "rotate route", false)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE routes SET active = false, deactivated_at = now()
			WHERE config_id = $1 AND active`, configID); err != nil {
			return err
		}
		out, err = scanRoute(tx.QueryRow(ctx, `INSERT INTO routes AS r (id, config_id, owner_scope, owner_id, key, active, created_at)
			VALUES ($1, $2, $3, $4, $5, true, now()) RETURNING `+routeCols,
			routeID, configID, string(c.OwnerScope), c.OwnerID, newKey))
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE configs SET active_route_key = $2, updated_at = now() WHERE id = $1`,
			configID, newKey); err != nil {
			return err
		}
		return appendAudit(ctx, tx, ev)
	})
	return out, err
}

// GetActiveRoute returns the config's active route.
func (s *Store) GetActiveRoute(ctx context.Context, configID string) (store.Route, error) {
	if err := store.ValidateID("config_id", configID); err != nil {
		return store.Route{}, err
	}
	r, err := scanRoute(s.pool.QueryRow(ctx, `SELECT `+routeCols+` FROM routes r WHERE config_id = $1 AND active`, configID))
	if err != nil {
		return store.Route{}, mapErr("get active route", err)
	}
	return r, nil
}

func scanConfigRoute(row pgx.Row) (store.RoutableConfig, error) {
	var d configDest
	var r store.Route
	var scope string
	if err := row.Scan(append(d.targets(), routeTargets(&r, &scope)...)...); err != nil {
		return store.RoutableConfig{}, err
	}
	finishRoute(&r, scope)
	c, err := d.finish()
	return store.RoutableConfig{Config: c, Route: r}, err
}

// LookupRoute returns the enabled config and its active route for an exact
// route tuple; ErrNotFound otherwise.
func (s *Store) LookupRoute(ctx context.Context, scope store.OwnerScope, ownerID, configID, routeKey string) (store.Config, store.Route, error) {
	if err := first(validScope(scope), store.ValidateID("owner_id", ownerID), store.ValidateID("config_id", configID),
		store.ValidateRouteKey("route_key", routeKey)); err != nil {
		return store.Config{}, store.Route{}, err
	}
	rc, err := scanConfigRoute(s.pool.QueryRow(ctx, `SELECT `+configCols+`, `+routeCols+`
		FROM configs c JOIN routes r ON r.config_id = c.id AND r.active
		WHERE c.id = $1 AND c.owner_scope = $2 AND c.owner_id = $3 AND c.status = 'enabled' AND r.key = $4`,
		configID, string(scope), ownerID, routeKey))
	if err != nil {
		return store.Config{}, store.Route{}, mapErr("lookup route", err)
	}
	return rc.Config, rc.Route, nil
}

// ListRoutable returns every enabled config with its active route.
func (s *Store) ListRoutable(ctx context.Context) ([]store.RoutableConfig, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+configCols+`, `+routeCols+`
		FROM configs c JOIN routes r ON r.config_id = c.id AND r.active
		WHERE c.status = 'enabled' ORDER BY c.id`)
	if err != nil {
		return nil, mapErr("list routable", err)
	}
	out, err := collect(rows, scanConfigRoute)
	return out, mapErr("list routable", err)
}

// GetRoutable returns one enabled config with its active route.
func (s *Store) GetRoutable(ctx context.Context, configID string) (store.RoutableConfig, error) {
	if err := store.ValidateID("config_id", configID); err != nil {
		return store.RoutableConfig{}, err
	}
	rc, err := scanConfigRoute(s.pool.QueryRow(ctx, `SELECT `+configCols+`, `+routeCols+`
		FROM configs c JOIN routes r ON r.config_id = c.id AND r.active
		WHERE c.id = $1 AND c.status = 'enabled'`, configID))
	if err != nil {
		return store.RoutableConfig{}, mapErr("get routable", err)
	}
	return rc, nil
}

const assignmentCols = `config_id::text, user_id::text, COALESCE(created_by::text, ''), created_at`

func scanAssignment(row pgx.Row) (store.Assignment, error) {
	var a store.Assignment
	err := row.Scan(&a.ConfigID, &a.UserID, &a.CreatedBy, &a.CreatedAt)
	a.CreatedAt = utc(a.CreatedAt)
	return a, err
}

// removeUse ends userID's non-terminal instance of the config (with its
// grant) and deletes its pending provider state: the cascade of losing an
// assignment.
func removeUse(ctx context.Context, tx pgx.Tx, configID, userID string) error {
	if _, err := tx.Exec(ctx, endInstancesSQL+`config_id = $1 AND user_id = $2`, configID, userID); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `DELETE FROM pending_provider_states WHERE config_id = $1 AND user_id = $2`, configID, userID)
	return err
}

// Assign gives a member the use of an org config; for single_user configs
// the previous assignee loses assignment, instance and grant in the same
// transaction. The config row lock serializes concurrent assignments.
func (s *Store) Assign(ctx context.Context, a store.Assignment, ev *store.AuditEvent) (store.Assignment, error) {
	if err := first(a.Validate(), validateEvent(ev)); err != nil {
		return store.Assignment{}, err
	}
	var out store.Assignment
	err := s.tx(ctx, "assign", func(tx pgx.Tx) error {
		c, err := lockConfig(ctx, tx, a.ConfigID, "assign", false)
		if err != nil {
			return err
		}
		if c.OwnerScope != store.ScopeOrg {
			return fmt.Errorf("postgres: assign: personal config: %w", store.ErrConflict)
		}
		var member bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM org_members m JOIN users u ON u.id = m.user_id
			WHERE m.org_id = $1 AND m.user_id = $2 AND u.status <> 'deleted')`, c.OwnerID, a.UserID).Scan(&member); err != nil {
			return err
		}
		if !member {
			return fmt.Errorf("postgres: assign: not a member: %w", store.ErrConflict)
		}
		out, err = scanAssignment(tx.QueryRow(ctx, `SELECT `+assignmentCols+` FROM assignments
			WHERE config_id = $1 AND user_id = $2`, a.ConfigID, a.UserID))
		if err == nil {
			return nil // already assigned: no-op
		}
		if !isNoRows(err) {
			return err
		}
		if c.SharingMode == store.SingleUser {
			rows, err := tx.Query(ctx, `DELETE FROM assignments WHERE config_id = $1 AND user_id <> $2 RETURNING user_id::text`,
				a.ConfigID, a.UserID)
			if err != nil {
				return err
			}
			prev, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return err
			}
			for _, u := range prev {
				if err := removeUse(ctx, tx, a.ConfigID, u); err != nil {
					return err
				}
			}
		}
		out, err = scanAssignment(tx.QueryRow(ctx, `INSERT INTO assignments (config_id, user_id, org_id, created_by, created_at)
			VALUES ($1, $2, $3, $4, COALESCE($5, now())) RETURNING `+assignmentCols,
			a.ConfigID, a.UserID, c.OwnerID, nullStr(a.CreatedBy), ts(a.CreatedAt)))
		if err != nil {
			return err
		}
		return appendAudit(ctx, tx, ev)
	})
	return out, err
}

// Unassign removes an assignment with the user's instance, grant and
// pending provider state for the config.
func (s *Store) Unassign(ctx context.Context, configID, userID string, ev *store.AuditEvent) error {
	if err := first(store.ValidateID("config_id", configID), store.ValidateID("user_id", userID), validateEvent(ev)); err != nil {
		return err
	}
	return s.tx(ctx, "unassign", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM assignments WHERE config_id = $1 AND user_id = $2`, configID, userID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("postgres: unassign: %w", store.ErrNotFound)
		}
		if err := removeUse(ctx, tx, configID, userID); err != nil {
			return err
		}
		return appendAudit(ctx, tx, ev)
	})
}

// ListAssignments lists a config's assignments ordered by user id.
func (s *Store) ListAssignments(ctx context.Context, configID string) ([]store.Assignment, error) {
	if err := store.ValidateID("config_id", configID); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT `+assignmentCols+` FROM assignments WHERE config_id = $1 ORDER BY user_id::text`, configID)
	if err != nil {
		return nil, mapErr("list assignments", err)
	}
	out, err := collect(rows, scanAssignment)
	return out, mapErr("list assignments", err)
}

// ListUsable returns the configs userID can use now (DESIGN §3).
func (s *Store) ListUsable(ctx context.Context, userID string) ([]store.UsableConfig, error) {
	if err := store.ValidateID("user_id", userID); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `
		WITH usable AS (
			SELECT c.id FROM configs c JOIN users u ON u.id = $1 AND u.status = 'active'
			WHERE c.owner_scope = 'user' AND c.owner_id = $1 AND c.status = 'enabled'
			UNION ALL
			SELECT c.id FROM assignments a
			JOIN configs c ON c.id = a.config_id AND c.owner_scope = 'org' AND c.status = 'enabled'
			JOIN org_members m ON m.org_id = c.owner_id AND m.user_id = a.user_id
			JOIN users u ON u.id = a.user_id AND u.status = 'active'
			WHERE a.user_id = $1
		)
		SELECT `+configCols+`, `+routeCols+`, `+instanceColsI+`
		FROM usable JOIN configs c ON c.id = usable.id
		JOIN routes r ON r.config_id = c.id AND r.active
		LEFT JOIN instances i ON i.config_id = c.id AND i.user_id = $1 AND i.owner_scope = c.owner_scope
			AND i.owner_id = c.owner_id AND i.state IN ('active', 'needs_reauth')
		ORDER BY c.id`, userID)
	if err != nil {
		return nil, mapErr("list usable", err)
	}
	out, err := collect(rows, func(row pgx.Row) (store.UsableConfig, error) {
		var d configDest
		var r store.Route
		var rscope string
		var in nullInstance
		if err := row.Scan(append(append(d.targets(), routeTargets(&r, &rscope)...), in.targets()...)...); err != nil {
			return store.UsableConfig{}, err
		}
		finishRoute(&r, rscope)
		c, err := d.finish()
		return store.UsableConfig{Config: c, Route: r, Instance: in.instance()}, err
	})
	return out, mapErr("list usable", err)
}
