package provider_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"mcpgw/domain"
	"mcpgw/domain/addrpolicy"
	"mcpgw/domain/secrets"
	"mcpgw/domain/signing"
	"mcpgw/internal/testsupport"
	"mcpgw/oauthserver"
	"mcpgw/provider"
	"mcpgw/provider/providertest"
	"mcpgw/store"
)

const (
	alicePassword = "planted-Alice-Password-4a1c3e"
	bobPassword   = "planted-Bob-Password-9b2d7f"
	testRedirect  = "http://127.0.0.1:7777/callback"
	// staticSecret is the operator's upstream client secret (oauth_static).
	staticSecret = "planted-static-client-secret-5e6f"
)

var (
	keyOnce sync.Once
	sigKey  signing.Key
)

// env is a first-level AS (oauthserver) with a provider plugged in, a
// test upstream AS and a test upstream MCP server, users alice and bob
// and one OAuth-mode config of alice's.
type env struct {
	t      *testing.T
	st     store.Store
	kr     *secrets.KeyRing
	clock  *testsupport.Clock
	logs   *testsupport.SyncBuffer
	reg    *prometheus.Registry
	srv    *oauthserver.Server
	prov   *provider.Provider
	hs     *httptest.Server
	base   string
	as     *providertest.AS
	mcp    *providertest.MCP
	alice  store.User
	bob    store.User
	cfg    store.Config
	route  domain.RouteRef
	client string // first-level client id

	mu      sync.Mutex
	planted []string
	bodies  []string // every response body and Location the browser saw
}

type envConfig struct {
	mode    store.AuthMode
	as      providertest.ASOptions
	mcp     providertest.MCPOptions
	prov    func(*provider.Options)
	setCfg  func(e *env, c *store.Config)
	noAllow bool
}

func newEnv(t *testing.T, st store.Store, ec envConfig) *env {
	t.Helper()
	if ec.mode == "" {
		ec.mode = store.AuthOAuthDynamic
	}
	keyOnce.Do(func() {
		k, err := signing.Generate(2048)
		if err != nil {
			panic(err)
		}
		sigKey = k
	})
	k, err := secrets.NewKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	kr, err := secrets.NewKeyRing(k)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st, kr: kr, logs: &testsupport.SyncBuffer{}, reg: prometheus.NewRegistry()}
	e.clock = testsupport.NewClock()
	if ec.mode == store.AuthOAuthStatic {
		ec.as.StaticClients = map[string]string{"static-client": staticSecret}
	}
	e.as = providertest.NewAS(t, ec.as)
	e.mcp = providertest.NewMCP(t, e.as, ec.mcp)
	logger := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	mux := http.NewServeMux()
	e.hs = httptest.NewServer(mux)
	t.Cleanup(e.hs.Close)
	e.base = e.hs.URL

	po := provider.Options{
		Store: st, KeyRing: kr, BaseURL: e.base, Logger: logger, Registry: e.reg, Now: e.clock.Now,
		Allow: providertest.Allowlist(), RootCAs: providertest.CertPool(t), Timeout: 2 * time.Second,
	}
	if ec.noAllow {
		po.Allow = addrpolicy.Allowlist{} // production policy: loopback refused
	}
	if ec.prov != nil {
		ec.prov(&po)
	}
	e.prov, err = provider.New(po)
	if err != nil {
		t.Fatalf("provider.New: %v", err)
	}
	ah, _ := bcrypt.GenerateFromPassword([]byte(alicePassword), bcrypt.MinCost)
	bh, _ := bcrypt.GenerateFromPassword([]byte(bobPassword), bcrypt.MinCost)
	e.srv, err = oauthserver.New(oauthserver.Options{
		Store: st, Issuer: e.base, Keys: signing.Set{Current: sigKey}, Logger: logger, Registry: e.reg,
		Now: e.clock.Now, Provider: e.prov,
		StaticUsers: []oauthserver.StaticUser{
			{Email: "alice@example.com", BcryptHash: string(ah)},
			{Email: "bob@example.com", BcryptHash: string(bh)},
		},
	})
	if err != nil {
		t.Fatalf("oauthserver.New: %v", err)
	}
	e.prov.Bind(e.srv)
	if err := e.prov.Mount(e.srv); err != nil {
		t.Fatalf("mount: %v", err)
	}
	mux.Handle("/", e.srv)
	e.plant(alicePassword, bobPassword, staticSecret)

	ctx := context.Background()
	now := e.clock.Now()
	mk := func(email string) store.User {
		u, err := st.CreateUser(ctx, store.User{ID: store.NewID(), Email: email, Status: store.UserActive, CreatedAt: now, UpdatedAt: now})
		if err != nil {
			t.Fatalf("create user: %v", err)
		}
		return u
	}
	e.alice, e.bob = mk("alice@example.com"), mk("bob@example.com")
	e.cfg, e.route = e.mkConfig(e.alice, ec.mode, ec.setCfg)
	e.client = e.registerClient()
	t.Cleanup(e.assertNoLeaks)
	return e
}

func (e *env) mkConfig(owner store.User, mode store.AuthMode, set func(*env, *store.Config)) (store.Config, domain.RouteRef) {
	e.t.Helper()
	now := e.clock.Now()
	c := store.Config{
		ID: store.NewID(), OwnerScope: store.ScopeUser, OwnerID: owner.ID, Name: "Upstream files",
		RemoteURL: e.mcp.URL, AuthMode: mode, SharingMode: store.SingleUser, CreatedBy: owner.ID,
		CreatedAt: now, UpdatedAt: now,
	}
	if mode == store.AuthOAuthStatic {
		ct, err := provider.SealClientCredentials(e.kr, c.ID, provider.StaticCredentials{ClientID: "static-client", ClientSecret: staticSecret})
		if err != nil {
			e.t.Fatal(err)
		}
		c.Provider.ClientCredentials = ct
	}
	if set != nil {
		set(e, &c)
	}
	cfg, r, err := e.st.CreateConfig(context.Background(), c, store.NewID(), domain.NewRouteKey(), nil)
	if err != nil {
		e.t.Fatalf("create config: %v", err)
	}
	return cfg, domain.RouteRef{Scope: r.OwnerScope, OwnerID: r.OwnerID, ConfigID: r.ConfigID, Key: r.Key}
}

func (e *env) plant(vals ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, v := range vals {
		if len(v) >= 8 {
			e.planted = append(e.planted, v)
		}
	}
}

// assertNoLeaks (DESIGN §9): no upstream token, code, client secret or
// password appears in logs, audit rows, metrics or anything the browser
// was shown (pages, Location headers).
func (e *env) assertNoLeaks() {
	e.plant(e.as.Issued()...)
	e.mu.Lock()
	planted := append([]string(nil), e.planted...)
	shown := append([]string(nil), e.bodies...)
	e.mu.Unlock()
	for _, p := range testsupport.Leaked(e.t, planted, e.logs.String(), e.st, e.reg, shown) {
		e.t.Errorf("planted secret %.10s… leaked into logs/audit/metrics/browser-visible output", p)
	}
}

// registerClient registers a public first-level client (RFC 7591).
func (e *env) registerClient() string {
	e.t.Helper()
	b, _ := json.Marshal(map[string]any{
		"redirect_uris": []string{testRedirect}, "token_endpoint_auth_method": "none",
		"grant_types": []string{"authorization_code", "refresh_token"}, "scope": "mcp:access",
		"client_name": "Test client",
	})
	resp, err := http.Post(e.base+"/oauth/register", "application/json", bytes.NewReader(b))
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != http.StatusCreated {
		e.t.Fatalf("register: %d %v", resp.StatusCode, out)
	}
	return out["client_id"].(string)
}

// browser is a cookie-jar client trusting the test CA. It follows
// redirects within the first-level AS and the upstream AS, and stops at
// the first-level client's redirect URI, or wherever stop says.
type browser struct {
	e  *env
	hc *http.Client
}

func (e *env) browser(stop func(*url.URL) bool) *browser {
	jar, _ := cookiejar.New(nil)
	b := &browser{e: e}
	asHost := strings.TrimPrefix(e.as.URL, "https://")
	myHost := strings.TrimPrefix(e.base, "http://")
	b.hc = &http.Client{
		Jar: jar,
		Transport: recorder{e: e, base: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: providertest.CertPool(e.t)},
		}},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > 10 || (stop != nil && stop(req.URL)) || (req.URL.Host != asHost && req.URL.Host != myHost) {
				return http.ErrUseLastResponse
			}
			return nil
		},
		Timeout: 30 * time.Second,
	}
	return b
}

// recorder keeps everything the browser was shown, for the leak check.
type recorder struct {
	e    *env
	base http.RoundTripper
}

func (r recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	// What the upstream AS shows is not ours; what mcpgw shows is.
	if strings.HasPrefix(req.URL.String(), r.e.base) {
		r.e.mu.Lock()
		// (the interstitial carries the upstream authorization URL with
		// its state by design: that is the hand-off to the upstream)
		interstitial := bytes.Contains(body, []byte(`http-equiv="refresh" content="0; url=`+r.e.as.URL))
		if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, testRedirect) && !interstitial {
			// (a redirect to the client repeats the Location, code
			// included, as a link in its body: that is the delivery)
			r.e.bodies = append(r.e.bodies, string(body))
		}
		if loc := resp.Header.Get("Location"); loc != "" && !strings.HasPrefix(loc, r.e.as.URL) {
			// our own redirects to the client: the first-level code is
			// expected there, upstream values are not.
			r.e.bodies = append(r.e.bodies, stripParam(loc, "code"))
		}
		r.e.mu.Unlock()
	}
	return resp, nil
}

func stripParam(loc, name string) string {
	u, err := url.Parse(loc)
	if err != nil {
		return loc
	}
	q := u.Query()
	q.Del(name)
	u.RawQuery = q.Encode()
	return u.String()
}

var hiddenField = regexp.MustCompile(`name="(csrf|req|ticket)" value="([^"]*)"`)

func fields(body []byte) map[string]string {
	out := map[string]string{}
	for _, m := range hiddenField.FindAllSubmatch(body, -1) {
		out[string(m[1])] = string(m[2])
	}
	return out
}

func read(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *browser) login(email, password string) {
	t := b.e.t
	t.Helper()
	resp, err := b.hc.Get(b.e.base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	f := fields(read(t, resp))
	resp, err = b.hc.PostForm(b.e.base+"/login", url.Values{"csrf": {f["csrf"]}, "req": {""}, "email": {email}, "password": {password}})
	if err != nil {
		t.Fatal(err)
	}
	if body := read(t, resp); resp.StatusCode != http.StatusOK {
		t.Fatalf("login: %d %s", resp.StatusCode, body)
	}
}

func s256(v string) string {
	s := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(s[:])
}

// authorizeParams are first-level authorize parameters for the env's
// client and route.
func (e *env) authorizeParams(verifier string) url.Values {
	return url.Values{
		"response_type": {"code"}, "client_id": {e.client}, "redirect_uri": {testRedirect},
		"scope": {"mcp:access"}, "state": {"client-state-1"}, "code_challenge": {s256(verifier)},
		"code_challenge_method": {"S256"}, "resource": {e.route.URL(e.base)},
	}
}

// consent runs authorize → consent(allow) in a signed-in browser and
// returns the final response (after the redirects the browser follows).
func (b *browser) consent(q url.Values) *http.Response {
	t := b.e.t
	t.Helper()
	resp, err := b.hc.Get(b.e.base + "/oauth/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	body := read(t, resp)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`action="/oauth/consent"`)) {
		t.Fatalf("expected consent page, got %d %s", resp.StatusCode, body)
	}
	f := fields(body)
	resp, err = b.hc.PostForm(b.e.base+"/oauth/consent", url.Values{"csrf": {f["csrf"]}, "req": {f["req"]}, "ticket": {f["ticket"]}, "decision": {"allow"}})
	if err != nil {
		t.Fatal(err)
	}
	body = read(t, resp)
	// The provider flow continues upstream through an interstitial page
	// (meta refresh), as a browser would.
	if m := metaRefresh.FindSubmatch(body); resp.StatusCode == http.StatusOK && m != nil {
		if !bytes.Contains(body, []byte(`id="continue"`)) || resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("interstitial without link or no-store")
		}
		return b.get(html.UnescapeString(string(m[1])))
	}
	return resp
}

var metaRefresh = regexp.MustCompile(`<meta http-equiv="refresh" content="0; url=([^"]+)">`)

// get follows a URL in the browser.
func (b *browser) get(u string) *http.Response {
	b.e.t.Helper()
	resp, err := b.hc.Get(u)
	if err != nil {
		b.e.t.Fatal(err)
	}
	read(b.e.t, resp)
	return resp
}

// clientRedirect parses a response that must be a redirect to the
// first-level client's redirect URI.
func clientRedirect(t *testing.T, resp *http.Response) url.Values {
	t.Helper()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, testRedirect) {
		t.Fatalf("expected redirect to the client, got %d %q", resp.StatusCode, loc)
	}
	u, _ := url.Parse(loc)
	return u.Query()
}

// instance returns alice's non-terminal instance of the env config.
func (e *env) instance() (store.Instance, bool) {
	ins, err := e.st.ListInstances(context.Background(), e.alice.ID, e.cfg.ID, false)
	if err != nil {
		e.t.Fatal(err)
	}
	if len(ins) == 0 {
		return store.Instance{}, false
	}
	return ins[0], true
}

// grant returns alice's current grant, if any.
func (e *env) grant() (store.Grant, bool) {
	in, ok := e.instance()
	if !ok {
		return store.Grant{}, false
	}
	g, err := e.st.GetGrant(context.Background(), in.ID)
	if err != nil {
		return store.Grant{}, false
	}
	return g, true
}

// authorizeOK runs the whole flow for alice and returns the first-level
// code.
func (e *env) authorizeOK(b *browser, verifier string) string {
	e.t.Helper()
	q := clientRedirect(e.t, b.consent(e.authorizeParams(verifier)))
	if q.Get("code") == "" || q.Get("state") != "client-state-1" || q.Get("iss") != e.base {
		e.t.Fatalf("expected a first-level code, got %v", redactQuery(q))
	}
	return q.Get("code")
}

func redactQuery(q url.Values) url.Values {
	out := url.Values{}
	for k, v := range q {
		if k == "code" {
			out[k] = []string{"<redacted>"}
			continue
		}
		out[k] = v
	}
	return out
}

// exchange redeems a first-level code at /oauth/token.
func (e *env) exchange(code, verifier string) (int, map[string]any) {
	e.t.Helper()
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {testRedirect},
		"code_verifier": {verifier}, "client_id": {e.client}, "resource": {e.route.URL(e.base)}}
	resp, err := http.PostForm(e.base+"/oauth/token", form)
	if err != nil {
		e.t.Fatal(err)
	}
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if at, ok := out["access_token"].(string); ok {
		e.plant(at)
	}
	if rt, ok := out["refresh_token"].(string); ok {
		e.plant(rt)
	}
	return resp.StatusCode, out
}

// runtimeState is what extauthz hands EnsureFresh for alice's instance.
func (e *env) runtimeState() store.RuntimeState {
	e.t.Helper()
	in, ok := e.instance()
	if !ok {
		e.t.Fatal("no instance")
	}
	st, err := e.st.ResolveRuntime(context.Background(), store.RuntimeQuery{
		ConfigID: e.route.ConfigID, RouteKey: e.route.Key, OwnerScope: e.route.Scope, OwnerID: e.route.OwnerID,
		UserID: e.alice.ID, InstanceID: in.ID, ConfigVersion: e.cfg.Version, ExecutionContext: e.route.ExecutionContext(),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if !st.OK() {
		e.t.Fatalf("runtime state not OK: %s", st.Reason)
	}
	return st
}

func (e *env) open(ct []byte, col, instanceID string) string {
	e.t.Helper()
	pt, err := e.kr.Open(ct, secrets.AAD("grants", col, instanceID))
	if err != nil {
		e.t.Fatalf("open %s: %v", col, err)
	}
	return string(pt)
}
