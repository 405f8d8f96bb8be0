package api

import (
	"errors"
	"net/http"
	"strconv"

	"mcpgw/store"
)

func isConflict(err error) bool { return errors.Is(err, store.ErrConflict) }

// appendAudit writes an event for changes whose store method takes no
// event (user and API-token creation). A failure is logged, never shown:
// the change itself succeeded.
func (h *Handler) appendAudit(r *http.Request, ev store.AuditEvent) {
	if err := h.st.AppendAudit(r.Context(), ev); err != nil {
		h.log.WarnContext(r.Context(), "audit append failed", "type", ev.Type, "err", err)
	}
}

// boolQuery parses an optional boolean query parameter.
func boolQuery(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, badRequest("query parameter %s must be true or false", name)
	}
	return b, nil
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }
