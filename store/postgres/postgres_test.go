package postgres_test

import (
	"testing"

	"mcpgw/store"
	"mcpgw/store/postgres/pgtest"
	"mcpgw/store/storetest"
)

// TestConformance runs the shared store conformance suite against Postgres;
// every subtest gets its own throwaway database. Run it with -race.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return pgtest.Store(t) })
}
