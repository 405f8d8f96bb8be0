package api_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"mcpgw/api"
	"mcpgw/domain/secrets"
	"mcpgw/store"
)

// sessionFor creates a browser session for userID and returns the cookie
// value and its CSRF token, derived as oauthserver derives it (HMAC of the
// session secret), so the test exercises the real Authenticate path.
func (e *env) sessionFor(userID string) (cookie, csrf string) {
	e.t.Helper()
	raw := secrets.NewToken("mgwss_")
	m := hmac.New(sha256.New, []byte(raw))
	m.Write([]byte("mcpgw csrf v1"))
	csrf = base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	if err := e.st.CreateSession(e.ctx, store.Session{IDHash: secrets.Hash(raw), UserID: userID, CSRFHash: secrets.Hash(csrf),
		CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		e.t.Fatal(err)
	}
	return raw, csrf
}

func (e *env) doSession(cookie, csrf, method, path, body string) resp {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, e.url+path, rd)
	req.AddCookie(&http.Cookie{Name: "__Host-mcpgw_session", Value: cookie})
	if csrf != "" {
		req.Header.Set("X-CSRF-Token", csrf)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{status: res.StatusCode, body: b}
}

// TestSessionAndCSRF: a browser session reads freely, but every change
// needs the session's CSRF token; a wrong token, another session's token
// or a revoked session gets nothing done.
func TestSessionAndCSRF(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		u := e.user("browser@example.com", false)
		cookie, csrf := e.sessionFor(u.user.ID)
		_, otherCSRF := e.sessionFor(u.user.ID)

		if r := e.doSession(cookie, "", "GET", "/api/v1/me", ""); r.status != http.StatusOK || !strings.Contains(string(r.body), `"via": "session"`) {
			t.Fatalf("session GET: %d %s", r.status, r.body)
		}
		body := `{"name":"via-browser"}`
		for _, c := range []struct{ name, csrf string }{{"none", ""}, {"wrong", "nope"}, {"other session's", otherCSRF}} {
			r := e.doSession(cookie, c.csrf, "POST", "/api/v1/orgs", body)
			if r.status != http.StatusForbidden || r.errCode(t) != api.CodeCSRF {
				t.Fatalf("%s CSRF: %d %s", c.name, r.status, r.body)
			}
		}
		if orgs, _ := e.st.ListOrgs(e.ctx); len(orgs) != 0 {
			t.Fatalf("a CSRF-less request created an org")
		}
		e.must(http.StatusOK, u.token, "GET", "/api/v1/orgs", nil)
		if r := e.doSession(cookie, csrf, "POST", "/api/v1/orgs", body); r.status != http.StatusCreated {
			t.Fatalf("with CSRF: %d %s", r.status, r.body)
		}
		// A foreign Origin may not ride the session, even with the token.
		if r := e.doSessionOrigin(cookie, csrf, "https://evil.example", "GET", "/api/v1/me"); r.status != http.StatusForbidden || r.errCode(t) != api.CodeForbiddenOrigin {
			t.Fatalf("foreign origin: %d %s", r.status, r.body)
		}
		if r := e.doSessionOrigin(cookie, csrf, publicBase, "GET", "/api/v1/me"); r.status != http.StatusOK {
			t.Fatalf("own origin: %d %s", r.status, r.body)
		}
		if err := e.st.RevokeSession(e.ctx, secrets.Hash(cookie), t0); err != nil {
			t.Fatal(err)
		}
		if r := e.doSession(cookie, csrf, "GET", "/api/v1/me", ""); r.status != http.StatusUnauthorized {
			t.Fatalf("revoked session: %d %s", r.status, r.body)
		}
		// A session cookie is not an API token and vice versa.
		if r := e.do(cookie, "GET", "/api/v1/me", nil); r.status != http.StatusUnauthorized {
			t.Fatalf("session id as bearer: %d", r.status)
		}
	})
}

// TestPlantedSecretsNeverShown creates configs carrying a static header
// secret and provider client credentials, reads them back every way the
// API allows, updates them, creates, uses and revokes an API token, and
// searches every answer, the logs and the audit rows for the planted values
// and the API tokens.
func TestPlantedSecretsNeverShown(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		const headerSecret = "planted-header-9f8e7d"
		const clientSecret = "planted-client-1a2b3c"
		u := e.user("p@example.com", true)
		var bodies []string
		rec := func(r resp) resp { bodies = append(bodies, string(r.body)); return r }
		var c1, c2 api.ConfigView
		rec(e.must(http.StatusCreated, u.token, "POST", "/api/v1/configs", map[string]any{"name": "s", "remote_url": "https://mcp.example.com/",
			"auth_mode": "static_headers", "static_headers": map[string]string{"X-Upstream-Key": headerSecret}})).decode(t, &c1)
		rec(e.must(http.StatusCreated, u.token, "POST", "/api/v1/configs", map[string]any{"name": "o", "remote_url": "https://mcp.example.com/",
			"auth_mode": "oauth_static", "provider": map[string]any{"client_id": "cid", "client_secret": clientSecret, "scopes": []string{"read"}}})).decode(t, &c2)
		if c2.Provider == nil || !c2.Provider.HasClientCredentials {
			t.Fatalf("provider view = %+v", c2.Provider)
		}
		rec(e.must(http.StatusOK, u.token, "GET", "/api/v1/configs/"+c1.ID, nil))
		rec(e.must(http.StatusOK, u.token, "GET", "/api/v1/configs/"+c2.ID, nil))
		rec(e.must(http.StatusOK, u.token, "GET", "/api/v1/configs", nil))
		rec(e.must(http.StatusOK, u.token, "PATCH", "/api/v1/configs/"+c1.ID, map[string]any{"static_headers": map[string]string{"X-Upstream-Key": headerSecret + "-2"}}))
		rec(e.must(http.StatusOK, u.token, "PATCH", "/api/v1/configs/"+c2.ID, map[string]any{"provider": map[string]any{"client_id": "cid", "client_secret": clientSecret + "-2"}}))
		rec(e.must(http.StatusOK, u.token, "GET", "/api/v1/available", nil))
		rec(e.must(http.StatusOK, u.token, "GET", "/api/v1/audit", nil))
		rec(e.do(u.token, "PATCH", "/api/v1/configs/"+c1.ID, map[string]any{"static_headers": map[string]string{"X-Upstream-Key": headerSecret + "\r\n"}}))
		rec(e.do(u.token, "PATCH", "/api/v1/configs/"+c2.ID, map[string]any{"provider": map[string]any{"client_id": "cid", "client_secret": clientSecret, "token_endpoint_auth_method": "magic"}}))
		// API tokens: a new one is shown once, in its creation answer
		// (not recorded); listing, using, revoking and then presenting it
		// (401) never show it, nor the caller's own token.
		var created api.CreatedTokenView
		e.must(http.StatusCreated, u.token, "POST", "/api/v1/users/me/tokens", map[string]any{"name": "planted"}).decode(t, &created)
		if created.Token == "" {
			t.Fatal("token creation returned no token")
		}
		rec(e.must(http.StatusOK, created.Token, "GET", "/api/v1/users/me/tokens", nil))
		rec(e.must(http.StatusNoContent, u.token, "DELETE", "/api/v1/users/me/tokens/"+created.ID, nil))
		rec(e.must(http.StatusUnauthorized, created.Token, "GET", "/api/v1/me", nil))
		rec(e.must(http.StatusUnauthorized, created.Token+"x", "GET", "/api/v1/me", nil))
		evs, _, _ := e.st.QueryAudit(e.ctx, store.AuditFilter{Limit: 1000})
		for _, ev := range evs {
			bodies = append(bodies, ev.Reason)
			for k, v := range ev.Metadata {
				bodies = append(bodies, k+"="+v)
			}
		}
		bodies = append(bodies, logs.String())
		for _, b := range bodies {
			if strings.Contains(b, headerSecret) || strings.Contains(b, clientSecret) ||
				strings.Contains(b, created.Token) || strings.Contains(b, u.token) {
				t.Fatalf("a planted secret was shown: %s", b)
			}
		}
		// And the sealed values open with the AAD their readers use.
		cfg, _ := e.st.GetConfig(e.ctx, c1.ID)
		pt, err := e.kr.Open(cfg.StaticHeaders, secrets.AAD("configs", "static_headers", c1.ID))
		if err != nil || !strings.Contains(string(pt), headerSecret+"-2") {
			t.Fatalf("static headers do not open with extauthz's AAD: %v", err)
		}
	})
}

// TestUnknownEndpointAndMethod: anything under /api/v1/ that is not an
// endpoint answers in the one error shape, and POST /api/v1/connect-tokens
// stays oauthserver's.
func TestUnknownEndpointAndMethod(t *testing.T) {
	e := newEnv(t, stores()[0].open(t), 0)
	u := e.user("x@example.com", false)
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/v1/nope"}, {"PUT", "/api/v1/me"}, {"GET", "/api/v1/configs/not-a-uuid"}, {"GET", "/api/v1/orgs/%2e%2e"},
	} {
		r := e.do(u.token, c.method, c.path, nil)
		if r.status != http.StatusNotFound || r.errCode(t) != api.CodeNotFound {
			t.Errorf("%s %s: %d %s", c.method, c.path, r.status, r.body)
		}
	}
	r := e.doRaw(u.token, "POST", "/api/v1/connect-tokens", "application/json", `{"config_id":"00000000-0000-4000-8000-000000000000"}`)
	if r.status != http.StatusNotFound || !strings.Contains(string(r.body), "invalid_target") {
		t.Errorf("connect-tokens is not oauthserver's: %d %s", r.status, r.body)
	}
}

func (e *env) doSessionOrigin(cookie, csrf, origin, method, path string) resp {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.url+path, nil)
	req.AddCookie(&http.Cookie{Name: "__Host-mcpgw_session", Value: cookie})
	req.Header.Set("X-CSRF-Token", csrf)
	req.Header.Set("Origin", origin)
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{status: res.StatusCode, body: b}
}
