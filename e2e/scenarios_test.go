package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpgw/store"
)

// Scenario 1: the seed's smoke checks through the data plane.
func TestSmoke(t *testing.T) {
	e := newEnv(t, envOptions{})
	s := e.seedConfig(configSpec{name: "smoke", remote: e.upstream.url + "/base/mcp"})

	code, _, body := get(t, "GET", e.base+"/health", nil)
	var health map[string]string
	if code != http.StatusOK || json.Unmarshal([]byte(body), &health) != nil ||
		health["status"] != "ok" || health["service"] != "mcpgw" {
		t.Errorf("GET /health = %d %q", code, body)
	}

	code, _, body = get(t, "GET", e.base+"/.well-known/oauth-protected-resource", nil)
	var prm struct {
		Resource             string   `json:"resource"`
		AuthorizationServers []string `json:"authorization_servers"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &prm) != nil || prm.Resource == "" || len(prm.AuthorizationServers) == 0 {
		t.Errorf("GET PRM = %d %q", code, body)
	}

	e.waitRoute(s)
	code, hdr, _ := get(t, "POST", s.url(e.base), map[string]string{"Content-Type": "application/json"})
	wa := hdr.Get("WWW-Authenticate")
	wantMeta := `resource_metadata="` + e.base + "/.well-known/oauth-protected-resource" + s.ref.Path() + `"`
	if code != http.StatusUnauthorized || !strings.Contains(wa, wantMeta) || !strings.Contains(wa, `scope="mcp:access"`) {
		t.Errorf("unauthenticated POST = %d, WWW-Authenticate %q (want it to contain %s)", code, wa, wantMeta)
	}
	// The route's own metadata names the route exactly (RFC 9728 §3).
	code, _, body = get(t, "GET", e.base+"/.well-known/oauth-protected-resource"+s.ref.Path(), nil)
	if code != http.StatusOK || json.Unmarshal([]byte(body), &prm) != nil || prm.Resource != s.url(e.base) {
		t.Errorf("route PRM = %d %q, want resource %s", code, body, s.url(e.base))
	}
}

// waitRoute waits until the data plane forwards the route (the xDS push
// landed): an unauthenticated request gets extauthz's 401, not the
// data plane's direct 404.
func (e *env) waitRoute(s seeded) {
	e.t.Helper()
	eventually(e.t, "route "+s.ref.Path()+" served", func() error {
		code, _, _ := get(e.t, "POST", s.url(e.base), nil)
		if code != http.StatusUnauthorized {
			return errStatus(code)
		}
		return nil
	})
}

type errStatus int

func (e errStatus) Error() string { return "status " + http.StatusText(int(e)) }

// Scenario 2: the Go MCP SDK client with its OAuth handler, through the
// data plane, for auth modes none and static_headers. The echo tool proves
// what reached the upstream.
func TestGoSDKClient(t *testing.T) {
	e := newEnv(t, envOptions{})
	const upstreamSecret = "Bearer upstream-static-credential-8f2d1c"
	cases := []struct {
		name      string
		spec      configSpec
		wantAuthz string // the Authorization the upstream must receive ("" = none)
		wantAux   string
		cimd      bool // register by Client ID Metadata Document instead of DCR
		oauth     bool // the upstream must receive a token its own AS issued
	}{
		{name: "none", spec: configSpec{name: "plain", mode: store.AuthNone, aux: map[string]string{"x-tenant": "e2e"}}, wantAux: "e2e"},
		{name: "static_headers", spec: configSpec{name: "static", mode: store.AuthStaticHeaders,
			static: map[string]string{"authorization": upstreamSecret}}, wantAuthz: upstreamSecret},
		{name: "static_headers via CIMD", spec: configSpec{name: "static cimd", mode: store.AuthStaticHeaders,
			static: map[string]string{"authorization": upstreamSecret}}, wantAuthz: upstreamSecret, cimd: true},
		{name: "oauth_dynamic", spec: configSpec{name: "dynamic", mode: store.AuthOAuthDynamic}, oauth: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.remote = e.upstream.url + "/base/mcp"
			if tc.oauth {
				tc.spec.remote = e.upstream.url + "/protected/mcp"
			}
			authorizesBefore, _ := e.upstream.as.counts()
			s := e.seedConfig(tc.spec)
			e.waitRoute(s)
			ctx, cancel := context.WithTimeout(context.Background(), 2*convergence)
			defer cancel()
			var cimdURL string
			if tc.cimd {
				cimdURL = e.serveCIMD(t)
			}
			sess, h, progress := e.sdkSession(t, ctx, s, cimdURL)

			tools, err := sess.ListTools(ctx, nil)
			if err != nil {
				t.Fatalf("tools/list: %v", err)
			}
			if len(tools.Tools) != 3 {
				t.Errorf("tools/list returned %d tools, want 3", len(tools.Tools))
			}
			res, err := sess.CallTool(ctx, &mcp.CallToolParams{Name: "echo_headers"})
			if err != nil {
				t.Fatalf("tools/call echo_headers: %v", err)
			}
			var got map[string][]string
			if err := json.Unmarshal([]byte(res.Content[0].(*mcp.TextContent).Text), &got); err != nil {
				t.Fatalf("echo result: %v", err)
			}
			ts, err := h.TokenSource(ctx)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := ts.Token()
			if err != nil {
				t.Fatal(err)
			}
			e.plant(tok.AccessToken, tok.RefreshToken)
			if c := jwtClaims(t, tok.AccessToken); tc.cimd && c["client_id"] != cimdURL || !tc.cimd && !strings.HasPrefix(fmt.Sprint(c["client_id"]), "dcr:") {
				t.Errorf("token client_id = %v (CIMD %v)", c["client_id"], tc.cimd)
			}
			if tc.oauth {
				// The provider flow ran once, and the upstream got the
				// access token its own AS issued to mcpgw.
				upTok, ok := strings.CutPrefix(strings.Join(got["authorization"], ","), "Bearer ")
				if !ok || !e.upstream.as.issuedAccess(upTok) {
					t.Errorf("upstream Authorization is not a token its AS issued: %q", redact(upTok))
				}
				tc.wantAuthz = "Bearer " + upTok
				e.plant(upTok)
				if n, _ := e.upstream.as.counts(); n-authorizesBefore != 1 {
					t.Errorf("upstream authorizations = %d, want 1", n-authorizesBefore)
				}
			}
			checkUpstreamHeaders(t, got, tok.AccessToken, tc.wantAuthz)
			if tc.wantAux != "" && strings.Join(got["x-tenant"], ",") != tc.wantAux {
				t.Errorf("auxiliary header x-tenant = %q, want %q", got["x-tenant"], tc.wantAux)
			}
			// Every request the upstream saw, not only the tool call.
			for _, hdr := range e.upstream.allHeaders() {
				m := map[string][]string{}
				for k, v := range hdr {
					m[strings.ToLower(k)] = v
				}
				if strings.Contains(strings.Join(m["authorization"], ","), tok.AccessToken) {
					t.Errorf("the gateway token reached the upstream")
				}
			}

			// Streaming progress over SSE and a large result.
			p := &mcp.CallToolParams{Name: "progress", Arguments: map[string]any{"steps": 5}}
			p.SetProgressToken("p1")
			res, err = sess.CallTool(ctx, p)
			if err != nil || res.Content[0].(*mcp.TextContent).Text != "done 5" {
				t.Errorf("progress tool: %v %v", res, err)
			}
			// Notifications travel before the result on the same SSE
			// response; the client may still be dispatching them.
			eventually(t, "5 progress notifications", func() error {
				if n := progress.Load(); n != 5 {
					return fmt.Errorf("received %d", n)
				}
				return nil
			})
			res, err = sess.CallTool(ctx, &mcp.CallToolParams{Name: "large"})
			if err != nil {
				t.Fatalf("large: %v", err)
			}
			if n := len(res.Content[0].(*mcp.TextContent).Text); n != largeResultBytes {
				t.Errorf("large result = %d bytes, want %d", n, largeResultBytes)
			}
		})
	}
}

// checkUpstreamHeaders asserts the header policy as seen by the upstream:
// the client's Authorization, cookies and unknown headers never arrived;
// the injected credential did.
func checkUpstreamHeaders(t *testing.T, got map[string][]string, gatewayToken, wantAuthz string) {
	t.Helper()
	authz := strings.Join(got["authorization"], ",")
	if strings.Contains(authz, gatewayToken) {
		t.Errorf("the client's gateway token reached the upstream")
	}
	if authz != wantAuthz {
		t.Errorf("upstream Authorization = %q, want %q", redact(authz), redact(wantAuthz))
	}
	for _, h := range []string{"cookie", "x-client-unknown", "x-api-key"} {
		if len(got[h]) > 0 {
			t.Errorf("client header %s reached the upstream", h)
		}
	}
	if len(got["mcp-protocol-version"]) == 0 {
		t.Errorf("allowlisted MCP header mcp-protocol-version was stripped; upstream saw %v", keys(got))
	}
}

func redact(s string) string {
	if len(s) > 12 {
		return s[:12] + "…"
	}
	return s
}

func keys(m map[string][]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// jwtClaims decodes a JWT's claims without verifying it (the gateway
// verified it; the test only reads which client it was issued to).
func jwtClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}
