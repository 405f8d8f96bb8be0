package oauthserver

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
	dto "github.com/prometheus/client_model/go"

	"mcpgw/domain"
	"mcpgw/internal/testsupport"
	"mcpgw/store"
)

// sdkFetcher plays the user's browser for the Go MCP SDK's
// authorization-code handler: it opens the authorization URL with a cookie
// jar, signs in as alice, approves consent and returns code, state and iss
// from the redirect.
func (e *env) sdkFetcher(t *testing.T, consents *int) auth.AuthorizationCodeFetcher {
	return func(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
		b := e.browser()
		resp, err := b.Get(args.URL)
		if err != nil {
			return nil, err
		}
		body := readBody(t, resp)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `action="/login"`) {
			return nil, errors.New("expected the login page, got " + resp.Status + " " + string(body))
		}
		f := formFields(body)
		resp, err = b.PostForm(e.base+"/login", url.Values{"csrf": {f["csrf"]}, "req": {f["req"]},
			"email": {"alice@example.com"}, "password": {alicePassword}})
		if err != nil {
			return nil, err
		}
		body = readBody(t, resp)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `action="/oauth/consent"`) {
			return nil, errors.New("expected the consent page, got " + resp.Status)
		}
		for _, h := range []struct{ k, v string }{
			{"Cache-Control", "no-store"}, {"X-Frame-Options", "DENY"}, {"Referrer-Policy", "no-referrer"},
		} {
			if got := resp.Header.Get(h.k); got != h.v {
				t.Errorf("consent page %s = %q, want %q", h.k, got, h.v)
			}
		}
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "form-action 'self' http://127.0.0.1:7777/callback") ||
			!strings.Contains(csp, "default-src 'none'") {
			t.Errorf("consent CSP = %q", csp)
		}
		for _, want := range []string{testRedirect, "Alice tools", "127.0.0.1", "not verified", "alice@example.com", "Personal"} {
			if !strings.Contains(string(body), want) {
				t.Errorf("consent page lacks %q", want)
			}
		}
		f = formFields(body)
		e.plant(f["csrf"], f["ticket"])
		resp = e.decide(t, b, f, "allow")
		readBody(t, resp)
		loc, err := url.Parse(resp.Header.Get("Location"))
		if err != nil || resp.StatusCode != http.StatusFound {
			return nil, errors.New("expected a redirect to the client, got " + resp.Status)
		}
		*consents++
		q := loc.Query()
		return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
	}
}

func counterValue(t *testing.T, e *env, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metric
				}
			}
			sum += counterOf(m)
		}
	}
	return sum
}

func counterOf(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	return 0
}

// runSDKClient connects the real go-sdk MCP client through the AS to the
// upstream and calls a tool twice (the second call forces a refresh: the
// access token lifetime is shorter than oauth2's expiry delta).
func (e *env) runSDKClient(t *testing.T, cfg *auth.AuthorizationCodeHandlerConfig) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var consents int
	cfg.AuthorizationCodeFetcher = e.sdkFetcher(t, &consents)
	cfg.Client = e.httpClient()
	cfg.Client.CheckRedirect = nil
	h, err := auth.NewAuthorizationCodeHandler(cfg)
	if err != nil {
		t.Fatalf("NewAuthorizationCodeHandler: %v", err)
	}
	transport := &mcp.StreamableClientTransport{Endpoint: e.routeURL(e.aliceRoute), OAuthHandler: h, DisableStandaloneSSE: true,
		HTTPClient: &http.Client{Transport: recordingTransport{e: e, base: http.DefaultTransport}}}
	client := mcp.NewClient(&mcp.Implementation{Name: "mcpgw-test", Version: "1.0.0"}, nil)
	sess, err := client.Connect(ctx, transport, nil)
	if err != nil {
		t.Fatalf("connect through the gateway: %v", err)
	}
	defer sess.Close()
	for i := range 2 {
		res, err := sess.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}})
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if got := res.Content[0].(*mcp.TextContent).Text; got != "echo:hi" {
			t.Fatalf("call %d = %q", i, got)
		}
	}
	if consents != 1 {
		t.Errorf("consents = %d, want exactly one authorization", consents)
	}
	ts, _ := h.TokenSource(ctx)
	tok, err := ts.Token()
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	e.plant(tok.AccessToken, tok.RefreshToken)
	if tok.RefreshToken == "" {
		t.Errorf("no refresh token issued")
	}
	if n := counterValue(t, e, "mcpgw_oauth_tokens_issued_total", map[string]string{"grant_type": "refresh_token"}); n < 1 {
		t.Errorf("the SDK client never refreshed (refresh grants = %v)", n)
	}
	e.assertClaims(t, e.lastClaimsOrFail(t), "", "mcp:access")
}

func (e *env) lastClaimsOrFail(t *testing.T) *domain.Claims {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.lastClaims == nil {
		t.Fatal("the stand-in never saw a valid token")
	}
	return e.lastClaims
}

// assertClaims checks every DESIGN §4 claim of a token for alice's route.
func (e *env) assertClaims(t *testing.T, c *domain.Claims, clientID, scope string) {
	t.Helper()
	ref := e.aliceRoute
	insts, err := e.st.ListInstances(context.Background(), e.alice.ID, e.aliceCfg.ID, false)
	if err != nil || len(insts) != 1 {
		t.Fatalf("instances = %v, %v; want exactly one, created lazily", insts, err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"iss", c.Issuer, e.base},
		{"sub", c.Subject, e.alice.ID},
		{"aud", []string(c.Audience), []string{ref.URL(e.base)}},
		{"scope", c.Scope, scope},
		{"mcp_id", c.MCPID, "user:" + e.alice.ID + ":" + e.aliceCfg.ID + ":" + ref.Key},
		{"owner_scope", c.OwnerScope, "user"},
		{"owner_id", c.OwnerID, e.alice.ID},
		{"config_id", c.ConfigID, e.aliceCfg.ID},
		{"route_key", c.RouteKey, ref.Key},
		{"instance_id", c.InstanceID, insts[0].ID},
		{"execution_context", c.ExecutionContext, "personal"},
		{"config_version", c.ConfigVersion, e.aliceCfg.Version},
		{"exp-iat", c.ExpiresAt.Sub(c.IssuedAt.Time), e.srv.accessTTL},
	}
	for _, ch := range checks {
		gb, _ := json.Marshal(ch.got)
		wb, _ := json.Marshal(ch.want)
		if string(gb) != string(wb) {
			t.Errorf("claim %s = %s, want %s", ch.name, gb, wb)
		}
	}
	if c.ID == "" || c.ClientID == "" || (clientID != "" && c.ClientID != clientID) {
		t.Errorf("jti %q / client_id %q (want %q)", c.ID, c.ClientID, clientID)
	}
}

// TestSDKClientDCR is the happy path with the real Go MCP SDK
// OAuth client: PRM discovery → AS metadata → DCR → login + consent →
// exchange → tool calls through the stand-in → refresh.
func TestSDKClientDCR(t *testing.T) {
	testsupport.Backends(t, func(t *testing.T, newStore func(t *testing.T) store.Store) {
		e := newEnv(t, newStore(t), func(o *Options) { o.AccessTokenTTL = 5 * time.Second })
		e.runSDKClient(t, &auth.AuthorizationCodeHandlerConfig{
			DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
				RedirectURIs:            []string{testRedirect},
				TokenEndpointAuthMethod: "none",
				GrantTypes:              []string{"authorization_code", "refresh_token"},
				ResponseTypes:           []string{"code"},
				Scope:                   "mcp:access",
				ClientName:              "Go SDK test client",
			}},
		})
	})
}

// TestSDKClientCIMD is the same flow with a Client ID Metadata Document
// served by the test over TLS.
func TestSDKClientCIMD(t *testing.T) {
	testsupport.Backends(t, func(t *testing.T, newStore func(t *testing.T) store.Store) {
		doc := httptest.NewUnstartedServer(nil)
		doc.StartTLS()
		defer doc.Close()
		clientURL := doc.URL + "/oauth/client.json"
		fetched := 0
		doc.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fetched++
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{
				"client_id":                  clientURL,
				"client_name":                "CIMD test client",
				"redirect_uris":              []string{testRedirect},
				"grant_types":                []string{"authorization_code", "refresh_token"},
				"response_types":             []string{"code"},
				"token_endpoint_auth_method": "none",
			})
		})
		pool := x509.NewCertPool()
		pool.AddCert(doc.Certificate())
		e := newEnv(t, newStore(t), allowLoopbackCIMD(pool), func(o *Options) { o.AccessTokenTTL = 5 * time.Second })
		before := e.st.snapshot()
		e.runSDKClient(t, &auth.AuthorizationCodeHandlerConfig{
			ClientIDMetadataDocumentConfig: &auth.ClientIDMetadataDocumentConfig{URL: clientURL},
			RedirectURL:                    testRedirect,
		})
		if c := e.lastClaimsOrFail(t); c.ClientID != clientURL {
			t.Errorf("client_id claim = %q, want the document URL", c.ClientID)
		}
		if after := e.st.snapshot(); after.clients != before.clients {
			t.Errorf("CIMD must not create a registration: %+v → %+v", before, after)
		}
		if fetched < 1 || fetched > 2 {
			t.Errorf("document fetched %d times; the cache should serve repeats", fetched)
		}
	})
}

// TestConfidentialClientFlow covers client_secret_basic and
// client_secret_post end to end over plain HTTP, including refresh
// rotation, JWT claims, userinfo with profile, and revocation.
func TestConfidentialClientFlow(t *testing.T) {
	testsupport.Backends(t, func(t *testing.T, newStore func(t *testing.T) store.Store) {
		e := newEnv(t, newStore(t))
		b := e.browser()
		e.login(t, b, "alice@example.com", alicePassword)
		for _, method := range []string{authBasic, authPost} {
			c := e.mustRegister(t, method, nil)
			v := e.verifier()
			q := authParams(c.ID, e.routeURL(e.aliceRoute), v)
			q.Set("scope", "mcp:access profile")
			code := e.codeFor(t, b, q)
			st, tok := e.tokenReq(t, c, exchangeForm(code, v, e.routeURL(e.aliceRoute)))
			if st != http.StatusOK {
				t.Fatalf("%s exchange: %d %v", method, st, tok)
			}
			if tok["token_type"] != "Bearer" || tok["expires_in"].(float64) != 900 || tok["scope"] != "mcp:access profile" {
				t.Errorf("token response %v", tok)
			}
			claims := e.parseJWT(t, tok["access_token"].(string))
			e.assertClaims(t, claims, c.ID, "mcp:access profile")
			if claims.Scope != "mcp:access profile" {
				t.Errorf("scope claim %q", claims.Scope)
			}
			// userinfo with profile
			req, _ := http.NewRequest(http.MethodGet, e.base+"/oauth/userinfo", nil)
			req.Header.Set("Authorization", "Bearer "+tok["access_token"].(string))
			resp, err := e.httpClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			ui := decodeJSON(t, resp)
			if resp.StatusCode != 200 || ui["sub"] != e.alice.ID || ui["email"] != "alice@example.com" {
				t.Errorf("userinfo %d %v", resp.StatusCode, ui)
			}
			// refresh rotates
			rt1 := tok["refresh_token"].(string)
			st, tok2 := e.tokenReq(t, c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt1}})
			if st != http.StatusOK || tok2["refresh_token"] == rt1 || tok2["refresh_token"] == nil {
				t.Fatalf("refresh: %d %v", st, tok2)
			}
			e.assertClaims(t, e.parseJWT(t, tok2["access_token"].(string)), c.ID, "mcp:access profile")
			// revoke the new refresh token: it stops working
			rt2 := tok2["refresh_token"].(string)
			st, body := e.formPost(t, "/oauth/revoke", c, c.Method, url.Values{"token": {rt2}})
			if st != http.StatusOK {
				t.Fatalf("revoke: %d %v", st, body)
			}
			st, body = e.tokenReq(t, c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt2}})
			if st != http.StatusBadRequest || body["error"] != ErrInvalidGrant {
				t.Errorf("refresh after revoke: %d %v", st, body)
			}
		}
	})
}

// TestRegistrationManagement covers RFC 7592 GET, PUT and DELETE.
func TestRegistrationManagement(t *testing.T) {
	testsupport.Backends(t, func(t *testing.T, newStore func(t *testing.T) store.Store) {
		e := newEnv(t, newStore(t))
		c := e.mustRegister(t, authBasic, map[string]any{"application_type": "native"})
		do := func(method string, body any, tok string) (int, map[string]any) {
			var rd *strings.Reader
			if body != nil {
				b, _ := json.Marshal(body)
				rd = strings.NewReader(string(b))
			} else {
				rd = strings.NewReader("")
			}
			req, _ := http.NewRequest(method, e.base+"/oauth/register/"+c.ID, rd)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := e.httpClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			return resp.StatusCode, decodeJSON(t, resp)
		}
		st, got := do(http.MethodGet, nil, c.RegToken)
		if st != 200 || got["client_id"] != c.ID || got["client_secret"] != nil || got["registration_access_token"] != nil {
			t.Fatalf("GET: %d %v", st, got)
		}
		st, got = do(http.MethodPut, map[string]any{"client_id": c.ID, "redirect_uris": []string{testRedirect, "http://localhost:9999/cb"},
			"token_endpoint_auth_method": authBasic, "grant_types": []string{"authorization_code"}, "client_name": "Renamed"}, c.RegToken)
		if st != 200 || got["client_name"] != "Renamed" || len(got["redirect_uris"].([]any)) != 2 {
			t.Fatalf("PUT: %d %v", st, got)
		}
		if st, got = do(http.MethodPut, map[string]any{"client_id": c.ID, "redirect_uris": []string{testRedirect}, "token_endpoint_auth_method": authNone}, c.RegToken); st != 400 || got["error"] != ErrInvalidClientMetadata {
			t.Errorf("PUT changing auth method: %d %v", st, got)
		}
		if st, _ = do(http.MethodDelete, nil, "mgwrt_wrong"); st != 401 {
			t.Errorf("DELETE with a wrong token: %d", st)
		}
		if st, _ = do(http.MethodDelete, nil, c.RegToken); st != 204 {
			t.Errorf("DELETE: %d", st)
		}
		if _, err := e.st.GetClient(context.Background(), c.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("client still stored after DELETE: %v", err)
		}
		if st, _ = do(http.MethodGet, nil, c.RegToken); st != 401 {
			t.Errorf("GET after DELETE: %d", st)
		}
	})
}

func TestMetadata(t *testing.T) {
	e := newEnv(t, newMem())
	c := e.httpClient()
	for _, p := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"} {
		resp, err := c.Get(e.base + p)
		if err != nil {
			t.Fatal(err)
		}
		m := decodeJSON(t, resp)
		if m["issuer"] != e.base || m["client_id_metadata_document_supported"] != true ||
			m["authorization_response_iss_parameter_supported"] != true ||
			!slices.Equal(toStrings(m["code_challenge_methods_supported"]), []string{"S256"}) ||
			!slices.Equal(toStrings(m["scopes_supported"]), []string{"mcp:access", "profile"}) ||
			!slices.Equal(toStrings(m["response_types_supported"]), []string{"code"}) ||
			!slices.Equal(toStrings(m["grant_types_supported"]), []string{"authorization_code", "refresh_token"}) ||
			!slices.Equal(toStrings(m["token_endpoint_auth_methods_supported"]), []string{"none", "client_secret_basic", "client_secret_post"}) ||
			m["registration_endpoint"] != e.base+"/oauth/register" || m["revocation_endpoint"] != e.base+"/oauth/revoke" ||
			m["jwks_uri"] != e.base+"/oauth/jwks.json" {
			t.Errorf("%s: %v", p, m)
		}
	}
	// Browser-based clients get credential-less CORS on the OAuth API.
	req, _ := http.NewRequest(http.MethodOptions, e.base+"/oauth/token", nil)
	req.Header.Set("Origin", "http://localhost:6274")
	req.Header.Set("Access-Control-Request-Method", "POST")
	if resp, err := c.Do(req); err != nil || resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
		resp.Header.Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("token preflight: %v %v", resp, err)
	}
	// PRM for a route: resource is exactly the canonical URL.
	resp, _ := c.Get(e.base + "/.well-known/oauth-protected-resource" + e.aliceRoute.Path())
	m := decodeJSON(t, resp)
	if resp.StatusCode != 200 || m["resource"] != e.routeURL(e.aliceRoute) ||
		!slices.Equal(toStrings(m["authorization_servers"]), []string{e.base}) ||
		!slices.Equal(toStrings(m["scopes_supported"]), []string{"mcp:access"}) {
		t.Errorf("route PRM: %d %v", resp.StatusCode, m)
	}
	resp, _ = c.Get(e.base + "/.well-known/oauth-protected-resource")
	if m := decodeJSON(t, resp); m["resource"] != e.base+"/mcp-connect" {
		t.Errorf("generic PRM: %v", m)
	}
	// Unknown, trailing-slash and rotated routes → 404 without detail.
	unknown := e.aliceRoute
	unknown.Key = domain.NewRouteKey()
	if _, err := e.st.RotateRoute(context.Background(), e.bobCfg.ID, store.NewID(), domain.NewRouteKey(), nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{unknown.Path(), e.aliceRoute.Path() + "/", e.bobRoute.Path(), "/mcp-connect/user/x"} {
		resp, _ := c.Get(e.base + "/.well-known/oauth-protected-resource" + p)
		body := string(readBody(t, resp))
		if resp.StatusCode != 404 || strings.Contains(body, e.bob.ID) || strings.Contains(body, e.alice.ID) {
			t.Errorf("PRM %s: %d %s", p, resp.StatusCode, body)
		}
	}
}

func toStrings(v any) []string {
	a, _ := v.([]any)
	var out []string
	for _, x := range a {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}
