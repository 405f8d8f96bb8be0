package provider_test

import (
	"testing"

	"mcpgw/provider"
)

// TestDiscoveryCache: discovery results are cached per (config, version)
// and expire after DiscoveryTTL on the injected clock; registrations are
// reused for the version.
func TestDiscoveryCache(t *testing.T) {
	e := newEnv(t, newMem(), envConfig{})
	b := e.browser(atCallback)
	b.login("alice@example.com", alicePassword)
	e.pendingCallback(b)
	e.pendingCallback(b)
	if n := e.as.MetadataRequests.Load(); n != 1 {
		t.Fatalf("AS metadata fetched %d times for two flows, want 1 (cached)", n)
	}
	e.clock.Advance(provider.DefaultDiscoveryTTL + 1)
	e.pendingCallback(b)
	if n := e.as.MetadataRequests.Load(); n != 2 {
		t.Fatalf("AS metadata fetched %d times after the TTL, want 2", n)
	}
	if n := e.as.Registrations.Load(); n != 1 {
		t.Fatalf("registered %d times for one config version, want 1", n)
	}
}
