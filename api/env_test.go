package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"mcpgw/api"
	"mcpgw/domain/secrets"
	"mcpgw/domain/signing"
	"mcpgw/oauthserver"
	"mcpgw/store"
	"mcpgw/store/memory"
	"mcpgw/store/postgres"
	"mcpgw/store/postgres/pgtest"
)

// t0 is the fixed test clock: nothing here depends on wall-clock time.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const publicBase = "https://gw.example.com"

// fakeResolver answers from a table; unknown hosts do not resolve.
type fakeResolver map[string][]netip.Addr

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := f[strings.ToLower(strings.TrimSuffix(host, "."))]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

var resolver = fakeResolver{
	"mcp.example.com":      {netip.MustParseAddr("93.184.216.34")},
	"other.example.com":    {netip.MustParseAddr("93.184.216.35"), netip.MustParseAddr("2606:2800:220:1:248:1893:25c8:1946")},
	"internal.example.com": {netip.MustParseAddr("10.1.2.3")},
	"mixed.example.com":    {netip.MustParseAddr("93.184.216.34"), netip.MustParseAddr("192.168.1.1")},
	"v6local.example.com":  {netip.MustParseAddr("fd00::1")},
	"metadata.example.com": {netip.MustParseAddr("169.254.169.254")},
}

var (
	keyOnce sync.Once
	sigKey  signing.Key
	keyErr  error
)

func testKey(t testing.TB) signing.Key {
	keyOnce.Do(func() { sigKey, keyErr = signing.Generate(2048) })
	if keyErr != nil {
		t.Fatalf("signing key: %v", keyErr)
	}
	return sigKey
}

// env is one API server over one store.
type env struct {
	t    testing.TB
	ctx  context.Context
	st   store.Store
	kr   *secrets.KeyRing
	keys *signing.Set
	srv  *httptest.Server
	url  string
}

type storeKind struct {
	name string
	open func(t testing.TB) store.Store
}

func stores() []storeKind {
	return []storeKind{
		{"memory", func(t testing.TB) store.Store {
			s := memory.New(memory.WithClock(func() time.Time { return t0 }))
			t.Cleanup(s.Close)
			return s
		}},
		{"postgres", func(t testing.TB) store.Store {
			dsn := pgtest.DSN(t)
			s, err := postgres.Open(context.Background(), dsn)
			if err != nil {
				t.Fatalf("postgres.Open: %v", err)
			}
			t.Cleanup(s.Close)
			return s
		}},
	}
}

// forEachStore runs fn against the memory store and a real Postgres.
func forEachStore(t *testing.T, fn func(t *testing.T, e *env)) {
	for _, sk := range stores() {
		t.Run(sk.name, func(t *testing.T) {
			fn(t, newEnv(t, sk.open(t), 0))
		})
	}
}

func newEnv(t testing.TB, st store.Store, maxBody int64) *env {
	t.Helper()
	return newEnvWith(t, st, func(o *api.Options) { o.MaxBodyBytes = maxBody })
}

// newEnvWith builds an env whose API options mod may change.
func newEnvWith(t testing.TB, st store.Store, mod func(*api.Options)) *env {
	t.Helper()
	k, err := secrets.NewKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	kr, err := secrets.NewKeyRing(k)
	if err != nil {
		t.Fatal(err)
	}
	set, err := signing.NewSet(testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	clock := func() time.Time { return t0 }
	as, err := oauthserver.New(oauthserver.Options{Store: st, Issuer: "http://127.0.0.1", PublicBaseURL: publicBase, Keys: *set, Now: clock,
		Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	opts := api.Options{Store: st, Authenticate: as.Authenticate, KeyRing: kr, PublicBaseURL: publicBase,
		Resolver: resolver, Now: clock, Logger: quietLogger()}
	if mod != nil {
		mod(&opts)
	}
	h, err := api.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Mount(as); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(as)
	t.Cleanup(srv.Close)
	return &env{t: t, ctx: context.Background(), st: st, kr: kr, keys: set, srv: srv, url: srv.URL}
}

// principal is a seeded user with an API token.
type principal struct {
	user  store.User
	token string
}

func (e *env) user(email string, admin bool) principal {
	e.t.Helper()
	u, err := e.st.CreateUser(e.ctx, store.User{ID: store.NewID(), Email: email, Status: store.UserActive, SystemAdmin: admin, CreatedAt: t0, UpdatedAt: t0})
	if err != nil {
		e.t.Fatalf("CreateUser: %v", err)
	}
	tok, err := api.IssueAPIToken(e.ctx, e.st, u.ID, "test", 0, t0)
	if err != nil {
		e.t.Fatalf("IssueAPIToken: %v", err)
	}
	return principal{user: u, token: tok.Token}
}

// resp is one API answer.
type resp struct {
	status int
	body   []byte
}

func (r resp) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (r resp) errCode(t testing.TB) string {
	t.Helper()
	var b api.ErrorBody
	if err := json.Unmarshal(r.body, &b); err != nil || b.Error.Code == "" {
		t.Fatalf("not an error body (status %d): %s", r.status, r.body)
	}
	return b.Error.Code
}

// do sends a request with token (empty: anonymous) and body (string or a
// value to marshal; nil: none).
func (e *env) do(token, method, path string, body any) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if ct := res.Header.Get("Content-Type"); res.StatusCode != http.StatusNoContent && !strings.HasPrefix(ct, "application/json") {
		e.t.Fatalf("%s %s: Content-Type %q, body %s", method, path, ct, b)
	}
	return resp{status: res.StatusCode, body: b}
}

// must sends and requires the status.
func (e *env) must(want int, token, method, path string, body any) resp {
	e.t.Helper()
	r := e.do(token, method, path, body)
	if r.status != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	return r
}

// orgConfigBody is a valid org config request.
func orgConfigBody(orgID, name string, sharing store.SharingMode, mode store.AuthMode) map[string]any {
	b := map[string]any{"owner_scope": "org", "owner_id": orgID, "name": name, "remote_url": "https://mcp.example.com/mcp",
		"auth_mode": string(mode), "sharing_mode": string(sharing)}
	if mode == store.AuthStaticHeaders {
		b["static_headers"] = map[string]string{"Authorization": "Bearer upstream-secret-" + name}
	}
	return b
}

// createConfig creates a config through the API and returns its view.
func (e *env) createConfig(token string, body map[string]any) api.ConfigView {
	e.t.Helper()
	var v api.ConfigView
	e.must(http.StatusCreated, token, "POST", "/api/v1/configs", body).decode(e.t, &v)
	return v
}

// instanceWithGrant creates the user's instance of cfg with a grant.
func (e *env) instanceWithGrant(cfg api.ConfigView, userID string) store.Instance {
	e.t.Helper()
	inst, _, err := e.st.GetOrCreateInstance(e.ctx, store.OwnerScope(cfg.OwnerScope), cfg.OwnerID, userID, cfg.ID, store.NewID())
	if err != nil {
		e.t.Fatalf("GetOrCreateInstance: %v", err)
	}
	exp := t0.Add(time.Hour)
	if _, err := e.st.PutGrant(e.ctx, store.Grant{InstanceID: inst.ID, AccessToken: []byte("ct-access"), RefreshToken: []byte("ct-refresh"),
		TokenType: "Bearer", Scope: "read", ExpiresAt: &exp, UpdatedAt: t0}, -1, nil); err != nil {
		e.t.Fatalf("PutGrant: %v", err)
	}
	return inst
}

func (e *env) instance(id string) store.Instance {
	e.t.Helper()
	i, err := e.st.GetInstance(e.ctx, id)
	if err != nil {
		e.t.Fatalf("GetInstance: %v", err)
	}
	return i
}

func (e *env) hasGrant(instanceID string) bool {
	e.t.Helper()
	_, err := e.st.GetGrant(e.ctx, instanceID)
	return err == nil
}

// logs collects every log line of every test server, so planted-secret
// tests can search them.
var logs lockedBuffer

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// doRaw sends body with an explicit Content-Type.
func (e *env) doRaw(token, method, path, contentType, body string) resp {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", contentType)
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{status: res.StatusCode, body: b}
}
