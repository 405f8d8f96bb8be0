package postgres_test

import (
	"context"
	"testing"

	"mcpgw/store/postgres"
	"mcpgw/store/postgres/pgtest"
)

func TestSchemaVersions(t *testing.T) {
	cur, target, err := postgres.SchemaVersions(context.Background(), pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	if target < 1 || cur != target {
		t.Fatalf("migrated database: current %d, target %d", cur, target)
	}
}
