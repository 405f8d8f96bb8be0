package api_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"mcpgw/api"
	"mcpgw/domain/secrets"
	"mcpgw/store"
)

// artifacts are one user's OAuth artifacts around the API, so cascades can
// be checked for exactly what is gone and what survives.
type artifacts struct {
	refresh []byte // refresh token hash
	session []byte // session id hash
	pending []byte // pending provider state hash (when created)
}

func (e *env) client() store.OAuthClient {
	e.t.Helper()
	id := "dcr:" + store.NewID()
	c, err := e.st.CreateClient(e.ctx, store.OAuthClient{ID: id, RegistrationTokenHash: secrets.Hash("reg-" + id),
		RedirectURIs: []string{"http://127.0.0.1:3000/cb"}, GrantTypes: []string{"authorization_code", "refresh_token"},
		ResponseTypes: []string{"code"}, TokenEndpointAuthMethod: "none", Scope: "mcp:access", Metadata: json.RawMessage(`{}`),
		CreatedAt: t0, UpdatedAt: t0})
	if err != nil {
		e.t.Fatalf("CreateClient: %v", err)
	}
	return c
}

// artifactsFor gives userID a refresh token for inst, a browser session,
// and (when pendingFor is set) pending provider state for that config.
func (e *env) artifactsFor(cl store.OAuthClient, userID string, inst store.Instance, cfg api.ConfigView, pending bool) artifacts {
	e.t.Helper()
	a := artifacts{refresh: secrets.Hash("rt-" + store.NewID()), session: secrets.Hash("ss-" + store.NewID())}
	if err := e.st.CreateRefreshToken(e.ctx, store.RefreshToken{Hash: a.refresh, FamilyID: store.NewID(), ClientID: cl.ID, UserID: userID,
		InstanceID: inst.ID, ConfigID: cfg.ID, Resource: cfg.ConnectURL, Scopes: []string{"mcp:access"},
		ExecutionContext: store.ExecutionContext(store.OwnerScope(cfg.OwnerScope), cfg.OwnerID), ConfigVersion: cfg.Version, CreatedAt: t0, ExpiresAt: t0.Add(24 * time.Hour)}); err != nil {
		e.t.Fatalf("CreateRefreshToken: %v", err)
	}
	if err := e.st.CreateSession(e.ctx, store.Session{IDHash: a.session, UserID: userID, CSRFHash: secrets.Hash("csrf"), CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		e.t.Fatalf("CreateSession: %v", err)
	}
	if pending {
		a.pending = e.pendingFor(userID, cfg, inst)
	}
	return a
}

func (e *env) pendingFor(userID string, cfg api.ConfigView, inst store.Instance) []byte {
	e.t.Helper()
	c, err := e.st.GetConfig(e.ctx, cfg.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	h := secrets.Hash("ps-" + store.NewID())
	if err := e.st.CreatePendingState(e.ctx, store.PendingProviderState{StateHash: h, UserID: userID, ConfigID: cfg.ID, ConfigVersion: c.Version,
		InstanceID: inst.ID, Ciphertext: []byte("ct-pending"), CreatedAt: t0, ExpiresAt: t0.Add(30 * time.Minute)}); err != nil {
		e.t.Fatalf("CreatePendingState: %v", err)
	}
	return h
}

// pendingAlive reports whether the pending state still exists (checking
// consumes it).
func (e *env) pendingAlive(h []byte) bool {
	_, err := e.st.ConsumePendingState(e.ctx, h, t0.Add(time.Minute))
	return err == nil
}

func (e *env) refreshAlive(h []byte) bool {
	rt, err := e.st.GetRefreshToken(e.ctx, h)
	return err == nil && rt.RevokedAt == nil
}

func (e *env) sessionAlive(h []byte) bool {
	_, err := e.st.GetSession(e.ctx, h, t0.Add(time.Minute))
	return err == nil
}

func (e *env) assigned(configID string) []string {
	e.t.Helper()
	as, err := e.st.ListAssignments(e.ctx, configID)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, a := range as {
		out = append(out, a.UserID)
	}
	return out
}

func (e *env) isMember(orgID, userID string) bool {
	_, err := e.st.GetMember(e.ctx, orgID, userID)
	return err == nil
}

type checks struct {
	t    *testing.T
	fail int
}

func (c *checks) want(what string, got, want any) {
	c.t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		c.t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// cascadeWorld: org with owner; users u (the subject) and v (a bystander)
// are members assigned to two org configs; u also has a personal config.
type cascadeWorld struct {
	e                *env
	owner, admin     principal
	u, v             principal
	org              string
	c1, c2, personal api.ConfigView
	cl               store.OAuthClient
}

func newCascadeWorld(t *testing.T, e *env, mode store.AuthMode) *cascadeWorld {
	w := &cascadeWorld{e: e}
	w.admin = e.user("sys@example.com", true)
	w.owner = e.user("owner@example.com", false)
	w.u = e.user("u@example.com", false)
	w.v = e.user("v@example.com", false)
	var org api.OrgView
	e.must(http.StatusCreated, w.owner.token, "POST", "/api/v1/orgs", map[string]any{"name": "Cascade"}).decode(t, &org)
	w.org = org.ID
	for _, p := range []principal{w.u, w.v} {
		e.must(http.StatusCreated, w.owner.token, "POST", "/api/v1/orgs/"+w.org+"/members", map[string]any{"user_id": p.user.ID, "role": "member"})
	}
	w.c1 = e.createConfig(w.owner.token, orgConfigBody(w.org, "c1", store.MultiUser, mode))
	w.c2 = e.createConfig(w.owner.token, orgConfigBody(w.org, "c2", store.MultiUser, mode))
	for _, c := range []api.ConfigView{w.c1, w.c2} {
		for _, p := range []principal{w.u, w.v} {
			e.must(http.StatusCreated, w.owner.token, "POST", "/api/v1/configs/"+c.ID+"/assignments", map[string]any{"user_id": p.user.ID})
		}
	}
	w.personal = e.createConfig(w.u.token, map[string]any{"name": "mine", "remote_url": "https://other.example.com/", "auth_mode": "none"})
	w.cl = e.client()
	return w
}

func TestCascades(t *testing.T) {
	for _, sk := range stores() {
		t.Run(sk.name, func(t *testing.T) {
			t.Run("user soft-delete", func(t *testing.T) {
				e := newEnv(t, sk.open(t), 0)
				w := newCascadeWorld(t, e, store.AuthNone)
				uC1, uP, vC1 := e.instanceWithGrant(w.c1, w.u.user.ID), e.instanceWithGrant(w.personal, w.u.user.ID), e.instanceWithGrant(w.c1, w.v.user.ID)
				ua := e.artifactsFor(w.cl, w.u.user.ID, uC1, w.c1, true)
				va := e.artifactsFor(w.cl, w.v.user.ID, vC1, w.c1, true)
				auditBefore := auditCount(t, e)

				e.must(http.StatusNoContent, w.admin.token, "DELETE", "/api/v1/users/"+w.u.user.ID, nil)

				c := &checks{t: t}
				// Gone: instances, grants, pending state, refresh tokens,
				// sessions, API tokens, assignments, memberships.
				c.want("u c1 instance", e.instance(uC1.ID).State, store.InstanceRemoved)
				c.want("u personal instance", e.instance(uP.ID).State, store.InstanceRemoved)
				c.want("u c1 grant", e.hasGrant(uC1.ID), false)
				c.want("u personal grant", e.hasGrant(uP.ID), false)
				c.want("u pending", e.pendingAlive(ua.pending), false)
				c.want("u refresh token", e.refreshAlive(ua.refresh), false)
				c.want("u session", e.sessionAlive(ua.session), false)
				c.want("u api token", e.do(w.u.token, "GET", "/api/v1/me", nil).status, http.StatusUnauthorized)
				c.want("c1 assignees", e.assigned(w.c1.ID), []string{w.v.user.ID})
				c.want("c2 assignees", e.assigned(w.c2.ID), []string{w.v.user.ID})
				c.want("u membership", e.isMember(w.org, w.u.user.ID), false)
				// Survive: the bystander's everything, the audit trail.
				c.want("v instance", e.instance(vC1.ID).State, store.InstanceActive)
				c.want("v grant", e.hasGrant(vC1.ID), true)
				c.want("v pending", e.pendingAlive(va.pending), true)
				c.want("v refresh token", e.refreshAlive(va.refresh), true)
				c.want("v session", e.sessionAlive(va.session), true)
				c.want("v api token", e.do(w.v.token, "GET", "/api/v1/me", nil).status, http.StatusOK)
				c.want("v membership", e.isMember(w.org, w.v.user.ID), true)
				evs, _, _ := e.st.QueryAudit(e.ctx, store.AuditFilter{Type: "user.delete"})
				c.want("user.delete events", len(evs), 1)
				if len(evs) == 1 {
					c.want("user.delete subject", evs[0].UserID, w.u.user.ID)
					c.want("user.delete actor", evs[0].ActorUserID, w.admin.user.ID)
				}
				old, _, _ := e.st.QueryAudit(e.ctx, store.AuditFilter{Before: auditBefore + 1, Limit: 1000})
				c.want("older audit rows survive", len(old) > 0 && old[0].ID == auditBefore, true)
				u, _ := e.st.GetUser(e.ctx, w.u.user.ID)
				c.want("u anonymized", u.Email != "u@example.com" && u.Status == store.UserDeleted, true)
			})

			t.Run("org member removal", func(t *testing.T) {
				e := newEnv(t, sk.open(t), 0)
				w := newCascadeWorld(t, e, store.AuthNone)
				uC1, uC2, uP, vC1 := e.instanceWithGrant(w.c1, w.u.user.ID), e.instanceWithGrant(w.c2, w.u.user.ID),
					e.instanceWithGrant(w.personal, w.u.user.ID), e.instanceWithGrant(w.c1, w.v.user.ID)
				pend := e.pendingFor(w.u.user.ID, w.c1, uC1)
				pendPersonal := e.pendingFor(w.u.user.ID, w.personal, uP)
				vPend := e.pendingFor(w.v.user.ID, w.c1, vC1)

				e.must(http.StatusNoContent, w.owner.token, "DELETE", "/api/v1/orgs/"+w.org+"/members/"+w.u.user.ID, nil)

				c := &checks{t: t}
				c.want("u c1 instance", e.instance(uC1.ID).State, store.InstanceRemoved)
				c.want("u c2 instance", e.instance(uC2.ID).State, store.InstanceRemoved)
				c.want("u c1 grant", e.hasGrant(uC1.ID), false)
				c.want("u c2 grant", e.hasGrant(uC2.ID), false)
				c.want("u org pending", e.pendingAlive(pend), false)
				c.want("c1 assignees", e.assigned(w.c1.ID), []string{w.v.user.ID})
				c.want("c2 assignees", e.assigned(w.c2.ID), []string{w.v.user.ID})
				c.want("u membership", e.isMember(w.org, w.u.user.ID), false)
				// Survive: u's personal world and account, v's org instance.
				c.want("u personal instance", e.instance(uP.ID).State, store.InstanceActive)
				c.want("u personal grant", e.hasGrant(uP.ID), true)
				c.want("u personal pending", e.pendingAlive(pendPersonal), true)
				c.want("u api token", e.do(w.u.token, "GET", "/api/v1/me", nil).status, http.StatusOK)
				c.want("v instance", e.instance(vC1.ID).State, store.InstanceActive)
				c.want("v grant", e.hasGrant(vC1.ID), true)
				c.want("v pending", e.pendingAlive(vPend), true)
				var av struct{ Available []api.AvailableView }
				e.must(http.StatusOK, w.u.token, "GET", "/api/v1/available", nil).decode(t, &av)
				c.want("u available after removal", len(av.Available), 1)
				evs, _, _ := e.st.QueryAudit(e.ctx, store.AuditFilter{Type: "org.member_remove", OwnerScope: store.ScopeOrg, OwnerID: w.org})
				c.want("org.member_remove events", len(evs), 1)
			})

			t.Run("config delete", func(t *testing.T) {
				e := newEnv(t, sk.open(t), 0)
				w := newCascadeWorld(t, e, store.AuthNone)
				uC1, vC1, uC2 := e.instanceWithGrant(w.c1, w.u.user.ID), e.instanceWithGrant(w.c1, w.v.user.ID), e.instanceWithGrant(w.c2, w.u.user.ID)
				pend := e.pendingFor(w.u.user.ID, w.c1, uC1)
				pend2 := e.pendingFor(w.u.user.ID, w.c2, uC2)
				rt, err := e.st.GetActiveRoute(e.ctx, w.c1.ID)
				if err != nil {
					t.Fatal(err)
				}

				e.must(http.StatusNoContent, w.owner.token, "DELETE", "/api/v1/configs/"+w.c1.ID, nil)

				c := &checks{t: t}
				_, err = e.st.GetActiveRoute(e.ctx, w.c1.ID)
				c.want("active route gone", errors.Is(err, store.ErrNotFound), true)
				_, _, err = e.st.LookupRoute(e.ctx, store.ScopeOrg, w.org, w.c1.ID, rt.Key)
				c.want("old route lookup", errors.Is(err, store.ErrNotFound), true)
				c.want("u c1 instance", e.instance(uC1.ID).State, store.InstanceRemoved)
				c.want("v c1 instance", e.instance(vC1.ID).State, store.InstanceRemoved)
				c.want("u c1 grant", e.hasGrant(uC1.ID), false)
				c.want("v c1 grant", e.hasGrant(vC1.ID), false)
				c.want("c1 pending", e.pendingAlive(pend), false)
				c.want("c1 assignees", len(e.assigned(w.c1.ID)), 0)
				c.want("config status", e.cfgStatus(w.c1.ID), store.ConfigDeleted)
				c.want("api get deleted", e.do(w.owner.token, "GET", "/api/v1/configs/"+w.c1.ID, nil).status, http.StatusNotFound)
				// Survive: the sibling config and its dependents.
				c.want("u c2 instance", e.instance(uC2.ID).State, store.InstanceActive)
				c.want("u c2 grant", e.hasGrant(uC2.ID), true)
				c.want("c2 pending", e.pendingAlive(pend2), true)
				c.want("c2 assignees", len(e.assigned(w.c2.ID)), 2)
				evs, _, _ := e.st.QueryAudit(e.ctx, store.AuditFilter{Type: "config.delete", ConfigID: w.c1.ID})
				c.want("config.delete events", len(evs), 1)
				evs, _, _ = e.st.QueryAudit(e.ctx, store.AuditFilter{Type: "config.create", ConfigID: w.c1.ID})
				c.want("config.create event survives", len(evs), 1)
			})

			t.Run("config disable", func(t *testing.T) {
				e := newEnv(t, sk.open(t), 0)
				w := newCascadeWorld(t, e, store.AuthNone)
				uC1 := e.instanceWithGrant(w.c1, w.u.user.ID)
				e.must(http.StatusOK, w.owner.token, "POST", "/api/v1/configs/"+w.c1.ID+"/disable", nil)
				c := &checks{t: t}
				_, err := e.st.GetRoutable(e.ctx, w.c1.ID)
				c.want("not routable", errors.Is(err, store.ErrNotFound), true)
				rs := e.runtime(w.c1, w.u.user.ID, uC1.ID)
				c.want("runtime reason", rs, "config_disabled")
				c.want("instance kept", e.instance(uC1.ID).State, store.InstanceActive)
				c.want("grant kept", e.hasGrant(uC1.ID), true)
				c.want("assignees kept", len(e.assigned(w.c1.ID)), 2)
				var av struct{ Available []api.AvailableView }
				e.must(http.StatusOK, w.u.token, "GET", "/api/v1/available", nil).decode(t, &av)
				c.want("available without disabled", len(av.Available), 2)
				e.must(http.StatusOK, w.owner.token, "POST", "/api/v1/configs/"+w.c1.ID+"/enable", nil)
				c.want("runtime after enable", e.runtime(w.c1, w.u.user.ID, uC1.ID), "")
			})

			t.Run("material change", func(t *testing.T) {
				e := newEnv(t, sk.open(t), 0)
				w := newCascadeWorld(t, e, store.AuthOAuthDynamic)
				uC1, vC1, uC2 := e.instanceWithGrant(w.c1, w.u.user.ID), e.instanceWithGrant(w.c1, w.v.user.ID), e.instanceWithGrant(w.c2, w.u.user.ID)
				pend := e.pendingFor(w.u.user.ID, w.c1, uC1)
				c := &checks{t: t}

				// Non-material first: name, aux headers, registry.
				var up api.UpdateResult
				e.must(http.StatusOK, w.owner.token, "PATCH", "/api/v1/configs/"+w.c1.ID,
					map[string]any{"name": "renamed", "aux_headers": map[string]string{"x-region": "eu"}, "registry": map[string]any{"tags": []string{"a"}}}).decode(t, &up)
				c.want("non-material", up.Material, false)
				c.want("version after non-material", up.Config.Version, 1)
				c.want("grant after non-material", e.hasGrant(uC1.ID), true)

				// Material: the provider scopes.
				e.must(http.StatusOK, w.owner.token, "PATCH", "/api/v1/configs/"+w.c1.ID,
					map[string]any{"provider": map[string]any{"scopes": []string{"read"}}}).decode(t, &up)
				c.want("material", up.Material, true)
				c.want("version after material", up.Config.Version, 2)
				c.want("u grant revoked", e.hasGrant(uC1.ID), false)
				c.want("v grant revoked", e.hasGrant(vC1.ID), false)
				c.want("u instance needs_reauth", e.instance(uC1.ID).State, store.InstanceNeedsReauth)
				c.want("v instance needs_reauth", e.instance(vC1.ID).State, store.InstanceNeedsReauth)
				c.want("pending revoked", e.pendingAlive(pend), false)
				c.want("sibling grant survives", e.hasGrant(uC2.ID), true)
				c.want("assignees survive", len(e.assigned(w.c1.ID)), 2)
				var av struct{ Available []api.AvailableView }
				e.must(http.StatusOK, w.u.token, "GET", "/api/v1/available", nil).decode(t, &av)
				for _, a := range av.Available {
					if a.ConfigID == w.c1.ID {
						c.want("needs authorization after material change", a.NeedsAuthorization, true)
					}
					if a.ConfigID == w.c2.ID {
						c.want("sibling needs authorization", a.NeedsAuthorization, false)
					}
				}
				// Material again: remote URL.
				e.must(http.StatusOK, w.owner.token, "PATCH", "/api/v1/configs/"+w.c1.ID, map[string]any{"remote_url": "https://other.example.com/v2"}).decode(t, &up)
				c.want("remote url material", up.Material, true)
				c.want("version 3", up.Config.Version, 3)
				evs, _, _ := e.st.QueryAudit(e.ctx, store.AuditFilter{Type: "config.update", ConfigID: w.c1.ID})
				c.want("config.update events", len(evs), 3)
			})

			t.Run("static header rotation is not material", func(t *testing.T) {
				e := newEnv(t, sk.open(t), 0)
				w := newCascadeWorld(t, e, store.AuthStaticHeaders)
				uC1 := e.instanceWithGrant(w.c1, w.u.user.ID)
				before, _ := e.st.GetConfig(e.ctx, w.c1.ID)
				var up api.UpdateResult
				e.must(http.StatusOK, w.owner.token, "PATCH", "/api/v1/configs/"+w.c1.ID,
					map[string]any{"static_headers": map[string]string{"Authorization": "Bearer rotated"}}).decode(t, &up)
				after, _ := e.st.GetConfig(e.ctx, w.c1.ID)
				c := &checks{t: t}
				c.want("material", up.Material, false)
				c.want("version", after.Version, 1)
				c.want("ciphertext changed", string(after.StaticHeaders) != string(before.StaticHeaders), true)
				c.want("grant kept", e.hasGrant(uC1.ID), true)
				pt, err := e.kr.Open(after.StaticHeaders, secrets.AAD("configs", "static_headers", w.c1.ID))
				c.want("opens with extauthz's AAD", err == nil && string(pt) == `{"authorization":"Bearer rotated"}`, true)
			})

			t.Run("single_user reassignment", func(t *testing.T) {
				e := newEnv(t, sk.open(t), 0)
				w := newCascadeWorld(t, e, store.AuthNone)
				solo := e.createConfig(w.owner.token, orgConfigBody(w.org, "solo", store.SingleUser, store.AuthNone))
				e.must(http.StatusCreated, w.owner.token, "POST", "/api/v1/configs/"+solo.ID+"/assignments", map[string]any{"user_id": w.u.user.ID})
				uS := e.instanceWithGrant(solo, w.u.user.ID)
				uC1 := e.instanceWithGrant(w.c1, w.u.user.ID)
				var av api.AssignmentView
				e.must(http.StatusCreated, w.owner.token, "POST", "/api/v1/configs/"+solo.ID+"/assignments", map[string]any{"user_id": w.v.user.ID}).decode(t, &av)
				c := &checks{t: t}
				c.want("replaced", av.Replaced, w.u.user.ID)
				c.want("assignees", e.assigned(solo.ID), []string{w.v.user.ID})
				c.want("previous instance", e.instance(uS.ID).State, store.InstanceRemoved)
				c.want("previous grant", e.hasGrant(uS.ID), false)
				c.want("other config untouched", e.hasGrant(uC1.ID), true)
				// Unassign removes the instance too.
				vS := e.instanceWithGrant(solo, w.v.user.ID)
				e.must(http.StatusNoContent, w.owner.token, "DELETE", "/api/v1/configs/"+solo.ID+"/assignments/"+w.v.user.ID, nil)
				c.want("unassigned instance", e.instance(vS.ID).State, store.InstanceRemoved)
				c.want("unassigned grant", e.hasGrant(vS.ID), false)
				// multi_user → single_user with two assignees is refused.
				r := e.do(w.owner.token, "PATCH", "/api/v1/configs/"+w.c1.ID, map[string]any{"sharing_mode": "single_user"})
				c.want("multi→single with 2 assignees", r.status, http.StatusConflict)
			})
		})
	}
}

func (e *env) cfgStatus(id string) store.ConfigStatus {
	c, err := e.st.GetConfig(e.ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return c.Status
}

// runtime asks the store's runtime recheck for the user's instance and
// returns the denial reason ("" when allowed).
func (e *env) runtime(cfg api.ConfigView, userID, instanceID string) string {
	e.t.Helper()
	c, err := e.st.GetConfig(e.ctx, cfg.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	rt, err := e.st.GetActiveRoute(e.ctx, cfg.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	scope := store.OwnerScope(cfg.OwnerScope)
	st, err := e.st.ResolveRuntime(e.ctx, store.RuntimeQuery{ConfigID: cfg.ID, RouteKey: rt.Key, OwnerScope: scope, OwnerID: cfg.OwnerID,
		UserID: userID, InstanceID: instanceID, ConfigVersion: c.Version, ExecutionContext: store.ExecutionContext(scope, cfg.OwnerID)})
	if err != nil {
		e.t.Fatal(err)
	}
	return string(st.Reason)
}
