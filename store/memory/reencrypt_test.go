package memory_test

import (
	"testing"

	"mcpgw/store"
	"mcpgw/store/memory"
	"mcpgw/store/storetest"
)

func TestReencryptConformance(t *testing.T) {
	storetest.RunReencrypt(t, func(t *testing.T) store.Store { return memory.New() })
}
