package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"mcpgw/store"
)

const orgCols = `id::text, name, created_at`

func scanOrg(row pgx.Row) (store.Org, error) {
	var o store.Org
	err := row.Scan(&o.ID, &o.Name, &o.CreatedAt)
	o.CreatedAt = utc(o.CreatedAt)
	return o, err
}

const memberCols = `org_id::text, user_id::text, role, created_at`

func scanMember(row pgx.Row) (store.Member, error) {
	var m store.Member
	var role string
	err := row.Scan(&m.OrgID, &m.UserID, &role, &m.CreatedAt)
	m.Role = store.Role(role)
	m.CreatedAt = utc(m.CreatedAt)
	return m, err
}

// liveUser checks (with a row lock, so a concurrent soft delete waits) that
// the user exists and is not deleted; ErrNotFound otherwise.
func liveUser(ctx context.Context, tx pgx.Tx, id, op string) error {
	st, err := lockUser(ctx, tx, id)
	if isNoRows(err) || (err == nil && st == store.UserDeleted) {
		return fmt.Errorf("postgres: %s: user: %w", op, store.ErrNotFound)
	}
	return err
}

// CreateOrg inserts an org and makes ownerID its owner.
func (s *Store) CreateOrg(ctx context.Context, o store.Org, ownerID string, ev *store.AuditEvent) (store.Org, error) {
	if err := first(o.Validate(), store.ValidateID("owner_id", ownerID), validateEvent(ev)); err != nil {
		return store.Org{}, err
	}
	var out store.Org
	err := s.tx(ctx, "create org", func(tx pgx.Tx) error {
		if err := liveUser(ctx, tx, ownerID, "create org"); err != nil {
			return err
		}
		var err error
		out, err = scanOrg(tx.QueryRow(ctx, `INSERT INTO orgs (id, name, created_at)
			VALUES ($1, $2, COALESCE($3, now())) RETURNING `+orgCols, o.ID, o.Name, ts(o.CreatedAt)))
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO org_members (org_id, user_id, role, created_at)
			VALUES ($1, $2, 'owner', $3)`, o.ID, ownerID, out.CreatedAt); err != nil {
			return err
		}
		return appendAudit(ctx, tx, ev)
	})
	return out, err
}

// GetOrg returns an org by id.
func (s *Store) GetOrg(ctx context.Context, id string) (store.Org, error) {
	if err := store.ValidateID("org.id", id); err != nil {
		return store.Org{}, err
	}
	o, err := scanOrg(s.pool.QueryRow(ctx, `SELECT `+orgCols+` FROM orgs WHERE id = $1`, id))
	if err != nil {
		return store.Org{}, mapErr("get org", err)
	}
	return o, nil
}

// ListOrgs lists orgs ordered by name.
func (s *Store) ListOrgs(ctx context.Context) ([]store.Org, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+orgCols+` FROM orgs ORDER BY name, id`)
	if err != nil {
		return nil, mapErr("list orgs", err)
	}
	out, err := collect(rows, scanOrg)
	return out, mapErr("list orgs", err)
}

// lockOrgMembers locks the org row (serializing membership changes of one
// org, so the "last owner" rule cannot be raced) and reports whether it
// exists.
func lockOrg(ctx context.Context, tx pgx.Tx, orgID, op string) error {
	var one int
	err := tx.QueryRow(ctx, `SELECT 1 FROM orgs WHERE id = $1 FOR UPDATE`, orgID).Scan(&one)
	if isNoRows(err) {
		return fmt.Errorf("postgres: %s: org: %w", op, store.ErrNotFound)
	}
	return err
}

// AddMember adds a membership.
func (s *Store) AddMember(ctx context.Context, m store.Member, ev *store.AuditEvent) (store.Member, error) {
	if err := first(m.Validate(), validateEvent(ev)); err != nil {
		return store.Member{}, err
	}
	var out store.Member
	err := s.tx(ctx, "add member", func(tx pgx.Tx) error {
		if err := lockOrg(ctx, tx, m.OrgID, "add member"); err != nil {
			return err
		}
		if err := liveUser(ctx, tx, m.UserID, "add member"); err != nil {
			return err
		}
		var err error
		out, err = scanMember(tx.QueryRow(ctx, `INSERT INTO org_members (org_id, user_id, role, created_at)
			VALUES ($1, $2, $3, COALESCE($4, now())) RETURNING `+memberCols,
			m.OrgID, m.UserID, string(m.Role), ts(m.CreatedAt)))
		if err != nil {
			return err
		}
		return appendAudit(ctx, tx, ev)
	})
	return out, err
}

// lastOwner reports whether userID is the org's only owner.
func lastOwner(ctx context.Context, tx pgx.Tx, orgID, userID string) (bool, error) {
	var last bool
	err := tx.QueryRow(ctx, `SELECT count(*) = 1 AND bool_or(user_id = $2) FROM org_members
		WHERE org_id = $1 AND role = 'owner'`, orgID, userID).Scan(&last)
	return last, err
}

// SetMemberRole changes a role, refusing to leave the org without an owner.
func (s *Store) SetMemberRole(ctx context.Context, orgID, userID string, role store.Role, ev *store.AuditEvent) (store.Member, error) {
	if err := first(store.ValidateID("org_id", orgID), store.ValidateID("user_id", userID), store.ValidateRole(role), validateEvent(ev)); err != nil {
		return store.Member{}, err
	}
	var out store.Member
	err := s.tx(ctx, "set member role", func(tx pgx.Tx) error {
		if err := lockOrg(ctx, tx, orgID, "set member role"); err != nil {
			return err
		}
		cur, err := scanMember(tx.QueryRow(ctx, `SELECT `+memberCols+` FROM org_members WHERE org_id = $1 AND user_id = $2`, orgID, userID))
		if err != nil {
			return err
		}
		if cur.Role == store.RoleOwner && role != store.RoleOwner {
			last, err := lastOwner(ctx, tx, orgID, userID)
			if err != nil {
				return err
			}
			if last {
				return fmt.Errorf("postgres: set member role: org would have no owner: %w", store.ErrConflict)
			}
		}
		out, err = scanMember(tx.QueryRow(ctx, `UPDATE org_members SET role = $3 WHERE org_id = $1 AND user_id = $2
			RETURNING `+memberCols, orgID, userID, string(role)))
		if err != nil {
			return err
		}
		return appendAudit(ctx, tx, ev)
	})
	return out, err
}

// RemoveMember deletes the membership and, in the same transaction, the
// user's assignments to the org's configs, org instances with their grants
// and pending provider state for the org's configs (DESIGN §7).
func (s *Store) RemoveMember(ctx context.Context, orgID, userID string, ev *store.AuditEvent) error {
	if err := first(store.ValidateID("org_id", orgID), store.ValidateID("user_id", userID), validateEvent(ev)); err != nil {
		return err
	}
	return s.tx(ctx, "remove member", func(tx pgx.Tx) error {
		if err := lockOrg(ctx, tx, orgID, "remove member"); err != nil {
			return err
		}
		cur, err := scanMember(tx.QueryRow(ctx, `SELECT `+memberCols+` FROM org_members WHERE org_id = $1 AND user_id = $2`, orgID, userID))
		if err != nil {
			return err
		}
		if cur.Role == store.RoleOwner {
			last, err := lastOwner(ctx, tx, orgID, userID)
			if err != nil {
				return err
			}
			if last {
				return fmt.Errorf("postgres: remove member: org would have no owner: %w", store.ErrConflict)
			}
		}
		stmts := []string{
			`DELETE FROM org_members WHERE org_id = $1 AND user_id = $2`,
			`DELETE FROM assignments a USING configs c
				WHERE a.user_id = $2 AND a.config_id = c.id AND c.owner_scope = 'org' AND c.owner_id = $1`,
			endInstancesSQL + `owner_scope = 'org' AND owner_id = $1 AND user_id = $2`,
			`DELETE FROM pending_provider_states p USING configs c
				WHERE p.user_id = $2 AND p.config_id = c.id AND c.owner_scope = 'org' AND c.owner_id = $1`,
		}
		for _, q := range stmts {
			if _, err := tx.Exec(ctx, q, orgID, userID); err != nil {
				return err
			}
		}
		return appendAudit(ctx, tx, ev)
	})
}

// GetMember returns one membership.
func (s *Store) GetMember(ctx context.Context, orgID, userID string) (store.Member, error) {
	if err := first(store.ValidateID("org_id", orgID), store.ValidateID("user_id", userID)); err != nil {
		return store.Member{}, err
	}
	m, err := scanMember(s.pool.QueryRow(ctx, `SELECT `+memberCols+` FROM org_members WHERE org_id = $1 AND user_id = $2`, orgID, userID))
	if err != nil {
		return store.Member{}, mapErr("get member", err)
	}
	return m, nil
}

// ListMembers lists an org's members ordered by user id.
func (s *Store) ListMembers(ctx context.Context, orgID string) ([]store.Member, error) {
	if err := store.ValidateID("org_id", orgID); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT `+memberCols+` FROM org_members WHERE org_id = $1 ORDER BY user_id::text`, orgID)
	if err != nil {
		return nil, mapErr("list members", err)
	}
	out, err := collect(rows, scanMember)
	return out, mapErr("list members", err)
}

// ListMemberships lists a user's memberships ordered by org id.
func (s *Store) ListMemberships(ctx context.Context, userID string) ([]store.Member, error) {
	if err := store.ValidateID("user_id", userID); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT `+memberCols+` FROM org_members WHERE user_id = $1 ORDER BY org_id::text`, userID)
	if err != nil {
		return nil, mapErr("list memberships", err)
	}
	out, err := collect(rows, scanMember)
	return out, mapErr("list memberships", err)
}
