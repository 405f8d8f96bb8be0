package provider_test

import (
	"testing"

	"mcpgw/provider/providertest"
	"mcpgw/store"
)

// TestEndpointOverrides: operator-pinned endpoints are used as given, and
// AS metadata is not fetched at all when they cover what the mode needs
// (so broken upstream metadata does not matter); an issuer override
// replaces the PRM's authorization server.
func TestEndpointOverrides(t *testing.T) {
	cases := []struct {
		name        string
		mode        store.AuthMode
		set         func(e *env, c *store.Config)
		wantMDFetch bool
	}{
		{name: "dynamic: all endpoints pinned", mode: store.AuthOAuthDynamic, set: func(e *env, c *store.Config) {
			c.Provider.AuthorizationEndpoint = e.as.URL + "/authorize"
			c.Provider.TokenEndpoint = e.as.URL + "/token"
			c.Provider.RegistrationEndpoint = e.as.URL + "/register"
		}},
		{name: "static: authorization and token pinned", mode: store.AuthOAuthStatic, set: func(e *env, c *store.Config) {
			c.Provider.AuthorizationEndpoint = e.as.URL + "/authorize"
			c.Provider.TokenEndpoint = e.as.URL + "/token"
		}},
		{name: "issuer override", mode: store.AuthOAuthDynamic, set: func(e *env, c *store.Config) {
			c.Provider.Issuer = e.as.URL
		}, wantMDFetch: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ec := envConfig{mode: tc.mode, setCfg: tc.set}
			if tc.name == "issuer override" {
				// the PRM names an unusable AS; the override wins
				ec.mcp = mcpOptions{AuthorizationServers: []string{"https://169.254.169.254"}}
			}
			e := newEnv(t, newMem(), ec)
			if !tc.wantMDFetch {
				e.as.SetFault(providertest.Fault{MetadataRedirect: true})
			}
			b := e.browser(nil)
			b.login("alice@example.com", alicePassword)
			e.authorizeOK(b, verifier1)
			if _, ok := e.grant(); !ok {
				t.Fatal("no grant")
			}
			if got := e.as.MetadataRequests.Load() > 0; got != tc.wantMDFetch {
				t.Fatalf("AS metadata fetched: %v, want %v", got, tc.wantMDFetch)
			}
		})
	}
}
