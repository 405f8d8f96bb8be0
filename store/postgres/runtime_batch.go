package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"

	"mcpgw/store"
)

// ResolveRuntimeBatch answers several runtime rechecks in one round trip:
// the same prepared statement and decoder as ResolveRuntime (resolveStmt),
// executed once per query in a pipeline (one write, one Sync, results read
// in order).
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
	ids := make([]runtimeIDs, len(qs))
	idx := make([]int, 0, len(qs))
	for i, q := range qs {
		if err := q.Validate(); err != nil {
			errs[i] = err
			continue
		}
		ids[i] = parseRuntimeIDs(q)
		idx = append(idx, i)
	}
	if len(idx) == 0 {
		return states, errs
	}
	fail := func(err error) ([]store.RuntimeState, []error) {
		err = mapErr("resolve runtime batch", err)
		for _, i := range idx {
			if errs[i] == nil {
				states[i], errs[i] = store.RuntimeState{}, err
			}
		}
		return states, errs
	}
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return fail(err)
	}
	defer c.Release()
	sd, err := prepareResolve(ctx, c.Conn())
	if err != nil {
		return fail(err)
	}
	b := &pgconn.Batch{}
	for _, i := range idx {
		b.ExecStatement(sd, ids[i].params(), binaryFormat, binaryFormat)
	}
	mrr := c.Conn().PgConn().ExecBatch(ctx, b)
	var failed error
	for _, i := range idx {
		if failed != nil {
			errs[i] = failed
			continue
		}
		if !mrr.NextResult() {
			failed = mapErr("resolve runtime batch", fmt.Errorf("%w: missing result", errRuntimeRow))
			errs[i] = failed
			continue
		}
		st, err := readRuntime(mrr.ResultReader(), qs[i], &ids[i])
		if err != nil {
			failed = mapErr("resolve runtime batch", err)
			errs[i] = failed
			continue
		}
		states[i] = st
	}
	if err := mrr.Close(); err != nil {
		return fail(err)
	}
	return states, errs
}
