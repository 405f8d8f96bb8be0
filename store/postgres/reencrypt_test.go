package postgres_test

import (
	"testing"

	"mcpgw/store"
	"mcpgw/store/postgres/pgtest"
	"mcpgw/store/storetest"
)

func TestReencryptConformance(t *testing.T) {
	storetest.RunReencrypt(t, func(t *testing.T) store.Store { return pgtest.Store(t) })
}
