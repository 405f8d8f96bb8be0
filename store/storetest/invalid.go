package storetest

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"mcpgw/domain"
	"mcpgw/store"
)

// iworld is a populated store against which every invalid call is made; a
// snapshot of everything readable proves that no rejected call changed
// anything.
type iworld struct {
	oworld
	org     store.Org
	orgCfg  store.Config
	member  store.User
	orgInst store.Instance
	token   store.APIToken
	session store.Session
	refresh store.RefreshToken
	request store.AuthRequest
	ticket  store.ConsentTicket
	code    store.AuthCode
	pending store.PendingProviderState
}

func (x *h) invalidWorld() *iworld {
	x.t.Helper()
	w := &iworld{oworld: x.oauthWorld()}
	w.org = x.org(w.user.ID)
	w.member = x.user()
	x.member(w.org.ID, w.member.ID, store.RoleMember)
	w.orgCfg, _ = x.config(store.ScopeOrg, w.org.ID, store.AuthOAuthStatic, store.MultiUser)
	x.assign(w.orgCfg.ID, w.member.ID)
	w.orgInst = x.instance(w.orgCfg, w.member.ID)
	x.grant(w.orgInst.ID, "iw")
	var err error
	w.token, err = x.s.CreateAPIToken(x.ctx, store.APIToken{ID: store.NewID(), UserID: w.user.ID, Name: "iw", Hash: hash("iw-api"), CreatedAt: t0})
	if err != nil {
		x.t.Fatalf("CreateAPIToken: %v", err)
	}
	w.session = store.Session{IDHash: hash("iw-session"), UserID: w.user.ID, CSRFHash: hash("iw-csrf"), CreatedAt: t0, ExpiresAt: at(time.Hour)}
	if err := x.s.CreateSession(x.ctx, w.session); err != nil {
		x.t.Fatalf("CreateSession: %v", err)
	}
	w.refresh = w.refreshToken("iw", store.NewID(), at(time.Hour))
	if err := x.s.CreateRefreshToken(x.ctx, w.refresh); err != nil {
		x.t.Fatalf("CreateRefreshToken: %v", err)
	}
	w.request = w.authRequest(at(time.Hour))
	if err := x.s.CreateAuthRequest(x.ctx, w.request); err != nil {
		x.t.Fatalf("CreateAuthRequest: %v", err)
	}
	w.ticket = w.consentTicket("iw", w.request.ID, at(time.Hour))
	if err := x.s.CreateConsentTicket(x.ctx, w.ticket); err != nil {
		x.t.Fatalf("CreateConsentTicket: %v", err)
	}
	w.code = w.authCode("iw", at(time.Hour))
	if err := x.s.CreateAuthCode(x.ctx, w.code); err != nil {
		x.t.Fatalf("CreateAuthCode: %v", err)
	}
	w.pending = x.pending("iw", w.member.ID, w.orgCfg, w.orgInst.ID)
	if err := x.s.PutProviderRegistration(x.ctx, store.ProviderRegistration{ConfigID: w.orgCfg.ID, ConfigVersion: 1, Ciphertext: []byte("ciphertext-iw-reg"), CreatedAt: t0}); err != nil {
		x.t.Fatalf("PutProviderRegistration: %v", err)
	}
	if err := x.s.AppendAudit(x.ctx, store.AuditEvent{Time: t0, Type: "iw.setup", Outcome: "success"}); err != nil {
		x.t.Fatalf("AppendAudit: %v", err)
	}
	return w
}

// snapshot serializes everything readable without side effects.
func (x *h) snapshot(w *iworld) string {
	x.t.Helper()
	var parts []any
	add := func(name string, v any, err error) {
		parts = append(parts, map[string]any{"what": name, "value": v, "err": errString(err)})
	}
	us, err := x.s.ListUsers(x.ctx, true)
	add("users", us, err)
	os, err := x.s.ListOrgs(x.ctx)
	add("orgs", os, err)
	ms, err := x.s.ListMembers(x.ctx, w.org.ID)
	add("members", ms, err)
	cs, err := x.s.ListConfigs(x.ctx, "", "")
	add("configs", cs, err)
	for _, c := range []store.Config{w.cfg, w.orgCfg} {
		r, err := x.s.GetActiveRoute(x.ctx, c.ID)
		add("route", r, err)
	}
	rs, err := x.s.ListRoutable(x.ctx)
	add("routable", rs, err)
	as, err := x.s.ListAssignments(x.ctx, w.orgCfg.ID)
	add("assignments", as, err)
	is, err := x.s.ListInstances(x.ctx, "", "", true)
	add("instances", is, err)
	for _, in := range []store.Instance{w.inst, w.orgInst} {
		g, err := x.s.GetGrant(x.ctx, in.ID)
		add("grant", g, err)
	}
	ts, err := x.s.ListAPITokens(x.ctx, w.user.ID)
	add("api tokens", ts, err)
	se, err := x.s.GetSession(x.ctx, w.session.IDHash, t0)
	add("session", se, err)
	rt, err := x.s.GetRefreshToken(x.ctx, w.refresh.Hash)
	add("refresh", rt, err)
	ar, err := x.s.GetAuthRequest(x.ctx, w.request.ID, t0)
	add("auth request", ar, err)
	cl, err := x.s.GetClient(x.ctx, w.client.ID)
	add("client", cl, err)
	pr, err := x.s.GetProviderRegistration(x.ctx, w.orgCfg.ID, 1)
	add("registration", pr, err)
	evs, _, err := x.s.QueryAudit(x.ctx, store.AuditFilter{Limit: 1000})
	add("audit", evs, err)
	b, err := json.Marshal(parts)
	if err != nil {
		x.t.Fatalf("snapshot: %v", err)
	}
	return string(b)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

type invalidCase struct {
	name string
	call func(ctx context.Context, s store.Store, w *iworld) error
}

var (
	big      = strings.Repeat("x", 1<<20)
	bigBytes = make([]byte, 1<<20)
)

// invalidCases lists, per method, inputs every implementation must reject
// with ErrInvalid before touching anything.
func invalidCases() []invalidCase {
	okUser := func() store.User {
		id := store.NewID()
		return store.User{ID: id, Email: "new-" + id[:8] + "@example.test", DisplayName: "New", Status: store.UserActive, CreatedAt: t0}
	}
	okCfg := func(w *iworld) store.Config {
		return newConfig(store.ScopeUser, w.user.ID, store.AuthNone, store.SingleUser)
	}
	okOrg := func() store.Org {
		return store.Org{ID: store.NewID(), Name: "new-org-" + store.NewID()[:8], CreatedAt: t0}
	}
	okGrant := func(w *iworld) store.Grant { return newGrant(w.orgInst.ID, "invalid") }
	okNext := func(w *iworld) store.RefreshToken {
		return w.refreshToken("invalid-next", w.refresh.FamilyID, at(2*time.Hour))
	}
	noop := func(*store.Grant) (*store.Grant, error) { return nil, nil }
	bad := &store.AuditEvent{Type: "", Outcome: "success"}
	createUser := func(mod func(*store.User)) func(ctx context.Context, s store.Store, w *iworld) error {
		return func(ctx context.Context, s store.Store, w *iworld) error {
			u := okUser()
			mod(&u)
			_, err := s.CreateUser(ctx, u)
			return err
		}
	}
	createConfig := func(mod func(*store.Config)) func(ctx context.Context, s store.Store, w *iworld) error {
		return func(ctx context.Context, s store.Store, w *iworld) error {
			c := okCfg(w)
			mod(&c)
			_, _, err := s.CreateConfig(ctx, c, store.NewID(), domain.NewRouteKey(), nil)
			return err
		}
	}
	putGrant := func(mod func(*store.Grant)) func(ctx context.Context, s store.Store, w *iworld) error {
		return func(ctx context.Context, s store.Store, w *iworld) error {
			g := okGrant(w)
			mod(&g)
			_, err := s.PutGrant(ctx, g, -1, nil)
			return err
		}
	}
	createClient := func(mod func(*store.OAuthClient)) func(ctx context.Context, s store.Store, w *iworld) error {
		return func(ctx context.Context, s store.Store, w *iworld) error {
			c := w.client
			c.ID = "dcr:" + store.NewID()
			mod(&c)
			_, err := s.CreateClient(ctx, c)
			return err
		}
	}
	q := func(mod func(*store.RuntimeQuery)) func(ctx context.Context, s store.Store, w *iworld) error {
		return func(ctx context.Context, s store.Store, w *iworld) error {
			r, _ := s.GetActiveRoute(ctx, w.orgCfg.ID)
			rq := store.RuntimeQuery{ConfigID: w.orgCfg.ID, RouteKey: r.Key, OwnerScope: store.ScopeOrg, OwnerID: w.org.ID,
				UserID: w.member.ID, InstanceID: w.orgInst.ID, ConfigVersion: 1, ExecutionContext: "org:" + w.org.ID}
			mod(&rq)
			_, err := s.ResolveRuntime(ctx, rq)
			return err
		}
	}
	type C = invalidCase
	type S = store.Store
	type X = context.Context
	return []C{
		// ---- users ----
		{"CreateUser/EmptyID", createUser(func(u *store.User) { u.ID = "" })},
		{"CreateUser/NonUUIDID", createUser(func(u *store.User) { u.ID = "user-1" })},
		{"CreateUser/BadEmail", createUser(func(u *store.User) { u.Email = "no-at-sign" })},
		{"CreateUser/OversizeName", createUser(func(u *store.User) { u.DisplayName = big })},
		{"CreateUser/UnknownStatus", createUser(func(u *store.User) { u.Status = "vip" })},
		{"CreateUser/Deleted", createUser(func(u *store.User) { u.Status = store.UserDeleted })},
		{"CreateUser/HalfOIDC", createUser(func(u *store.User) { u.OIDCIssuer = "https://idp.example.test" })},
		{"GetUser/Empty", func(ctx X, s S, w *iworld) error { _, err := s.GetUser(ctx, ""); return err }},
		{"GetUser/NonUUID", func(ctx X, s S, w *iworld) error { _, err := s.GetUser(ctx, "../etc/passwd"); return err }},
		{"GetUserByEmail/Empty", func(ctx X, s S, w *iworld) error { _, err := s.GetUserByEmail(ctx, ""); return err }},
		{"GetUserByOIDC/EmptyIssuer", func(ctx X, s S, w *iworld) error { _, err := s.GetUserByOIDC(ctx, "", "sub"); return err }},
		{"SetUserStatus/Unknown", func(ctx X, s S, w *iworld) error {
			_, err := s.SetUserStatus(ctx, w.member.ID, "superuser", nil)
			return err
		}},
		{"SetUserStatus/EmptyID", func(ctx X, s S, w *iworld) error {
			_, err := s.SetUserStatus(ctx, "", store.UserBlocked, nil)
			return err
		}},
		{"SetUserStatus/BadAuditEvent", func(ctx X, s S, w *iworld) error {
			_, err := s.SetUserStatus(ctx, w.member.ID, store.UserBlocked, bad)
			return err
		}},
		{"SetSystemAdmin/EmptyID", func(ctx X, s S, w *iworld) error { _, err := s.SetSystemAdmin(ctx, "", true, nil); return err }},
		{"SoftDeleteUser/EmptyID", func(ctx X, s S, w *iworld) error { return s.SoftDeleteUser(ctx, "", nil) }},
		{"SoftDeleteUser/BadAuditEvent", func(ctx X, s S, w *iworld) error {
			return s.SoftDeleteUser(ctx, w.member.ID, &store.AuditEvent{Type: "user.delete", OwnerScope: "galaxy"})
		}},
		// ---- API tokens and sessions ----
		{"CreateAPIToken/ShortHash", func(ctx X, s S, w *iworld) error {
			_, err := s.CreateAPIToken(ctx, store.APIToken{ID: store.NewID(), UserID: w.user.ID, Name: "t", Hash: make([]byte, 31), CreatedAt: t0})
			return err
		}},
		{"CreateAPIToken/EmptyUser", func(ctx X, s S, w *iworld) error {
			_, err := s.CreateAPIToken(ctx, store.APIToken{ID: store.NewID(), Name: "t", Hash: hash("x"), CreatedAt: t0})
			return err
		}},
		{"CreateAPIToken/OversizeName", func(ctx X, s S, w *iworld) error {
			_, err := s.CreateAPIToken(ctx, store.APIToken{ID: store.NewID(), UserID: w.user.ID, Name: big, Hash: hash("x"), CreatedAt: t0})
			return err
		}},
		{"GetAPITokenByHash/Empty", func(ctx X, s S, w *iworld) error { _, err := s.GetAPITokenByHash(ctx, nil, t0); return err }},
		{"ListAPITokens/Empty", func(ctx X, s S, w *iworld) error { _, err := s.ListAPITokens(ctx, ""); return err }},
		{"RevokeAPIToken/EmptyToken", func(ctx X, s S, w *iworld) error { return s.RevokeAPIToken(ctx, w.user.ID, "", t0) }},
		{"RevokeAPIToken/EmptyUser", func(ctx X, s S, w *iworld) error { return s.RevokeAPIToken(ctx, "", w.token.ID, t0) }},
		{"CreateSession/EmptyHash", func(ctx X, s S, w *iworld) error {
			return s.CreateSession(ctx, store.Session{UserID: w.user.ID, CreatedAt: t0, ExpiresAt: at(time.Hour)})
		}},
		{"CreateSession/NoExpiry", func(ctx X, s S, w *iworld) error {
			return s.CreateSession(ctx, store.Session{IDHash: hash("s-noexp"), UserID: w.user.ID, CreatedAt: t0})
		}},
		{"GetSession/ShortHash", func(ctx X, s S, w *iworld) error { _, err := s.GetSession(ctx, []byte("abc"), t0); return err }},
		{"RevokeSession/Empty", func(ctx X, s S, w *iworld) error { return s.RevokeSession(ctx, nil, t0) }},
		// ---- orgs ----
		{"CreateOrg/EmptyName", func(ctx X, s S, w *iworld) error {
			o := okOrg()
			o.Name = ""
			_, err := s.CreateOrg(ctx, o, w.user.ID, nil)
			return err
		}},
		{"CreateOrg/OversizeName", func(ctx X, s S, w *iworld) error {
			o := okOrg()
			o.Name = big
			_, err := s.CreateOrg(ctx, o, w.user.ID, nil)
			return err
		}},
		{"CreateOrg/EmptyOwner", func(ctx X, s S, w *iworld) error { _, err := s.CreateOrg(ctx, okOrg(), "", nil); return err }},
		{"CreateOrg/BadAuditEvent", func(ctx X, s S, w *iworld) error { _, err := s.CreateOrg(ctx, okOrg(), w.user.ID, bad); return err }},
		{"GetOrg/Empty", func(ctx X, s S, w *iworld) error { _, err := s.GetOrg(ctx, ""); return err }},
		{"AddMember/UnknownRole", func(ctx X, s S, w *iworld) error {
			_, err := s.AddMember(ctx, store.Member{OrgID: w.org.ID, UserID: w.user.ID, Role: "superuser"}, nil)
			return err
		}},
		{"AddMember/EmptyOrg", func(ctx X, s S, w *iworld) error {
			_, err := s.AddMember(ctx, store.Member{UserID: w.member.ID, Role: store.RoleMember}, nil)
			return err
		}},
		{"SetMemberRole/UnknownRole", func(ctx X, s S, w *iworld) error {
			_, err := s.SetMemberRole(ctx, w.org.ID, w.member.ID, "root", nil)
			return err
		}},
		{"RemoveMember/EmptyUser", func(ctx X, s S, w *iworld) error { return s.RemoveMember(ctx, w.org.ID, "", nil) }},
		{"RemoveMember/BadAuditEvent", func(ctx X, s S, w *iworld) error { return s.RemoveMember(ctx, w.org.ID, w.member.ID, bad) }},
		{"GetMember/EmptyOrg", func(ctx X, s S, w *iworld) error { _, err := s.GetMember(ctx, "", w.member.ID); return err }},
		{"ListMembers/Empty", func(ctx X, s S, w *iworld) error { _, err := s.ListMembers(ctx, ""); return err }},
		{"ListMemberships/NonUUID", func(ctx X, s S, w *iworld) error { _, err := s.ListMemberships(ctx, "me"); return err }},
		// ---- configs ----
		{"CreateConfig/UnknownAuthMode", createConfig(func(c *store.Config) { c.AuthMode = "password" })},
		{"CreateConfig/UnknownSharingMode", createConfig(func(c *store.Config) { c.SharingMode = "everyone" })},
		{"CreateConfig/UnknownScope", createConfig(func(c *store.Config) { c.OwnerScope = "team" })},
		{"CreateConfig/PersonalMultiUser", createConfig(func(c *store.Config) { c.SharingMode = store.MultiUser })},
		{"CreateConfig/EmptyID", createConfig(func(c *store.Config) { c.ID = "" })},
		{"CreateConfig/EmptyName", createConfig(func(c *store.Config) { c.Name = "" })},
		{"CreateConfig/OversizeName", createConfig(func(c *store.Config) { c.Name = big })},
		{"CreateConfig/BadRemoteURL", createConfig(func(c *store.Config) { c.RemoteURL = "not a url" })},
		{"CreateConfig/OversizeRemoteURL", createConfig(func(c *store.Config) { c.RemoteURL = "https://x.example.com/" + big })},
		{"CreateConfig/OversizeStaticHeaders", createConfig(func(c *store.Config) {
			c.AuthMode = store.AuthStaticHeaders
			c.StaticHeaders = bigBytes
			c.StaticHeaderNames = []string{"authorization"}
		})},
		{"CreateConfig/StaticModeWithoutHeaders", createConfig(func(c *store.Config) { c.AuthMode = store.AuthStaticHeaders })},
		{"CreateConfig/OversizeAuxHeaders", createConfig(func(c *store.Config) { c.AuxHeaders = bigMap(5000) })},
		{"CreateConfig/OversizeRegistry", createConfig(func(c *store.Config) { c.Registry = json.RawMessage(`{"x":"` + big + `"}`) })},
		{"CreateConfig/RegistryNotJSON", createConfig(func(c *store.Config) { c.Registry = json.RawMessage(`{not json`) })},
		{"CreateConfig/StatusDeleted", createConfig(func(c *store.Config) { c.Status = store.ConfigDeleted })},
		{"CreateConfig/ShortRouteKey", func(ctx X, s S, w *iworld) error {
			_, _, err := s.CreateConfig(ctx, okCfg(w), store.NewID(), "abc", nil)
			return err
		}},
		{"CreateConfig/EmptyRouteID", func(ctx X, s S, w *iworld) error {
			_, _, err := s.CreateConfig(ctx, okCfg(w), "", domain.NewRouteKey(), nil)
			return err
		}},
		{"CreateConfig/BadAuditEvent", func(ctx X, s S, w *iworld) error {
			_, _, err := s.CreateConfig(ctx, okCfg(w), store.NewID(), domain.NewRouteKey(), &store.AuditEvent{Type: "config.create", Metadata: map[string]string{"k": big}})
			return err
		}},
		{"GetConfig/Empty", func(ctx X, s S, w *iworld) error { _, err := s.GetConfig(ctx, ""); return err }},
		{"ListConfigs/UnknownScope", func(ctx X, s S, w *iworld) error { _, err := s.ListConfigs(ctx, "team", w.user.ID); return err }},
		{"UpdateConfig/EmptyID", func(ctx X, s S, w *iworld) error {
			_, _, err := s.UpdateConfig(ctx, "", func(*store.Config) error { return nil }, nil)
			return err
		}},
		{"UpdateConfig/NilFunc", func(ctx X, s S, w *iworld) error { _, _, err := s.UpdateConfig(ctx, w.orgCfg.ID, nil, nil); return err }},
		{"UpdateConfig/ResultUnknownMode", func(ctx X, s S, w *iworld) error {
			_, _, err := s.UpdateConfig(ctx, w.orgCfg.ID, func(c *store.Config) error { c.AuthMode = "kerberos"; return nil }, nil)
			return err
		}},
		{"UpdateConfig/BadAuditEvent", func(ctx X, s S, w *iworld) error {
			_, _, err := s.UpdateConfig(ctx, w.orgCfg.ID, func(c *store.Config) error { c.RemoteURL = "https://changed.example.com/"; return nil }, bad)
			return err
		}},
		{"SetConfigStatus/Unknown", func(ctx X, s S, w *iworld) error {
			_, err := s.SetConfigStatus(ctx, w.orgCfg.ID, "paused", nil)
			return err
		}},
		{"SetConfigStatus/Deleted", func(ctx X, s S, w *iworld) error {
			_, err := s.SetConfigStatus(ctx, w.orgCfg.ID, store.ConfigDeleted, nil)
			return err
		}},
		{"DeleteConfig/Empty", func(ctx X, s S, w *iworld) error { return s.DeleteConfig(ctx, "", nil) }},
		{"DeleteConfig/BadAuditEvent", func(ctx X, s S, w *iworld) error { return s.DeleteConfig(ctx, w.orgCfg.ID, bad) }},
		// ---- routes ----
		{"RotateRoute/ShortKey", func(ctx X, s S, w *iworld) error {
			_, err := s.RotateRoute(ctx, w.orgCfg.ID, store.NewID(), "short", nil)
			return err
		}},
		{"RotateRoute/KeyWithSlash", func(ctx X, s S, w *iworld) error {
			_, err := s.RotateRoute(ctx, w.orgCfg.ID, store.NewID(), "aaaaaaaaaaaaaaaaaaaaaaaa/../x", nil)
			return err
		}},
		{"RotateRoute/EmptyRouteID", func(ctx X, s S, w *iworld) error {
			_, err := s.RotateRoute(ctx, w.orgCfg.ID, "", domain.NewRouteKey(), nil)
			return err
		}},
		{"RotateRoute/BadAuditEvent", func(ctx X, s S, w *iworld) error {
			_, err := s.RotateRoute(ctx, w.orgCfg.ID, store.NewID(), domain.NewRouteKey(), bad)
			return err
		}},
		{"GetActiveRoute/Empty", func(ctx X, s S, w *iworld) error { _, err := s.GetActiveRoute(ctx, ""); return err }},
		{"LookupRoute/UnknownScope", func(ctx X, s S, w *iworld) error {
			_, _, err := s.LookupRoute(ctx, "team", w.org.ID, w.orgCfg.ID, domain.NewRouteKey())
			return err
		}},
		{"LookupRoute/EmptyKey", func(ctx X, s S, w *iworld) error {
			_, _, err := s.LookupRoute(ctx, store.ScopeOrg, w.org.ID, w.orgCfg.ID, "")
			return err
		}},
		{"GetRoutable/Empty", func(ctx X, s S, w *iworld) error { _, err := s.GetRoutable(ctx, ""); return err }},
		// ---- assignments ----
		{"Assign/EmptyUser", func(ctx X, s S, w *iworld) error {
			_, err := s.Assign(ctx, store.Assignment{ConfigID: w.orgCfg.ID}, nil)
			return err
		}},
		{"Assign/BadAuditEvent", func(ctx X, s S, w *iworld) error {
			_, err := s.Assign(ctx, store.Assignment{ConfigID: w.orgCfg.ID, UserID: w.user.ID}, bad)
			return err
		}},
		{"Unassign/EmptyConfig", func(ctx X, s S, w *iworld) error { return s.Unassign(ctx, "", w.member.ID, nil) }},
		{"Unassign/BadAuditEvent", func(ctx X, s S, w *iworld) error { return s.Unassign(ctx, w.orgCfg.ID, w.member.ID, bad) }},
		{"ListAssignments/Empty", func(ctx X, s S, w *iworld) error { _, err := s.ListAssignments(ctx, ""); return err }},
		{"ListUsable/Empty", func(ctx X, s S, w *iworld) error { _, err := s.ListUsable(ctx, ""); return err }},
		// ---- instances and grants ----
		{"GetOrCreateInstance/UnknownScope", func(ctx X, s S, w *iworld) error {
			_, _, err := s.GetOrCreateInstance(ctx, "team", w.org.ID, w.user.ID, w.orgCfg.ID, store.NewID())
			return err
		}},
		{"GetOrCreateInstance/EmptyNewID", func(ctx X, s S, w *iworld) error {
			_, _, err := s.GetOrCreateInstance(ctx, store.ScopeOrg, w.org.ID, w.user.ID, w.orgCfg.ID, "")
			return err
		}},
		{"GetOrCreateInstance/NonUUIDUser", func(ctx X, s S, w *iworld) error {
			_, _, err := s.GetOrCreateInstance(ctx, store.ScopeOrg, w.org.ID, "bob", w.orgCfg.ID, store.NewID())
			return err
		}},
		{"GetInstance/Empty", func(ctx X, s S, w *iworld) error { _, err := s.GetInstance(ctx, ""); return err }},
		{"ListInstances/NonUUIDUser", func(ctx X, s S, w *iworld) error { _, err := s.ListInstances(ctx, "x", "", true); return err }},
		{"EndInstance/ToActive", func(ctx X, s S, w *iworld) error {
			_, err := s.EndInstance(ctx, w.orgInst.ID, store.InstanceActive, nil)
			return err
		}},
		{"EndInstance/UnknownState", func(ctx X, s S, w *iworld) error {
			_, err := s.EndInstance(ctx, w.orgInst.ID, "paused", nil)
			return err
		}},
		{"EndInstance/BadAuditEvent", func(ctx X, s S, w *iworld) error {
			_, err := s.EndInstance(ctx, w.orgInst.ID, store.InstanceRemoved, bad)
			return err
		}},
		{"PutGrant/EmptyAccessToken", putGrant(func(g *store.Grant) { g.AccessToken = nil })},
		{"PutGrant/OversizeAccessToken", putGrant(func(g *store.Grant) { g.AccessToken = bigBytes })},
		{"PutGrant/OversizeRefreshToken", putGrant(func(g *store.Grant) { g.RefreshToken = bigBytes })},
		{"PutGrant/NotBearer", putGrant(func(g *store.Grant) { g.TokenType = "MAC" })},
		{"PutGrant/EmptyInstance", putGrant(func(g *store.Grant) { g.InstanceID = "" })},
		{"PutGrant/BadExpectVersion", func(ctx X, s S, w *iworld) error { _, err := s.PutGrant(ctx, okGrant(w), -5, nil); return err }},
		{"PutGrant/BadAuditEvent", func(ctx X, s S, w *iworld) error { _, err := s.PutGrant(ctx, okGrant(w), -1, bad); return err }},
		{"GetGrant/Empty", func(ctx X, s S, w *iworld) error { _, err := s.GetGrant(ctx, ""); return err }},
		{"RevokeGrant/Empty", func(ctx X, s S, w *iworld) error { _, err := s.RevokeGrant(ctx, "", nil); return err }},
		{"RevokeGrant/BadAuditEvent", func(ctx X, s S, w *iworld) error { _, err := s.RevokeGrant(ctx, w.orgInst.ID, bad); return err }},
		{"MarkNeedsReauth/Empty", func(ctx X, s S, w *iworld) error { _, err := s.MarkNeedsReauth(ctx, "", 1, nil); return err }},
		{"MarkNeedsReauth/NegativeVersion", func(ctx X, s S, w *iworld) error {
			_, err := s.MarkNeedsReauth(ctx, w.orgInst.ID, -1, nil)
			return err
		}},
		{"LockGrant/Empty", func(ctx X, s S, w *iworld) error { _, err := s.LockGrant(ctx, "", noop); return err }},
		{"LockGrant/NilFunc", func(ctx X, s S, w *iworld) error { _, err := s.LockGrant(ctx, w.orgInst.ID, nil); return err }},
		{"LockGrant/InvalidWrite", func(ctx X, s S, w *iworld) error {
			_, err := s.LockGrant(ctx, w.orgInst.ID, func(*store.Grant) (*store.Grant, error) {
				g := okGrant(w)
				g.AccessToken = bigBytes
				return &g, nil
			})
			return err
		}},
		// ---- OAuth clients ----
		{"CreateClient/IDWithoutNamespace", createClient(func(c *store.OAuthClient) { c.ID = "client-1" })},
		{"CreateClient/ShortSecretHash", createClient(func(c *store.OAuthClient) { c.SecretHash = []byte("secret") })},
		{"CreateClient/NoRedirectURIs", createClient(func(c *store.OAuthClient) { c.RedirectURIs = nil })},
		{"CreateClient/RedirectWithFragment", createClient(func(c *store.OAuthClient) { c.RedirectURIs = []string{"https://app.example.com/cb#x"} })},
		{"CreateClient/UnsupportedAuthMethod", createClient(func(c *store.OAuthClient) { c.TokenEndpointAuthMethod = "private_key_jwt" })},
		{"CreateClient/OversizeMetadata", createClient(func(c *store.OAuthClient) { c.Metadata = json.RawMessage(`{"x":"` + big + `"}`) })},
		{"GetClient/Empty", func(ctx X, s S, w *iworld) error { _, err := s.GetClient(ctx, ""); return err }},
		{"UpdateClient/BadID", func(ctx X, s S, w *iworld) error {
			c := w.client
			c.ID = "nocolon"
			_, err := s.UpdateClient(ctx, c)
			return err
		}},
		{"UpdateClient/NoRedirectURIs", func(ctx X, s S, w *iworld) error {
			c := w.client
			c.RedirectURIs = nil
			_, err := s.UpdateClient(ctx, c)
			return err
		}},
		{"DeleteClient/Empty", func(ctx X, s S, w *iworld) error { return s.DeleteClient(ctx, "") }},
		// ---- auth requests, consent, codes, refresh tokens ----
		{"CreateAuthRequest/EmptyID", func(ctx X, s S, w *iworld) error {
			r := w.authRequest(at(time.Hour))
			r.ID = ""
			return s.CreateAuthRequest(ctx, r)
		}},
		{"CreateAuthRequest/BadCodeChallenge", func(ctx X, s S, w *iworld) error {
			r := w.authRequest(at(time.Hour))
			r.CodeChallenge = "plain"
			return s.CreateAuthRequest(ctx, r)
		}},
		{"CreateAuthRequest/OversizeState", func(ctx X, s S, w *iworld) error {
			r := w.authRequest(at(time.Hour))
			r.State = big
			return s.CreateAuthRequest(ctx, r)
		}},
		{"CreateAuthRequest/TooManyScopes", func(ctx X, s S, w *iworld) error {
			r := w.authRequest(at(time.Hour))
			r.Scopes = strings.Fields(strings.Repeat("s ", 500))
			return s.CreateAuthRequest(ctx, r)
		}},
		{"GetAuthRequest/Empty", func(ctx X, s S, w *iworld) error { _, err := s.GetAuthRequest(ctx, "", t0); return err }},
		{"SetAuthRequestUser/NonUUIDUser", func(ctx X, s S, w *iworld) error { return s.SetAuthRequestUser(ctx, w.request.ID, "admin") }},
		{"DeleteAuthRequest/Empty", func(ctx X, s S, w *iworld) error { return s.DeleteAuthRequest(ctx, "") }},
		{"CreateConsentTicket/ShortHash", func(ctx X, s S, w *iworld) error {
			ct := w.consentTicket("bad", w.request.ID, at(time.Hour))
			ct.Hash = ct.Hash[:16]
			return s.CreateConsentTicket(ctx, ct)
		}},
		{"CreateConsentTicket/BadContext", func(ctx X, s S, w *iworld) error {
			ct := w.consentTicket("bad", w.request.ID, at(time.Hour))
			ct.ExecutionContext = "team:x"
			return s.CreateConsentTicket(ctx, ct)
		}},
		{"ConsumeConsentTicket/Empty", func(ctx X, s S, w *iworld) error { _, err := s.ConsumeConsentTicket(ctx, nil, t0); return err }},
		{"CreateAuthCode/ZeroVersion", func(ctx X, s S, w *iworld) error {
			c := w.authCode("bad", at(time.Hour))
			c.ConfigVersion = 0
			return s.CreateAuthCode(ctx, c)
		}},
		{"CreateAuthCode/EmptyFamily", func(ctx X, s S, w *iworld) error {
			c := w.authCode("bad", at(time.Hour))
			c.FamilyID = ""
			return s.CreateAuthCode(ctx, c)
		}},
		{"CreateAuthCode/UnknownScope", func(ctx X, s S, w *iworld) error {
			c := w.authCode("bad", at(time.Hour))
			c.OwnerScope = "team"
			return s.CreateAuthCode(ctx, c)
		}},
		{"ConsumeAuthCode/LongHash", func(ctx X, s S, w *iworld) error {
			_, err := s.ConsumeAuthCode(ctx, append(w.hash("code-iw"), 0), t0)
			return err
		}},
		{"CreateRefreshToken/EmptyFamily", func(ctx X, s S, w *iworld) error {
			r := okNext(w)
			r.FamilyID = ""
			return s.CreateRefreshToken(ctx, r)
		}},
		{"CreateRefreshToken/NoExpiry", func(ctx X, s S, w *iworld) error {
			r := okNext(w)
			r.ExpiresAt = time.Time{}
			return s.CreateRefreshToken(ctx, r)
		}},
		{"RotateRefreshToken/EmptyOld", func(ctx X, s S, w *iworld) error {
			_, err := s.RotateRefreshToken(ctx, nil, okNext(w), t0)
			return err
		}},
		{"RotateRefreshToken/InvalidNextDoesNotConsume", func(ctx X, s S, w *iworld) error {
			n := okNext(w)
			n.Hash = nil
			_, err := s.RotateRefreshToken(ctx, w.refresh.Hash, n, t0)
			return err
		}},
		{"GetRefreshToken/Empty", func(ctx X, s S, w *iworld) error { _, err := s.GetRefreshToken(ctx, nil); return err }},
		{"RevokeRefreshToken/Short", func(ctx X, s S, w *iworld) error { return s.RevokeRefreshToken(ctx, []byte{1, 2, 3}, t0) }},
		{"RevokeFamily/Empty", func(ctx X, s S, w *iworld) error { _, err := s.RevokeFamily(ctx, "", t0); return err }},
		// ---- rate limits ----
		{"HitRateLimit/EmptyKey", func(ctx X, s S, w *iworld) error {
			_, _, err := s.HitRateLimit(ctx, "", time.Minute, 10, t0)
			return err
		}},
		{"HitRateLimit/OversizeKey", func(ctx X, s S, w *iworld) error {
			_, _, err := s.HitRateLimit(ctx, big, time.Minute, 10, t0)
			return err
		}},
		{"HitRateLimit/ZeroWindow", func(ctx X, s S, w *iworld) error { _, _, err := s.HitRateLimit(ctx, "k", 0, 10, t0); return err }},
		{"HitRateLimit/ZeroLimit", func(ctx X, s S, w *iworld) error {
			_, _, err := s.HitRateLimit(ctx, "k", time.Minute, 0, t0)
			return err
		}},
		{"HitRateLimit/ZeroNow", func(ctx X, s S, w *iworld) error {
			_, _, err := s.HitRateLimit(ctx, "k", time.Minute, 10, time.Time{})
			return err
		}},
		// ---- provider state and registrations ----
		{"CreatePendingState/EmptyCiphertext", func(ctx X, s S, w *iworld) error {
			p := pendingState("bad", w.member.ID, w.orgCfg, w.orgInst.ID, at(time.Hour))
			p.Ciphertext = nil
			return s.CreatePendingState(ctx, p)
		}},
		{"CreatePendingState/OversizeCiphertext", func(ctx X, s S, w *iworld) error {
			p := pendingState("bad", w.member.ID, w.orgCfg, w.orgInst.ID, at(time.Hour))
			p.Ciphertext = bigBytes
			return s.CreatePendingState(ctx, p)
		}},
		{"CreatePendingState/ZeroVersion", func(ctx X, s S, w *iworld) error {
			p := pendingState("bad", w.member.ID, w.orgCfg, w.orgInst.ID, at(time.Hour))
			p.ConfigVersion = 0
			return s.CreatePendingState(ctx, p)
		}},
		{"ConsumePendingState/Empty", func(ctx X, s S, w *iworld) error { _, err := s.ConsumePendingState(ctx, nil, t0); return err }},
		{"PutProviderRegistration/ZeroVersion", func(ctx X, s S, w *iworld) error {
			return s.PutProviderRegistration(ctx, store.ProviderRegistration{ConfigID: w.orgCfg.ID, Ciphertext: []byte("c"), CreatedAt: t0})
		}},
		{"PutProviderRegistration/EmptyCiphertext", func(ctx X, s S, w *iworld) error {
			return s.PutProviderRegistration(ctx, store.ProviderRegistration{ConfigID: w.orgCfg.ID, ConfigVersion: 1, CreatedAt: t0})
		}},
		{"GetProviderRegistration/Empty", func(ctx X, s S, w *iworld) error { _, err := s.GetProviderRegistration(ctx, "", 1); return err }},
		{"GetProviderRegistration/ZeroVersion", func(ctx X, s S, w *iworld) error {
			_, err := s.GetProviderRegistration(ctx, w.orgCfg.ID, 0)
			return err
		}},
		// ---- runtime ----
		{"ResolveRuntime/UnknownScope", q(func(r *store.RuntimeQuery) { r.OwnerScope = "team" })},
		{"ResolveRuntime/EmptyUser", q(func(r *store.RuntimeQuery) { r.UserID = "" })},
		{"ResolveRuntime/EmptyInstance", q(func(r *store.RuntimeQuery) { r.InstanceID = "" })},
		{"ResolveRuntime/ShortRouteKey", q(func(r *store.RuntimeQuery) { r.RouteKey = "abc" })},
		{"ResolveRuntime/ZeroVersion", q(func(r *store.RuntimeQuery) { r.ConfigVersion = 0 })},
		{"ResolveRuntime/EmptyContext", q(func(r *store.RuntimeQuery) { r.ExecutionContext = "" })},
		{"ResolveRuntime/NonUUIDConfig", q(func(r *store.RuntimeQuery) { r.ConfigID = "' OR 1=1 --" })},
		// ---- audit ----
		{"AppendAudit/EmptyType", func(ctx X, s S, w *iworld) error {
			return s.AppendAudit(ctx, store.AuditEvent{Outcome: "success", Time: t0})
		}},
		{"AppendAudit/UnknownScope", func(ctx X, s S, w *iworld) error {
			return s.AppendAudit(ctx, store.AuditEvent{Type: "x", OwnerScope: "team", Time: t0})
		}},
		{"AppendAudit/OversizeMetadata", func(ctx X, s S, w *iworld) error {
			return s.AppendAudit(ctx, store.AuditEvent{Type: "x", Metadata: map[string]string{"k": big}, Time: t0})
		}},
		{"AppendAudit/NonUUIDActor", func(ctx X, s S, w *iworld) error {
			return s.AppendAudit(ctx, store.AuditEvent{Type: "x", ActorUserID: "root", Time: t0})
		}},
		{"QueryAudit/UnknownScope", func(ctx X, s S, w *iworld) error {
			_, _, err := s.QueryAudit(ctx, store.AuditFilter{OwnerScope: "team"})
			return err
		}},
		{"QueryAudit/LimitTooLarge", func(ctx X, s S, w *iworld) error {
			_, _, err := s.QueryAudit(ctx, store.AuditFilter{Limit: 5000})
			return err
		}},
		{"QueryAudit/NegativeCursor", func(ctx X, s S, w *iworld) error {
			_, _, err := s.QueryAudit(ctx, store.AuditFilter{Before: -1})
			return err
		}},
		// ---- maintenance ----
		{"TryLeader/EmptyName", func(ctx X, s S, w *iworld) error {
			_, err := s.TryLeader(ctx, "", func(context.Context) error { return nil })
			return err
		}},
		{"TryLeader/NilFunc", func(ctx X, s S, w *iworld) error { _, err := s.TryLeader(ctx, "job", nil); return err }},
		{"Cleanup/ZeroNow", func(ctx X, s S, w *iworld) error { _, err := s.Cleanup(ctx, time.Time{}, t0); return err }},
	}
}

// testInvalid runs every invalid call against one populated store and
// proves each returns ErrInvalid and changes nothing.
func testInvalid(t *testing.T, newStore NewStore) {
	x := open(t, newStore)
	w := x.invalidWorld()
	before := x.snapshot(w)
	for _, tc := range invalidCases() {
		t.Run(tc.name, func(t *testing.T) {
			x := x.sub(t)
			err := tc.call(x.ctx, x.s, w)
			wantErr(t, tc.name, err, store.ErrInvalid)
			// The message names the field, never the value.
			if msg := err.Error(); strings.Contains(msg, big[:64]) || len(msg) > 500 {
				t.Fatalf("error message echoes the input (%d bytes)", len(msg))
			}
			if after := x.snapshot(w); after != before {
				t.Fatalf("rejected call changed the store:\nbefore %s\nafter  %s", clip(before), clip(after))
			}
		})
	}
	// The one-time values the snapshot cannot read without consuming are
	// still unconsumed.
	t.Run("OneTimeValuesIntact", func(t *testing.T) {
		if _, err := x.s.ConsumeConsentTicket(x.ctx, w.ticket.Hash, t0); err != nil {
			t.Fatalf("consent ticket: %v", err)
		}
		if _, err := x.s.ConsumeAuthCode(x.ctx, w.code.Hash, t0); err != nil {
			t.Fatalf("auth code: %v", err)
		}
		if _, err := x.s.ConsumePendingState(x.ctx, w.pending.StateHash, t0); err != nil {
			t.Fatalf("pending state: %v", err)
		}
		if _, err := x.s.RotateRefreshToken(x.ctx, w.refresh.Hash, w.refreshToken("iw-next", w.refresh.FamilyID, at(2*time.Hour)), t0); err != nil {
			t.Fatalf("refresh token: %v", err)
		}
	})
}

func clip(s string) string {
	if len(s) > 4000 {
		return s[:4000] + "…"
	}
	return s
}
