package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"mcpgw/store"
)

// ResolveRuntimeBatch answers several runtime rechecks in one round trip:
// the same prepared statement as ResolveRuntime (resolveSQL), queued once
// per query in a pgx pipeline (one write, one Sync, results read in order).
// Each query is still its own fresh read of the database made after its
// request arrived; batching only shares the network round trip and the
// Postgres wake-up between requests that are in flight at the same time.
// extauthz uses it through an optional interface (it is not part of
// store.Store).
//
// The result slices are parallel to qs: states[i] is meaningful when
// errs[i] is nil. An invalid query gets its own ErrInvalid; a failed round
// trip gives every remaining query the (ErrUnavailable) error.
func (s *Store) ResolveRuntimeBatch(ctx context.Context, qs []store.RuntimeQuery) ([]store.RuntimeState, []error) {
	states := make([]store.RuntimeState, len(qs))
	errs := make([]error, len(qs))
	b := &pgx.Batch{}
	idx := make([]int, 0, len(qs))
	for i, q := range qs {
		if err := q.Validate(); err != nil {
			errs[i] = err
			continue
		}
		b.Queue(resolveSQL, q.ConfigID, q.UserID, q.InstanceID)
		idx = append(idx, i)
	}
	if len(idx) == 0 {
		return states, errs
	}
	br := s.pool.SendBatch(ctx, b)
	var failed error
	for _, i := range idx {
		if failed != nil {
			errs[i] = failed
			continue
		}
		var f runtimeFacts
		err := br.QueryRow().Scan(f.targets()...)
		switch {
		case isNoRows(err):
			states[i] = store.RuntimeState{Reason: store.ReasonRouteNotFound}
		case err != nil:
			failed = mapErr("resolve runtime batch", err)
			errs[i] = failed
		default:
			states[i], errs[i] = runtimeDecide(qs[i], &f)
		}
	}
	if err := br.Close(); err != nil && failed == nil {
		failed = mapErr("resolve runtime batch", err)
		for _, i := range idx {
			if errs[i] == nil {
				states[i], errs[i] = store.RuntimeState{}, failed
			}
		}
	}
	return states, errs
}
