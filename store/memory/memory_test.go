package memory_test

import (
	"testing"

	"mcpgw/store"
	"mcpgw/store/memory"
	"mcpgw/store/storetest"
)

// TestConformance runs the one conformance suite (store/storetest) against
// the embedded store; the same cases run against store/postgres.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return memory.New() })
}
