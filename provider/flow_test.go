package provider_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	"mcpgw/internal/testsupport"
	"mcpgw/store"
)

// TestFullFlow: both OAuth modes (dynamic with DCR, dynamic with CIMD,
// static) through the oauthserver authorize endpoint end in a first-level
// code that redeems at /oauth/token, and a stored grant whose bytes do not
// contain the upstream token but decrypt to one the upstream MCP server
// accepts (DESIGN §4, §5).
func TestFullFlow(t *testing.T) {
	cases := []struct {
		name    string
		ec      envConfig
		via     string
		authVia string
	}{
		{name: "oauth_dynamic DCR", ec: envConfig{mode: store.AuthOAuthDynamic}, via: "dcr", authVia: "basic"},
		{name: "oauth_dynamic CIMD", ec: envConfig{mode: store.AuthOAuthDynamic, as: asOpts(func(o *asOptions) { o.CIMD = true })}, via: "cimd", authVia: "none"},
		{name: "oauth_static", ec: envConfig{mode: store.AuthOAuthStatic}, via: "static", authVia: "basic"},
		{name: "oauth_dynamic OIDC discovery fallback", ec: envConfig{as: asOpts(func(o *asOptions) { o.OIDCOnly = true })}, via: "dcr", authVia: "basic"},
		{name: "oauth_dynamic iss parameter", ec: envConfig{as: asOpts(func(o *asOptions) { o.ISSParameter = true })}, via: "dcr", authVia: "basic"},
		{name: "oauth_dynamic well-known PRM", ec: envConfig{mcp: mcpOpts(func(o *mcpOptions) { o.NoResourceMetadata = true })}, via: "dcr", authVia: "basic"},
	}
	testsupport.Backends(t, func(t *testing.T, newStore func(t *testing.T) store.Store) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				e := newEnv(t, newStore(t), tc.ec)
				b := e.browser(nil)
				b.login("alice@example.com", alicePassword)
				code := e.authorizeOK(b, verifier1)
				e.plant(code)

				g, ok := e.grant()
				if !ok {
					t.Fatal("no grant stored")
				}
				in, _ := e.instance()
				if in.State != store.InstanceActive || g.Version != in.GrantVersion || g.TokenType != "Bearer" {
					t.Fatalf("instance %s grant v%d/%d type %q", in.State, g.Version, in.GrantVersion, g.TokenType)
				}
				at := e.open(g.AccessToken, "access_token", in.ID)
				if bytes.Contains(g.AccessToken, []byte(at)) || bytes.Contains(g.RefreshToken, []byte(at)) {
					t.Fatal("stored grant bytes contain the access token")
				}
				rt := e.open(g.RefreshToken, "refresh_token", in.ID)
				if bytes.Contains(g.RefreshToken, []byte(rt)) {
					t.Fatal("stored grant bytes contain the refresh token")
				}
				tk, ok := e.as.Verify(at, e.clock.Now())
				if !ok || tk.Resource != e.mcp.URL {
					t.Fatalf("stored token not accepted upstream (ok=%v resource=%q)", ok, tk.Resource)
				}
				// the authorization request carried PKCE S256, resource,
				// and the challenge's scope — never scopes_supported.
				ar := e.as.AuthorizeRequests()
				if len(ar) != 1 || ar[0].Method != "S256" || ar[0].Resource != e.mcp.URL {
					t.Fatalf("authorize requests: %+v", ar)
				}
				if ar[0].HasScope {
					t.Fatalf("scope sent although none is known: %q", ar[0].Scope)
				}
				tr := e.as.TokenRequests()
				if len(tr) != 1 || tr[0].AuthVia != tc.authVia || tr[0].Resource != e.mcp.URL {
					t.Fatalf("token requests: %+v", tr)
				}
				// the first-level code is real
				st, out := e.exchange(code, verifier1)
				if st != http.StatusOK || out["access_token"] == nil {
					t.Fatalf("exchange: %d %v", st, out)
				}
				// audit: provider authorization outcome and grant change,
				// with the client mode in metadata
				evs, _, _ := e.st.QueryAudit(context.Background(), store.AuditFilter{ConfigID: e.cfg.ID, Limit: 100})
				var sawGrant, sawSuccess bool
				for _, ev := range evs {
					if ev.Type == "provider.grant" && ev.Outcome == "success" {
						sawGrant = true
					}
					if ev.Type == "provider.authorize" && ev.Outcome == "success" && ev.Metadata["client_via"] == tc.via {
						sawSuccess = true
					}
				}
				if !sawGrant || !sawSuccess {
					t.Fatalf("audit lacks provider.grant/provider.authorize success (via %s): %+v", tc.via, evs)
				}
				// A second authorization reuses the cached registration:
				// one DCR per (config, version).
				if tc.via == "dcr" && e.as.Registrations.Load() != 1 {
					t.Fatalf("registrations: %d", e.as.Registrations.Load())
				}
			})
		}
	})
}

// TestScopeSelection (DESIGN §5): operator override, else the challenge's
// scope, never scopes_supported; resource override is sent as given.
func TestScopeSelection(t *testing.T) {
	cases := []struct {
		name         string
		ec           envConfig
		wantScope    string
		wantResource string
	}{
		{name: "challenge scope", ec: envConfig{mcp: mcpOpts(func(o *mcpOptions) { o.Scopes = []string{"files:read"} })}, wantScope: "files:read"},
		{name: "operator override wins", ec: envConfig{
			mcp:    mcpOpts(func(o *mcpOptions) { o.Scopes = []string{"files:read"} }),
			setCfg: func(e *env, c *store.Config) { c.Provider.Scopes = []string{"files:write", "files:read"} },
		}, wantScope: "files:write files:read"},
		{name: "resource override", ec: envConfig{
			setCfg: func(e *env, c *store.Config) { c.Provider.Resource = e.mcp.URL + "?tenant=1" },
		}, wantResource: "?tenant=1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, newMem(), tc.ec)
			b := e.browser(nil)
			b.login("alice@example.com", alicePassword)
			e.authorizeOK(b, verifier1)
			ar := e.as.AuthorizeRequests()
			if len(ar) != 1 {
				t.Fatalf("authorize requests: %+v", ar)
			}
			if tc.wantScope != "" && (!ar[0].HasScope || ar[0].Scope != tc.wantScope) {
				t.Fatalf("scope %q, want %q", ar[0].Scope, tc.wantScope)
			}
			if tc.wantResource != "" && !strings.HasSuffix(ar[0].Resource, tc.wantResource) {
				t.Fatalf("resource %q", ar[0].Resource)
			}
		})
	}
}
