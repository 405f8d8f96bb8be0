package oauthserver

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"mcpgw/domain"
	"mcpgw/domain/signing"
	"mcpgw/internal/testsupport"
	"mcpgw/store"
)

// TestConnectTokens covers derived connect tokens (DESIGN §2, §7): same
// JWT contract, no refresh token, eligibility checked, lazy instance.
func TestConnectTokens(t *testing.T) {
	testsupport.Backends(t, func(t *testing.T, newStore func(t *testing.T) store.Store) {
		e := newEnv(t, newStore(t))
		tok := e.apiToken(t, e.alice)
		for _, body := range []map[string]any{{"resource": e.routeURL(e.aliceRoute)}, {"config_id": e.aliceCfg.ID}} {
			st, m := e.connectTokenResp(t, tok, body)
			if st != 200 || m["refresh_token"] != nil || m["token_type"] != "Bearer" || m["resource"] != e.routeURL(e.aliceRoute) {
				t.Fatalf("connect token %v: %d %v", body, st, m)
			}
			e.plant(m["access_token"].(string))
			e.assertClaims(t, e.parseJWT(t, m["access_token"].(string)), ConnectTokenClientID, "mcp:access")
		}
		// The token works through the stand-in data plane.
		_, m := e.connectTokenResp(t, tok, map[string]any{"resource": e.routeURL(e.aliceRoute)})
		req, _ := http.NewRequest(http.MethodPost, e.routeURL(e.aliceRoute), strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer "+m["access_token"].(string))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readBody(t, resp)
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			t.Errorf("connect token refused by the data plane: %d", resp.StatusCode)
		}
		// OAuth-mode config without a grant: 409, nothing minted.
		if st, code := e.connectToken(t, tok, map[string]any{"config_id": e.oauthCfg.ID}); st != http.StatusConflict || code != ErrAccessDenied {
			t.Errorf("oauth config without grant: %d %s", st, code)
		}
		// Unknown config and a blocked user.
		if st, code := e.connectToken(t, tok, map[string]any{"config_id": store.NewID()}); st != 404 || code != ErrInvalidTarget {
			t.Errorf("unknown config: %d %s", st, code)
		}
		ctok := e.apiToken(t, e.carol)
		if st, code := e.connectToken(t, ctok, map[string]any{"resource": e.routeURL(e.aliceRoute)}); st != 401 || code != ErrInvalidToken {
			t.Errorf("blocked user: %d %s", st, code)
		}
	})
}

// TestKeyRotation rotates the signing key without downtime: tokens signed
// by the previous key keep verifying (JWKS publishes both), new tokens
// carry the new kid, and dropping the old key retires its tokens.
func TestKeyRotation(t *testing.T) {
	e := newEnv(t, newMem())
	keys := testSigningKeys(t)
	api := e.apiToken(t, e.alice)
	mintKid := func() (string, string) {
		_, m := e.connectTokenResp(t, api, map[string]any{"resource": e.routeURL(e.aliceRoute)})
		raw := m["access_token"].(string)
		e.plant(raw)
		tok, _, err := jwt.NewParser().ParseUnverified(raw, &domain.Claims{})
		if err != nil {
			t.Fatal(err)
		}
		return raw, tok.Header["kid"].(string)
	}
	jwks := func() map[string]bool {
		resp, err := http.Get(e.base + "/oauth/jwks.json")
		if err != nil {
			t.Fatal(err)
		}
		keys, err := signing.ParseJWKS(readBody(t, resp))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for k := range keys {
			out[k] = true
		}
		return out
	}
	useAtGateway := func(raw string) int {
		req, _ := http.NewRequest(http.MethodPost, e.routeURL(e.aliceRoute), strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer "+raw)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readBody(t, resp)
		return resp.StatusCode
	}
	old, kid := mintKid()
	if kid != keys[0].ID || !jwks()[keys[0].ID] {
		t.Fatalf("initial kid %s", kid)
	}
	if err := e.srv.SetKeys(signing.Set{Current: keys[1], Previous: []signing.Key{keys[0]}}); err != nil {
		t.Fatal(err)
	}
	if got := jwks(); !got[keys[0].ID] || !got[keys[1].ID] || len(got) != 2 {
		t.Errorf("JWKS during rotation = %v", got)
	}
	if st := useAtGateway(old); st == 401 {
		t.Errorf("a token of the previous key stopped working during rotation")
	}
	fresh, kid := mintKid()
	if kid != keys[1].ID {
		t.Errorf("new tokens use kid %s, want %s", kid, keys[1].ID)
	}
	if err := e.srv.SetKeys(signing.Set{Current: keys[1]}); err != nil {
		t.Fatal(err)
	}
	if got := jwks(); got[keys[0].ID] || !got[keys[1].ID] {
		t.Errorf("JWKS after retiring = %v", got)
	}
	if st := useAtGateway(old); st != 401 {
		t.Errorf("a token of a retired key still works: %d", st)
	}
	if st := useAtGateway(fresh); st == 401 {
		t.Errorf("a current token fails")
	}
	if err := e.srv.SetKeys(signing.Set{}); err == nil {
		t.Errorf("SetKeys accepted an empty set")
	}
}

// fakeProvider records hand-offs; its Start answers with a redirect to an
// upstream authorization server (not followed).
type fakeProvider struct {
	mu      sync.Mutex
	pending []FirstLevelRequest
}

func (f *fakeProvider) Start(ctx context.Context, w http.ResponseWriter, r *http.Request, p FirstLevelRequest) error {
	f.mu.Lock()
	f.pending = append(f.pending, p)
	f.mu.Unlock()
	http.Redirect(w, r, "https://upstream-as.example/authorize?state=opaque", http.StatusFound)
	return nil
}

// TestProviderHandOff covers the interface to the provider flow (issue 4):
// an oauth_dynamic config without a grant hands off; after the grant is
// stored, IssueCode finishes the first-level authorization, and the code
// redeems for a token.
func TestProviderHandOff(t *testing.T) {
	testsupport.Backends(t, func(t *testing.T, newStore func(t *testing.T) store.Store) {
		fp := &fakeProvider{}
		e := newEnv(t, newStore(t), func(o *Options) { o.Provider = fp })
		b := e.browser()
		e.login(t, b, "alice@example.com", alicePassword)
		c := e.mustRegister(t, authNone, nil)
		v := e.verifier()
		q := authParams(c.ID, e.routeURL(e.oauthRoute), v)
		resp := e.decide(t, b, e.consentForm(t, b, q), "allow")
		readBody(t, resp)
		if !strings.HasPrefix(resp.Header.Get("Location"), "https://upstream-as.example/") || len(fp.pending) != 1 {
			t.Fatalf("no hand-off: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		p := fp.pending[0]
		if p.ClientID != c.ID || p.Resource != e.routeURL(e.oauthRoute) || p.UserID != e.alice.ID || p.InstanceID == "" ||
			p.State != q.Get("state") || p.CodeChallenge != q.Get("code_challenge") || p.ConfigVersion != e.oauthCfg.Version {
			t.Errorf("pending request %+v", p)
		}
		ctx := context.Background()
		if _, err := e.srv.IssueCode(ctx, p); err == nil {
			t.Fatalf("IssueCode succeeded without a grant")
		}
		if _, err := e.st.PutGrant(ctx, store.Grant{InstanceID: p.InstanceID, AccessToken: []byte("ciphertext-a"), TokenType: "Bearer", UpdatedAt: e.clock.Now()}, -1, nil); err != nil {
			t.Fatal(err)
		}
		target, err := e.srv.IssueCode(ctx, p)
		if err != nil {
			t.Fatalf("IssueCode: %v", err)
		}
		u, _ := url.Parse(target)
		if u.Query().Get("iss") != e.base || u.Query().Get("state") != p.State {
			t.Errorf("IssueCode redirect %s", target)
		}
		e.plant(u.Query().Get("code"))
		st, tok := e.tokenReq(t, c, exchangeForm(u.Query().Get("code"), v, e.routeURL(e.oauthRoute)))
		if st != 200 {
			t.Fatalf("exchange after provider flow: %d %v", st, tok)
		}
		e.plant(tok["access_token"].(string), tok["refresh_token"].(string))
		if cl := e.parseJWT(t, tok["access_token"].(string)); cl.InstanceID != p.InstanceID || cl.ConfigID != e.oauthCfg.ID {
			t.Errorf("claims %+v", cl)
		}
		if got := e.srv.ErrorRedirect(p, ErrAccessDenied, "upstream refused"); !strings.Contains(got, "error=access_denied") || !strings.Contains(got, "iss=") {
			t.Errorf("ErrorRedirect = %s", got)
		}
	})
}

// oidcProvider is a tiny in-test OpenID Provider issuing RS256 id_tokens.
type oidcProvider struct {
	t        *testing.T
	hs       *httptest.Server
	key      signing.Key
	sub      string
	email    string
	badNonce bool

	mu    sync.Mutex
	codes map[string]oidcGrant
}

type oidcGrant struct{ nonce, challenge, redirect string }

func newOIDCProvider(t *testing.T) *oidcProvider {
	p := &oidcProvider{t: t, key: testSigningKeys(t)[1], sub: "sub-" + store.NewID(), email: "dave@example.com", codes: map[string]oidcGrant{}}
	mux := http.NewServeMux()
	p.hs = httptest.NewServer(mux)
	t.Cleanup(p.hs.Close)
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": p.hs.URL, "authorization_endpoint": p.hs.URL + "/authorize", "token_endpoint": p.hs.URL + "/token",
			"jwks_uri": p.hs.URL + "/jwks", "response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"}, "code_challenge_methods_supported": []string{"S256"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		set := signing.Set{Current: p.key}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(set.JWKS())
	})
	mux.HandleFunc("GET /authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("client_id") != "mcpgw-login" || q.Get("code_challenge_method") != "S256" || q.Get("nonce") == "" {
			http.Error(w, "bad request", 400)
			return
		}
		code := "oidc-code-" + store.NewID()
		p.mu.Lock()
		p.codes[code] = oidcGrant{nonce: q.Get("nonce"), challenge: q.Get("code_challenge"), redirect: q.Get("redirect_uri")}
		p.mu.Unlock()
		http.Redirect(w, r, q.Get("redirect_uri")+"?code="+code+"&state="+url.QueryEscape(q.Get("state")), http.StatusFound)
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		id, secret, ok := r.BasicAuth()
		if !ok {
			id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
		}
		p.mu.Lock()
		g, found := p.codes[r.PostForm.Get("code")]
		delete(p.codes, r.PostForm.Get("code"))
		p.mu.Unlock()
		if id != "mcpgw-login" || secret != "planted-oidc-client-secret" || !found || s256(r.PostForm.Get("code_verifier")) != g.challenge ||
			r.PostForm.Get("redirect_uri") != g.redirect {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(400)
			_, _ = w.Write([]byte(`{"error":"invalid_grant"}`))
			return
		}
		nonce := g.nonce
		if p.badNonce {
			nonce = "wrong"
		}
		now := time.Now()
		it := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
			"iss": p.hs.URL, "sub": p.sub, "aud": "mcpgw-login", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix(),
			"nonce": nonce, "email": p.email, "email_verified": true, "name": "Dave",
		})
		it.Header["kid"] = p.key.ID
		signed, err := it.SignedString(p.key.Private)
		if err != nil {
			t.Error(err)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "oidc-at-" + store.NewID(), "token_type": "Bearer", "expires_in": 3600, "id_token": signed})
	})
	return p
}

// oidcBrowser follows redirects everywhere except to the MCP client's
// redirect URI.
func (e *env) oidcBrowser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Transport: recordingTransport{e: e, base: http.DefaultTransport},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if strings.HasPrefix(req.URL.String(), testRedirect) || len(via) > 10 {
				return http.ErrUseLastResponse
			}
			return nil
		}}
}

// TestOIDCLogin signs in through the in-test OpenID Provider: users are
// matched by issuer+subject and provisioned provisional (ineligible) unless
// configured otherwise; a bad nonce or a forged state signs nobody in.
func TestOIDCLogin(t *testing.T) {
	testsupport.Backends(t, func(t *testing.T, newStore func(t *testing.T) store.Store) {
		op := newOIDCProvider(t)
		provisionActive := false
		mk := func(st store.Store) *env {
			return newEnv(t, st, func(o *Options) {
				o.StaticUsers = nil
				o.OIDC = &OIDCOptions{Issuer: op.hs.URL, ClientID: "mcpgw-login", ClientSecret: "planted-oidc-client-secret", ProvisionActive: provisionActive}
			})
		}
		st := newStore(t)
		e := mk(st)
		e.plant("planted-oidc-client-secret")
		b := e.oidcBrowser()
		resp, err := b.Get(e.base + "/login")
		if err != nil {
			t.Fatal(err)
		}
		body := string(readBody(t, resp))
		if resp.StatusCode != 200 || !strings.Contains(body, "Signed in") {
			t.Fatalf("OIDC login: %d %s", resp.StatusCode, body)
		}
		u, err := st.GetUserByOIDC(context.Background(), op.hs.URL, op.sub)
		if err != nil || u.Status != store.UserProvisional || u.Email != "dave@example.com" {
			t.Fatalf("provisioned user %+v %v", u, err)
		}
		// A provisional user cannot authorize anything.
		c := e.mustRegister(t, authNone, nil)
		q := authParams(c.ID, e.routeURL(e.aliceRoute), e.verifier())
		if st, code := redirectOutcome(t, e.authorize(t, b, q), q.Get("state")); st != 302 || code != ErrAccessDenied {
			t.Errorf("provisional user authorize: %d %s", st, code)
		}
		// Signing in again matches the same user.
		b2 := e.oidcBrowser()
		resp, _ = b2.Get(e.base + "/login")
		readBody(t, resp)
		users, _ := st.ListUsers(context.Background(), false)
		n := 0
		for _, x := range users {
			if x.OIDCSubject == op.sub {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d users for one OIDC subject", n)
		}
		// A bad nonce signs nobody in.
		op.badNonce = true
		b3 := e.oidcBrowser()
		resp, _ = b3.Get(e.base + "/login")
		if st, code := pageOutcome(t, resp); st != 403 || code != ErrAccessDenied {
			t.Errorf("bad nonce: %d %s", st, code)
		}
		op.badNonce = false
		// A callback with a state the browser did not start fails.
		resp, _ = e.oidcBrowser().Get(e.base + "/login/oidc/callback?code=x&state=forged")
		if st, code := pageOutcome(t, resp); st != 400 || code != ErrAccessDenied {
			t.Errorf("forged state: %d %s", st, code)
		}
		// With provisioning active, a new subject is active at once.
		provisionActive = true
		op.sub, op.email = "sub-"+store.NewID(), "erin@example.com"
		st2 := newStore(t)
		e2 := mk(st2)
		e2.plant("planted-oidc-client-secret")
		resp, _ = e2.oidcBrowser().Get(e2.base + "/login")
		readBody(t, resp)
		if u, err := st2.GetUserByOIDC(context.Background(), op.hs.URL, op.sub); err != nil || u.Status != store.UserActive {
			t.Errorf("active provisioning: %+v %v", u, err)
		}
	})
}

// TestPlantedSecretDetector proves the leak check that runs after every
// test env (assertNoLeaks) actually finds a planted value in each place it
// searches: logs, audit rows and error bodies.
func TestPlantedSecretDetector(t *testing.T) {
	e := newEnv(t, newMem())
	secret := "planted-detector-" + store.NewID()
	e.plant(secret)
	if got := e.leaks(); len(got) != 0 {
		t.Fatalf("leaks before planting anywhere: %d", len(got))
	}
	e.srv.log.Info("oops", "value", secret)
	if got := e.leaks(); len(got) != 1 {
		t.Errorf("a secret in the logs was not detected")
	}
	e.logs.Reset()
	if err := e.st.AppendAudit(context.Background(), store.AuditEvent{Type: "test", Outcome: "x", Time: e.clock.Now(), Metadata: map[string]string{"k": secret}}); err != nil {
		t.Fatal(err)
	}
	if got := e.leaks(); len(got) != 1 {
		t.Errorf("a secret in an audit row was not detected")
	}
	// Reset by using a fresh env for the error-body channel.
	e2 := newEnv(t, newMem())
	e2.plant(secret)
	e2.mu.Lock()
	e2.errorBodies = append(e2.errorBodies, `{"error":"`+secret+`"}`)
	e2.mu.Unlock()
	if got := e2.leaks(); len(got) != 1 {
		t.Errorf("a secret in an error body was not detected")
	}
	// Leave both envs clean for their own cleanup check.
	e2.mu.Lock()
	e2.errorBodies = nil
	e2.mu.Unlock()
	e.mu.Lock()
	e.planted = e.planted[:len(e.planted)-1]
	e.mu.Unlock()
}

// TestIssuerWithPath serves RFC 8414 metadata at the path-inserted
// well-known URI (§3.1) and the OIDC forms, with the issuer as given.
func TestIssuerWithPath(t *testing.T) {
	srv, err := New(Options{Store: newMem(), Issuer: "https://gw.example.com/tenant", Keys: signing.Set{Current: testSigningKeys(t)[0]}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/.well-known/oauth-authorization-server/tenant", "/.well-known/openid-configuration/tenant", "/tenant/.well-known/openid-configuration"} {
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
		var m map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &m)
		if rec.Code != 200 || m["issuer"] != "https://gw.example.com/tenant" || m["token_endpoint"] != "https://gw.example.com/oauth/token" {
			t.Errorf("%s: %d %v", p, rec.Code, m)
		}
	}
	for _, bad := range []string{"http://gw.example.com", "https://gw.example.com/?x=1", "https://user@gw.example.com", "ftp://gw.example.com", ""} {
		if _, err := New(Options{Store: newMem(), Issuer: bad, Keys: signing.Set{Current: testSigningKeys(t)[0]}}); err == nil {
			t.Errorf("issuer %q accepted", bad)
		}
	}
}

// TestOrgConfig: org owners may not use an org config unless assigned
// (DESIGN §3 rule 2); once assigned, the token carries the org context.
func TestOrgConfig(t *testing.T) {
	testsupport.Backends(t, func(t *testing.T, newStore func(t *testing.T) store.Store) {
		e := newEnv(t, newStore(t))
		ctx := context.Background()
		org, err := e.st.CreateOrg(ctx, store.Org{ID: store.NewID(), Name: "Acme", CreatedAt: e.clock.Now()}, e.alice.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		now := e.clock.Now()
		cfg, r, err := e.st.CreateConfig(ctx, store.Config{ID: store.NewID(), OwnerScope: store.ScopeOrg, OwnerID: org.ID, Name: "Acme tools",
			RemoteURL: e.upstream.URL + "/mcp", AuthMode: store.AuthNone, SharingMode: store.MultiUser, CreatedBy: e.alice.ID,
			CreatedAt: now, UpdatedAt: now}, store.NewID(), domain.NewRouteKey(), nil)
		if err != nil {
			t.Fatal(err)
		}
		ref := domain.RouteRef{Scope: store.ScopeOrg, OwnerID: org.ID, ConfigID: cfg.ID, Key: r.Key}
		b := e.browser()
		e.login(t, b, "alice@example.com", alicePassword)
		c := e.mustRegister(t, authNone, nil)
		q := authParams(c.ID, ref.URL(e.base), e.verifier())
		before := e.st.snapshot()
		if st, code := redirectOutcome(t, e.authorize(t, b, q), q.Get("state")); st != 302 || code != ErrAccessDenied {
			t.Errorf("unassigned owner: %d %s", st, code)
		}
		if after := e.st.snapshot(); after != before {
			t.Errorf("denied authorization created something")
		}
		if _, err := e.st.Assign(ctx, store.Assignment{ConfigID: cfg.ID, UserID: e.alice.ID, CreatedBy: e.alice.ID, CreatedAt: now}, nil); err != nil {
			t.Fatal(err)
		}
		v := e.verifier()
		q = authParams(c.ID, ref.URL(e.base), v)
		// The consent page names the organization.
		resp := e.authorize(t, b, q)
		if body := string(readBody(t, resp)); !strings.Contains(body, "Organization Acme") {
			t.Errorf("consent page lacks the org context")
		}
		code := e.codeFor(t, b, q)
		st, tok := e.tokenReq(t, c, exchangeForm(code, v, ref.URL(e.base)))
		if st != 200 {
			t.Fatalf("exchange: %d %v", st, tok)
		}
		cl := e.parseJWT(t, tok["access_token"].(string))
		if cl.OwnerScope != "org" || cl.OwnerID != org.ID || cl.ExecutionContext != "org:"+org.ID || cl.MCPID != ref.MCPID() {
			t.Errorf("org claims %+v", cl)
		}
		// Unassigned again: refresh is refused.
		if err := e.st.Unassign(ctx, cfg.ID, e.alice.ID, nil); err != nil {
			t.Fatal(err)
		}
		if st, body := e.tokenReq(t, c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}}); st != 400 || body["error"] != ErrInvalidGrant {
			t.Errorf("refresh after unassign: %d %v", st, body)
		}
	})
}

// TestConcurrentRedemption: of N concurrent redemptions of one code, or
// N concurrent refreshes of one refresh token, exactly one succeeds
// (atomic consume, DESIGN §4).
func TestConcurrentRedemption(t *testing.T) {
	testsupport.Backends(t, func(t *testing.T, newStore func(t *testing.T) store.Store) {
		e := newEnv(t, newStore(t))
		b := e.browser()
		e.login(t, b, "alice@example.com", alicePassword)
		c := e.mustRegister(t, authNone, nil)
		v := e.verifier()
		code := e.codeFor(t, b, authParams(c.ID, e.routeURL(e.aliceRoute), v))
		race := func(form url.Values) (ok int, tokens []map[string]any) {
			const n = 8
			var wg sync.WaitGroup
			var mu sync.Mutex
			for range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					st, body := e.tokenReq(t, c, form)
					mu.Lock()
					defer mu.Unlock()
					if st == 200 {
						ok++
						tokens = append(tokens, body)
					} else if st != 400 || body["error"] != ErrInvalidGrant {
						t.Errorf("loser answered %d %v", st, body)
					}
				}()
			}
			wg.Wait()
			return ok, tokens
		}
		if ok, _ := race(exchangeForm(code, v, e.routeURL(e.aliceRoute))); ok != 1 {
			t.Fatalf("%d concurrent code redemptions succeeded, want 1", ok)
		}
		// A fresh family for the refresh race.
		v = e.verifier()
		code = e.codeFor(t, b, authParams(c.ID, e.routeURL(e.aliceRoute), v))
		st, tok := e.tokenReq(t, c, exchangeForm(code, v, e.routeURL(e.aliceRoute)))
		if st != 200 {
			t.Fatal(st)
		}
		if ok, _ := race(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}}); ok != 1 {
			t.Fatalf("%d concurrent refreshes succeeded, want 1", ok)
		}
	})
}

// TestSharedRegistry: two servers on one Prometheus registry share the
// series instead of panicking.
func TestSharedRegistry(t *testing.T) {
	e := newEnv(t, newMem())
	if _, err := New(Options{Store: e.st, Issuer: e.base, Keys: e.keys, Registry: e.reg}); err != nil {
		t.Fatalf("second server on the same registry: %v", err)
	}
}

// sessionCookie returns the browser's session cookie value.
func (e *env) sessionCookieOf(t *testing.T, b *http.Client) string {
	u, _ := url.Parse(e.base)
	for _, c := range b.Jar.Cookies(u) {
		if c.Name == sessionCookie {
			return c.Value
		}
	}
	t.Fatal("no session cookie")
	return ""
}

// TestSessionsAndRevoke: session-authenticated API calls need the CSRF
// token; logout revokes the session; revoking another client's refresh
// token changes nothing (RFC 7009 §2.1).
func TestSessionsAndRevoke(t *testing.T) {
	testsupport.Backends(t, func(t *testing.T, newStore func(t *testing.T) store.Store) {
		e := newEnv(t, newStore(t))
		b := e.browser()
		e.login(t, b, "alice@example.com", alicePassword)
		rawSession := e.sessionCookieOf(t, b)
		csrf := csrfFor(rawSession)
		e.plant(csrf)
		post := func(path, csrf string, body string) *http.Response {
			req, _ := http.NewRequest(http.MethodPost, e.base+path, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			if csrf != "" {
				req.Header.Set(CSRFHeader, csrf)
			}
			resp, err := b.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			return resp
		}
		resp := post("/api/v1/connect-tokens", csrf, `{"config_id":"`+e.aliceCfg.ID+`"}`)
		if m := decodeJSON(t, resp); resp.StatusCode != 200 || m["access_token"] == nil {
			t.Fatalf("session connect token: %d %v", resp.StatusCode, m)
		} else {
			e.plant(m["access_token"].(string))
		}
		// Revoking someone else's refresh token does nothing.
		owner, rt, _ := e.tokenPair(t, b, authNone)
		other := e.mustRegister(t, authNone, nil)
		if st, _ := e.formPost(t, "/oauth/revoke", other, authNone, url.Values{"token": {rt}}); st != 200 {
			t.Errorf("revoke by another client: %d", st)
		}
		if st, body := e.tokenReq(t, owner, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}); st != 200 {
			t.Errorf("another client's revoke took effect: %d %v", st, body)
		}
		// Logout needs the CSRF token, then the session is gone.
		req, _ := http.NewRequest(http.MethodPost, e.base+"/logout", nil)
		resp, err := b.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if st, code := pageOutcome(t, resp); st != 403 || code != ErrInvalidRequest {
			t.Errorf("logout without CSRF: %d %s", st, code)
		}
		resp = post("/logout", csrf, "")
		readBody(t, resp)
		if resp.StatusCode != http.StatusNoContent {
			t.Errorf("logout: %d", resp.StatusCode)
		}
		resp = post("/api/v1/connect-tokens", csrf, `{"config_id":"`+e.aliceCfg.ID+`"}`)
		if st, code := jsonOutcome(resp.StatusCode, decodeJSON(t, resp)); st != 401 || code != ErrInvalidToken {
			t.Errorf("API after logout: %d %s", st, code)
		}
		// The old cookie replayed by hand is dead server side.
		req, _ = http.NewRequest(http.MethodPost, e.base+"/api/v1/connect-tokens", strings.NewReader(`{"config_id":"`+e.aliceCfg.ID+`"}`))
		req.Header.Set("Cookie", sessionCookie+"="+rawSession)
		req.Header.Set(CSRFHeader, csrf)
		resp, err = e.httpClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if st, code := jsonOutcome(resp.StatusCode, decodeJSON(t, resp)); st != 401 || code != ErrInvalidToken {
			t.Errorf("revoked session cookie replayed: %d %s", st, code)
		}
	})
}
