package storetest

import (
	"testing"

	"mcpgw/domain"
	"mcpgw/store"
)

// rworld is the world of the ResolveRuntime table: alice owns personal
// configs in every auth mode; bob is a member assigned to org configs in
// every auth mode; carol is a member assigned to nothing but the oauth org
// config's sibling; owner and admin manage but are not assigned; dave is no
// member at all.
type rworld struct {
	x                       *h
	org, otherOrg           store.Org
	alice, bob, carol, dave store.User
	owner, admin            store.User
	pNone, pStatic, pOAuth  store.Config
	oNone, oStatic, oOAuth  store.Config
	routes                  map[string]store.Route
	inst                    map[string]store.Instance // config id → the main user's instance
	grants                  map[string]store.Grant
	carolOAuth              store.Instance // carol's instance of oOAuth (she is assigned to it)
}

func (x *h) runtimeWorld() *rworld {
	x.t.Helper()
	w := &rworld{x: x, routes: map[string]store.Route{}, inst: map[string]store.Instance{}, grants: map[string]store.Grant{}}
	w.alice, w.bob, w.carol, w.dave = x.user(), x.user(), x.user(), x.user()
	w.owner, w.admin = x.user(), x.user()
	w.org = x.org(w.owner.ID)
	w.otherOrg = x.org(w.owner.ID)
	x.member(w.org.ID, w.admin.ID, store.RoleAdmin)
	x.member(w.org.ID, w.bob.ID, store.RoleMember)
	x.member(w.org.ID, w.carol.ID, store.RoleMember)
	x.member(w.otherOrg.ID, w.dave.ID, store.RoleMember)

	mk := func(scope store.OwnerScope, owner string, mode store.AuthMode, sharing store.SharingMode, user string) store.Config {
		c, r := x.config(scope, owner, mode, sharing, func(c *store.Config) {
			c.PathPassthrough = mode == store.AuthStaticHeaders
		})
		w.routes[c.ID] = r
		if scope == store.ScopeOrg {
			x.assign(c.ID, user)
		}
		in := x.instance(c, user)
		if mode.IsOAuth() {
			w.grants[c.ID] = x.grant(in.ID, c.ID)
			in = x.getInstance(in.ID)
		}
		w.inst[c.ID] = in
		return c
	}
	w.pNone = mk(store.ScopeUser, w.alice.ID, store.AuthNone, store.SingleUser, w.alice.ID)
	w.pStatic = mk(store.ScopeUser, w.alice.ID, store.AuthStaticHeaders, store.SingleUser, w.alice.ID)
	w.pOAuth = mk(store.ScopeUser, w.alice.ID, store.AuthOAuthDynamic, store.SingleUser, w.alice.ID)
	w.oNone = mk(store.ScopeOrg, w.org.ID, store.AuthNone, store.SingleUser, w.bob.ID)
	w.oStatic = mk(store.ScopeOrg, w.org.ID, store.AuthStaticHeaders, store.MultiUser, w.bob.ID)
	w.oOAuth = mk(store.ScopeOrg, w.org.ID, store.AuthOAuthStatic, store.MultiUser, w.bob.ID)
	x.assign(w.oOAuth.ID, w.carol.ID)
	w.carolOAuth = x.instance(w.oOAuth, w.carol.ID)
	x.grant(w.carolOAuth.ID, "carol")
	return w
}

// q builds the query a valid token of the config's main user would carry.
func (w *rworld) q(c store.Config) store.RuntimeQuery {
	user := w.alice.ID
	if c.OwnerScope == store.ScopeOrg {
		user = w.bob.ID
	}
	return store.RuntimeQuery{
		ConfigID:         c.ID,
		RouteKey:         w.routes[c.ID].Key,
		OwnerScope:       c.OwnerScope,
		OwnerID:          c.OwnerID,
		UserID:           user,
		InstanceID:       w.inst[c.ID].ID,
		ConfigVersion:    c.Version,
		ExecutionContext: store.ExecutionContext(c.OwnerScope, c.OwnerID),
	}
}

type runtimeCase struct {
	name string
	// setup changes the world (may be nil) and returns the query.
	setup func(w *rworld) store.RuntimeQuery
	want  store.Reason
	// cfg names the config whose fields a success must return.
	cfg func(w *rworld) store.Config
}

func runtimeCases() []runtimeCase {
	x := func(w *rworld) *h { return w.x }
	is := func(pick func(w *rworld) store.Config) func(w *rworld) store.RuntimeQuery {
		return func(w *rworld) store.RuntimeQuery { return w.q(pick(w)) }
	}
	pNone := func(w *rworld) store.Config { return w.pNone }
	pStatic := func(w *rworld) store.Config { return w.pStatic }
	pOAuth := func(w *rworld) store.Config { return w.pOAuth }
	oNone := func(w *rworld) store.Config { return w.oNone }
	oStatic := func(w *rworld) store.Config { return w.oStatic }
	oOAuth := func(w *rworld) store.Config { return w.oOAuth }
	must := func(w *rworld, what string, err error) {
		w.x.t.Helper()
		if err != nil {
			w.x.t.Fatalf("%s: %v", what, err)
		}
	}
	return []runtimeCase{
		// ---- allow: personal/org × none/static/oauth ----
		{name: "AllowPersonalNone", setup: is(pNone), cfg: pNone},
		{name: "AllowPersonalStatic", setup: is(pStatic), cfg: pStatic},
		{name: "AllowPersonalOAuth", setup: is(pOAuth), cfg: pOAuth},
		{name: "AllowOrgNoneSingleUser", setup: is(oNone), cfg: oNone},
		{name: "AllowOrgStatic", setup: is(oStatic), cfg: oStatic},
		{name: "AllowOrgOAuth", setup: is(oOAuth), cfg: oOAuth},
		{name: "AllowOrgOAuthSecondAssignee", setup: func(w *rworld) store.RuntimeQuery {
			q := w.q(w.oOAuth)
			q.UserID, q.InstanceID = w.carol.ID, w.carolOAuth.ID
			return q
		}, cfg: oOAuth},
		{name: "AllowAfterRotationWithNewKey", setup: func(w *rworld) store.RuntimeQuery {
			r, err := x(w).s.RotateRoute(x(w).ctx, w.pNone.ID, store.NewID(), domain.NewRouteKey(), nil)
			must(w, "RotateRoute", err)
			q := w.q(w.pNone)
			q.RouteKey = r.Key
			return q
		}, cfg: pNone},
		{name: "AllowAfterNonMaterialChange", setup: func(w *rworld) store.RuntimeQuery {
			_, _, err := x(w).s.UpdateConfig(x(w).ctx, w.pStatic.ID, func(c *store.Config) error { c.StaticHeaders = []byte("ciphertext-rotated-headers"); return nil }, nil)
			must(w, "UpdateConfig", err)
			w.pStatic.StaticHeaders = []byte("ciphertext-rotated-headers")
			return w.q(w.pStatic)
		}, cfg: pStatic},
		{name: "AllowAfterMaterialChangeNewVersion", setup: func(w *rworld) store.RuntimeQuery {
			c, _, err := x(w).s.UpdateConfig(x(w).ctx, w.pNone.ID, func(c *store.Config) error { c.RemoteURL = "https://moved.example.com/mcp"; return nil }, nil)
			must(w, "UpdateConfig", err)
			w.pNone = c
			return w.q(w.pNone)
		}, cfg: pNone},
		{name: "AllowAfterReenable", setup: func(w *rworld) store.RuntimeQuery {
			_, err := x(w).s.SetConfigStatus(x(w).ctx, w.oStatic.ID, store.ConfigDisabled, nil)
			must(w, "disable", err)
			_, err = x(w).s.SetConfigStatus(x(w).ctx, w.oStatic.ID, store.ConfigEnabled, nil)
			must(w, "enable", err)
			return w.q(w.oStatic)
		}, cfg: oStatic},
		{name: "AllowAfterReauthGrant", setup: func(w *rworld) store.RuntimeQuery {
			in := w.inst[w.pOAuth.ID]
			ok, err := x(w).s.MarkNeedsReauth(x(w).ctx, in.ID, w.grants[w.pOAuth.ID].Version, nil)
			must(w, "MarkNeedsReauth", err)
			if !ok {
				w.x.t.Fatalf("MarkNeedsReauth = false")
			}
			w.grants[w.pOAuth.ID] = x(w).grant(in.ID, "reauth")
			return w.q(w.pOAuth)
		}, cfg: pOAuth},

		{name: "AllowAfterUnblock", setup: func(w *rworld) store.RuntimeQuery {
			// Blocking removes nothing: unblocking restores use as it was.
			_, err := x(w).s.SetUserStatus(x(w).ctx, w.bob.ID, store.UserBlocked, nil)
			must(w, "block", err)
			_, err = x(w).s.SetUserStatus(x(w).ctx, w.bob.ID, store.UserActive, nil)
			must(w, "unblock", err)
			return w.q(w.oOAuth)
		}, cfg: oOAuth},
		{name: "AllowRejoinedMemberNewInstance", setup: func(w *rworld) store.RuntimeQuery {
			must(w, "RemoveMember", x(w).s.RemoveMember(x(w).ctx, w.org.ID, w.bob.ID, nil))
			x(w).member(w.org.ID, w.bob.ID, store.RoleMember)
			x(w).assign(w.oStatic.ID, w.bob.ID)
			w.inst[w.oStatic.ID] = x(w).instance(w.oStatic, w.bob.ID)
			return w.q(w.oStatic)
		}, cfg: oStatic},

		// ---- route_not_found ----
		{name: "UnknownConfig", want: store.ReasonRouteNotFound, setup: func(w *rworld) store.RuntimeQuery {
			q := w.q(w.pNone)
			q.ConfigID = store.NewID()
			return q
		}},
		{name: "WrongScope", want: store.ReasonRouteNotFound, setup: func(w *rworld) store.RuntimeQuery {
			q := w.q(w.pNone)
			q.OwnerScope = store.ScopeOrg
			return q
		}},
		{name: "WrongOwner", want: store.ReasonRouteNotFound, setup: func(w *rworld) store.RuntimeQuery {
			q := w.q(w.pNone)
			q.OwnerID = w.bob.ID
			return q
		}},
		{name: "OrgConfigUnderOtherOrg", want: store.ReasonRouteNotFound, setup: func(w *rworld) store.RuntimeQuery {
			q := w.q(w.oNone)
			q.OwnerID = w.otherOrg.ID
			q.ExecutionContext = store.ExecutionContext(store.ScopeOrg, w.otherOrg.ID)
			return q
		}},
		// ---- config_deleted ----
		{name: "DeletedConfig", want: store.ReasonConfigDeleted, setup: func(w *rworld) store.RuntimeQuery {
			must(w, "DeleteConfig", x(w).s.DeleteConfig(x(w).ctx, w.oOAuth.ID, nil))
			return w.q(w.oOAuth)
		}},
		// ---- route_key_mismatch ----
		{name: "RotatedRouteOldKey", want: store.ReasonRouteKeyMismatch, setup: func(w *rworld) store.RuntimeQuery {
			_, err := x(w).s.RotateRoute(x(w).ctx, w.pOAuth.ID, store.NewID(), domain.NewRouteKey(), nil)
			must(w, "RotateRoute", err)
			return w.q(w.pOAuth)
		}},
		{name: "WrongRouteKey", want: store.ReasonRouteKeyMismatch, setup: func(w *rworld) store.RuntimeQuery {
			q := w.q(w.oStatic)
			q.RouteKey = domain.NewRouteKey()
			return q
		}},
		{name: "OtherConfigsRouteKey", want: store.ReasonRouteKeyMismatch, setup: func(w *rworld) store.RuntimeQuery {
			q := w.q(w.pNone)
			q.RouteKey = w.routes[w.pStatic.ID].Key
			return q
		}},
		// ---- config_disabled ----
		{name: "DisabledConfig", want: store.ReasonConfigDisabled, setup: func(w *rworld) store.RuntimeQuery {
			_, err := x(w).s.SetConfigStatus(x(w).ctx, w.pStatic.ID, store.ConfigDisabled, nil)
			must(w, "disable", err)
			return w.q(w.pStatic)
		}},
		// ---- config_version_mismatch ----
		{name: "MaterialChangeOldVersion", want: store.ReasonVersionMismatch, setup: func(w *rworld) store.RuntimeQuery {
			q := w.q(w.oOAuth)
			_, _, err := x(w).s.UpdateConfig(x(w).ctx, w.oOAuth.ID, func(c *store.Config) error { c.Provider.Scopes = []string{"admin"}; return nil }, nil)
			must(w, "UpdateConfig", err)
			return q
		}},
		{name: "FutureVersion", want: store.ReasonVersionMismatch, setup: func(w *rworld) store.RuntimeQuery {
			q := w.q(w.pNone)
			q.ConfigVersion++
			return q
		}},
		// ---- context_mismatch ----
		{name: "PersonalConfigOrgContext", want: store.ReasonContextMismatch, setup: func(w *rworld) store.RuntimeQuery {
			q := w.q(w.pNone)
			q.ExecutionContext = store.ExecutionContext(store.ScopeOrg, w.org.ID)
			return q
		}},
		{name: "OrgConfigPersonalContext", want: store.ReasonContextMismatch, setup: func(w *rworld) store.RuntimeQuery {
			q := w.q(w.oNone)
			q.ExecutionContext = "personal"
			return q
		}},
		{name: "OrgConfigOtherOrgContext", want: store.ReasonContextMismatch, setup: func(w *rworld) store.RuntimeQuery {
			q := w.q(w.oStatic)
			q.ExecutionContext = store.ExecutionContext(store.ScopeOrg, w.otherOrg.ID)
			return q
		}},
		// ---- user_* ----
		{name: "UnknownUser", want: store.ReasonUserNotFound, setup: func(w *rworld) store.RuntimeQuery {
			q := w.q(w.oNone)
			q.UserID = store.NewID()
			return q
		}},
		{name: "DeletedUser", want: store.ReasonUserDeleted, setup: func(w *rworld) store.RuntimeQuery {
			// An org config, so the cascade (membership, assignment and
			// instance removal) cannot mask the user rule: user_deleted
			// comes first.
			must(w, "SoftDeleteUser", x(w).s.SoftDeleteUser(x(w).ctx, w.bob.ID, nil))
			return w.q(w.oNone)
		}},
		{name: "BlockedUser", want: store.ReasonUserBlocked, setup: func(w *rworld) store.RuntimeQuery {
			_, err := x(w).s.SetUserStatus(x(w).ctx, w.bob.ID, store.UserBlocked, nil)
			must(w, "block", err)
			return w.q(w.oOAuth)
		}},
		{name: "ProvisionalUser", want: store.ReasonUserProvisional, setup: func(w *rworld) store.RuntimeQuery {
			_, err := x(w).s.SetUserStatus(x(w).ctx, w.alice.ID, store.UserProvisional, nil)
			must(w, "provisional", err)
			return w.q(w.pStatic)
		}},
		// ---- not_owner ----
		{name: "PersonalConfigOfSomeoneElse", want: store.ReasonNotOwner, setup: func(w *rworld) store.RuntimeQuery {
			q := w.q(w.pNone)
			q.UserID = w.bob.ID
			return q
		}},
		// ---- not_member / not_assigned ----
		{name: "OrgNonMember", want: store.ReasonNotMember, setup: func(w *rworld) store.RuntimeQuery {
			q := w.q(w.oStatic)
			q.UserID = w.dave.ID
			return q
		}},
		{name: "RemovedMember", want: store.ReasonNotMember, setup: func(w *rworld) store.RuntimeQuery {
			must(w, "RemoveMember", x(w).s.RemoveMember(x(w).ctx, w.org.ID, w.bob.ID, nil))
			return w.q(w.oNone)
		}},
		{name: "MemberNotAssigned", want: store.ReasonNotAssigned, setup: func(w *rworld) store.RuntimeQuery {
			q := w.q(w.oStatic)
			q.UserID = w.carol.ID
			return q
		}},
		{name: "OwnerNotAssigned", want: store.ReasonNotAssigned, setup: func(w *rworld) store.RuntimeQuery {
			q := w.q(w.oNone)
			q.UserID = w.owner.ID
			return q
		}},
		{name: "AdminNotAssigned", want: store.ReasonNotAssigned, setup: func(w *rworld) store.RuntimeQuery {
			q := w.q(w.oOAuth)
			q.UserID = w.admin.ID
			return q
		}},
		{name: "Unassigned", want: store.ReasonNotAssigned, setup: func(w *rworld) store.RuntimeQuery {
			must(w, "Unassign", x(w).s.Unassign(x(w).ctx, w.oStatic.ID, w.bob.ID, nil))
			return w.q(w.oStatic)
		}},
		{name: "SingleUserReassigned", want: store.ReasonNotAssigned, setup: func(w *rworld) store.RuntimeQuery {
			x(w).assign(w.oNone.ID, w.carol.ID)
			return w.q(w.oNone)
		}},
		// ---- instance_* ----
		{name: "UnknownInstance", want: store.ReasonInstanceNotFound, setup: func(w *rworld) store.RuntimeQuery {
			q := w.q(w.pNone)
			q.InstanceID = store.NewID()
			return q
		}},
		{name: "InstanceOfOtherConfig", want: store.ReasonInstanceMismatch, setup: func(w *rworld) store.RuntimeQuery {
			q := w.q(w.pNone)
			q.InstanceID = w.inst[w.pStatic.ID].ID
			return q
		}},
		{name: "InstanceOfOtherUser", want: store.ReasonInstanceMismatch, setup: func(w *rworld) store.RuntimeQuery {
			q := w.q(w.oOAuth)
			q.InstanceID = w.carolOAuth.ID
			return q
		}},
		{name: "NeedsReauthInstance", want: store.ReasonInstanceNotActive, setup: func(w *rworld) store.RuntimeQuery {
			ok, err := x(w).s.MarkNeedsReauth(x(w).ctx, w.inst[w.oOAuth.ID].ID, w.grants[w.oOAuth.ID].Version, nil)
			must(w, "MarkNeedsReauth", err)
			if !ok {
				w.x.t.Fatalf("MarkNeedsReauth = false")
			}
			return w.q(w.oOAuth)
		}},
		{name: "RevokedInstance", want: store.ReasonInstanceNotActive, setup: func(w *rworld) store.RuntimeQuery {
			_, err := x(w).s.EndInstance(x(w).ctx, w.inst[w.pStatic.ID].ID, store.InstanceRevoked, nil)
			must(w, "EndInstance", err)
			return w.q(w.pStatic)
		}},
		{name: "RemovedInstance", want: store.ReasonInstanceNotActive, setup: func(w *rworld) store.RuntimeQuery {
			_, err := x(w).s.EndInstance(x(w).ctx, w.inst[w.oNone.ID].ID, store.InstanceRemoved, nil)
			must(w, "EndInstance", err)
			return w.q(w.oNone)
		}},
		{name: "OldInstanceAfterNewOne", want: store.ReasonInstanceNotActive, setup: func(w *rworld) store.RuntimeQuery {
			q := w.q(w.pNone)
			_, err := x(w).s.EndInstance(x(w).ctx, q.InstanceID, store.InstanceRevoked, nil)
			must(w, "EndInstance", err)
			x(w).instance(w.pNone, w.alice.ID)
			return q
		}},
		{name: "OldInstanceAfterRejoin", want: store.ReasonInstanceNotActive, setup: func(w *rworld) store.RuntimeQuery {
			q := w.q(w.oStatic)
			must(w, "RemoveMember", x(w).s.RemoveMember(x(w).ctx, w.org.ID, w.bob.ID, nil))
			x(w).member(w.org.ID, w.bob.ID, store.RoleMember)
			x(w).assign(w.oStatic.ID, w.bob.ID)
			x(w).instance(w.oStatic, w.bob.ID)
			return q
		}},
		// ---- grant_missing ----
		{name: "OAuthGrantRevoked", want: store.ReasonGrantMissing, setup: func(w *rworld) store.RuntimeQuery {
			_, err := x(w).s.RevokeGrant(x(w).ctx, w.inst[w.pOAuth.ID].ID, nil)
			must(w, "RevokeGrant", err)
			return w.q(w.pOAuth)
		}},
		{name: "OAuthNeverGranted", want: store.ReasonGrantMissing, setup: func(w *rworld) store.RuntimeQuery {
			c, r := x(w).config(store.ScopeUser, w.alice.ID, store.AuthOAuthDynamic, store.SingleUser)
			w.routes[c.ID] = r
			w.inst[c.ID] = x(w).instance(c, w.alice.ID)
			return w.q(c)
		}},
		// ---- order: the first failing rule wins ----
		{name: "OrderNotFoundBeforeDeleted", want: store.ReasonRouteNotFound, setup: func(w *rworld) store.RuntimeQuery {
			q := w.q(w.pStatic)
			q.OwnerID = w.bob.ID
			must(w, "DeleteConfig", x(w).s.DeleteConfig(x(w).ctx, w.pStatic.ID, nil))
			return q
		}},
		{name: "OrderUserBeforeNotOwner", want: store.ReasonUserBlocked, setup: func(w *rworld) store.RuntimeQuery {
			_, err := x(w).s.SetUserStatus(x(w).ctx, w.bob.ID, store.UserBlocked, nil)
			must(w, "block", err)
			q := w.q(w.pNone)
			q.UserID = w.bob.ID
			return q
		}},
		{name: "OrderNotActiveBeforeGrant", want: store.ReasonInstanceNotActive, setup: func(w *rworld) store.RuntimeQuery {
			_, err := x(w).s.EndInstance(x(w).ctx, w.inst[w.pOAuth.ID].ID, store.InstanceRevoked, nil)
			must(w, "EndInstance", err)
			return w.q(w.pOAuth)
		}},
		{name: "OrderDeletedBeforeKey", want: store.ReasonConfigDeleted, setup: func(w *rworld) store.RuntimeQuery {
			q := w.q(w.pNone)
			q.RouteKey = domain.NewRouteKey()
			must(w, "DeleteConfig", x(w).s.DeleteConfig(x(w).ctx, w.pNone.ID, nil))
			return q
		}},
		{name: "OrderKeyBeforeDisabled", want: store.ReasonRouteKeyMismatch, setup: func(w *rworld) store.RuntimeQuery {
			q := w.q(w.oNone)
			q.RouteKey = domain.NewRouteKey()
			_, err := x(w).s.SetConfigStatus(x(w).ctx, w.oNone.ID, store.ConfigDisabled, nil)
			must(w, "disable", err)
			return q
		}},
		{name: "OrderDisabledBeforeVersion", want: store.ReasonConfigDisabled, setup: func(w *rworld) store.RuntimeQuery {
			q := w.q(w.pStatic)
			q.ConfigVersion = 7
			_, err := x(w).s.SetConfigStatus(x(w).ctx, w.pStatic.ID, store.ConfigDisabled, nil)
			must(w, "disable", err)
			return q
		}},
		{name: "OrderVersionBeforeContext", want: store.ReasonVersionMismatch, setup: func(w *rworld) store.RuntimeQuery {
			q := w.q(w.oStatic)
			q.ConfigVersion = 7
			q.ExecutionContext = "personal"
			return q
		}},
		{name: "OrderContextBeforeUser", want: store.ReasonContextMismatch, setup: func(w *rworld) store.RuntimeQuery {
			q := w.q(w.oStatic)
			q.ExecutionContext = "personal"
			q.UserID = store.NewID()
			return q
		}},
		{name: "OrderBlockedBeforeNotMember", want: store.ReasonUserBlocked, setup: func(w *rworld) store.RuntimeQuery {
			_, err := x(w).s.SetUserStatus(x(w).ctx, w.dave.ID, store.UserBlocked, nil)
			must(w, "block", err)
			q := w.q(w.oStatic)
			q.UserID = w.dave.ID
			return q
		}},
		{name: "OrderNotOwnerBeforeInstance", want: store.ReasonNotOwner, setup: func(w *rworld) store.RuntimeQuery {
			q := w.q(w.pOAuth)
			q.UserID = w.carol.ID
			q.InstanceID = store.NewID()
			return q
		}},
		{name: "OrderNotMemberBeforeInstance", want: store.ReasonNotMember, setup: func(w *rworld) store.RuntimeQuery {
			q := w.q(w.oOAuth)
			q.UserID = w.dave.ID
			q.InstanceID = store.NewID()
			return q
		}},
		{name: "OrderNotAssignedBeforeInstance", want: store.ReasonNotAssigned, setup: func(w *rworld) store.RuntimeQuery {
			q := w.q(w.oNone)
			q.UserID = w.carol.ID
			q.InstanceID = w.carolOAuth.ID
			return q
		}},
		{name: "OrderMismatchBeforeNotActive", want: store.ReasonInstanceMismatch, setup: func(w *rworld) store.RuntimeQuery {
			_, err := x(w).s.EndInstance(x(w).ctx, w.inst[w.pStatic.ID].ID, store.InstanceRemoved, nil)
			must(w, "EndInstance", err)
			q := w.q(w.pNone)
			q.InstanceID = w.inst[w.pStatic.ID].ID
			return q
		}},
	}
}

// testResolveRuntime runs the eligibility table (DESIGN §3, §6 step 6): every
// Reason in the documented order, and allow cases for personal and org
// configs in every auth mode.
func testResolveRuntime(t *testing.T, newStore NewStore) {
	cases := runtimeCases()
	seen := map[store.Reason]bool{}
	for _, tc := range cases {
		seen[tc.want] = true
	}
	for _, r := range allReasons {
		if !seen[r] {
			t.Errorf("the table has no case for reason %q", r)
		}
	}
	// Every case builds its own world (fresh ids) in one shared store.
	shared := open(t, newStore)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := shared.sub(t)
			w := x.runtimeWorld()
			q := tc.setup(w)
			rs, err := x.s.ResolveRuntime(x.ctx, q)
			wantErr(t, "ResolveRuntime", err, nil)
			if rs.Reason != tc.want {
				t.Fatalf("Reason = %q, want %q", rs.Reason, tc.want)
			}
			if tc.want != store.ReasonOK {
				if rs.OK() || rs.Grant != nil {
					t.Fatalf("denial carries a grant or OK: %+v", rs)
				}
				return
			}
			if !rs.OK() {
				t.Fatalf("OK() = false for an allow")
			}
			if rs.Checked.IsZero() {
				t.Fatalf("Checked (the time the facts were read) is zero")
			}
			want := x.getConfig(tc.cfg(w).ID)
			rc := rs.Config
			if rc.ID != want.ID || rc.AuthMode != want.AuthMode || rc.Version != want.Version || rc.PathPassthrough != want.PathPassthrough ||
				rc.RemoteURL != want.RemoteURL || !sameBytes(rc.StaticHeaders, want.StaticHeaders) ||
				!sameStrings(rc.StaticHeaderNames, want.StaticHeaderNames) || !sameMap(rc.AuxHeaders, want.AuxHeaders) {
				t.Fatalf("runtime config = %+v, want fields of %+v", rc, want)
			}
			if rs.InstanceID != q.InstanceID {
				t.Fatalf("InstanceID = %q, want %q", rs.InstanceID, q.InstanceID)
			}
			in := x.getInstance(q.InstanceID)
			if rs.GrantVersion != in.GrantVersion {
				t.Fatalf("GrantVersion = %d, want %d", rs.GrantVersion, in.GrantVersion)
			}
			if !want.AuthMode.IsOAuth() {
				if rs.Grant != nil {
					t.Fatalf("non-OAuth config returned a grant")
				}
				return
			}
			g, err := x.s.GetGrant(x.ctx, q.InstanceID)
			wantErr(t, "GetGrant", err, nil)
			if rs.Grant == nil {
				t.Fatalf("OAuth allow without grant")
			}
			checkGrant(t, *rs.Grant, g)
			if rs.Grant.Version != g.Version {
				t.Fatalf("grant version = %d, want %d", rs.Grant.Version, g.Version)
			}
		})
	}
}

// allReasons lists every Reason of store/runtime.go, in the documented order.
var allReasons = []store.Reason{
	store.ReasonOK,
	store.ReasonRouteNotFound,
	store.ReasonConfigDeleted,
	store.ReasonRouteKeyMismatch,
	store.ReasonConfigDisabled,
	store.ReasonVersionMismatch,
	store.ReasonContextMismatch,
	store.ReasonUserNotFound,
	store.ReasonUserDeleted,
	store.ReasonUserBlocked,
	store.ReasonUserProvisional,
	store.ReasonNotOwner,
	store.ReasonNotMember,
	store.ReasonNotAssigned,
	store.ReasonInstanceNotFound,
	store.ReasonInstanceMismatch,
	store.ReasonInstanceNotActive,
	store.ReasonGrantMissing,
}
