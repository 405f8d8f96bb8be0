package memory

import (
	"context"

	"mcpgw/store"
)

// AppendAudit writes every event or none.
func (s *Store) AppendAudit(ctx context.Context, events ...store.AuditEvent) error {
	for _, e := range events {
		if err := e.Validate(); err != nil {
			return err
		}
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	for _, e := range events {
		s.appendAuditLocked(e)
	}
	return nil
}

// QueryAudit pages newest first. Since is inclusive and Until exclusive;
// the returned cursor is the ID of the last event returned when more match.
func (s *Store) QueryAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditEvent, int64, error) {
	if err := f.Validate(); err != nil {
		return nil, 0, err
	}
	limit := f.Limit
	if limit == 0 {
		limit = 100
	}
	if err := s.lock(ctx); err != nil {
		return nil, 0, err
	}
	defer s.mu.Unlock()
	out := []store.AuditEvent{}
	for i := len(s.audit) - 1; i >= 0; i-- {
		e := &s.audit[i]
		if !auditMatches(e, f) {
			continue
		}
		if len(out) == limit {
			return out, out[len(out)-1].ID, nil
		}
		out = append(out, cloneAudit(*e))
	}
	return out, 0, nil
}

func auditMatches(e *store.AuditEvent, f store.AuditFilter) bool {
	switch {
	case f.Before > 0 && e.ID >= f.Before,
		f.OwnerScope != "" && e.OwnerScope != f.OwnerScope,
		f.OwnerID != "" && e.OwnerID != f.OwnerID,
		f.ConfigID != "" && e.ConfigID != f.ConfigID,
		f.UserID != "" && e.ActorUserID != f.UserID && e.UserID != f.UserID,
		f.Type != "" && e.Type != f.Type,
		!f.Since.IsZero() && e.Time.Before(f.Since),
		!f.Until.IsZero() && !e.Time.Before(f.Until):
		return false
	}
	return true
}
