package provider_test

import (
	"mcpgw/provider/providertest"
	"mcpgw/store"
	"mcpgw/store/memory"
)

type (
	asOptions  = providertest.ASOptions
	mcpOptions = providertest.MCPOptions
)

const (
	verifier1 = "verifier-0123456789-0123456789-0123456789-abcdef"
	verifier2 = "verifier-abcdefabcdef-0123456789-0123456789-9876"
)

func asOpts(f func(*asOptions)) asOptions {
	var o asOptions
	f(&o)
	return o
}

func mcpOpts(f func(*mcpOptions)) mcpOptions {
	var o mcpOptions
	f(&o)
	return o
}

func newMem() store.Store { return memory.New() }
