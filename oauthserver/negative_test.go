package oauthserver

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"mcpgw/domain"
	"mcpgw/domain/secrets"
	"mcpgw/internal/testsupport"
	"mcpgw/store"
)

var dataError = regexp.MustCompile(`data-error="([a-z_]+)"`)

// pageOutcome reads an HTML error page: status and the error code shown.
func pageOutcome(t *testing.T, resp *http.Response) (int, string) {
	t.Helper()
	body := readBody(t, resp)
	m := dataError.FindSubmatch(body)
	if m == nil {
		return resp.StatusCode, "(no error code on page: " + resp.Header.Get("Location") + ")"
	}
	if resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("error page without security headers")
	}
	return resp.StatusCode, string(m[1])
}

// redirectOutcome reads an error redirect to the client: it must carry
// state and iss (RFC 9207) and no code.
func redirectOutcome(t *testing.T, resp *http.Response, state string) (int, string) {
	t.Helper()
	readBody(t, resp)
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound {
		return resp.StatusCode, "(not a redirect)"
	}
	q := loc.Query()
	if !strings.HasPrefix(loc.String(), testRedirect) || q.Get("state") != state || q.Get("iss") == "" || q.Get("code") != "" {
		t.Errorf("error redirect %s lacks state/iss or carries a code", loc)
	}
	return resp.StatusCode, q.Get("error")
}

func jsonOutcome(st int, body map[string]any) (int, string) {
	code, _ := body["error"].(string)
	return st, code
}

type negCase struct {
	name   string
	status int
	code   string
	// run performs the case; it calls mark() right before the offending
	// request, from which point nothing may be created.
	run func(t *testing.T, e *env, mark func()) (int, string)
}

// tokenPair runs a full flow for a fresh client and returns its client,
// the code's refresh token and access token.
func (e *env) tokenPair(t *testing.T, b *http.Client, method string) (regClient, string, string) {
	t.Helper()
	c := e.mustRegister(t, method, nil)
	v := e.verifier()
	code := e.codeFor(t, b, authParams(c.ID, e.routeURL(e.aliceRoute), v))
	st, tok := e.tokenReq(t, c, exchangeForm(code, v, e.routeURL(e.aliceRoute)))
	if st != 200 {
		t.Fatalf("exchange: %d %v", st, tok)
	}
	return c, tok["refresh_token"].(string), tok["access_token"].(string)
}

func negativeCases(aliceB, bobB func() *http.Client) []negCase {
	reg := func(md map[string]any) func(t *testing.T, e *env, mark func()) (int, string) {
		return func(t *testing.T, e *env, mark func()) (int, string) {
			mark()
			return jsonOutcome(e.register(t, md))
		}
	}
	base := func(over map[string]any) map[string]any {
		md := map[string]any{"redirect_uris": []string{testRedirect}, "token_endpoint_auth_method": "none", "scope": "mcp:access"}
		for k, v := range over {
			if v == nil {
				delete(md, k)
			} else {
				md[k] = v
			}
		}
		return md
	}
	// authz runs an authorize request for a fresh public client with q
	// modified by mod, as alice; the error must come back by redirect.
	authz := func(mod func(e *env, q url.Values)) func(t *testing.T, e *env, mark func()) (int, string) {
		return func(t *testing.T, e *env, mark func()) (int, string) {
			c := e.mustRegister(t, authNone, nil)
			q := authParams(c.ID, e.routeURL(e.aliceRoute), e.verifier())
			mod(e, q)
			mark()
			return redirectOutcome(t, e.authorize(t, aliceB(), q), q.Get("state"))
		}
	}
	// page runs an authorize request whose error must be shown as a page.
	page := func(mod func(e *env, c regClient, q url.Values)) func(t *testing.T, e *env, mark func()) (int, string) {
		return func(t *testing.T, e *env, mark func()) (int, string) {
			c := e.mustRegister(t, authNone, nil)
			q := authParams(c.ID, e.routeURL(e.aliceRoute), e.verifier())
			mod(e, c, q)
			mark()
			return pageOutcome(t, e.authorize(t, aliceB(), q))
		}
	}
	// exch gets a code for a fresh client of method m, then redeems it with
	// the form modified by mod.
	exch := func(m string, mod func(e *env, f url.Values)) func(t *testing.T, e *env, mark func()) (int, string) {
		return func(t *testing.T, e *env, mark func()) (int, string) {
			c := e.mustRegister(t, m, nil)
			v := e.verifier()
			code := e.codeFor(t, aliceB(), authParams(c.ID, e.routeURL(e.aliceRoute), v))
			f := exchangeForm(code, v, e.routeURL(e.aliceRoute))
			mod(e, f)
			mark()
			return jsonOutcome(e.tokenReq(t, c, f))
		}
	}
	cimd := func(docClientID func(url string) string, allow bool, wantReason string) func(t *testing.T, e *env, mark func()) (int, string) {
		return func(t *testing.T, e *env, mark func()) (int, string) {
			doc := httptest.NewUnstartedServer(nil)
			doc.StartTLS()
			defer doc.Close()
			u := doc.URL + "/client.json"
			doc.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(map[string]any{"client_id": docClientID(u), "redirect_uris": []string{testRedirect},
					"token_endpoint_auth_method": "none"})
			})
			pool := x509.NewCertPool()
			pool.AddCert(doc.Certificate())
			// A separate AS on the same store: with or without the loopback
			// allowlist.
			o := Options{Store: e.st, Issuer: e.base, Keys: e.keys, Now: e.clock.Now, Logger: e.srv.log}
			o.CIMD.RootCAs = pool
			if allow {
				allowLoopbackCIMD(pool)(&o)
			}
			srv, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			q := authParams(u, e.routeURL(e.aliceRoute), e.verifier())
			rec := httptest.NewRecorder()
			mark()
			srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/oauth/authorize?"+q.Encode(), nil))
			if !strings.Contains(e.logs.String(), `"reason":"`+wantReason+`"`) {
				t.Errorf("the rejection was not for %s", wantReason)
			}
			return pageOutcome(t, rec.Result())
		}
	}
	return []negCase{
		// --- registration (RFC 7591, DESIGN §4) ---
		{"register http non-loopback redirect", 400, ErrInvalidRedirectURI, reg(base(map[string]any{"redirect_uris": []string{"http://evil.example/cb"}}))},
		{"register fragment in redirect", 400, ErrInvalidRedirectURI, reg(base(map[string]any{"redirect_uris": []string{"https://app.example/cb#frag"}}))},
		{"register no redirect uris", 400, ErrInvalidRedirectURI, reg(base(map[string]any{"redirect_uris": nil}))},
		{"register javascript redirect", 400, ErrInvalidRedirectURI, reg(base(map[string]any{"redirect_uris": []string{"javascript:alert(1)"}}))},
		{"register unknown scope", 400, ErrInvalidClientMetadata, reg(base(map[string]any{"scope": "mcp:access admin"}))},
		{"register without mcp:access", 400, ErrInvalidClientMetadata, reg(base(map[string]any{"scope": "profile"}))},
		{"register unsupported grant", 400, ErrInvalidClientMetadata, reg(base(map[string]any{"grant_types": []string{"authorization_code", "client_credentials"}}))},
		{"register implicit response type", 400, ErrInvalidClientMetadata, reg(base(map[string]any{"response_types": []string{"token"}}))},
		{"register unsupported auth method", 400, ErrInvalidClientMetadata, reg(base(map[string]any{"token_endpoint_auth_method": "private_key_jwt"}))},
		{"register web app with loopback redirect", 400, ErrInvalidRedirectURI, reg(base(map[string]any{"application_type": "web"}))},
		{"register client-chosen client_id", 400, ErrInvalidClientMetadata, reg(base(map[string]any{"client_id": "dcr:mine"}))},
		{"register oversized body", 413, ErrRequestTooLarge, reg(base(map[string]any{"client_name": strings.Repeat("x", 70<<10)}))},
		{"register not JSON", 400, ErrInvalidClientMetadata, func(t *testing.T, e *env, mark func()) (int, string) {
			req, _ := http.NewRequest(http.MethodPost, e.base+"/oauth/register", strings.NewReader("redirect_uris=x"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("X-Envoy-External-Address", e.nextIP())
			mark()
			resp, err := e.httpClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			return jsonOutcome(resp.StatusCode, decodeJSON(t, resp))
		}},
		{"11th registration in a minute", 429, ErrRateLimited, func(t *testing.T, e *env, mark func()) (int, string) {
			ip := e.nextIP()
			post := func() *http.Response {
				b, _ := json.Marshal(base(nil))
				req, _ := http.NewRequest(http.MethodPost, e.base+"/oauth/register", bytes.NewReader(b))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Envoy-External-Address", ip)
				// A client-supplied X-Forwarded-For must not reset the limit.
				req.Header.Set("X-Forwarded-For", e.nextIP())
				resp, err := e.httpClient().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				return resp
			}
			for i := range 10 {
				if resp := post(); resp.StatusCode != 201 {
					t.Fatalf("registration %d: %d", i+1, resp.StatusCode)
				} else {
					readBody(t, resp)
				}
			}
			mark()
			resp := post()
			if ra := resp.Header.Get("Retry-After"); ra == "" || ra == "0" {
				t.Errorf("429 without Retry-After")
			}
			return jsonOutcome(resp.StatusCode, decodeJSON(t, resp))
		}},
		{"RFC 7592 read with a wrong registration token", 401, ErrInvalidToken, func(t *testing.T, e *env, mark func()) (int, string) {
			c := e.mustRegister(t, authNone, nil)
			req, _ := http.NewRequest(http.MethodGet, e.base+"/oauth/register/"+c.ID, nil)
			req.Header.Set("Authorization", "Bearer "+secrets.NewToken(prefixRegistrationToken))
			mark()
			resp, err := e.httpClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			return jsonOutcome(resp.StatusCode, decodeJSON(t, resp))
		}},

		// --- authorize before the redirect URI is trusted: 400 page ---
		{"authorize unknown client", 400, ErrInvalidClient, page(func(e *env, c regClient, q url.Values) { q.Set("client_id", "dcr:unknown") })},
		{"authorize unregistered redirect", 400, ErrInvalidRedirectURI, page(func(e *env, c regClient, q url.Values) { q.Set("redirect_uri", "http://127.0.0.1:7777/other") })},
		{"authorize redirect extending the registered one", 400, ErrInvalidRedirectURI, page(func(e *env, c regClient, q url.Values) { q.Set("redirect_uri", testRedirect+"/next") })},
		{"authorize redirect with an added query", 400, ErrInvalidRedirectURI, page(func(e *env, c regClient, q url.Values) { q.Set("redirect_uri", testRedirect+"?next=1") })},
		{"authorize redirect with other port", 400, ErrInvalidRedirectURI, page(func(e *env, c regClient, q url.Values) { q.Set("redirect_uri", "http://127.0.0.1:7778/callback") })},
		{"authorize missing redirect", 400, ErrInvalidRequest, page(func(e *env, c regClient, q url.Values) { q.Del("redirect_uri") })},
		{"authorize repeated parameter", 400, ErrInvalidRequest, page(func(e *env, c regClient, q url.Values) { q.Add("scope", "profile") })},
		{"CIMD client_id differs from its URL", 400, ErrInvalidClient, cimd(func(u string) string { return u + "x" }, true, "cimd_client_id_mismatch")},
		{"CIMD URL resolving to a private address", 400, ErrInvalidClient, cimd(func(u string) string { return u }, false, "cimd_address_not_public")},

		// --- authorize after the redirect URI is trusted: redirect ---
		{"authorize unknown scope", 302, ErrInvalidScope, authz(func(e *env, q url.Values) { q.Set("scope", "mcp:access admin") })},
		{"authorize no scope", 302, ErrInvalidScope, authz(func(e *env, q url.Values) { q.Del("scope") })},
		{"authorize without mcp:access", 302, ErrInvalidScope, authz(func(e *env, q url.Values) { q.Set("scope", "profile") })},
		{"authorize missing PKCE", 302, ErrInvalidRequest, authz(func(e *env, q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") })},
		{"authorize plain PKCE", 302, ErrInvalidRequest, authz(func(e *env, q url.Values) { q.Set("code_challenge_method", "plain") })},
		{"authorize PKCE method omitted", 302, ErrInvalidRequest, authz(func(e *env, q url.Values) { q.Del("code_challenge_method") })},
		{"authorize short PKCE challenge", 302, ErrInvalidRequest, authz(func(e *env, q url.Values) { q.Set("code_challenge", "abc") })},
		{"authorize missing resource", 302, ErrInvalidTarget, authz(func(e *env, q url.Values) { q.Del("resource") })},
		{"authorize unknown route", 302, ErrInvalidTarget, authz(func(e *env, q url.Values) {
			r := e.aliceRoute
			r.Key = domain.NewRouteKey()
			q.Set("resource", e.routeURL(r))
		})},
		{"authorize resource with trailing slash", 302, ErrInvalidTarget, authz(func(e *env, q url.Values) { q.Set("resource", e.routeURL(e.aliceRoute)+"/") })},
		{"authorize foreign resource", 302, ErrInvalidTarget, authz(func(e *env, q url.Values) { q.Set("resource", "https://other.example"+e.aliceRoute.Path()) })},
		{"authorize implicit response type", 302, ErrUnsupportedResponseType, authz(func(e *env, q url.Values) { q.Set("response_type", "token") })},
		{"authorize profile-only legacy client", 302, ErrUnauthorizedClient, func(t *testing.T, e *env, mark func()) (int, string) {
			// A client stored before the mcp:access rule (only profile).
			id := "dcr:legacy" + strings.ReplaceAll(store.NewID(), "-", "")
			now := e.clock.Now()
			if _, err := e.st.CreateClient(context.Background(), store.OAuthClient{ID: id, RedirectURIs: []string{testRedirect},
				GrantTypes: []string{"authorization_code"}, ResponseTypes: []string{"code"}, TokenEndpointAuthMethod: "none",
				Scope: "profile", RegistrationTokenHash: secrets.Hash(secrets.NewToken("x")), CreatedAt: now, UpdatedAt: now}); err != nil {
				t.Fatal(err)
			}
			q := authParams(id, e.routeURL(e.aliceRoute), e.verifier())
			mark()
			return redirectOutcome(t, e.authorize(t, aliceB(), q), q.Get("state"))
		}},
		{"authorize another user's personal config", 302, ErrAccessDenied, authz(func(e *env, q url.Values) { q.Set("resource", e.routeURL(e.bobRoute)) })},
		{"authorize as a blocked user", 302, ErrAccessDenied, func(t *testing.T, e *env, mark func()) (int, string) {
			b := e.browser()
			e.login(t, b, "carol@example.com", alicePassword)
			c := e.mustRegister(t, authNone, nil)
			// carol is blocked: even a config she owned would be refused;
			// use alice's route (not hers) and her own to be sure.
			q := authParams(c.ID, e.routeURL(e.aliceRoute), e.verifier())
			mark()
			return redirectOutcome(t, e.authorize(t, b, q), q.Get("state"))
		}},
		{"oauth-mode config without provider flow", 302, ErrTemporarilyUnavailable, func(t *testing.T, e *env, mark func()) (int, string) {
			c := e.mustRegister(t, authNone, nil)
			q := authParams(c.ID, e.routeURL(e.oauthRoute), e.verifier())
			f := e.consentForm(t, aliceB(), q)
			mark()
			st, code := redirectOutcome(t, e.decide(t, aliceB(), f, "allow"), q.Get("state"))
			// The instance is created lazily (it is what the provider flow
			// will attach the grant to); no code, no token.
			e.st.instances.Add(-1)
			return st, code
		}},

		// --- consent ---
		{"consent deny", 302, ErrAccessDenied, func(t *testing.T, e *env, mark func()) (int, string) {
			c := e.mustRegister(t, authNone, nil)
			q := authParams(c.ID, e.routeURL(e.aliceRoute), e.verifier())
			f := e.consentForm(t, aliceB(), q)
			mark()
			st, code := redirectOutcome(t, e.decide(t, aliceB(), f, "deny"), q.Get("state"))
			if _, err := e.st.GetAuthRequest(context.Background(), f["req"], e.clock.Now()); err == nil {
				t.Errorf("the pending request survived a deny")
			}
			return st, code
		}},
		{"consent replay", 400, ErrInvalidRequest, func(t *testing.T, e *env, mark func()) (int, string) {
			c := e.mustRegister(t, authNone, nil)
			q := authParams(c.ID, e.routeURL(e.aliceRoute), e.verifier())
			f := e.consentForm(t, aliceB(), q)
			readBody(t, e.decide(t, aliceB(), f, "allow"))
			mark()
			return pageOutcome(t, e.decide(t, aliceB(), f, "allow"))
		}},
		{"consent for another user", 403, ErrAccessDenied, func(t *testing.T, e *env, mark func()) (int, string) {
			c := e.mustRegister(t, authNone, nil)
			q := authParams(c.ID, e.routeURL(e.aliceRoute), e.verifier())
			f := e.consentForm(t, aliceB(), q)
			// bob posts alice's ticket with his own CSRF token.
			bf := e.consentForm(t, bobB(), authParams(c.ID, e.routeURL(e.bobRoute), e.verifier()))
			f["csrf"] = bf["csrf"]
			mark()
			return pageOutcome(t, e.decide(t, bobB(), f, "allow"))
		}},
		{"consent after the ticket expired", 400, ErrInvalidRequest, func(t *testing.T, e *env, mark func()) (int, string) {
			c := e.mustRegister(t, authNone, nil)
			f := e.consentForm(t, aliceB(), authParams(c.ID, e.routeURL(e.aliceRoute), e.verifier()))
			e.clock.Advance(ConsentTTL + time.Second)
			mark()
			return pageOutcome(t, e.decide(t, aliceB(), f, "allow"))
		}},
		{"consent page for an expired request", 400, ErrInvalidRequest, func(t *testing.T, e *env, mark func()) (int, string) {
			c := e.mustRegister(t, authNone, nil)
			b := e.browser()
			q := authParams(c.ID, e.routeURL(e.aliceRoute), e.verifier())
			resp := e.authorize(t, b, q) // not signed in: parks the request at /login
			readBody(t, resp)
			req := resp.Request.URL.Query().Get("req")
			if req == "" {
				t.Fatalf("no pending request id in %s", resp.Request.URL)
			}
			e.clock.Advance(AuthRequestTTL + time.Second)
			mark()
			r2, err := aliceB().Get(e.base + "/oauth/consent?req=" + req)
			if err != nil {
				t.Fatal(err)
			}
			return pageOutcome(t, r2)
		}},
		{"consent with forged CSRF", 403, ErrInvalidRequest, func(t *testing.T, e *env, mark func()) (int, string) {
			c := e.mustRegister(t, authNone, nil)
			q := authParams(c.ID, e.routeURL(e.aliceRoute), e.verifier())
			f := e.consentForm(t, aliceB(), q)
			f["csrf"] = "forged-" + f["csrf"][:10]
			mark()
			st, code := pageOutcome(t, e.decide(t, aliceB(), f, "allow"))
			// The ticket was not consumed by the forged post... but it is
			// one use: it still works once with the right token.
			return st, code
		}},
		{"consent ticket bound to another request", 403, ErrAccessDenied, func(t *testing.T, e *env, mark func()) (int, string) {
			c := e.mustRegister(t, authNone, nil)
			f1 := e.consentForm(t, aliceB(), authParams(c.ID, e.routeURL(e.aliceRoute), e.verifier()))
			f2 := e.consentForm(t, aliceB(), authParams(c.ID, e.routeURL(e.aliceRoute), e.verifier()))
			f1["req"] = f2["req"]
			mark()
			return pageOutcome(t, e.decide(t, aliceB(), f1, "allow"))
		}},

		// --- token endpoint ---
		{"exchange wrong verifier", 400, ErrInvalidGrant, exch(authNone, func(e *env, f url.Values) { f.Set("code_verifier", e.verifier()) })},
		{"exchange missing verifier", 400, ErrInvalidRequest, exch(authNone, func(e *env, f url.Values) { f.Del("code_verifier") })},
		{"exchange mismatched resource", 400, ErrInvalidTarget, exch(authNone, func(e *env, f url.Values) { f.Set("resource", e.routeURL(e.bobRoute)) })},
		{"exchange missing resource", 400, ErrInvalidTarget, exch(authNone, func(e *env, f url.Values) { f.Del("resource") })},
		{"exchange other redirect uri", 400, ErrInvalidGrant, exch(authNone, func(e *env, f url.Values) { f.Set("redirect_uri", "http://127.0.0.1:7777/other") })},
		{"exchange unknown code", 400, ErrInvalidGrant, exch(authNone, func(e *env, f url.Values) { f.Set("code", secrets.NewToken(prefixCode)) })},
		{"unsupported grant type", 400, ErrUnsupportedGrantType, exch(authNone, func(e *env, f url.Values) { f.Set("grant_type", "client_credentials") })},
		{"code reuse revokes its tokens", 400, ErrInvalidGrant, func(t *testing.T, e *env, mark func()) (int, string) {
			c := e.mustRegister(t, authNone, nil)
			v := e.verifier()
			code := e.codeFor(t, aliceB(), authParams(c.ID, e.routeURL(e.aliceRoute), v))
			f := exchangeForm(code, v, e.routeURL(e.aliceRoute))
			st, tok := e.tokenReq(t, c, f)
			if st != 200 {
				t.Fatalf("first exchange: %d", st)
			}
			mark()
			st, code2 := jsonOutcome(e.tokenReq(t, c, f))
			if st2, body := e.tokenReq(t, c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}}); st2 != 400 || body["error"] != ErrInvalidGrant {
				t.Errorf("refresh token of a reused code still works: %d %v", st2, body)
			}
			return st, code2
		}},
		{"expired code", 400, ErrInvalidGrant, func(t *testing.T, e *env, mark func()) (int, string) {
			c := e.mustRegister(t, authNone, nil)
			v := e.verifier()
			code := e.codeFor(t, aliceB(), authParams(c.ID, e.routeURL(e.aliceRoute), v))
			e.clock.Advance(DefaultCodeTTL + time.Second)
			mark()
			return jsonOutcome(e.tokenReq(t, c, exchangeForm(code, v, e.routeURL(e.aliceRoute))))
		}},
		{"code redeemed by another client", 400, ErrInvalidGrant, func(t *testing.T, e *env, mark func()) (int, string) {
			c := e.mustRegister(t, authNone, nil)
			other := e.mustRegister(t, authNone, nil)
			v := e.verifier()
			code := e.codeFor(t, aliceB(), authParams(c.ID, e.routeURL(e.aliceRoute), v))
			mark()
			return jsonOutcome(e.tokenReq(t, other, exchangeForm(code, v, e.routeURL(e.aliceRoute))))
		}},
		{"basic client sends its secret in the body", 401, ErrInvalidClient, func(t *testing.T, e *env, mark func()) (int, string) {
			c := e.mustRegister(t, authBasic, nil)
			v := e.verifier()
			code := e.codeFor(t, aliceB(), authParams(c.ID, e.routeURL(e.aliceRoute), v))
			mark()
			return jsonOutcome(e.tokenReqAs(t, c, authPost, exchangeForm(code, v, e.routeURL(e.aliceRoute))))
		}},
		{"post client sends its secret by basic", 401, ErrInvalidClient, func(t *testing.T, e *env, mark func()) (int, string) {
			c := e.mustRegister(t, authPost, nil)
			mark()
			return jsonOutcome(e.tokenReqAs(t, c, authBasic, exchangeForm(secrets.NewToken(prefixCode), e.verifier(), e.routeURL(e.aliceRoute))))
		}},
		{"confidential client without its secret", 401, ErrInvalidClient, func(t *testing.T, e *env, mark func()) (int, string) {
			c := e.mustRegister(t, authBasic, nil)
			mark()
			return jsonOutcome(e.tokenReqAs(t, c, authNone, exchangeForm(secrets.NewToken(prefixCode), e.verifier(), e.routeURL(e.aliceRoute))))
		}},
		{"public client sends a secret", 401, ErrInvalidClient, func(t *testing.T, e *env, mark func()) (int, string) {
			c := e.mustRegister(t, authNone, nil)
			c.Secret = "planted-made-up-secret-value"
			e.plant(c.Secret)
			mark()
			return jsonOutcome(e.tokenReqAs(t, c, authPost, exchangeForm(secrets.NewToken(prefixCode), e.verifier(), e.routeURL(e.aliceRoute))))
		}},
		{"wrong client secret", 401, ErrInvalidClient, func(t *testing.T, e *env, mark func()) (int, string) {
			c := e.mustRegister(t, authBasic, nil)
			c.Secret = secrets.NewToken(prefixClientSecret)
			e.plant(c.Secret)
			mark()
			return jsonOutcome(e.tokenReq(t, c, exchangeForm(secrets.NewToken(prefixCode), e.verifier(), e.routeURL(e.aliceRoute))))
		}},
		{"exchange after the user was blocked", 400, ErrInvalidGrant, func(t *testing.T, e *env, mark func()) (int, string) {
			b := e.browser()
			e.login(t, b, "bob@example.com", bobPassword)
			c := e.mustRegister(t, authNone, nil)
			v := e.verifier()
			code := e.codeFor(t, b, authParams(c.ID, e.routeURL(e.bobRoute), v))
			if _, err := e.st.SetUserStatus(context.Background(), e.bob.ID, store.UserBlocked, nil); err != nil {
				t.Fatal(err)
			}
			defer e.st.SetUserStatus(context.Background(), e.bob.ID, store.UserActive, nil)
			mark()
			return jsonOutcome(e.tokenReq(t, c, exchangeForm(code, v, e.routeURL(e.bobRoute))))
		}},
		{"exchange after route rotation", 400, ErrInvalidGrant, func(t *testing.T, e *env, mark func()) (int, string) {
			c := e.mustRegister(t, authNone, nil)
			cfg, ref := e.mkConfig(e.alice, "rotating", store.AuthNone)
			v := e.verifier()
			code := e.codeFor(t, aliceB(), authParams(c.ID, e.routeURL(ref), v))
			if _, err := e.st.RotateRoute(context.Background(), cfg.ID, store.NewID(), domain.NewRouteKey(), nil); err != nil {
				t.Fatal(err)
			}
			mark()
			return jsonOutcome(e.tokenReq(t, c, exchangeForm(code, v, e.routeURL(ref))))
		}},
		{"refresh reuse revokes the family", 400, ErrInvalidGrant, func(t *testing.T, e *env, mark func()) (int, string) {
			c, rt, _ := e.tokenPair(t, aliceB(), authNone)
			st, next := e.tokenReq(t, c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
			if st != 200 {
				t.Fatalf("first refresh: %d", st)
			}
			mark()
			st, code := jsonOutcome(e.tokenReq(t, c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}))
			if st2, body := e.tokenReq(t, c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {next["refresh_token"].(string)}}); st2 != 400 || body["error"] != ErrInvalidGrant {
				t.Errorf("the rotated token survived reuse of its parent: %d %v", st2, body)
			}
			return st, code
		}},
		{"refresh after a material config change", 400, ErrInvalidGrant, func(t *testing.T, e *env, mark func()) (int, string) {
			c := e.mustRegister(t, authNone, nil)
			cfg, ref := e.mkConfig(e.alice, "changing", store.AuthNone)
			v := e.verifier()
			code := e.codeFor(t, aliceB(), authParams(c.ID, e.routeURL(ref), v))
			st, tok := e.tokenReq(t, c, exchangeForm(code, v, e.routeURL(ref)))
			if st != 200 {
				t.Fatalf("exchange: %d", st)
			}
			if _, material, err := e.st.UpdateConfig(context.Background(), cfg.ID, func(c *store.Config) error {
				c.RemoteURL = e.upstream.URL + "/elsewhere"
				return nil
			}, nil); err != nil || !material {
				t.Fatalf("update config: %v %v", material, err)
			}
			mark()
			rt := tok["refresh_token"].(string)
			st, code = jsonOutcome(e.tokenReq(t, c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}))
			// The consent was for the old version: the family is revoked.
			if got, err := e.st.GetRefreshToken(context.Background(), secrets.Hash(rt)); err != nil || got.RevokedAt == nil {
				t.Errorf("refresh token after a material change: revoked_at=%v err=%v, want revoked", got.RevokedAt, err)
			}
			return st, code
		}},
		{"refresh for another resource", 400, ErrInvalidTarget, func(t *testing.T, e *env, mark func()) (int, string) {
			c, rt, _ := e.tokenPair(t, aliceB(), authNone)
			mark()
			return jsonOutcome(e.tokenReq(t, c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "resource": {e.routeURL(e.bobRoute)}}))
		}},
		{"expired refresh token", 400, ErrInvalidGrant, func(t *testing.T, e *env, mark func()) (int, string) {
			c := e.mustRegister(t, authNone, nil)
			raw := secrets.NewToken(prefixRefresh)
			e.plant(raw)
			now := e.clock.Now()
			inst, _, _ := e.st.Store.GetOrCreateInstance(context.Background(), store.ScopeUser, e.alice.ID, e.alice.ID, e.aliceCfg.ID, store.NewID())
			if err := e.st.Store.CreateRefreshToken(context.Background(), store.RefreshToken{Hash: secrets.Hash(raw), FamilyID: store.NewID(),
				ClientID: c.ID, UserID: e.alice.ID, InstanceID: inst.ID, ConfigID: e.aliceCfg.ID, Resource: e.routeURL(e.aliceRoute),
				Scopes: []string{"mcp:access"}, ExecutionContext: "personal", ConfigVersion: e.aliceCfg.Version,
				CreatedAt: now.Add(-2 * time.Hour), ExpiresAt: now.Add(-time.Hour)}); err != nil {
				t.Fatal(err)
			}
			mark()
			st, code := jsonOutcome(e.tokenReq(t, c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {raw}}))
			if !strings.Contains(e.logs.String(), `"reason":"refresh_expired"`) {
				t.Errorf("the expired refresh token was not rejected for its expiry")
			}
			return st, code
		}},
		{"refresh token of another client", 400, ErrInvalidGrant, func(t *testing.T, e *env, mark func()) (int, string) {
			_, rt, _ := e.tokenPair(t, aliceB(), authNone)
			other := e.mustRegister(t, authNone, nil)
			mark()
			return jsonOutcome(e.tokenReq(t, other, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}))
		}},
		{"refresh token lacking mcp:access", 400, ErrInvalidGrant, func(t *testing.T, e *env, mark func()) (int, string) {
			c := e.mustRegister(t, authNone, nil)
			raw := secrets.NewToken(prefixRefresh)
			e.plant(raw)
			now := e.clock.Now()
			inst, _, _ := e.st.Store.GetOrCreateInstance(context.Background(), store.ScopeUser, e.alice.ID, e.alice.ID, e.aliceCfg.ID, store.NewID())
			if err := e.st.Store.CreateRefreshToken(context.Background(), store.RefreshToken{Hash: secrets.Hash(raw), FamilyID: store.NewID(),
				ClientID: c.ID, UserID: e.alice.ID, InstanceID: inst.ID, ConfigID: e.aliceCfg.ID, Resource: e.routeURL(e.aliceRoute),
				Scopes: []string{"profile"}, ExecutionContext: "personal", ConfigVersion: e.aliceCfg.Version, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
			mark()
			return jsonOutcome(e.tokenReq(t, c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {raw}}))
		}},
		{"refresh widening scope", 400, ErrInvalidScope, func(t *testing.T, e *env, mark func()) (int, string) {
			c, rt, _ := e.tokenPair(t, aliceB(), authNone)
			mark()
			return jsonOutcome(e.tokenReq(t, c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "scope": {"mcp:access profile"}}))
		}},
		{"token body as JSON", 400, ErrInvalidRequest, func(t *testing.T, e *env, mark func()) (int, string) {
			req, _ := http.NewRequest(http.MethodPost, e.base+"/oauth/token", strings.NewReader(`{"grant_type":"authorization_code"}`))
			req.Header.Set("Content-Type", "application/json")
			mark()
			resp, err := e.httpClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			return jsonOutcome(resp.StatusCode, decodeJSON(t, resp))
		}},

		// --- userinfo and connect tokens ---
		{"userinfo with mcp:access only", 403, ErrInsufficientScope, func(t *testing.T, e *env, mark func()) (int, string) {
			_, _, at := e.tokenPair(t, aliceB(), authNone)
			req, _ := http.NewRequest(http.MethodGet, e.base+"/oauth/userinfo", nil)
			req.Header.Set("Authorization", "Bearer "+at)
			mark()
			resp, err := e.httpClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			return jsonOutcome(resp.StatusCode, decodeJSON(t, resp))
		}},
		{"userinfo without a token", 401, ErrInvalidToken, func(t *testing.T, e *env, mark func()) (int, string) {
			mark()
			resp, err := e.httpClient().Get(e.base + "/oauth/userinfo")
			if err != nil {
				t.Fatal(err)
			}
			return jsonOutcome(resp.StatusCode, decodeJSON(t, resp))
		}},
		{"connect token without an API token", 401, ErrInvalidToken, func(t *testing.T, e *env, mark func()) (int, string) {
			mark()
			return e.connectToken(t, "", map[string]any{"resource": e.routeURL(e.aliceRoute)})
		}},
		{"connect token with a session but no CSRF", 403, ErrInvalidRequest, func(t *testing.T, e *env, mark func()) (int, string) {
			b, _ := json.Marshal(map[string]any{"resource": e.routeURL(e.aliceRoute)})
			req, _ := http.NewRequest(http.MethodPost, e.base+"/api/v1/connect-tokens", bytes.NewReader(b))
			req.Header.Set("Content-Type", "application/json")
			mark()
			resp, err := aliceB().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			return jsonOutcome(resp.StatusCode, decodeJSON(t, resp))
		}},
		{"connect token for someone else's config", 403, ErrAccessDenied, func(t *testing.T, e *env, mark func()) (int, string) {
			tok := e.apiToken(t, e.alice)
			mark()
			return e.connectToken(t, tok, map[string]any{"resource": e.routeURL(e.bobRoute)})
		}},
	}
}

// apiToken creates a personal API token for u (planted).
func (e *env) apiToken(t *testing.T, u store.User) string {
	t.Helper()
	raw := secrets.NewToken(PrefixAPIToken)
	e.plant(raw)
	if _, err := e.st.CreateAPIToken(context.Background(), store.APIToken{ID: store.NewID(), UserID: u.ID, Name: "test",
		Hash: secrets.Hash(raw), CreatedAt: e.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	return raw
}

func (e *env) connectToken(t *testing.T, apiToken string, body map[string]any) (int, string) {
	st, m := e.connectTokenResp(t, apiToken, body)
	return jsonOutcome(st, m)
}

func (e *env) connectTokenResp(t *testing.T, apiToken string, body map[string]any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, e.base+"/api/v1/connect-tokens", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if apiToken != "" {
		req.Header.Set("Authorization", "Bearer "+apiToken)
	}
	resp, err := e.httpClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, decodeJSON(t, resp)
}

// TestNegative is the negative table: each case asserts the exact
// status and OAuth error code, and that no client, code, refresh token,
// instance or grant was created by the offending request.
func TestNegative(t *testing.T) {
	testsupport.Backends(t, func(t *testing.T, newStore func(t *testing.T) store.Store) {
		e := newEnv(t, newStore(t))
		alice, bob := e.browser(), e.browser()
		e.login(t, alice, "alice@example.com", alicePassword)
		e.login(t, bob, "bob@example.com", bobPassword)
		cases := negativeCases(func() *http.Client { return alice }, func() *http.Client { return bob })
		if len(cases) < 40 {
			t.Fatalf("only %d negative cases", len(cases))
		}
		t.Logf("%d negative cases", len(cases))
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				var before counts
				marked := false
				mark := func() { before, marked = e.st.snapshot(), true }
				st, code := tc.run(t, e, mark)
				if !marked {
					t.Fatal("case never marked its offending request")
				}
				if st != tc.status || code != tc.code {
					t.Errorf("got %d %q, want %d %q", st, code, tc.status, tc.code)
				}
				if after := e.st.snapshot(); after != before {
					t.Errorf("the rejected request created something: %+v → %+v", before, after)
				}
			})
		}
		// Metrics carry the outcome by error code.
		if n := counterValue(t, e, "mcpgw_oauth_requests_total", map[string]string{"endpoint": "token", "outcome": ErrInvalidGrant}); n < 5 {
			t.Errorf("invalid_grant outcomes counted = %v", n)
		}
	})
}
