package postgres

import (
	"context"
	"fmt"
)

// SchemaVersions reports the highest migration version applied to the
// database at dsn (0 for an empty database) and the highest version
// embedded in this binary. `mcpgw serve` refuses to start when current <
// target, so a forgotten `mcpgw migrate up` is a clear startup error
// instead of SQL errors at the first request.
func SchemaVersions(ctx context.Context, dsn string) (current, target int64, err error) {
	p, db, err := provider(dsn)
	if err != nil {
		return 0, 0, err
	}
	defer db.Close()
	current, target, err = p.GetVersions(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("postgres: schema version: %w", classify(err))
	}
	return current, target, nil
}
