package provider_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"mcpgw/provider"
	"mcpgw/provider/providertest"
	"mcpgw/store"
)

// lastAudit returns the reason of the newest event of type typ with
// outcome failure.
func (e *env) failureReason(typ string) string {
	evs, _, _ := e.st.QueryAudit(context.Background(), store.AuditFilter{Type: typ, Limit: 100})
	for _, ev := range evs {
		if ev.Outcome == "failure" {
			return ev.Reason
		}
	}
	return ""
}

// TestDiscoveryFaults: every discovery fault (SSRF-relevant metadata,
// redirects, oversized documents, missing PKCE, a foreign resource, and
// loopback without the dev allowlist) stops the flow before the browser
// leaves mcpgw: the client gets temporarily_unavailable, the upstream AS
// sees no authorization request, no grant exists, the reason is audited,
// and nothing secret leaks (env cleanup).
func TestDiscoveryFaults(t *testing.T) {
	cases := []struct {
		name   string
		ec     envConfig
		fault  func(e *env) providertest.Fault
		reason string
	}{
		{name: "redirecting AS metadata", fault: func(*env) providertest.Fault { return providertest.Fault{MetadataRedirect: true} }, reason: provider.ReasonRedirect},
		{name: "AS endpoints on 127.0.0.1", fault: func(e *env) providertest.Fault {
			u, _ := url.Parse(e.as.URL)
			return providertest.Fault{EndpointBase: "https://127.0.0.1:" + u.Port()}
		}, reason: provider.ReasonAddressNotPublic},
		{name: "AS endpoints on 169.254.169.254", fault: func(*env) providertest.Fault {
			return providertest.Fault{EndpointBase: "https://169.254.169.254"}
		}, reason: provider.ReasonAddressNotPublic},
		{name: "oversized AS metadata", fault: func(*env) providertest.Fault { return providertest.Fault{OversizedMetadata: true} }, reason: provider.ReasonTooLarge},
		{name: "PRM names 169.254.169.254 as AS", ec: envConfig{mcp: mcpOptions{AuthorizationServers: []string{"https://169.254.169.254"}}}, reason: provider.ReasonAddressNotPublic},
		{name: "PRM names a plain-http AS", ec: envConfig{mcp: mcpOptions{AuthorizationServers: []string{"http://as.example.com"}}}, reason: provider.ReasonSchemeNotAllowed},
		{name: "PRM for another resource", ec: envConfig{mcp: mcpOptions{Resource: "https://other.example.com/mcp"}}, reason: provider.ReasonResourceMismatch},
		{name: "AS without S256", ec: envConfig{as: asOptions{NoS256: true}}, reason: provider.ReasonNoPKCE},
		{name: "no DCR and no CIMD", ec: envConfig{as: asOptions{NoDCR: true}}, reason: provider.ReasonNoRegistration},
		{name: "loopback without the dev allowlist", ec: envConfig{noAllow: true}, reason: provider.ReasonAddressNotPublic},
		{name: "static credentials unusable", ec: envConfig{mode: store.AuthOAuthStatic, setCfg: func(e *env, c *store.Config) {
			c.Provider.ClientCredentials = []byte("not a ciphertext at all")
		}}, reason: provider.ReasonNoCredentials},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, newMem(), tc.ec)
			if tc.fault != nil {
				e.as.SetFault(tc.fault(e))
			}
			b := e.browser(nil)
			b.login("alice@example.com", alicePassword)
			start := time.Now()
			q := clientRedirect(t, b.consent(e.authorizeParams(verifier1)))
			if q.Get("error") != "temporarily_unavailable" || q.Get("state") != "client-state-1" || q.Get("code") != "" {
				t.Fatalf("client got %v", redactQuery(q))
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Fatalf("not bounded: %v", d)
			}
			if len(e.as.AuthorizeRequests()) != 0 {
				t.Fatal("browser was sent upstream")
			}
			if _, ok := e.grant(); ok {
				t.Fatal("grant stored")
			}
			if got := e.failureReason("provider.authorize"); got != tc.reason {
				t.Fatalf("audited reason %q, want %q", got, tc.reason)
			}
		})
	}
}

// TestCallbackFaults: faults at the upstream authorization or token
// exchange end the flow at the client's redirect URI with access_denied
// or server_error, and store no grant.
func TestCallbackFaults(t *testing.T) {
	cases := []struct {
		name    string
		fault   providertest.Fault
		code    string
		reason  string
		timeout time.Duration
	}{
		{name: "upstream denies", fault: providertest.Fault{DenyAuthorize: true}, code: "access_denied", reason: provider.ReasonUpstreamDenied},
		{name: "token 400", fault: providertest.Fault{TokenStatus: 400}, code: "server_error", reason: provider.ReasonStatus4xx},
		{name: "token 500", fault: providertest.Fault{TokenStatus: 500}, code: "server_error", reason: provider.ReasonStatus5xx},
		{name: "token_type mac", fault: providertest.Fault{TokenType: "mac"}, code: "server_error", reason: provider.ReasonTokenType},
		{name: "oversized token response", fault: providertest.Fault{Oversized: true}, code: "server_error", reason: provider.ReasonTooLarge},
		{name: "slow token response", fault: providertest.Fault{Delay: 5 * time.Second}, code: "server_error", reason: provider.ReasonTimeout, timeout: 300 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ec := envConfig{}
			if tc.timeout > 0 {
				ec.prov = func(o *provider.Options) { o.Timeout = tc.timeout }
			}
			e := newEnv(t, newMem(), ec)
			e.as.SetFault(tc.fault)
			b := e.browser(nil)
			b.login("alice@example.com", alicePassword)
			q := clientRedirect(t, b.consent(e.authorizeParams(verifier1)))
			if q.Get("error") != tc.code || q.Get("state") != "client-state-1" || q.Get("code") != "" || q.Get("iss") != e.base {
				t.Fatalf("client got %v", redactQuery(q))
			}
			if strings.Contains(q.Get("error_description"), "upstream-") {
				t.Fatal("description carries upstream payload")
			}
			if _, ok := e.grant(); ok {
				t.Fatal("grant stored")
			}
			if got := e.failureReason("provider.authorize"); got != tc.reason {
				t.Fatalf("audited reason %q, want %q", got, tc.reason)
			}
		})
	}
}
