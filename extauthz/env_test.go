package extauthz

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"mcpgw/domain"
	"mcpgw/domain/secrets"
	"mcpgw/domain/signing"
	"mcpgw/store"
)

const (
	testIssuer = "https://gw.example.test"
	testBase   = "https://gw.example.test"
	testOrigin = "https://app.example.test"
)

var (
	keysOnce          sync.Once
	testKey, otherKey signing.Key
	testKeyErr        error
	testEncKey        secrets.Key
	testKR            *secrets.KeyRing
)

// fixtureKeys generates the RSA keys once per test binary (2048-bit
// generation is slow).
func fixtureKeys(t testing.TB) (signing.Key, signing.Key, *secrets.KeyRing) {
	t.Helper()
	keysOnce.Do(func() {
		testKey, testKeyErr = signing.Generate(2048)
		if testKeyErr != nil {
			return
		}
		otherKey, testKeyErr = signing.Generate(2048)
		if testKeyErr != nil {
			return
		}
		// Same kid, different key: a forged signature must not verify.
		testEncKey, testKeyErr = secrets.NewKey("k1")
		if testKeyErr != nil {
			return
		}
		testKR, testKeyErr = secrets.NewKeyRing(testEncKey)
	})
	if testKeyErr != nil {
		t.Fatalf("fixture keys: %v", testKeyErr)
	}
	return testKey, otherKey, testKR
}

// clock is an injectable clock (Tailscale tstest style): tests move it
// instead of sleeping.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 11, 26, 14, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// fakeStore answers ResolveRuntime with a programmable state and records
// queries and audit rows. Its zero value denies everything as
// route_not_found.
type fakeStore struct {
	mu      sync.Mutex
	state   store.RuntimeState
	err     error
	queries []store.RuntimeQuery
	audit   []store.AuditEvent
	// auditCalls counts AppendAudit calls.
	auditCalls int
}

func (f *fakeStore) ResolveRuntime(_ context.Context, q store.RuntimeQuery) (store.RuntimeState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries = append(f.queries, q)
	if f.err != nil {
		return store.RuntimeState{}, f.err
	}
	if f.state.Reason == "" && f.state.InstanceID == "" {
		return store.RuntimeState{Reason: store.ReasonRouteNotFound}, nil
	}
	return f.state, nil
}

func (f *fakeStore) AppendAudit(_ context.Context, evs ...store.AuditEvent) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.audit = append(f.audit, evs...)
	f.auditCalls++
	return nil
}

func (f *fakeStore) QueryAudit(context.Context, store.AuditFilter) ([]store.AuditEvent, int64, error) {
	return nil, 0, nil
}

func (f *fakeStore) nQueries() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.queries)
}

// env is one extauthz server on a loopback gRPC listener with a real
// client.
type env struct {
	t      testing.TB
	srv    *Server
	client authv3.AuthorizationClient
	clock  *clock
	key    signing.Key
	kr     *secrets.KeyRing
	reg    *prometheus.Registry
	logs   *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newEnv(t testing.TB, st Store, mod func(*Options)) *env {
	t.Helper()
	key, _, kr := fixtureKeys(t)
	set, err := signing.NewSet(key)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, clock: newClock(), key: key, kr: kr, reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	opts := Options{
		Store:          st,
		Keys:           StaticKeys(set),
		Issuer:         testIssuer,
		PublicBaseURL:  testBase,
		AllowedOrigins: []string{testOrigin},
		KeyRing:        kr,
		Registry:       e.reg,
		Logger:         slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:            e.clock.Now,
		Audit:          AuditOptions{FlushInterval: 10 * time.Millisecond},
	}
	if mod != nil {
		mod(&opts)
	}
	e.srv, err = New(opts)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	e.srv.Register(g)
	go func() { _ = g.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	e.client = authv3.NewAuthorizationClient(conn)
	t.Cleanup(func() {
		conn.Close()
		g.Stop()
		e.srv.Close()
	})
	return e
}

// route is one test route plus the ids a token for it carries.
type route struct {
	ref        domain.RouteRef
	userID     string
	instanceID string
	version    int64
}

func newRoute(scope store.OwnerScope) route {
	user := store.NewID()
	owner := user
	if scope == store.ScopeOrg {
		owner = store.NewID()
	}
	return route{
		ref:        domain.RouteRef{Scope: scope, OwnerID: owner, ConfigID: store.NewID(), Key: domain.NewRouteKey()},
		userID:     user,
		instanceID: store.NewID(),
		version:    1,
	}
}

// claims returns valid gateway claims for r at now.
func (r route) claims(now time.Time) *domain.Claims {
	return &domain.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    testIssuer,
			Subject:   r.userID,
			Audience:  jwt.ClaimStrings{r.ref.URL(testBase)},
			ExpiresAt: jwt.NewNumericDate(now.Add(15 * time.Minute)),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        store.NewID(),
		},
		Scope:            domain.ScopeMCPAccess,
		ClientID:         "dcr:test-client",
		MCPID:            r.ref.MCPID(),
		OwnerScope:       string(r.ref.Scope),
		OwnerID:          r.ref.OwnerID,
		ConfigID:         r.ref.ConfigID,
		RouteKey:         r.ref.Key,
		InstanceID:       r.instanceID,
		ExecutionContext: r.ref.ExecutionContext(),
		ConfigVersion:    r.version,
	}
}

func mint(t testing.TB, k signing.Key, c jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	tok.Header["kid"] = k.ID
	s, err := tok.SignedString(k.Private)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fixture loads a protojson CheckRequest from testdata, filling in the
// route and the token.
func fixture(t testing.TB, name string, r route, path, token string) *authv3.CheckRequest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if path == "" {
		path = r.ref.Path()
	}
	jsonStr := func(s string) string { // value inside a JSON string literal
		q, _ := json.Marshal(s)
		return string(q[1 : len(q)-1])
	}
	rep := strings.NewReplacer(
		"{{PATH}}", jsonStr(path),
		"{{PATH_B64}}", base64.StdEncoding.EncodeToString([]byte(path)),
		"{{TOKEN}}", jsonStr(token),
		"{{AUTH_B64}}", base64.StdEncoding.EncodeToString([]byte("Bearer "+token)),
		"{{CONFIG_ID}}", r.ref.ConfigID,
		"{{OWNER_ID}}", r.ref.OwnerID,
		"{{OWNER_SCOPE}}", string(r.ref.Scope),
		"{{ROUTE_KEY}}", r.ref.Key,
	)
	req := &authv3.CheckRequest{}
	if err := protojson.Unmarshal([]byte(rep.Replace(string(b))), req); err != nil {
		t.Fatalf("fixture %s: %v", name, err)
	}
	return req
}

// okState is a passing recheck for r with the given auth mode.
func okState(r route, mode store.AuthMode) store.RuntimeState {
	return store.RuntimeState{
		Config: store.RuntimeConfig{
			ID: r.ref.ConfigID, AuthMode: mode, Version: r.version,
			RemoteURL: "https://upstream.example.test/mcp",
		},
		InstanceID:   r.instanceID,
		GrantVersion: 1,
	}
}
