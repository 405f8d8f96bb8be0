package postgres

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"mcpgw/store"
)

// querier is what both the pool and a transaction offer.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ts returns nil for the zero time so that SQL can COALESCE it to now().
func ts(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// tsp is ts for optional times.
func tsp(t *time.Time) any {
	if t == nil || t.IsZero() {
		return nil
	}
	return *t
}

// nullStr maps "" to SQL NULL (optional uuid and text columns).
func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// utc normalizes a time read from Postgres (pgx returns local time).
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

func utcp(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// jsonMap encodes a string map for a jsonb column ("{}" for nil).
func jsonMap(m map[string]string) []byte {
	if len(m) == 0 {
		return []byte("{}")
	}
	b, _ := json.Marshal(m) // a map[string]string always marshals
	return b
}

// parseMap decodes a jsonb string map; empty yields nil.
func parseMap(b []byte) (map[string]string, error) {
	if len(b) == 0 {
		return nil, nil
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, nil
	}
	return m, nil
}

// rawJSON maps an empty json.RawMessage to NULL.
func rawJSON(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	return string(b)
}

// strs maps nil to an empty text[] (NOT NULL columns).
func strs(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// nilIfEmpty returns nil for an empty slice so values read back match the
// zero value callers usually pass.
func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

// bytesOrNil maps an empty byte slice to NULL.
func bytesOrNil(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// audit writes ev in the transaction q (nil ev: nothing). Time defaults to
// the database clock.
func appendAudit(ctx context.Context, q querier, ev *store.AuditEvent) error {
	if ev == nil {
		return nil
	}
	if err := ev.Validate(); err != nil {
		return err
	}
	var md any
	if len(ev.Metadata) > 0 {
		md = jsonMap(ev.Metadata)
	}
	var t time.Time
	err := q.QueryRow(ctx, `INSERT INTO audit_events
		(time, type, outcome, actor_user_id, owner_scope, owner_id, config_id, route_id, instance_id, user_id, client_id, reason, metadata)
		VALUES (COALESCE($1, now()), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
		RETURNING id, time`,
		ts(ev.Time), ev.Type, ev.Outcome, ev.ActorUserID, string(ev.OwnerScope), ev.OwnerID, ev.ConfigID,
		ev.RouteID, ev.InstanceID, ev.UserID, ev.ClientID, ev.Reason, md).Scan(&ev.ID, &t)
	if err != nil {
		return err
	}
	ev.Time = utc(t)
	return nil
}

// validateEvent checks an optional audit event before any database work.
func validateEvent(ev *store.AuditEvent) error {
	if ev == nil {
		return nil
	}
	return ev.Validate()
}

// first returns the first non-nil error.
func first(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
