package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"mcpgw/store"
)

const pendingCols = `state_hash, user_id::text, config_id::text, config_version, COALESCE(instance_id::text, ''), ciphertext,
	created_at, expires_at, consumed_at`

func scanPending(row pgx.Row) (store.PendingProviderState, error) {
	var p store.PendingProviderState
	err := row.Scan(&p.StateHash, &p.UserID, &p.ConfigID, &p.ConfigVersion, &p.InstanceID, &p.Ciphertext,
		&p.CreatedAt, &p.ExpiresAt, &p.ConsumedAt)
	p.CreatedAt, p.ExpiresAt, p.ConsumedAt = utc(p.CreatedAt), utc(p.ExpiresAt), utcp(p.ConsumedAt)
	return p, err
}

// CreatePendingState stores pending provider state.
func (s *Store) CreatePendingState(ctx context.Context, p store.PendingProviderState) error {
	if err := p.Validate(); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO pending_provider_states
		(state_hash, user_id, config_id, config_version, instance_id, ciphertext, created_at, expires_at, consumed_at)
		VALUES ($1, $2, $3, $4, $5, $6, COALESCE($7, now()), $8, $9)`,
		p.StateHash, p.UserID, p.ConfigID, p.ConfigVersion, nullStr(p.InstanceID), p.Ciphertext, ts(p.CreatedAt),
		p.ExpiresAt, tsp(p.ConsumedAt))
	return mapErr("create pending state", err)
}

// ConsumePendingState consumes pending state atomically.
func (s *Store) ConsumePendingState(ctx context.Context, stateHash []byte, now time.Time) (store.PendingProviderState, error) {
	if err := first(store.ValidateHash("state_hash", stateHash), store.ValidateTime("now", now)); err != nil {
		return store.PendingProviderState{}, err
	}
	return consume(ctx, s.pool, "consume pending state", "pending_provider_states", pendingCols, "state_hash", stateHash,
		now, scanPending, func(p store.PendingProviderState) *time.Time { return p.ConsumedAt })
}

// PutProviderRegistration stores the registration for (config, version);
// ErrStale unless version is the config's current one.
func (s *Store) PutProviderRegistration(ctx context.Context, r store.ProviderRegistration) error {
	if err := r.Validate(); err != nil {
		return err
	}
	return s.tx(ctx, "put provider registration", func(tx pgx.Tx) error {
		var version int64
		var status string
		// FOR SHARE: a concurrent material change (which deletes
		// registrations) waits for us or we wait for it.
		err := tx.QueryRow(ctx, `SELECT version, status FROM configs WHERE id = $1 FOR SHARE`, r.ConfigID).Scan(&version, &status)
		if isNoRows(err) || (err == nil && status == string(store.ConfigDeleted)) {
			return fmt.Errorf("postgres: put provider registration: config: %w", store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if version != r.ConfigVersion {
			return fmt.Errorf("postgres: put provider registration: %w", store.ErrStale)
		}
		_, err = tx.Exec(ctx, `INSERT INTO provider_registrations (config_id, config_version, ciphertext, created_at)
			VALUES ($1, $2, $3, COALESCE($4, now()))
			ON CONFLICT (config_id, config_version) DO UPDATE SET ciphertext = EXCLUDED.ciphertext, created_at = EXCLUDED.created_at`,
			r.ConfigID, r.ConfigVersion, r.Ciphertext, ts(r.CreatedAt))
		return err
	})
}

// GetProviderRegistration returns the registration for (config, version).
func (s *Store) GetProviderRegistration(ctx context.Context, configID string, version int64) (store.ProviderRegistration, error) {
	if err := first(store.ValidateID("config_id", configID), store.ValidateConfigVersion("config_version", version)); err != nil {
		return store.ProviderRegistration{}, err
	}
	var r store.ProviderRegistration
	err := s.pool.QueryRow(ctx, `SELECT config_id::text, config_version, ciphertext, created_at FROM provider_registrations
		WHERE config_id = $1 AND config_version = $2`, configID, version).Scan(&r.ConfigID, &r.ConfigVersion, &r.Ciphertext, &r.CreatedAt)
	if err != nil {
		return store.ProviderRegistration{}, mapErr("get provider registration", err)
	}
	r.CreatedAt = utc(r.CreatedAt)
	return r, nil
}

const auditCols = `id, time, type, outcome, actor_user_id, owner_scope, owner_id, config_id, route_id, instance_id, user_id,
	client_id, reason, metadata`

func scanAudit(row pgx.Row) (store.AuditEvent, error) {
	var e store.AuditEvent
	var scope string
	var md []byte
	err := row.Scan(&e.ID, &e.Time, &e.Type, &e.Outcome, &e.ActorUserID, &scope, &e.OwnerID, &e.ConfigID, &e.RouteID,
		&e.InstanceID, &e.UserID, &e.ClientID, &e.Reason, &md)
	if err != nil {
		return e, err
	}
	e.OwnerScope = store.OwnerScope(scope)
	e.Time = utc(e.Time)
	if len(md) > 0 {
		if err := json.Unmarshal(md, &e.Metadata); err != nil {
			return e, err
		}
		if len(e.Metadata) == 0 {
			e.Metadata = nil
		}
	}
	return e, nil
}

// AppendAudit writes events in one transaction.
func (s *Store) AppendAudit(ctx context.Context, events ...store.AuditEvent) error {
	for i := range events {
		if err := events[i].Validate(); err != nil {
			return err
		}
	}
	if len(events) == 0 {
		return nil
	}
	return s.tx(ctx, "append audit", func(tx pgx.Tx) error {
		for i := range events {
			ev := events[i]
			if err := appendAudit(ctx, tx, &ev); err != nil {
				return err
			}
		}
		return nil
	})
}

// QueryAudit returns events matching f, newest first, and the next cursor.
func (s *Store) QueryAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditEvent, int64, error) {
	if err := f.Validate(); err != nil {
		return nil, 0, err
	}
	limit := f.Limit
	if limit == 0 {
		limit = 100
	}
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "$?", "$"+strconv.Itoa(len(args))))
	}
	if f.OwnerScope != "" {
		add("owner_scope = $?", string(f.OwnerScope))
	}
	if f.OwnerID != "" {
		add("owner_id = $?", f.OwnerID)
	}
	if f.ConfigID != "" {
		add("config_id = $?", f.ConfigID)
	}
	if f.UserID != "" {
		add("(actor_user_id = $? OR user_id = $?)", f.UserID)
	}
	if f.Type != "" {
		add("type = $?", f.Type)
	}
	if !f.Since.IsZero() {
		add("time >= $?", f.Since)
	}
	if !f.Until.IsZero() {
		add("time < $?", f.Until)
	}
	if f.Before > 0 {
		add("id < $?", f.Before)
	}
	q := `SELECT ` + auditCols + ` FROM audit_events`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, limit+1)
	q += " ORDER BY id DESC LIMIT $" + strconv.Itoa(len(args))
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, 0, mapErr("query audit", err)
	}
	out, err := collect(rows, scanAudit)
	if err != nil {
		return nil, 0, mapErr("query audit", err)
	}
	var next int64
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].ID
	}
	return out, next, nil
}
