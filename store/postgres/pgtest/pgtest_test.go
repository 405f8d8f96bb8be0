package pgtest_test

import (
	"context"
	"testing"

	"mcpgw/store/postgres/pgtest"
)

// TestDSNGivesIsolatedMigratedDatabases checks that two DSNs name different
// databases that both carry the schema.
func TestDSNGivesIsolatedMigratedDatabases(t *testing.T) {
	a, b := pgtest.Store(t), pgtest.Store(t)
	ctx := context.Background()
	if _, err := a.Pool().Exec(ctx, "CREATE TABLE only_in_a (x int)"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := b.Pool().QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatal("databases are not isolated")
	}
	for _, s := range []interface{ Ping(context.Context) error }{a, b} {
		if err := s.Ping(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var users int
	if err := b.Pool().QueryRow(ctx, "SELECT count(*) FROM users").Scan(&users); err != nil {
		t.Fatalf("schema missing: %v", err)
	}
}
