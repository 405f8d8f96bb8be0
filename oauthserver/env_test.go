package oauthserver

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"mcpgw/domain"
	"mcpgw/domain/addrpolicy"
	"mcpgw/domain/signing"
	"mcpgw/internal/testsupport"
	"mcpgw/store"
	"mcpgw/store/memory"
)

// Planted secrets: known values that flow through the tests and must never
// appear in logs, audit rows, metrics or error bodies (DESIGN §9).
const (
	alicePassword = "planted-Alice-Password-7f3a9c"
	bobPassword   = "planted-Bob-Password-11c0de"
)

// countingStore counts what the AS creates, so every negative case can
// assert that nothing was created.
type countingStore struct {
	store.Store
	clients, codes, refresh, instances, grants atomic.Int64
}

type counts struct{ clients, codes, refresh, instances, grants int64 }

func (c *countingStore) snapshot() counts {
	return counts{c.clients.Load(), c.codes.Load(), c.refresh.Load(), c.instances.Load(), c.grants.Load()}
}

func (c *countingStore) CreateClient(ctx context.Context, oc store.OAuthClient) (store.OAuthClient, error) {
	r, err := c.Store.CreateClient(ctx, oc)
	if err == nil {
		c.clients.Add(1)
	}
	return r, err
}

func (c *countingStore) CreateAuthCode(ctx context.Context, ac store.AuthCode) error {
	err := c.Store.CreateAuthCode(ctx, ac)
	if err == nil {
		c.codes.Add(1)
	}
	return err
}

func (c *countingStore) CreateRefreshToken(ctx context.Context, t store.RefreshToken) error {
	err := c.Store.CreateRefreshToken(ctx, t)
	if err == nil {
		c.refresh.Add(1)
	}
	return err
}

func (c *countingStore) RotateRefreshToken(ctx context.Context, old []byte, next store.RefreshToken, now time.Time) (store.RefreshToken, error) {
	r, err := c.Store.RotateRefreshToken(ctx, old, next, now)
	if err == nil {
		c.refresh.Add(1)
	}
	return r, err
}

func (c *countingStore) GetOrCreateInstance(ctx context.Context, scope store.OwnerScope, owner, user, cfg, id string) (store.Instance, bool, error) {
	i, created, err := c.Store.GetOrCreateInstance(ctx, scope, owner, user, cfg, id)
	if err == nil && created {
		c.instances.Add(1)
	}
	return i, created, err
}

func (c *countingStore) PutGrant(ctx context.Context, g store.Grant, expect int64, ev *store.AuditEvent) (store.Grant, error) {
	r, err := c.Store.PutGrant(ctx, g, expect, ev)
	if err == nil {
		c.grants.Add(1)
	}
	return r, err
}

// env is one AS behind an httptest server, with seeded users and configs,
// an upstream MCP server, and a stand-in for Envoy on /mcp-connect/.
type env struct {
	t        testing.TB
	st       *countingStore
	srv      *Server
	hs       *httptest.Server
	base     string
	clock    *testsupport.Clock
	logs     *testsupport.SyncBuffer
	reg      *prometheus.Registry
	keys     signing.Set
	upstream *httptest.Server

	alice, bob, carol store.User   // carol is blocked
	aliceCfg          store.Config // alice's personal config (auth none)
	aliceRoute        domain.RouteRef
	bobCfg            store.Config // bob's personal config
	bobRoute          domain.RouteRef
	oauthCfg          store.Config // alice's personal oauth_dynamic config
	oauthRoute        domain.RouteRef

	mu          sync.Mutex
	planted     []string // secrets seen during the test
	errorBodies []string // bodies of every >=400 answer
	lastClaims  *domain.Claims
	ipSeq       atomic.Int64
}

var (
	testKeyOnce sync.Once
	testKeys    [2]signing.Key
)

func testSigningKeys(t testing.TB) [2]signing.Key {
	testKeyOnce.Do(func() {
		for i := range testKeys {
			k, err := signing.Generate(2048)
			if err != nil {
				panic(err)
			}
			testKeys[i] = k
		}
	})
	return testKeys
}

type envOpt func(*Options)

func newEnv(t testing.TB, st store.Store, opts ...envOpt) *env {
	t.Helper()
	e := &env{t: t, st: &countingStore{Store: st}, logs: &testsupport.SyncBuffer{}, reg: prometheus.NewRegistry()}
	e.clock = testsupport.NewClock()
	e.keys = signing.Set{Current: testSigningKeys(t)[0]}

	// The real upstream MCP server (go-sdk).
	mcpServer := mcp.NewServer(&mcp.Implementation{Name: "upstream", Version: "1.0.0"}, nil)
	mcp.AddTool(mcpServer, &mcp.Tool{Name: "echo", Description: "echo"}, func(ctx context.Context, req *mcp.CallToolRequest, in struct {
		Text string `json:"text"`
	}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "echo:" + in.Text}}}, nil, nil
	})
	e.upstream = httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return mcpServer }, nil))
	t.Cleanup(e.upstream.Close)

	mux := http.NewServeMux()
	e.hs = httptest.NewServer(mux)
	t.Cleanup(e.hs.Close)
	e.base = e.hs.URL

	aliceHash, _ := bcrypt.GenerateFromPassword([]byte(alicePassword), bcrypt.MinCost)
	bobHash, _ := bcrypt.GenerateFromPassword([]byte(bobPassword), bcrypt.MinCost)
	o := Options{
		Store:          e.st,
		Issuer:         e.base,
		Keys:           e.keys,
		Logger:         slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registry:       e.reg,
		Now:            e.clock.Now,
		ClientIPSource: ClientIPEnvoy,
		StaticUsers: []StaticUser{
			{Email: "alice@example.com", BcryptHash: string(aliceHash), DisplayName: "Alice"},
			{Email: "bob@example.com", BcryptHash: string(bobHash), DisplayName: "Bob"},
			{Email: "carol@example.com", BcryptHash: string(aliceHash), DisplayName: "Carol"},
		},
	}
	for _, f := range opts {
		f(&o)
	}
	srv, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.srv = srv
	mux.Handle("/mcp-connect/", http.HandlerFunc(e.envoyStandIn))
	mux.Handle("/", srv)
	e.plant(alicePassword, bobPassword)
	e.seed()
	t.Cleanup(func() { e.assertNoLeaks() })
	return e
}

// seed creates alice, bob (active), carol (blocked) and three configs.
func (e *env) seed() {
	ctx := context.Background()
	now := e.clock.Now()
	mk := func(email, name string, status store.UserStatus) store.User {
		u, err := e.st.CreateUser(ctx, store.User{ID: store.NewID(), Email: email, DisplayName: name, Status: store.UserActive, CreatedAt: now, UpdatedAt: now})
		if err != nil {
			e.t.Fatalf("create user: %v", err)
		}
		if status != store.UserActive {
			if u, err = e.st.SetUserStatus(ctx, u.ID, status, nil); err != nil {
				e.t.Fatalf("set status: %v", err)
			}
		}
		return u
	}
	e.alice = mk("alice@example.com", "Alice", store.UserActive)
	e.bob = mk("bob@example.com", "Bob", store.UserActive)
	e.carol = mk("carol@example.com", "Carol", store.UserBlocked)
	e.aliceCfg, e.aliceRoute = e.mkConfig(e.alice, "Alice tools", store.AuthNone)
	e.bobCfg, e.bobRoute = e.mkConfig(e.bob, "Bob tools", store.AuthNone)
	e.oauthCfg, e.oauthRoute = e.mkConfig(e.alice, "Alice OAuth upstream", store.AuthOAuthDynamic)
}

func (e *env) mkConfig(owner store.User, name string, mode store.AuthMode) (store.Config, domain.RouteRef) {
	now := e.clock.Now()
	key := domain.NewRouteKey()
	c, r, err := e.st.CreateConfig(context.Background(), store.Config{
		ID: store.NewID(), OwnerScope: store.ScopeUser, OwnerID: owner.ID, Name: name,
		RemoteURL: e.upstream.URL + "/mcp", AuthMode: mode, SharingMode: store.SingleUser,
		CreatedBy: owner.ID, CreatedAt: now, UpdatedAt: now,
	}, store.NewID(), key, nil)
	if err != nil {
		e.t.Fatalf("create config: %v", err)
	}
	return c, domain.RouteRef{Scope: r.OwnerScope, OwnerID: r.OwnerID, ConfigID: r.ConfigID, Key: r.Key}
}

func (e *env) routeURL(ref domain.RouteRef) string { return ref.URL(e.base) }

// envoyStandIn is a TEST STAND-IN for Envoy + extauthz on /mcp-connect/...:
// it verifies the gateway JWT against the AS's JWKS keys, the route
// audience and the DB recheck, answers 401 with the RFC 9728 challenge
// otherwise, and reverse-proxies to the upstream MCP server with the
// client's Authorization removed. The real data-plane path is e2e's job.
func (e *env) envoyStandIn(w http.ResponseWriter, r *http.Request) {
	ref, rest, err := domain.ParseRoutePath(r.URL.Path)
	if err != nil || rest != "" {
		http.NotFound(w, r)
		return
	}
	challenge := func(extra string) {
		w.Header().Set("WWW-Authenticate", `Bearer resource_metadata="`+e.base+"/.well-known/oauth-protected-resource"+ref.Path()+`", scope="mcp:access"`+extra)
		w.WriteHeader(http.StatusUnauthorized)
	}
	raw, ok := bearerToken(r)
	if !ok {
		challenge("")
		return
	}
	set := e.srv.Keys()
	var c domain.Claims
	_, err = jwt.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		pk, ok := set.PublicKey(kid)
		if !ok {
			return nil, fmt.Errorf("unknown kid")
		}
		return pk, nil
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(e.base), jwt.WithAudience(ref.URL(e.base)),
		jwt.WithExpirationRequired(), jwt.WithTimeFunc(e.clock.Now))
	if err != nil || !c.Consistent(ref) || !domain.HasScope(domain.ParseScope(c.Scope), domain.ScopeMCPAccess) {
		challenge(`, error="invalid_token"`)
		return
	}
	st, err := e.st.ResolveRuntime(r.Context(), store.RuntimeQuery{
		ConfigID: ref.ConfigID, RouteKey: ref.Key, OwnerScope: ref.Scope, OwnerID: ref.OwnerID,
		UserID: c.Subject, InstanceID: c.InstanceID, ConfigVersion: c.ConfigVersion, ExecutionContext: c.ExecutionContext,
	})
	if err != nil || !st.OK() {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	e.mu.Lock()
	e.lastClaims = &c
	e.mu.Unlock()
	target, _ := url.Parse(e.upstream.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1
	r.Header.Del("Authorization")
	r.Header.Del("Cookie")
	r.URL.Path = "/mcp"
	r.Host = target.Host
	rp.ServeHTTP(w, r)
}

// plant registers secret values that must never leak.
func (e *env) plant(vals ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, v := range vals {
		if len(v) >= 8 {
			e.planted = append(e.planted, v)
		}
	}
}

// assertNoLeaks searches logs, audit rows, metrics and error bodies for
// every planted secret (DESIGN §9).
func (e *env) assertNoLeaks() {
	for _, p := range e.leaks() {
		e.t.Errorf("planted secret %.6s… leaked into logs/audit/metrics/error bodies", p)
	}
	e.mu.Lock()
	n := len(e.planted)
	e.mu.Unlock()
	if n < 2 {
		e.t.Errorf("only %d planted secrets: the leak check is not exercising anything", n)
	}
}

// leaks returns the planted secrets found in logs, audit rows, metrics or
// error bodies.
func (e *env) leaks() []string {
	e.mu.Lock()
	planted := append([]string(nil), e.planted...)
	shown := append([]string(nil), e.errorBodies...)
	e.mu.Unlock()
	return testsupport.Leaked(e.t, planted, e.logs.String(), e.st, e.reg, shown)
}

// recordingTransport keeps every error body and plants every secret it
// sees in responses.
type recordingTransport struct {
	e    *env
	base http.RoundTripper
}

var secretField = regexp.MustCompile(`"(access_token|refresh_token|client_secret|registration_access_token)":"([^"]+)"`)

func (rt recordingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := rt.base.RoundTrip(r)
	if err != nil {
		return resp, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if resp.StatusCode >= 400 {
		rt.e.mu.Lock()
		rt.e.errorBodies = append(rt.e.errorBodies, string(body))
		rt.e.mu.Unlock()
	}
	for _, m := range secretField.FindAllStringSubmatch(string(body), -1) {
		rt.e.plant(m[2])
	}
	if loc := resp.Header.Get("Location"); loc != "" {
		if u, err := url.Parse(loc); err == nil && u.Query().Get("code") != "" {
			rt.e.plant(u.Query().Get("code"))
		}
	}
	for _, c := range resp.Cookies() {
		rt.e.plant(c.Value)
	}
	return resp, nil
}

// httpClient is an API client (no cookies, no redirects followed).
func (e *env) httpClient() *http.Client {
	return &http.Client{
		Transport:     recordingTransport{e: e, base: http.DefaultTransport},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// browser is a cookie-jar client that follows redirects within the AS and
// stops at any other host (the client's redirect URI).
func (e *env) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	host := e.hs.Listener.Addr().String()
	return &http.Client{
		Jar:       jar,
		Transport: recordingTransport{e: e, base: http.DefaultTransport},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Host != host || len(via) > 10 {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
}

// nextIP returns a fresh trusted client address for rate-limit isolation.
func (e *env) nextIP() string {
	n := e.ipSeq.Add(1)
	return netip.AddrFrom4([4]byte{198, 51, byte(n >> 8), byte(n)}).String()
}

func readBody(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return b
}

func decodeJSON(t *testing.T, resp *http.Response) map[string]any {
	t.Helper()
	b := readBody(t, resp)
	m := map[string]any{}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("decode %q: %v", b, err)
		}
	}
	return m
}

// register posts client metadata from a fresh trusted IP.
func (e *env) register(t *testing.T, md map[string]any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(md)
	req, _ := http.NewRequest(http.MethodPost, e.base+"/oauth/register", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Envoy-External-Address", e.nextIP())
	resp, err := e.httpClient().Do(req)
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	return resp.StatusCode, decodeJSON(t, resp)
}

const testRedirect = "http://127.0.0.1:7777/callback"

// regClient is a registered client as the test sees it.
type regClient struct {
	ID, Secret, Method, RegToken string
}

func (e *env) mustRegister(t *testing.T, method string, extra map[string]any) regClient {
	t.Helper()
	md := map[string]any{
		"redirect_uris":              []string{testRedirect},
		"token_endpoint_auth_method": method,
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"scope":                      "mcp:access profile",
		"client_name":                "Test client",
	}
	for k, v := range extra {
		md[k] = v
	}
	st, body := e.register(t, md)
	if st != http.StatusCreated {
		t.Fatalf("register: %d %v", st, body)
	}
	c := regClient{ID: body["client_id"].(string), Method: method, RegToken: body["registration_access_token"].(string)}
	if s, ok := body["client_secret"].(string); ok {
		c.Secret = s
	}
	return c
}

var hiddenField = regexp.MustCompile(`name="(csrf|req|ticket)" value="([^"]*)"`)

func formFields(body []byte) map[string]string {
	out := map[string]string{}
	for _, m := range hiddenField.FindAllSubmatch(body, -1) {
		out[string(m[1])] = string(m[2])
	}
	return out
}

// login signs the browser in as email (static user) with no pending request.
func (e *env) login(t *testing.T, b *http.Client, email, password string) {
	t.Helper()
	resp, err := b.Get(e.base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	f := formFields(readBody(t, resp))
	resp, err = b.PostForm(e.base+"/login", url.Values{"csrf": {f["csrf"]}, "req": {""}, "email": {email}, "password": {password}})
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login %s: %d %s", email, resp.StatusCode, body)
	}
}

// authParams are valid authorize parameters for client c and resource.
func authParams(clientID, resource, verifier string) url.Values {
	return url.Values{
		"response_type":         {"code"},
		"client_id":             {clientID},
		"redirect_uri":          {testRedirect},
		"scope":                 {"mcp:access"},
		"state":                 {"st-" + verifier[:6]},
		"code_challenge":        {s256(verifier)},
		"code_challenge_method": {"S256"},
		"resource":              {resource},
	}
}

// authorize runs GET /oauth/authorize in browser b (following redirects
// within the AS).
func (e *env) authorize(t *testing.T, b *http.Client, q url.Values) *http.Response {
	t.Helper()
	resp, err := b.Get(e.base + "/oauth/authorize?" + q.Encode())
	if err != nil {
		t.Fatalf("authorize: %v", err)
	}
	return resp
}

// consentForm reaches the consent page for q as the signed-in browser and
// returns its hidden fields.
func (e *env) consentForm(t *testing.T, b *http.Client, q url.Values) map[string]string {
	t.Helper()
	resp := e.authorize(t, b, q)
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`action="/oauth/consent"`)) {
		t.Fatalf("expected consent page, got %d %s %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	f := formFields(body)
	e.plant(f["csrf"], f["ticket"])
	return f
}

func (e *env) decide(t *testing.T, b *http.Client, f map[string]string, decision string) *http.Response {
	t.Helper()
	resp, err := b.PostForm(e.base+"/oauth/consent", url.Values{"csrf": {f["csrf"]}, "req": {f["req"]}, "ticket": {f["ticket"]}, "decision": {decision}})
	if err != nil {
		t.Fatalf("consent: %v", err)
	}
	return resp
}

// codeFor runs authorize + consent(allow) for a signed-in browser and
// returns the code from the redirect.
func (e *env) codeFor(t *testing.T, b *http.Client, q url.Values) string {
	t.Helper()
	resp := e.decide(t, b, e.consentForm(t, b, q), "allow")
	readBody(t, resp)
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || loc.Query().Get("code") == "" {
		t.Fatalf("expected code redirect, got %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if loc.Query().Get("iss") != e.base || loc.Query().Get("state") != q.Get("state") {
		t.Fatalf("redirect lacks iss/state: %s", loc)
	}
	return loc.Query().Get("code")
}

// tokenReq posts to the token endpoint authenticating as c with its
// registered method.
func (e *env) tokenReq(t *testing.T, c regClient, form url.Values) (int, map[string]any) {
	t.Helper()
	return e.tokenReqAs(t, c, c.Method, form)
}

func (e *env) tokenReqAs(t *testing.T, c regClient, method string, form url.Values) (int, map[string]any) {
	t.Helper()
	return e.formPost(t, "/oauth/token", c, method, form)
}

func (e *env) formPost(t *testing.T, path string, c regClient, method string, form url.Values) (int, map[string]any) {
	t.Helper()
	f := url.Values{}
	for k, v := range form {
		f[k] = v
	}
	req, _ := http.NewRequest(http.MethodPost, e.base+path, nil)
	switch method {
	case authBasic:
		req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
	case authPost:
		f.Set("client_id", c.ID)
		f.Set("client_secret", c.Secret)
	default:
		f.Set("client_id", c.ID)
	}
	req.Body = io.NopCloser(strings.NewReader(f.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := e.httpClient().Do(req)
	if err != nil {
		t.Fatalf("post %s: %v", path, err)
	}
	if resp.StatusCode == http.StatusOK && path == "/oauth/token" && resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("token response without Cache-Control: no-store")
	}
	return resp.StatusCode, decodeJSON(t, resp)
}

func exchangeForm(code, verifier, resource string) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {testRedirect},
		"code_verifier": {verifier}, "resource": {resource}}
}

// verifier returns a fresh PKCE verifier (planted).
func (e *env) verifier() string {
	v := "v" + strings.ReplaceAll(store.NewID()+store.NewID(), "-", "")
	e.plant(v)
	return v
}

// parseJWT verifies an access token with the AS keys (at the fake clock).
func (e *env) parseJWT(t *testing.T, raw string) *domain.Claims {
	t.Helper()
	var c domain.Claims
	tok, err := jwt.ParseWithClaims(raw, &c, func(tk *jwt.Token) (any, error) {
		kid, _ := tk.Header["kid"].(string)
		set := e.srv.Keys()
		pk, ok := set.PublicKey(kid)
		if !ok {
			return nil, fmt.Errorf("unknown kid %q", kid)
		}
		return pk, nil
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithTimeFunc(e.clock.Now))
	if err != nil || !tok.Valid {
		t.Fatalf("parse JWT: %v", err)
	}
	return &c
}

// allowLoopbackCIMD lets the AS fetch metadata documents from a loopback
// TLS test server (dev/test allowlist + the test CA).
func allowLoopbackCIMD(pool *x509.CertPool) envOpt {
	return func(o *Options) {
		o.CIMD.Allow = addrpolicy.Allowlist{Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
		o.CIMD.RootCAs = pool
	}
}

func newMem() store.Store { return memory.New() }
