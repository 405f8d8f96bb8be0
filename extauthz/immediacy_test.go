package extauthz

import (
	"context"
	"testing"
	"time"

	"mcpgw/domain"
	"mcpgw/domain/secrets"
	"mcpgw/store"
	"mcpgw/store/memory"
	"mcpgw/store/postgres/pgtest"
)

// world is one usable connection seeded through the real store API: a
// user, (for org scope) an org with the user as a member and assignee, a
// config with its active route, the user's instance and, for OAuth modes,
// a provider grant.
type world struct {
	st    store.Store
	admin store.User
	user  store.User
	cfg   store.Config
	r     route
}

func seedWorld(t testing.TB, st store.Store, kr *secrets.KeyRing, scope store.OwnerScope, mode store.AuthMode) world {
	t.Helper()
	ctx := context.Background()
	mustUser := func(email string) store.User {
		u, err := st.CreateUser(ctx, store.User{ID: store.NewID(), Email: email, Status: store.UserActive})
		if err != nil {
			t.Fatalf("CreateUser: %v", err)
		}
		return u
	}
	w := world{st: st}
	w.admin = mustUser("admin-" + store.NewID()[:8] + "@example.test")
	w.user = mustUser("user-" + store.NewID()[:8] + "@example.test")
	ownerID := w.user.ID
	sharing := store.SingleUser
	if scope == store.ScopeOrg {
		org, err := st.CreateOrg(ctx, store.Org{ID: store.NewID(), Name: "org-" + store.NewID()[:8]}, w.admin.ID, nil)
		if err != nil {
			t.Fatalf("CreateOrg: %v", err)
		}
		if _, err := st.AddMember(ctx, store.Member{OrgID: org.ID, UserID: w.user.ID, Role: store.RoleMember}, nil); err != nil {
			t.Fatalf("AddMember: %v", err)
		}
		ownerID = org.ID
		sharing = store.MultiUser
	}
	cfg := store.Config{
		ID: store.NewID(), OwnerScope: scope, OwnerID: ownerID, Name: "upstream",
		RemoteURL: "https://upstream.example.test/mcp", AuthMode: mode, SharingMode: sharing,
		Status: store.ConfigEnabled, CreatedBy: w.admin.ID,
	}
	if mode == store.AuthStaticHeaders {
		cfg.StaticHeaders = sealStatic(t, kr, cfg.ID, `{"x-upstream-key":"static-planted-secret"}`)
		cfg.StaticHeaderNames = []string{"x-upstream-key"}
	}
	if mode == store.AuthOAuthStatic {
		ct, err := kr.Seal([]byte(`{"client_id":"c","client_secret":"provider-planted-secret"}`), secrets.AAD("configs", "provider_client_credentials", cfg.ID))
		must(t, err)
		cfg.Provider.ClientCredentials = ct
	}
	key := domain.NewRouteKey()
	cfg, _, err := st.CreateConfig(ctx, cfg, store.NewID(), key, nil)
	if err != nil {
		t.Fatalf("CreateConfig: %v", err)
	}
	w.cfg = cfg
	if scope == store.ScopeOrg {
		if _, err := st.Assign(ctx, store.Assignment{ConfigID: cfg.ID, UserID: w.user.ID, CreatedBy: w.admin.ID}, nil); err != nil {
			t.Fatalf("Assign: %v", err)
		}
	}
	inst, _, err := st.GetOrCreateInstance(ctx, scope, ownerID, w.user.ID, cfg.ID, store.NewID())
	if err != nil {
		t.Fatalf("GetOrCreateInstance: %v", err)
	}
	if mode.IsOAuth() {
		ct, err := kr.Seal([]byte("upstream-planted-access"), secrets.AAD("grants", "access_token", inst.ID))
		if err != nil {
			t.Fatal(err)
		}
		exp := time.Now().Add(24 * time.Hour)
		if _, err := st.PutGrant(ctx, store.Grant{InstanceID: inst.ID, AccessToken: ct, TokenType: "Bearer", ExpiresAt: &exp}, -1, nil); err != nil {
			t.Fatalf("PutGrant: %v", err)
		}
	}
	w.r = route{
		ref:        domain.RouteRef{Scope: scope, OwnerID: ownerID, ConfigID: cfg.ID, Key: key},
		userID:     w.user.ID,
		instanceID: inst.ID,
		version:    cfg.Version,
	}
	return w
}

// checkStatus sends one Envoy-shaped Check and returns the HTTP status
// (200 for allow).
func checkStatus(t testing.TB, e *env, r route, tok string) int {
	t.Helper()
	resp, err := e.client.Check(context.Background(), fixture(t, "envoy_post_initialize.json", r, "", tok))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if resp.GetOkResponse() != nil {
		return 200
	}
	return int(resp.GetDeniedResponse().GetStatus().GetCode())
}

type storeFactory struct {
	name string
	new  func(t *testing.T) store.Store
	opts func(*Options)
}

func storeFactories() []storeFactory {
	return []storeFactory{
		{"memory", func(t *testing.T) store.Store { return memory.New() }, nil},
		{"postgres", func(t *testing.T) store.Store { return pgtest.Store(t) }, nil},
		{"postgres-batched", func(t *testing.T) store.Store { return pgtest.Store(t) }, func(o *Options) { o.BatchRecheck = 2 }},
	}
}

// TestImmediacy: for each eligibility change of DESIGN §3 rule 5, a token
// valid a moment ago is denied on the very next Check — no caching of
// eligibility anywhere (the verified-token cache stays on and warm).
func TestImmediacy(t *testing.T) {
	ctx := context.Background()
	changes := []struct {
		name   string
		scope  store.OwnerScope
		mode   store.AuthMode
		change func(t *testing.T, w world)
		status int
	}{
		{"route rotated", store.ScopeOrg, store.AuthStaticHeaders, func(t *testing.T, w world) {
			_, err := w.st.RotateRoute(ctx, w.cfg.ID, store.NewID(), domain.NewRouteKey(), nil)
			must(t, err)
		}, 404},
		{"config disabled", store.ScopeOrg, store.AuthNone, func(t *testing.T, w world) {
			_, err := w.st.SetConfigStatus(ctx, w.cfg.ID, store.ConfigDisabled, nil)
			must(t, err)
		}, 403},
		{"config deleted", store.ScopeUser, store.AuthNone, func(t *testing.T, w world) {
			must(t, w.st.DeleteConfig(ctx, w.cfg.ID, nil))
		}, 404},
		{"material change", store.ScopeOrg, store.AuthStaticHeaders, func(t *testing.T, w world) {
			_, material, err := w.st.UpdateConfig(ctx, w.cfg.ID, func(c *store.Config) error {
				c.RemoteURL = "https://other-upstream.example.test/mcp"
				return nil
			}, nil)
			must(t, err)
			if !material {
				t.Fatal("remote URL change not material")
			}
		}, 403},
		{"member removed", store.ScopeOrg, store.AuthNone, func(t *testing.T, w world) {
			must(t, w.st.RemoveMember(ctx, w.cfg.OwnerID, w.user.ID, nil))
		}, 403},
		{"assignment removed", store.ScopeOrg, store.AuthOAuthDynamic, func(t *testing.T, w world) {
			must(t, w.st.Unassign(ctx, w.cfg.ID, w.user.ID, nil))
		}, 403},
		{"instance revoked", store.ScopeUser, store.AuthNone, func(t *testing.T, w world) {
			_, err := w.st.EndInstance(ctx, w.r.instanceID, store.InstanceRevoked, nil)
			must(t, err)
		}, 403},
		{"grant revoked", store.ScopeOrg, store.AuthOAuthDynamic, func(t *testing.T, w world) {
			_, err := w.st.RevokeGrant(ctx, w.r.instanceID, nil)
			must(t, err)
		}, 403},
		{"user blocked", store.ScopeUser, store.AuthStaticHeaders, func(t *testing.T, w world) {
			_, err := w.st.SetUserStatus(ctx, w.user.ID, store.UserBlocked, nil)
			must(t, err)
		}, 403},
		{"user soft-deleted", store.ScopeOrg, store.AuthOAuthStatic, func(t *testing.T, w world) {
			must(t, w.st.SoftDeleteUser(ctx, w.user.ID, nil))
		}, 403},
	}
	for _, sf := range storeFactories() {
		t.Run(sf.name, func(t *testing.T) {
			st := sf.new(t)
			for _, c := range changes {
				t.Run(c.name, func(t *testing.T) {
					_, _, kr := fixtureKeys(t)
					w := seedWorld(t, st, kr, c.scope, c.mode)
					e := newEnv(t, st, sf.opts)
					tok := mint(t, e.key, w.r.claims(e.clock.Now()))
					for i := 0; i < 2; i++ { // second call hits the token cache
						if got := checkStatus(t, e, w.r, tok); got != 200 {
							t.Fatalf("before the change: status %d, want 200; logs:\n%s", got, e.logs.String())
						}
					}
					c.change(t, w)
					if got := checkStatus(t, e, w.r, tok); got != c.status {
						t.Fatalf("after %s: status %d, want %d", c.name, got, c.status)
					}
				})
			}
		})
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestStaticHeaderRotationImmediate: rotating a config's static headers
// (not a material change: tokens stay valid) is injected from the very
// next Check, despite the decrypted-header cache.
func TestStaticHeaderRotationImmediate(t *testing.T) {
	ctx := context.Background()
	for _, sf := range storeFactories() {
		t.Run(sf.name, func(t *testing.T) {
			st := sf.new(t)
			_, _, kr := fixtureKeys(t)
			w := seedWorld(t, st, kr, store.ScopeOrg, store.AuthStaticHeaders)
			e := newEnv(t, st, sf.opts)
			tok := mint(t, e.key, w.r.claims(e.clock.Now()))
			injected := func() string {
				resp, err := e.client.Check(ctx, fixture(t, "envoy_post_initialize.json", w.r, "", tok))
				must(t, err)
				for _, h := range resp.GetOkResponse().GetHeaders() {
					if h.GetHeader().GetKey() == "x-upstream-key" {
						return h.GetHeader().GetValue()
					}
				}
				t.Fatalf("no x-upstream-key injected: %v", resp)
				return ""
			}
			if got := injected(); got != "static-planted-secret" {
				t.Fatalf("before rotation: %q", got)
			}
			_, material, err := st.UpdateConfig(ctx, w.cfg.ID, func(c *store.Config) error {
				c.StaticHeaders = sealStatic(t, kr, c.ID, `{"x-upstream-key":"rotated-value"}`)
				return nil
			}, nil)
			must(t, err)
			if material {
				t.Fatal("static header rotation reported as material")
			}
			if got := injected(); got != "rotated-value" {
				t.Fatalf("after rotation: %q, want the new value on the very next Check", got)
			}
		})
	}
}
