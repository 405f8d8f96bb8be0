package storetest

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"mcpgw/domain"
	"mcpgw/store"
)

// testConfigs covers configs: create, read, list, update (material and
// non-material, DESIGN §5), status and delete.
func testConfigs(t *testing.T, newStore NewStore) {
	// Subtests with disjoint worlds share one store; those that list
	// everything get their own.
	shared := open(t, newStore)
	t.Run("CreateRoundTrip", func(t *testing.T) {
		shared := open(t, newStore)
		for _, mode := range []store.AuthMode{store.AuthNone, store.AuthStaticHeaders, store.AuthOAuthDynamic, store.AuthOAuthStatic} {
			t.Run(string(mode), func(t *testing.T) {
				x := shared.sub(t)
				u := x.user()
				c := newConfig(store.ScopeUser, u.ID, mode, store.SingleUser)
				c.PathPassthrough = true
				c.CreatedBy = u.ID
				c.Version = 42 // ignored: a new config starts at version 1
				key := domain.NewRouteKey()
				routeID := store.NewID()
				got, r, err := x.s.CreateConfig(x.ctx, c, routeID, key, &store.AuditEvent{Type: "config.create", Outcome: "success", ConfigID: c.ID})
				wantErr(t, "CreateConfig", err, nil)
				if got.Version != 1 || got.Status != store.ConfigEnabled {
					t.Fatalf("new config version/status = %d/%s, want 1/enabled", got.Version, got.Status)
				}
				checkConfig(t, got, c)
				if r.ID != routeID || r.ConfigID != c.ID || r.Key != key || !r.Active || r.OwnerScope != store.ScopeUser || r.OwnerID != u.ID || r.DeactivatedAt != nil {
					t.Fatalf("route = %+v", r)
				}
				stored := x.getConfig(c.ID)
				checkConfig(t, stored, c)
				if stored.Version != 1 || stored.Status != store.ConfigEnabled {
					t.Fatalf("stored version/status = %d/%s", stored.Version, stored.Status)
				}
				ar, err := x.s.GetActiveRoute(x.ctx, c.ID)
				wantErr(t, "GetActiveRoute", err, nil)
				if ar.ID != routeID || ar.Key != key {
					t.Fatalf("active route = %+v", ar)
				}
				evs, _, _ := x.s.QueryAudit(x.ctx, store.AuditFilter{ConfigID: c.ID})
				if len(evs) != 1 || evs[0].Type != "config.create" {
					t.Fatalf("audit = %+v", evs)
				}
			})
		}
	})

	t.Run("CreateOrgAndDisabled", func(t *testing.T) {
		x := shared.sub(t)
		owner := x.user()
		o := x.org(owner.ID)
		c, _ := x.config(store.ScopeOrg, o.ID, store.AuthNone, store.MultiUser, func(c *store.Config) { c.Status = store.ConfigDisabled })
		if c.Status != store.ConfigDisabled || c.SharingMode != store.MultiUser || c.OwnerScope != store.ScopeOrg {
			t.Fatalf("config = %+v", c)
		}
	})

	t.Run("CreateRejects", func(t *testing.T) {
		x := open(t, newStore)
		u := x.user()
		existing, r := x.personal(u.ID, store.AuthNone)
		deleted := x.user()
		wantErr(t, "SoftDeleteUser", x.s.SoftDeleteUser(x.ctx, deleted.ID, nil), nil)
		cases := []struct {
			name  string
			cfg   store.Config
			key   string
			wants []error
		}{
			{"DuplicateID", func() store.Config {
				c := newConfig(store.ScopeUser, u.ID, store.AuthNone, store.SingleUser)
				c.ID = existing.ID
				return c
			}(), domain.NewRouteKey(), []error{store.ErrConflict}},
			{"DuplicateRouteKey", newConfig(store.ScopeUser, u.ID, store.AuthNone, store.SingleUser), r.Key, []error{store.ErrConflict}},
			{"UnknownUserOwner", newConfig(store.ScopeUser, store.NewID(), store.AuthNone, store.SingleUser), domain.NewRouteKey(), []error{store.ErrNotFound, store.ErrConflict}},
			{"DeletedUserOwner", newConfig(store.ScopeUser, deleted.ID, store.AuthNone, store.SingleUser), domain.NewRouteKey(), []error{store.ErrNotFound, store.ErrConflict}},
			{"UnknownOrgOwner", newConfig(store.ScopeOrg, store.NewID(), store.AuthNone, store.MultiUser), domain.NewRouteKey(), []error{store.ErrNotFound, store.ErrConflict}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				_, _, err := x.s.CreateConfig(x.ctx, tc.cfg, store.NewID(), tc.key, nil)
				wantErrIn(t, "CreateConfig", err, tc.wants...)
				all, err := x.s.ListConfigs(x.ctx, "", "")
				wantErr(t, "ListConfigs", err, nil)
				if len(all) != 1 {
					t.Fatalf("configs after rejected create = %d, want 1", len(all))
				}
				if tc.name != "DuplicateID" {
					_, err := x.s.GetConfig(x.ctx, tc.cfg.ID)
					wantErr(t, "GetConfig(rejected)", err, store.ErrNotFound)
				}
			})
		}
	})

	t.Run("List", func(t *testing.T) {
		x := open(t, newStore)
		u, v := x.user(), x.user()
		owner := x.user()
		o := x.org(owner.ID)
		b, _ := x.config(store.ScopeUser, u.ID, store.AuthNone, store.SingleUser, func(c *store.Config) { c.Name = "bravo" })
		a, _ := x.config(store.ScopeUser, u.ID, store.AuthNone, store.SingleUser, func(c *store.Config) { c.Name = "alpha" })
		dis, _ := x.config(store.ScopeUser, u.ID, store.AuthNone, store.SingleUser, func(c *store.Config) { c.Name = "charlie"; c.Status = store.ConfigDisabled })
		del, _ := x.config(store.ScopeUser, u.ID, store.AuthNone, store.SingleUser, func(c *store.Config) { c.Name = "aardvark" })
		vc, _ := x.personal(v.ID, store.AuthNone)
		oc, _ := x.config(store.ScopeOrg, o.ID, store.AuthNone, store.MultiUser)
		wantErr(t, "DeleteConfig", x.s.DeleteConfig(x.ctx, del.ID, nil), nil)

		got, err := x.s.ListConfigs(x.ctx, store.ScopeUser, u.ID)
		wantErr(t, "ListConfigs(user)", err, nil)
		if ids := configIDs(got); !slices.Equal(ids, []string{a.ID, b.ID, dis.ID}) {
			t.Fatalf("ListConfigs(user) = %v, want alpha,bravo,charlie %v", ids, []string{a.ID, b.ID, dis.ID})
		}
		got, err = x.s.ListConfigs(x.ctx, store.ScopeOrg, o.ID)
		wantErr(t, "ListConfigs(org)", err, nil)
		if ids := configIDs(got); !slices.Equal(ids, []string{oc.ID}) {
			t.Fatalf("ListConfigs(org) = %v", ids)
		}
		got, err = x.s.ListConfigs(x.ctx, store.ScopeOrg, u.ID)
		wantErr(t, "ListConfigs(wrong scope)", err, nil)
		if len(got) != 0 {
			t.Fatalf("ListConfigs(org, user id) = %v, want none", configIDs(got))
		}
		got, err = x.s.ListConfigs(x.ctx, "", "")
		wantErr(t, "ListConfigs(all)", err, nil)
		ids := configIDs(got)
		slices.Sort(ids)
		want := []string{a.ID, b.ID, dis.ID, vc.ID, oc.ID}
		slices.Sort(want)
		if !slices.Equal(ids, want) {
			t.Fatalf("ListConfigs(all) = %v, want %v (deleted excluded)", ids, want)
		}
	})

	t.Run("GetDeletedAndUnknown", func(t *testing.T) {
		x := shared.sub(t)
		u := x.user()
		c, _ := x.personal(u.ID, store.AuthNone)
		wantErr(t, "DeleteConfig", x.s.DeleteConfig(x.ctx, c.ID, nil), nil)
		got, err := x.s.GetConfig(x.ctx, c.ID)
		wantErr(t, "GetConfig(deleted)", err, nil)
		if got.Status != store.ConfigDeleted {
			t.Fatalf("status = %s, want deleted", got.Status)
		}
		wantErr(t, "DeleteConfig again (idempotent)", x.s.DeleteConfig(x.ctx, c.ID, nil), nil)
		_, err = x.s.GetConfig(x.ctx, store.NewID())
		wantErr(t, "GetConfig(unknown)", err, store.ErrNotFound)
		_, _, err = x.s.UpdateConfig(x.ctx, c.ID, func(c *store.Config) error { c.Name = "x"; return nil }, nil)
		wantErr(t, "UpdateConfig(deleted)", err, store.ErrNotFound)
		_, _, err = x.s.UpdateConfig(x.ctx, store.NewID(), func(c *store.Config) error { c.Name = "x"; return nil }, nil)
		wantErr(t, "UpdateConfig(unknown)", err, store.ErrNotFound)
	})

	t.Run("UpdateNonMaterial", func(t *testing.T) {
		cases := []struct {
			name string
			fn   func(*store.Config)
		}{
			{"Name", func(c *store.Config) { c.Name = "renamed" }},
			{"StaticHeaderRotation", func(c *store.Config) { c.StaticHeaders = []byte("ciphertext-rotated") }},
			{"AuxHeaders", func(c *store.Config) { c.AuxHeaders = map[string]string{"x-region": "eu"} }},
			{"PathPassthrough", func(c *store.Config) { c.PathPassthrough = true }},
			{"Registry", func(c *store.Config) { c.Registry = json.RawMessage(`{"category":"other","tags":["a"]}`) }},
			{"IgnoredFields", func(c *store.Config) {
				c.Version = 99
				c.Status = store.ConfigDisabled
				c.OwnerID = store.NewID()
				c.CreatedBy = store.NewID()
			}},
		}
		shared := open(t, newStore)
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				x := shared.sub(t)
				u := x.user()
				c, _ := x.personal(u.ID, store.AuthStaticHeaders)
				in := x.instance(c, u.ID)
				p := x.pending("p", u.ID, c, in.ID)
				want := c
				tc.fn(&want)
				if tc.name == "IgnoredFields" {
					want = c
				}
				got, material, err := x.s.UpdateConfig(x.ctx, c.ID, func(c *store.Config) error { tc.fn(c); return nil }, nil)
				wantErr(t, "UpdateConfig", err, nil)
				if material {
					t.Fatalf("non-material change reported material")
				}
				if got.Version != 1 {
					t.Fatalf("version = %d, want 1 (unchanged)", got.Version)
				}
				checkConfig(t, got, want)
				stored := x.getConfig(c.ID)
				checkConfig(t, stored, want)
				if stored.Version != 1 || stored.Status != store.ConfigEnabled {
					t.Fatalf("stored version/status = %d/%s", stored.Version, stored.Status)
				}
				// Nothing was revoked.
				x.wantState(in.ID, store.InstanceActive)
				if _, err := x.s.ConsumePendingState(x.ctx, p.StateHash, t0); err != nil {
					t.Fatalf("pending state lost on non-material change: %v", err)
				}
			})
		}
	})

	t.Run("UpdateMaterial", func(t *testing.T) {
		cases := []struct {
			name     string
			from     store.AuthMode
			fn       func(*store.Config)
			wantInst store.InstanceState
		}{
			{"RemoteURL", store.AuthOAuthDynamic, func(c *store.Config) { c.RemoteURL = "https://other.example.com/mcp" }, store.InstanceNeedsReauth},
			{"ProviderScopes", store.AuthOAuthStatic, func(c *store.Config) { c.Provider.Scopes = []string{"read"} }, store.InstanceNeedsReauth},
			{"ProviderTokenEndpoint", store.AuthOAuthStatic, func(c *store.Config) { c.Provider.TokenEndpoint = "https://as2.example.com/token" }, store.InstanceNeedsReauth},
			{"ProviderCredentials", store.AuthOAuthStatic, func(c *store.Config) { c.Provider.ClientCredentials = []byte("ciphertext-new-creds") }, store.InstanceNeedsReauth},
			{"ProviderResource", store.AuthOAuthDynamic, func(c *store.Config) { c.Provider.Resource = "https://other.example.com/" }, store.InstanceNeedsReauth},
			{"AuthModeToStatic", store.AuthNone, func(c *store.Config) {
				c.AuthMode = store.AuthStaticHeaders
				c.StaticHeaders = []byte("ciphertext-h")
				c.StaticHeaderNames = []string{"x-api-key"}
			}, store.InstanceActive},
			{"AuthModeToOAuth", store.AuthNone, func(c *store.Config) { c.AuthMode = store.AuthOAuthDynamic }, store.InstanceNeedsReauth},
			{"OAuthToNone", store.AuthOAuthDynamic, func(c *store.Config) { c.AuthMode = store.AuthNone; c.Provider = store.ProviderSettings{} }, store.InstanceActive},
		}
		shared := open(t, newStore)
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				x := shared.sub(t)
				u := x.user()
				c, _ := x.personal(u.ID, tc.from)
				in := x.instance(c, u.ID)
				g := x.grant(in.ID, "g1")
				p := x.pending("p", u.ID, c, in.ID)
				wantErr(t, "PutProviderRegistration", x.s.PutProviderRegistration(x.ctx, store.ProviderRegistration{ConfigID: c.ID, ConfigVersion: 1, Ciphertext: []byte("ciphertext-reg"), CreatedAt: t0}), nil)
				// An unrelated config keeps everything.
				other, _ := x.personal(u.ID, store.AuthOAuthDynamic)
				oin := x.instance(other, u.ID)
				x.grant(oin.ID, "other")

				want := c
				tc.fn(&want)
				ev := &store.AuditEvent{Type: "config.update", Outcome: "success", ConfigID: c.ID}
				got, material, err := x.s.UpdateConfig(x.ctx, c.ID, func(c *store.Config) error { tc.fn(c); return nil }, ev)
				wantErr(t, "UpdateConfig", err, nil)
				if !material {
					t.Fatalf("material change not reported")
				}
				if got.Version != 2 {
					t.Fatalf("version = %d, want 2", got.Version)
				}
				checkConfig(t, got, want)
				if s := x.getConfig(c.ID); s.Version != 2 {
					t.Fatalf("stored version = %d, want 2", s.Version)
				}
				after := x.wantState(in.ID, tc.wantInst)
				x.wantNoGrant(in.ID)
				if after.GrantVersion <= g.Version {
					t.Fatalf("grant version %d did not advance past %d", after.GrantVersion, g.Version)
				}
				x.wantPendingGone(p)
				_, err = x.s.GetProviderRegistration(x.ctx, c.ID, 1)
				wantErr(t, "GetProviderRegistration after material change", err, store.ErrNotFound)
				if _, err := x.s.GetGrant(x.ctx, oin.ID); err != nil {
					t.Fatalf("unrelated grant lost: %v", err)
				}
				evs, _, _ := x.s.QueryAudit(x.ctx, store.AuditFilter{Type: "config.update", ConfigID: c.ID})
				if len(evs) != 1 {
					t.Fatalf("audit events = %d, want 1", len(evs))
				}
				// A second material change advances again.
				got, material, err = x.s.UpdateConfig(x.ctx, c.ID, func(c *store.Config) error { c.RemoteURL = "https://third.example.com/mcp"; return nil }, nil)
				wantErr(t, "second UpdateConfig", err, nil)
				if !material || got.Version != 3 {
					t.Fatalf("second material change: material=%v version=%d, want true/3", material, got.Version)
				}
			})
		}
	})

	t.Run("UpdateFuncError", func(t *testing.T) {
		x := shared.sub(t)
		u := x.user()
		c, _ := x.personal(u.ID, store.AuthNone)
		boom := errors.New("update refused")
		_, _, err := x.s.UpdateConfig(x.ctx, c.ID, func(c *store.Config) error { c.RemoteURL = "https://x.example.com/"; return boom }, nil)
		wantErr(t, "UpdateConfig", err, boom)
		got := x.getConfig(c.ID)
		checkConfig(t, got, c)
		if got.Version != 1 {
			t.Fatalf("version = %d after failed update", got.Version)
		}
	})

	t.Run("UpdateInvalidResult", func(t *testing.T) {
		x := shared.sub(t)
		u := x.user()
		c, _ := x.personal(u.ID, store.AuthNone)
		cases := []struct {
			name  string
			fn    func(*store.Config)
			wants []error
		}{
			{"UnknownAuthMode", func(c *store.Config) { c.AuthMode = "password" }, []error{store.ErrInvalid}},
			{"UnknownSharingMode", func(c *store.Config) { c.SharingMode = "everyone" }, []error{store.ErrInvalid}},
			{"PersonalMultiUser", func(c *store.Config) { c.SharingMode = store.MultiUser }, []error{store.ErrInvalid, store.ErrConflict}},
			{"OversizeName", func(c *store.Config) { c.Name = string(make([]byte, 1<<20)) }, []error{store.ErrInvalid}},
			{"OversizeCiphertext", func(c *store.Config) { c.StaticHeaders = make([]byte, 4<<20) }, []error{store.ErrInvalid}},
			{"EmptyRemoteURL", func(c *store.Config) { c.RemoteURL = "" }, []error{store.ErrInvalid}},
			{"OversizeAuxHeaderMap", func(c *store.Config) { c.AuxHeaders = bigMap(5000) }, []error{store.ErrInvalid}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				x := x.sub(t)
				_, _, err := x.s.UpdateConfig(x.ctx, c.ID, func(c *store.Config) error { tc.fn(c); return nil }, nil)
				wantErrIn(t, "UpdateConfig", err, tc.wants...)
				got := x.getConfig(c.ID)
				checkConfig(t, got, c)
				if got.Version != 1 {
					t.Fatalf("version = %d after invalid update", got.Version)
				}
			})
		}
	})

	t.Run("MultiToSingle", func(t *testing.T) {
		x := shared.sub(t)
		owner := x.user()
		o := x.org(owner.ID)
		a, b := x.user(), x.user()
		x.member(o.ID, a.ID, store.RoleMember)
		x.member(o.ID, b.ID, store.RoleMember)
		c, _ := x.config(store.ScopeOrg, o.ID, store.AuthNone, store.MultiUser)
		x.assign(c.ID, a.ID)
		x.assign(c.ID, b.ID)
		ia := x.instance(c, a.ID)
		toSingle := func(c *store.Config) error { c.SharingMode = store.SingleUser; return nil }
		_, _, err := x.s.UpdateConfig(x.ctx, c.ID, toSingle, &store.AuditEvent{Type: "config.update", Outcome: "success", ConfigID: c.ID})
		wantErr(t, "multi→single with 2 assignees", err, store.ErrConflict)
		if evs, _, _ := x.s.QueryAudit(x.ctx, store.AuditFilter{ConfigID: c.ID}); len(evs) != 0 {
			t.Fatalf("refused update wrote %d audit events", len(evs))
		}
		got := x.getConfig(c.ID)
		if got.SharingMode != store.MultiUser || got.Version != 1 {
			t.Fatalf("config changed by refused update: %s v%d", got.SharingMode, got.Version)
		}
		if as, _ := x.s.ListAssignments(x.ctx, c.ID); len(as) != 2 {
			t.Fatalf("assignments = %d, want 2", len(as))
		}
		x.wantState(ia.ID, store.InstanceActive)
		wantErr(t, "Unassign", x.s.Unassign(x.ctx, c.ID, b.ID, nil), nil)
		got, material, err := x.s.UpdateConfig(x.ctx, c.ID, toSingle, nil)
		wantErr(t, "multi→single with 1 assignee", err, nil)
		if !material || got.SharingMode != store.SingleUser || got.Version != 2 {
			t.Fatalf("after multi→single: material=%v mode=%s v%d", material, got.SharingMode, got.Version)
		}
	})

	t.Run("SetStatus", func(t *testing.T) {
		x := shared.sub(t)
		u := x.user()
		c, r := x.personal(u.ID, store.AuthOAuthDynamic)
		in := x.instance(c, u.ID)
		g := x.grant(in.ID, "g")
		got, err := x.s.SetConfigStatus(x.ctx, c.ID, store.ConfigDisabled, &store.AuditEvent{Type: "config.disable", Outcome: "success", ConfigID: c.ID})
		wantErr(t, "disable", err, nil)
		if got.Status != store.ConfigDisabled || got.Version != 1 {
			t.Fatalf("disabled config = %s v%d", got.Status, got.Version)
		}
		// Disabling keeps route, instance and grant.
		ar, err := x.s.GetActiveRoute(x.ctx, c.ID)
		wantErr(t, "GetActiveRoute(disabled)", err, nil)
		if ar.Key != r.Key {
			t.Fatalf("route changed on disable")
		}
		x.wantState(in.ID, store.InstanceActive)
		gg, err := x.s.GetGrant(x.ctx, in.ID)
		wantErr(t, "GetGrant(disabled)", err, nil)
		checkGrant(t, gg, g)
		_, err = x.s.GetRoutable(x.ctx, c.ID)
		wantErr(t, "GetRoutable(disabled)", err, store.ErrNotFound)
		got, err = x.s.SetConfigStatus(x.ctx, c.ID, store.ConfigEnabled, nil)
		wantErr(t, "enable", err, nil)
		if got.Status != store.ConfigEnabled {
			t.Fatalf("status = %s", got.Status)
		}
		if _, err := x.s.GetRoutable(x.ctx, c.ID); err != nil {
			t.Fatalf("GetRoutable(enabled): %v", err)
		}
		_, err = x.s.SetConfigStatus(x.ctx, store.NewID(), store.ConfigDisabled, nil)
		wantErr(t, "SetConfigStatus(unknown)", err, store.ErrNotFound)
	})
}

func bigMap(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m["x-aux-"+itoa(i)] = "v"
	}
	return m
}

func itoa(i int) string {
	return string(rune('a'+i%26)) + string(rune('a'+(i/26)%26)) + string(rune('a'+(i/676)%26))
}

func configIDs(cs []store.Config) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.ID
	}
	return out
}

// testRoutes covers rotation, lookup and the xds views (DESIGN §2, §8).
func testRoutes(t *testing.T, newStore NewStore) {
	// Subtests with disjoint worlds share one store; those that list
	// everything get their own.
	shared := open(t, newStore)
	t.Run("Rotate", func(t *testing.T) {
		x := open(t, newStore)
		u := x.user()
		c, old := x.personal(u.ID, store.AuthNone)
		in := x.instance(c, u.ID)
		newID, newKey := store.NewID(), domain.NewRouteKey()
		nr, err := x.s.RotateRoute(x.ctx, c.ID, newID, newKey, &store.AuditEvent{Type: "route.rotate", Outcome: "success", ConfigID: c.ID, RouteID: newID})
		wantErr(t, "RotateRoute", err, nil)
		if nr.ID != newID || nr.Key != newKey || !nr.Active || nr.ConfigID != c.ID || nr.OwnerScope != c.OwnerScope || nr.OwnerID != c.OwnerID {
			t.Fatalf("new route = %+v", nr)
		}
		ar, err := x.s.GetActiveRoute(x.ctx, c.ID)
		wantErr(t, "GetActiveRoute", err, nil)
		if ar.ID != newID || ar.Key != newKey {
			t.Fatalf("active route = %+v, want the new one", ar)
		}
		// The old key is rejected everywhere.
		_, _, err = x.s.LookupRoute(x.ctx, c.OwnerScope, c.OwnerID, c.ID, old.Key)
		wantErr(t, "LookupRoute(old key)", err, store.ErrNotFound)
		rs, err := x.s.ResolveRuntime(x.ctx, store.RuntimeQuery{ConfigID: c.ID, RouteKey: old.Key, OwnerScope: c.OwnerScope, OwnerID: c.OwnerID,
			UserID: u.ID, InstanceID: in.ID, ConfigVersion: c.Version, ExecutionContext: "personal"})
		wantErr(t, "ResolveRuntime(old key)", err, nil)
		if rs.Reason != store.ReasonRouteKeyMismatch {
			t.Fatalf("ResolveRuntime(old key) reason = %q, want %q", rs.Reason, store.ReasonRouteKeyMismatch)
		}
		rt, err := x.s.GetRoutable(x.ctx, c.ID)
		wantErr(t, "GetRoutable", err, nil)
		if rt.Route.Key != newKey {
			t.Fatalf("GetRoutable route key is the old one")
		}
		all, err := x.s.ListRoutable(x.ctx)
		wantErr(t, "ListRoutable", err, nil)
		if len(all) != 1 || all[0].Route.Key != newKey {
			t.Fatalf("ListRoutable = %+v", all)
		}
		// The new key works.
		gc, gr, err := x.s.LookupRoute(x.ctx, c.OwnerScope, c.OwnerID, c.ID, newKey)
		wantErr(t, "LookupRoute(new key)", err, nil)
		if gc.ID != c.ID || gr.ID != newID {
			t.Fatalf("LookupRoute(new) = %s/%s", gc.ID, gr.ID)
		}
		// A key once used can never come back, for this or another config.
		_, err = x.s.RotateRoute(x.ctx, c.ID, store.NewID(), old.Key, nil)
		wantErr(t, "RotateRoute(reuse old key)", err, store.ErrConflict)
		other, _ := x.personal(u.ID, store.AuthNone)
		_, err = x.s.RotateRoute(x.ctx, other.ID, store.NewID(), newKey, nil)
		wantErr(t, "RotateRoute(another config's key)", err, store.ErrConflict)
		_, _, err = x.s.CreateConfig(x.ctx, newConfig(store.ScopeUser, u.ID, store.AuthNone, store.SingleUser), store.NewID(), old.Key, nil)
		wantErr(t, "CreateConfig(retired key)", err, store.ErrConflict)
		if ar, _ := x.s.GetActiveRoute(x.ctx, c.ID); ar.Key != newKey {
			t.Fatalf("failed rotation changed the active route")
		}
		evs, _, _ := x.s.QueryAudit(x.ctx, store.AuditFilter{Type: "route.rotate"})
		if len(evs) != 1 || evs[0].RouteID != newID {
			t.Fatalf("audit = %+v", evs)
		}
	})

	t.Run("RotateDeletedOrUnknown", func(t *testing.T) {
		x := shared.sub(t)
		u := x.user()
		c, _ := x.personal(u.ID, store.AuthNone)
		wantErr(t, "DeleteConfig", x.s.DeleteConfig(x.ctx, c.ID, nil), nil)
		_, err := x.s.RotateRoute(x.ctx, c.ID, store.NewID(), domain.NewRouteKey(), nil)
		wantErr(t, "RotateRoute(deleted)", err, store.ErrNotFound)
		_, err = x.s.RotateRoute(x.ctx, store.NewID(), store.NewID(), domain.NewRouteKey(), nil)
		wantErr(t, "RotateRoute(unknown)", err, store.ErrNotFound)
		_, err = x.s.GetActiveRoute(x.ctx, c.ID)
		wantErr(t, "GetActiveRoute(deleted)", err, store.ErrNotFound)
	})

	t.Run("Lookup", func(t *testing.T) {
		x := shared.sub(t)
		u := x.user()
		owner := x.user()
		o := x.org(owner.ID)
		c, r := x.personal(u.ID, store.AuthNone)
		oc, or := x.config(store.ScopeOrg, o.ID, store.AuthNone, store.MultiUser)
		dis, dr := x.personal(u.ID, store.AuthNone)
		_, err := x.s.SetConfigStatus(x.ctx, dis.ID, store.ConfigDisabled, nil)
		wantErr(t, "disable", err, nil)
		cases := []struct {
			name               string
			scope              store.OwnerScope
			owner, config, key string
			wantConfig         string
		}{
			{"PersonalExact", store.ScopeUser, u.ID, c.ID, r.Key, c.ID},
			{"OrgExact", store.ScopeOrg, o.ID, oc.ID, or.Key, oc.ID},
			{"WrongScope", store.ScopeOrg, u.ID, c.ID, r.Key, ""},
			{"WrongOwner", store.ScopeUser, owner.ID, c.ID, r.Key, ""},
			{"WrongKey", store.ScopeUser, u.ID, c.ID, domain.NewRouteKey(), ""},
			{"OtherConfigsKey", store.ScopeUser, u.ID, c.ID, dr.Key, ""},
			{"UnknownConfig", store.ScopeUser, u.ID, store.NewID(), r.Key, ""},
			{"OrgAsUser", store.ScopeUser, o.ID, oc.ID, or.Key, ""},
			{"Disabled", store.ScopeUser, u.ID, dis.ID, dr.Key, ""},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				gc, gr, err := x.s.LookupRoute(x.ctx, tc.scope, tc.owner, tc.config, tc.key)
				if tc.wantConfig == "" {
					wantErr(t, "LookupRoute", err, store.ErrNotFound)
					return
				}
				wantErr(t, "LookupRoute", err, nil)
				if gc.ID != tc.wantConfig || gr.ConfigID != tc.wantConfig || gr.Key != tc.key || !gr.Active || gc.Status != store.ConfigEnabled {
					t.Fatalf("LookupRoute = %+v / %+v", gc, gr)
				}
			})
		}
	})

	t.Run("Routable", func(t *testing.T) {
		x := open(t, newStore)
		u := x.user()
		owner := x.user()
		o := x.org(owner.ID)
		var want []string
		routes := map[string]string{}
		for range 3 {
			c, r := x.personal(u.ID, store.AuthNone)
			want = append(want, c.ID)
			routes[c.ID] = r.Key
		}
		oc, or := x.config(store.ScopeOrg, o.ID, store.AuthStaticHeaders, store.MultiUser)
		want = append(want, oc.ID)
		routes[oc.ID] = or.Key
		dis, _ := x.personal(u.ID, store.AuthNone)
		_, err := x.s.SetConfigStatus(x.ctx, dis.ID, store.ConfigDisabled, nil)
		wantErr(t, "disable", err, nil)
		del, _ := x.personal(u.ID, store.AuthNone)
		wantErr(t, "delete", x.s.DeleteConfig(x.ctx, del.ID, nil), nil)
		slices.Sort(want)

		all, err := x.s.ListRoutable(x.ctx)
		wantErr(t, "ListRoutable", err, nil)
		var got []string
		for _, rc := range all {
			got = append(got, rc.Config.ID)
			if rc.Route.ConfigID != rc.Config.ID || rc.Route.Key != routes[rc.Config.ID] || !rc.Route.Active || rc.Config.Status != store.ConfigEnabled {
				t.Fatalf("routable %s has route %+v", rc.Config.ID, rc.Route)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("ListRoutable = %v, want ordered enabled configs %v", got, want)
		}
		rc, err := x.s.GetRoutable(x.ctx, oc.ID)
		wantErr(t, "GetRoutable", err, nil)
		checkConfig(t, rc.Config, oc)
		if rc.Route.Key != or.Key {
			t.Fatalf("GetRoutable route = %+v", rc.Route)
		}
		for name, id := range map[string]string{"Disabled": dis.ID, "Deleted": del.ID, "Unknown": store.NewID()} {
			_, err := x.s.GetRoutable(x.ctx, id)
			wantErr(t, "GetRoutable("+name+")", err, store.ErrNotFound)
		}
	})
}

// testAssignments covers Assign/Unassign/ListAssignments (DESIGN §3 rules 2–3).
func testAssignments(t *testing.T, newStore NewStore) {
	// Every subtest builds its own org in one shared store.
	shared := open(t, newStore)
	setup := func(t *testing.T, sharing store.SharingMode) (*h, store.Org, store.Config, store.User, store.User) {
		x := shared.sub(t)
		owner := x.user()
		o := x.org(owner.ID)
		a, b := x.user(), x.user()
		x.member(o.ID, a.ID, store.RoleMember)
		x.member(o.ID, b.ID, store.RoleMember)
		c, _ := x.config(store.ScopeOrg, o.ID, store.AuthOAuthStatic, sharing)
		return x, o, c, a, b
	}

	t.Run("MultiUser", func(t *testing.T) {
		x, _, c, a, b := setup(t, store.MultiUser)
		got, err := x.s.Assign(x.ctx, store.Assignment{ConfigID: c.ID, UserID: b.ID, CreatedBy: a.ID, CreatedAt: t0}, &store.AuditEvent{Type: "assignment.create", Outcome: "success", ConfigID: c.ID, UserID: b.ID})
		wantErr(t, "Assign(b)", err, nil)
		if got.ConfigID != c.ID || got.UserID != b.ID {
			t.Fatalf("Assign = %+v", got)
		}
		x.assign(c.ID, a.ID)
		as, err := x.s.ListAssignments(x.ctx, c.ID)
		wantErr(t, "ListAssignments", err, nil)
		want := []string{a.ID, b.ID}
		slices.Sort(want)
		if got := assignees(as); !slices.Equal(got, want) {
			t.Fatalf("ListAssignments = %v, want ordered %v", got, want)
		}
		// Both keep their instances.
		ia, ib := x.instance(c, a.ID), x.instance(c, b.ID)
		x.assign(c.ID, a.ID) // no-op
		x.wantState(ia.ID, store.InstanceActive)
		x.wantState(ib.ID, store.InstanceActive)
		if as, _ := x.s.ListAssignments(x.ctx, c.ID); len(as) != 2 {
			t.Fatalf("re-assign duplicated: %d assignments", len(as))
		}
	})

	t.Run("SingleUserReassign", func(t *testing.T) {
		x, _, c, a, b := setup(t, store.SingleUser)
		x.assign(c.ID, a.ID)
		ia := x.instance(c, a.ID)
		ga := x.grant(ia.ID, "a")
		pa := x.pending("pa", a.ID, c, ia.ID)
		// Reassigning the current assignee is a no-op.
		x.assign(c.ID, a.ID)
		x.wantState(ia.ID, store.InstanceActive)
		if _, err := x.s.GetGrant(x.ctx, ia.ID); err != nil {
			t.Fatalf("no-op reassign lost the grant: %v", err)
		}
		// Reassigning to b removes a's assignment, instance and grant in
		// the same operation.
		x.assign(c.ID, b.ID)
		as, _ := x.s.ListAssignments(x.ctx, c.ID)
		if got := assignees(as); !slices.Equal(got, []string{b.ID}) {
			t.Fatalf("assignees = %v, want only b", got)
		}
		after := x.wantState(ia.ID, store.InstanceRemoved)
		x.wantNoGrant(ia.ID)
		if after.GrantVersion <= ga.Version {
			t.Fatalf("grant version did not advance on removal")
		}
		_ = pa // pending state of the previous assignee is not named by the contract for Assign
		// b can get a fresh instance; a's old one is never reused.
		ib := x.instance(c, b.ID)
		if ib.ID == ia.ID {
			t.Fatalf("terminal instance reused")
		}
		inst, err := x.s.ListInstances(x.ctx, "", c.ID, false)
		wantErr(t, "ListInstances", err, nil)
		if len(inst) != 1 || inst[0].ID != ib.ID {
			t.Fatalf("non-terminal instances = %+v, want only b's", inst)
		}
	})

	t.Run("Rejects", func(t *testing.T) {
		x, o, c, a, _ := setup(t, store.MultiUser)
		outsider := x.user()
		_, err := x.s.Assign(x.ctx, store.Assignment{ConfigID: c.ID, UserID: outsider.ID, CreatedAt: t0}, nil)
		wantErr(t, "Assign(non-member)", err, store.ErrConflict)
		pc, _ := x.personal(a.ID, store.AuthNone)
		_, err = x.s.Assign(x.ctx, store.Assignment{ConfigID: pc.ID, UserID: a.ID, CreatedAt: t0}, nil)
		wantErr(t, "Assign(personal config)", err, store.ErrConflict)
		if as, _ := x.s.ListAssignments(x.ctx, c.ID); len(as) != 0 {
			t.Fatalf("assignments after rejects = %d", len(as))
		}
		_, err = x.s.Assign(x.ctx, store.Assignment{ConfigID: store.NewID(), UserID: a.ID, CreatedAt: t0}, nil)
		wantErrIn(t, "Assign(unknown config)", err, store.ErrNotFound, store.ErrConflict)
		wantErr(t, "Unassign(not assigned)", x.s.Unassign(x.ctx, c.ID, a.ID, nil), store.ErrNotFound)
		_ = o
	})

	t.Run("Unassign", func(t *testing.T) {
		x, _, c, a, b := setup(t, store.MultiUser)
		x.assign(c.ID, a.ID)
		x.assign(c.ID, b.ID)
		ia, ib := x.instance(c, a.ID), x.instance(c, b.ID)
		x.grant(ia.ID, "a")
		gb := x.grant(ib.ID, "b")
		pa := x.pending("pa", a.ID, c, ia.ID)
		pb := x.pending("pb", b.ID, c, ib.ID)
		wantErr(t, "Unassign", x.s.Unassign(x.ctx, c.ID, a.ID, &store.AuditEvent{Type: "assignment.delete", Outcome: "success", ConfigID: c.ID, UserID: a.ID}), nil)
		as, _ := x.s.ListAssignments(x.ctx, c.ID)
		if got := assignees(as); !slices.Equal(got, []string{b.ID}) {
			t.Fatalf("assignees = %v, want only b", got)
		}
		x.wantState(ia.ID, store.InstanceRemoved)
		x.wantNoGrant(ia.ID)
		x.wantPendingGone(pa)
		// b is untouched.
		x.wantState(ib.ID, store.InstanceActive)
		gg, err := x.s.GetGrant(x.ctx, ib.ID)
		wantErr(t, "GetGrant(b)", err, nil)
		checkGrant(t, gg, gb)
		if _, err := x.s.ConsumePendingState(x.ctx, pb.StateHash, t0); err != nil {
			t.Fatalf("b's pending state lost: %v", err)
		}
		wantErr(t, "Unassign again", x.s.Unassign(x.ctx, c.ID, a.ID, nil), store.ErrNotFound)
	})
}

func assignees(as []store.Assignment) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.UserID
	}
	return out
}

// testListUsable covers ListUsable (DESIGN §3, GET /api/v1/available).
func testListUsable(t *testing.T, newStore NewStore) {
	x := open(t, newStore)
	u := x.user()
	owner := x.user()
	o := x.org(owner.ID)
	other := x.org(owner.ID)
	x.member(o.ID, u.ID, store.RoleMember)
	x.member(other.ID, u.ID, store.RoleAdmin)

	p1, r1 := x.personal(u.ID, store.AuthNone)
	p2, r2 := x.personal(u.ID, store.AuthOAuthDynamic)
	pdis, _ := x.personal(u.ID, store.AuthNone)
	_, err := x.s.SetConfigStatus(x.ctx, pdis.ID, store.ConfigDisabled, nil)
	wantErr(t, "disable", err, nil)
	pdel, _ := x.personal(u.ID, store.AuthNone)
	wantErr(t, "delete", x.s.DeleteConfig(x.ctx, pdel.ID, nil), nil)
	oa, ra := x.config(store.ScopeOrg, o.ID, store.AuthNone, store.MultiUser)
	x.assign(oa.ID, u.ID)
	x.config(store.ScopeOrg, o.ID, store.AuthNone, store.MultiUser)     // not assigned
	x.config(store.ScopeOrg, other.ID, store.AuthNone, store.MultiUser) // admin, not assigned
	odis, _ := x.config(store.ScopeOrg, o.ID, store.AuthNone, store.MultiUser)
	x.assign(odis.ID, u.ID)
	_, err = x.s.SetConfigStatus(x.ctx, odis.ID, store.ConfigDisabled, nil)
	wantErr(t, "disable org", err, nil)
	stranger := x.user()
	x.personal(stranger.ID, store.AuthNone)
	in := x.instance(p2, u.ID)

	wantRoutes := map[string]string{p1.ID: r1.Key, p2.ID: r2.Key, oa.ID: ra.Key}
	want := []string{p1.ID, p2.ID, oa.ID}
	slices.Sort(want)

	t.Run("Active", func(t *testing.T) {
		list, err := x.s.ListUsable(x.ctx, u.ID)
		wantErr(t, "ListUsable", err, nil)
		var got []string
		for _, uc := range list {
			got = append(got, uc.Config.ID)
			if uc.Route.Key != wantRoutes[uc.Config.ID] || !uc.Route.Active {
				t.Fatalf("usable %s has route %+v", uc.Config.ID, uc.Route)
			}
			switch uc.Config.ID {
			case p2.ID:
				if uc.Instance == nil || uc.Instance.ID != in.ID {
					t.Fatalf("usable %s instance = %+v, want %s", uc.Config.ID, uc.Instance, in.ID)
				}
			default:
				if uc.Instance != nil {
					t.Fatalf("usable %s has instance %+v, want none", uc.Config.ID, uc.Instance)
				}
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("ListUsable = %v, want %v", got, want)
		}
	})
	t.Run("Blocked", func(t *testing.T) {
		_, err := x.s.SetUserStatus(x.ctx, u.ID, store.UserBlocked, nil)
		wantErr(t, "block", err, nil)
		list, err := x.s.ListUsable(x.ctx, u.ID)
		wantErr(t, "ListUsable(blocked)", err, nil)
		if len(list) != 0 {
			t.Fatalf("blocked user has %d usable configs", len(list))
		}
		_, err = x.s.SetUserStatus(x.ctx, u.ID, store.UserActive, nil)
		wantErr(t, "unblock", err, nil)
	})
	t.Run("AfterRemoval", func(t *testing.T) {
		wantErr(t, "RemoveMember", x.s.RemoveMember(x.ctx, o.ID, u.ID, nil), nil)
		list, err := x.s.ListUsable(x.ctx, u.ID)
		wantErr(t, "ListUsable", err, nil)
		for _, uc := range list {
			if uc.Config.ID == oa.ID {
				t.Fatalf("org config still usable after membership removal")
			}
		}
		if len(list) != 2 {
			t.Fatalf("ListUsable after removal = %d, want 2 personal", len(list))
		}
	})
	t.Run("Unknown", func(t *testing.T) {
		list, err := x.s.ListUsable(x.ctx, store.NewID())
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("ListUsable(unknown) = %v", err)
		}
		if len(list) != 0 {
			t.Fatalf("unknown user has usable configs")
		}
	})
	_ = time.Second
}
