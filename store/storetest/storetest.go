// Package storetest is the one conformance suite for store.Store, run
// against every implementation (store/memory and store/postgres) in the
// manner of Dex's storage/conformance: each implementation's own _test.go
// calls Run with a constructor for a fresh, empty store, and the same cases
// prove the same contracts — the doc comments on store.Store — everywhere.
//
// Every case passes fixed times (time.Date) to the store and waits for
// asynchronous results (the change feed) with deadlines, never fixed sleeps.
// The race cases are meant to be run with -race.
//
// Where the interface doc is silent the suite pins the answer every
// implementation gives, so callers can rely on it:
//
//   - an operation addressing a row that does not exist (SetMemberRole,
//     SetConfigStatus, EndInstance, PutGrant, RevokeGrant, LockGrant,
//     UpdateClient, SetAuthRequestUser) returns ErrNotFound;
//   - nil function arguments, a LockGrant fn that returns an invalid grant,
//     and a zero "now" are ErrInvalid, as is an invalid audit event passed
//     to a mutating method (and the mutation does not happen);
//   - a refused change writes no audit event;
//   - RevokeFamily counts consumed tokens too;
//   - rate-limit windows are aligned to multiples of the window;
//   - a closed store answers ErrUnavailable; a call with an ended context
//     fails and changes nothing;
//   - values passed in and handed out are copies.
//
// Cases that build a disjoint world (fresh random ids, a per-subtest salt
// for hashes) share one store per area; cases that list everything get a
// fresh store.
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"mcpgw/domain"
	"mcpgw/store"
)

// NewStore returns a fresh, empty store. Run closes each store it obtains
// when the subtest that obtained it ends, before any cleanup newStore
// registered runs (so a throwaway database can be dropped after its pool is
// closed); Close must therefore tolerate being called more than once.
type NewStore func(t *testing.T) store.Store

// area is one top-level group of conformance subtests.
type area struct {
	name string
	run  func(t *testing.T, newStore NewStore)
}

// areas lists every group in the order Run executes them.
var areas = []area{
	{"Invalid", testInvalid},
	{"Users", testUsers},
	{"APITokens", testAPITokens},
	{"Sessions", testSessions},
	{"Orgs", testOrgs},
	{"Configs", testConfigs},
	{"Routes", testRoutes},
	{"Assignments", testAssignments},
	{"ListUsable", testListUsable},
	{"Instances", testInstances},
	{"Grants", testGrants},
	{"OAuthClients", testOAuthClients},
	{"AuthRequests", testAuthRequests},
	{"ConsentTickets", testConsentTickets},
	{"AuthCodes", testAuthCodes},
	{"RefreshTokens", testRefreshTokens},
	{"RateLimits", testRateLimits},
	{"ProviderState", testProviderState},
	{"ProviderRegistrations", testProviderRegistrations},
	{"Audit", testAudit},
	{"Cascades", testCascades},
	{"ResolveRuntime", testResolveRuntime},
	{"Watch", testWatch},
	{"Cleanup", testCleanup},
	{"TryLeader", testTryLeader},
	{"Races", testRaces},
	{"PlantedSecrets", testPlantedSecrets},
	{"Isolation", testIsolation},
	{"Cancelled", testCancelled},
	{"Closed", testClosed},
}

// Run runs the conformance suite. Every leaf subtest (and every table case
// that mutates state) obtains its own store from newStore.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Helper()
	for _, a := range areas {
		t.Run(a.name, func(t *testing.T) { a.run(t, newStore) })
	}
}

// t0 is the fixed "now" of the suite. It is minute-aligned so rate-limit
// windows have a known start.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// at returns t0 + d.
func at(d time.Duration) time.Time { return t0.Add(d) }

func ptime(t time.Time) *time.Time { return &t }

// h bundles a store with the subtest using it and the helpers that build a
// world in it.
type h struct {
	t    *testing.T
	s    store.Store
	ctx  context.Context
	seq  atomic.Int64
	salt string // makes hashes unique per subtest in a shared store
}

func open(t *testing.T, newStore NewStore) *h {
	t.Helper()
	s := newStore(t)
	if s == nil {
		t.Fatal("newStore returned nil")
	}
	t.Cleanup(s.Close)
	return &h{t: t, s: s, ctx: context.Background(), salt: store.NewID()}
}

// sub returns a helper bound to a subtest that shares x's store. Table
// cases whose worlds are disjoint (fresh random ids) share one store this
// way: a throwaway Postgres database costs about a second to create and
// drop, a world a few milliseconds.
func (x *h) sub(t *testing.T) *h {
	return &h{t: t, s: x.s, ctx: x.ctx, salt: store.NewID()}
}

// hash returns a 32-byte SHA-256 of a unique label, as the store expects for
// one-time values.
func hash(label string) []byte {
	sum := sha256.Sum256([]byte("storetest:" + label))
	return sum[:]
}

// hash returns the hash of a label unique to this helper's subtest.
func (x *h) hash(label string) []byte { return hash(x.salt + "/" + label) }

// uniq returns a label unique within the subtest.
func (x *h) uniq(prefix string) string {
	return fmt.Sprintf("%s-%d-%s", prefix, x.seq.Add(1), store.NewID()[:8])
}

// ---- fixtures ----

func (x *h) user(mods ...func(*store.User)) store.User {
	x.t.Helper()
	id := store.NewID()
	u := store.User{
		ID:          id,
		Email:       "u-" + id[:13] + "@example.test",
		DisplayName: "User " + id[:8],
		Status:      store.UserActive,
		OIDCIssuer:  "https://idp.example.test",
		OIDCSubject: "sub-" + id,
		CreatedAt:   t0,
		UpdatedAt:   t0,
	}
	for _, m := range mods {
		m(&u)
	}
	got, err := x.s.CreateUser(x.ctx, u)
	if err != nil {
		x.t.Fatalf("CreateUser: %v", err)
	}
	return got
}

func (x *h) org(ownerID string) store.Org {
	x.t.Helper()
	id := store.NewID()
	o, err := x.s.CreateOrg(x.ctx, store.Org{ID: id, Name: "org-" + id[:13], CreatedAt: t0}, ownerID, nil)
	if err != nil {
		x.t.Fatalf("CreateOrg: %v", err)
	}
	return o
}

func (x *h) member(orgID, userID string, role store.Role) {
	x.t.Helper()
	if _, err := x.s.AddMember(x.ctx, store.Member{OrgID: orgID, UserID: userID, Role: role, CreatedAt: t0}, nil); err != nil {
		x.t.Fatalf("AddMember(%s): %v", role, err)
	}
}

// newConfig returns a valid, not yet stored config.
func newConfig(scope store.OwnerScope, ownerID string, mode store.AuthMode, sharing store.SharingMode) store.Config {
	id := store.NewID()
	c := store.Config{
		ID:              id,
		OwnerScope:      scope,
		OwnerID:         ownerID,
		Name:            "cfg-" + id[:8],
		RemoteURL:       "https://mcp.example.com/" + id[:8] + "/mcp",
		AuthMode:        mode,
		SharingMode:     sharing,
		Status:          store.ConfigEnabled,
		PathPassthrough: false,
		AuxHeaders:      map[string]string{"x-tenant": "t-" + id[:4]},
		Registry:        json.RawMessage(`{"category":"test"}`),
		CreatedAt:       t0,
		UpdatedAt:       t0,
	}
	switch mode {
	case store.AuthStaticHeaders:
		c.StaticHeaders = []byte("ciphertext-static-headers-" + id)
		c.StaticHeaderNames = []string{"authorization"}
	case store.AuthOAuthDynamic:
		c.Provider = store.ProviderSettings{Scopes: []string{"read"}, Resource: "https://mcp.example.com/"}
	case store.AuthOAuthStatic:
		c.Provider = store.ProviderSettings{
			Issuer:                "https://as.example.com",
			AuthorizationEndpoint: "https://as.example.com/authorize",
			TokenEndpoint:         "https://as.example.com/token",
			Scopes:                []string{"read", "write"},
			ClientCredentials:     []byte("ciphertext-client-credentials-" + id),
		}
	}
	return c
}

// config creates a config (personal configs are single_user) and returns it
// with its first route.
func (x *h) config(scope store.OwnerScope, ownerID string, mode store.AuthMode, sharing store.SharingMode, mods ...func(*store.Config)) (store.Config, store.Route) {
	x.t.Helper()
	c := newConfig(scope, ownerID, mode, sharing)
	for _, m := range mods {
		m(&c)
	}
	got, r, err := x.s.CreateConfig(x.ctx, c, store.NewID(), domain.NewRouteKey(), nil)
	if err != nil {
		x.t.Fatalf("CreateConfig: %v", err)
	}
	return got, r
}

func (x *h) personal(userID string, mode store.AuthMode) (store.Config, store.Route) {
	x.t.Helper()
	return x.config(store.ScopeUser, userID, mode, store.SingleUser)
}

func (x *h) assign(configID, userID string) {
	x.t.Helper()
	if _, err := x.s.Assign(x.ctx, store.Assignment{ConfigID: configID, UserID: userID, CreatedAt: t0}, nil); err != nil {
		x.t.Fatalf("Assign: %v", err)
	}
}

func (x *h) instance(c store.Config, userID string) store.Instance {
	x.t.Helper()
	in, _, err := x.s.GetOrCreateInstance(x.ctx, c.OwnerScope, c.OwnerID, userID, c.ID, store.NewID())
	if err != nil {
		x.t.Fatalf("GetOrCreateInstance: %v", err)
	}
	return in
}

func newGrant(instanceID, label string) store.Grant {
	return store.Grant{
		InstanceID:   instanceID,
		AccessToken:  []byte("ciphertext-access-" + label),
		RefreshToken: []byte("ciphertext-refresh-" + label),
		TokenType:    "Bearer",
		Scope:        "read",
		ExpiresAt:    ptime(at(time.Hour)),
		UpdatedAt:    t0,
	}
}

func (x *h) grant(instanceID, label string) store.Grant {
	x.t.Helper()
	g, err := x.s.PutGrant(x.ctx, newGrant(instanceID, label), -1, nil)
	if err != nil {
		x.t.Fatalf("PutGrant: %v", err)
	}
	return g
}

func (x *h) getInstance(id string) store.Instance {
	x.t.Helper()
	in, err := x.s.GetInstance(x.ctx, id)
	if err != nil {
		x.t.Fatalf("GetInstance: %v", err)
	}
	return in
}

func (x *h) getConfig(id string) store.Config {
	x.t.Helper()
	c, err := x.s.GetConfig(x.ctx, id)
	if err != nil {
		x.t.Fatalf("GetConfig: %v", err)
	}
	return c
}

func (x *h) client() store.OAuthClient {
	x.t.Helper()
	id := "dcr:" + store.NewID()
	c := store.OAuthClient{
		ID:                      id,
		SecretHash:              hash("client-secret-" + id),
		RegistrationTokenHash:   hash("reg-token-" + id),
		RedirectURIs:            []string{"http://127.0.0.1:33418/callback"},
		GrantTypes:              []string{"authorization_code", "refresh_token"},
		ResponseTypes:           []string{"code"},
		TokenEndpointAuthMethod: "client_secret_basic",
		Scope:                   "mcp:access profile",
		ClientName:              "Test Client",
		ApplicationType:         "native",
		Metadata:                json.RawMessage(`{"client_name":"Test Client"}`),
		CreatedAt:               t0,
		UpdatedAt:               t0,
	}
	got, err := x.s.CreateClient(x.ctx, c)
	if err != nil {
		x.t.Fatalf("CreateClient: %v", err)
	}
	return got
}

// oworld is what first-level OAuth artifacts refer to: a client, a user, a
// personal config and its instance.
type oworld struct {
	salt   string
	client store.OAuthClient
	user   store.User
	cfg    store.Config
	route  store.Route
	inst   store.Instance
}

func (x *h) oauthWorld() oworld {
	x.t.Helper()
	var w oworld
	w.salt = x.salt
	w.client = x.client()
	w.user = x.user()
	w.cfg, w.route = x.personal(w.user.ID, store.AuthNone)
	w.inst = x.instance(w.cfg, w.user.ID)
	return w
}

// hash returns the hash of a label unique to this world.
func (w oworld) hash(label string) []byte { return hash(w.salt + "/" + label) }

func (w oworld) resource() string {
	return domain.RouteRef{Scope: w.cfg.OwnerScope, OwnerID: w.cfg.OwnerID, ConfigID: w.cfg.ID, Key: w.route.Key}.URL("https://gw.example.test")
}

func (w oworld) authCode(label string, expires time.Time) store.AuthCode {
	return store.AuthCode{
		Hash:             w.hash("code-" + label),
		FamilyID:         store.NewID(),
		ClientID:         w.client.ID,
		RedirectURI:      w.client.RedirectURIs[0],
		Resource:         w.resource(),
		Scopes:           []string{"mcp:access"},
		CodeChallenge:    "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
		ConfigID:         w.cfg.ID,
		RouteKey:         w.route.Key,
		OwnerScope:       w.cfg.OwnerScope,
		OwnerID:          w.cfg.OwnerID,
		ExecutionContext: "personal",
		UserID:           w.user.ID,
		InstanceID:       w.inst.ID,
		ConfigVersion:    w.cfg.Version,
		CreatedAt:        t0,
		ExpiresAt:        expires,
	}
}

func (w oworld) refreshToken(label, family string, expires time.Time) store.RefreshToken {
	return store.RefreshToken{
		Hash:             w.hash("refresh-" + label),
		FamilyID:         family,
		ClientID:         w.client.ID,
		UserID:           w.user.ID,
		InstanceID:       w.inst.ID,
		ConfigID:         w.cfg.ID,
		Resource:         w.resource(),
		Scopes:           []string{"mcp:access"},
		ExecutionContext: "personal",
		ConfigVersion:    w.cfg.Version,
		CreatedAt:        t0,
		ExpiresAt:        expires,
	}
}

func (w oworld) authRequest(expires time.Time) store.AuthRequest {
	return store.AuthRequest{
		ID:            store.NewID(),
		ClientID:      w.client.ID,
		RedirectURI:   w.client.RedirectURIs[0],
		Resource:      w.resource(),
		Scopes:        []string{"mcp:access"},
		State:         "client-state-1",
		CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
		ConfigID:      w.cfg.ID,
		RouteKey:      w.route.Key,
		OwnerScope:    w.cfg.OwnerScope,
		OwnerID:       w.cfg.OwnerID,
		CreatedAt:     t0,
		ExpiresAt:     expires,
	}
}

func (w oworld) consentTicket(label, authRequestID string, expires time.Time) store.ConsentTicket {
	return store.ConsentTicket{
		Hash:             w.hash("consent-" + label),
		AuthRequestID:    authRequestID,
		UserID:           w.user.ID,
		ClientID:         w.client.ID,
		RedirectURI:      w.client.RedirectURIs[0],
		Resource:         w.resource(),
		Scopes:           []string{"mcp:access"},
		State:            "client-state-1",
		CodeChallenge:    "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
		ExecutionContext: "personal",
		CreatedAt:        t0,
		ExpiresAt:        expires,
	}
}

func pendingState(label string, userID string, c store.Config, instanceID string, expires time.Time) store.PendingProviderState {
	return store.PendingProviderState{
		StateHash:     hash("pending-" + label),
		UserID:        userID,
		ConfigID:      c.ID,
		ConfigVersion: c.Version,
		InstanceID:    instanceID,
		Ciphertext:    []byte("ciphertext-pending-" + label),
		CreatedAt:     t0,
		ExpiresAt:     expires,
	}
}

func (x *h) pending(label string, userID string, c store.Config, instanceID string) store.PendingProviderState {
	x.t.Helper()
	p := pendingState(label, userID, c, instanceID, at(30*time.Minute))
	p.StateHash = x.hash("pending-" + label)
	if err := x.s.CreatePendingState(x.ctx, p); err != nil {
		x.t.Fatalf("CreatePendingState: %v", err)
	}
	return p
}

// ---- assertions ----

// wantErr fails unless errors.Is(err, want); want nil means success.
func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("%s: unexpected error: %v", what, err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("%s: error = %v, want %v", what, err, want)
	}
}

// wantErrIn fails unless err matches one of wants (for contracts that allow
// either answer).
func wantErrIn(t *testing.T, what string, err error, wants ...error) {
	t.Helper()
	for _, w := range wants {
		if errors.Is(err, w) {
			return
		}
	}
	t.Fatalf("%s: error = %v, want one of %v", what, err, wants)
}

func sameTime(a, b time.Time) bool { return a.Equal(b) }

func samePTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b)
}

// sameStrings treats nil and empty as equal.
func sameStrings(a, b []string) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return slices.Equal(a, b)
}

func sameMap(a, b map[string]string) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return maps.Equal(a, b)
}

// sameJSON compares two JSON documents semantically (Postgres jsonb may
// reformat); empty and null are equal.
func sameJSON(a, b json.RawMessage) bool {
	norm := func(r json.RawMessage) any {
		if len(bytes.TrimSpace(r)) == 0 {
			return nil
		}
		var v any
		if err := json.Unmarshal(r, &v); err != nil {
			return string(r)
		}
		return v
	}
	ja, _ := json.Marshal(norm(a))
	jb, _ := json.Marshal(norm(b))
	return bytes.Equal(ja, jb)
}

func sameBytes(a, b []byte) bool { return bytes.Equal(a, b) }

// checkConfig compares the stored fields of a config that round-trip.
func checkConfig(t *testing.T, got, want store.Config) {
	t.Helper()
	switch {
	case got.ID != want.ID, got.OwnerScope != want.OwnerScope, got.OwnerID != want.OwnerID:
		t.Fatalf("config identity = %s/%s/%s, want %s/%s/%s", got.ID, got.OwnerScope, got.OwnerID, want.ID, want.OwnerScope, want.OwnerID)
	case got.Name != want.Name:
		t.Fatalf("Name = %q, want %q", got.Name, want.Name)
	case got.RemoteURL != want.RemoteURL:
		t.Fatalf("RemoteURL = %q, want %q", got.RemoteURL, want.RemoteURL)
	case got.AuthMode != want.AuthMode, got.SharingMode != want.SharingMode:
		t.Fatalf("modes = %s/%s, want %s/%s", got.AuthMode, got.SharingMode, want.AuthMode, want.SharingMode)
	case got.PathPassthrough != want.PathPassthrough:
		t.Fatalf("PathPassthrough = %v, want %v", got.PathPassthrough, want.PathPassthrough)
	case !sameBytes(got.StaticHeaders, want.StaticHeaders):
		t.Fatalf("StaticHeaders differ")
	case !sameStrings(got.StaticHeaderNames, want.StaticHeaderNames):
		t.Fatalf("StaticHeaderNames = %v, want %v", got.StaticHeaderNames, want.StaticHeaderNames)
	case !sameMap(got.AuxHeaders, want.AuxHeaders):
		t.Fatalf("AuxHeaders = %v, want %v", got.AuxHeaders, want.AuxHeaders)
	case !sameJSON(got.Registry, want.Registry):
		t.Fatalf("Registry = %s, want %s", got.Registry, want.Registry)
	case got.CreatedBy != want.CreatedBy:
		t.Fatalf("CreatedBy = %q, want %q", got.CreatedBy, want.CreatedBy)
	}
	gp, wp := got.Provider, want.Provider
	if gp.Issuer != wp.Issuer || gp.AuthorizationEndpoint != wp.AuthorizationEndpoint || gp.TokenEndpoint != wp.TokenEndpoint ||
		gp.RegistrationEndpoint != wp.RegistrationEndpoint || gp.Resource != wp.Resource ||
		!sameStrings(gp.Scopes, wp.Scopes) || !sameBytes(gp.ClientCredentials, wp.ClientCredentials) {
		t.Fatalf("Provider = %+v, want %+v", gp, wp)
	}
}

// checkGrant compares a grant's stored fields.
func checkGrant(t *testing.T, got, want store.Grant) {
	t.Helper()
	if got.InstanceID != want.InstanceID || !sameBytes(got.AccessToken, want.AccessToken) ||
		!sameBytes(got.RefreshToken, want.RefreshToken) || got.TokenType != want.TokenType ||
		got.Scope != want.Scope || !samePTime(got.ExpiresAt, want.ExpiresAt) {
		t.Fatalf("grant = {inst %s access %q refresh %q type %q scope %q exp %v}, want {inst %s access %q refresh %q type %q scope %q exp %v}",
			got.InstanceID, got.AccessToken, got.RefreshToken, got.TokenType, got.Scope, got.ExpiresAt,
			want.InstanceID, want.AccessToken, want.RefreshToken, want.TokenType, want.Scope, want.ExpiresAt)
	}
}

// wantNoGrant asserts the instance has no grant.
func (x *h) wantNoGrant(instanceID string) {
	x.t.Helper()
	if g, err := x.s.GetGrant(x.ctx, instanceID); !errors.Is(err, store.ErrNotFound) {
		x.t.Fatalf("GetGrant(%s) = %+v, %v; want ErrNotFound", instanceID, g, err)
	}
}

// wantState asserts an instance's state.
func (x *h) wantState(instanceID string, want store.InstanceState) store.Instance {
	x.t.Helper()
	in := x.getInstance(instanceID)
	if in.State != want {
		x.t.Fatalf("instance state = %s, want %s", in.State, want)
	}
	return in
}

// wantPendingGone asserts the pending state no longer exists (consuming it
// finds nothing).
func (x *h) wantPendingGone(p store.PendingProviderState) {
	x.t.Helper()
	if _, err := x.s.ConsumePendingState(x.ctx, p.StateHash, t0); !errors.Is(err, store.ErrNotFound) {
		x.t.Fatalf("ConsumePendingState after cascade: %v, want ErrNotFound", err)
	}
}

// ctxTimeout returns a context bounded by the subtest deadline or d.
func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
