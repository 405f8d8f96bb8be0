package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"mcpgw/store"
)

// cworld is a populated world for the cascade cases (DESIGN §7): a victim
// with personal and org state, and a bystander with the same kinds of state
// that must survive.
type cworld struct {
	x *h

	org, otherOrg store.Org
	owner         store.User
	victim, peer  store.User

	personalCfg       store.Config // victim's personal oauth config
	orgCfg            store.Config // org multi_user oauth config, both assigned
	otherOrgCfg       store.Config // otherOrg config, victim assigned
	victimPersonal    store.Instance
	victimOrg         store.Instance
	victimOtherOrg    store.Instance
	peerOrg           store.Instance
	peerPersonal      store.Instance
	peerPersonalCfg   store.Config
	victimPendingPers store.PendingProviderState
	victimPendingOrg  store.PendingProviderState
	peerPendingOrg    store.PendingProviderState
	victimRefresh     store.RefreshToken
	peerRefresh       store.RefreshToken
	victimSession     store.Session
	peerSession       store.Session
}

func (x *h) cascadeWorld() *cworld {
	x.t.Helper()
	w := &cworld{x: x}
	w.owner = x.user()
	w.victim, w.peer = x.user(), x.user()
	w.org, w.otherOrg = x.org(w.owner.ID), x.org(w.owner.ID)
	x.member(w.org.ID, w.victim.ID, store.RoleMember)
	x.member(w.org.ID, w.peer.ID, store.RoleMember)
	x.member(w.otherOrg.ID, w.victim.ID, store.RoleMember)

	w.personalCfg, _ = x.personal(w.victim.ID, store.AuthOAuthDynamic)
	w.peerPersonalCfg, _ = x.personal(w.peer.ID, store.AuthOAuthDynamic)
	w.orgCfg, _ = x.config(store.ScopeOrg, w.org.ID, store.AuthOAuthStatic, store.MultiUser)
	w.otherOrgCfg, _ = x.config(store.ScopeOrg, w.otherOrg.ID, store.AuthOAuthStatic, store.MultiUser)
	x.assign(w.orgCfg.ID, w.victim.ID)
	x.assign(w.orgCfg.ID, w.peer.ID)
	x.assign(w.otherOrgCfg.ID, w.victim.ID)

	w.victimPersonal = x.instance(w.personalCfg, w.victim.ID)
	w.victimOrg = x.instance(w.orgCfg, w.victim.ID)
	w.victimOtherOrg = x.instance(w.otherOrgCfg, w.victim.ID)
	w.peerOrg = x.instance(w.orgCfg, w.peer.ID)
	w.peerPersonal = x.instance(w.peerPersonalCfg, w.peer.ID)
	for _, in := range []store.Instance{w.victimPersonal, w.victimOrg, w.victimOtherOrg, w.peerOrg, w.peerPersonal} {
		x.grant(in.ID, in.ID)
	}
	w.victimPendingPers = x.pending("vp", w.victim.ID, w.personalCfg, w.victimPersonal.ID)
	w.victimPendingOrg = x.pending("vo", w.victim.ID, w.orgCfg, w.victimOrg.ID)
	w.peerPendingOrg = x.pending("po", w.peer.ID, w.orgCfg, w.peerOrg.ID)

	client := x.client()
	rt := func(u store.User, c store.Config, in store.Instance, label string) store.RefreshToken {
		r := store.RefreshToken{Hash: x.hash("cascade-rt-" + label), FamilyID: store.NewID(), ClientID: client.ID, UserID: u.ID,
			InstanceID: in.ID, ConfigID: c.ID, Resource: "https://gw.example.test/mcp-connect/x", Scopes: []string{"mcp:access"},
			ExecutionContext: store.ExecutionContext(c.OwnerScope, c.OwnerID), ConfigVersion: c.Version, CreatedAt: t0, ExpiresAt: at(24 * time.Hour)}
		if err := x.s.CreateRefreshToken(x.ctx, r); err != nil {
			x.t.Fatalf("CreateRefreshToken: %v", err)
		}
		return r
	}
	w.victimRefresh = rt(w.victim, w.orgCfg, w.victimOrg, "victim")
	w.peerRefresh = rt(w.peer, w.orgCfg, w.peerOrg, "peer")
	sess := func(u store.User, label string) store.Session {
		s := store.Session{IDHash: x.hash("cascade-session-" + label), UserID: u.ID, CSRFHash: x.hash("cascade-csrf-" + label), CreatedAt: t0, ExpiresAt: at(time.Hour)}
		if err := x.s.CreateSession(x.ctx, s); err != nil {
			x.t.Fatalf("CreateSession: %v", err)
		}
		return s
	}
	w.victimSession = sess(w.victim, "victim")
	w.peerSession = sess(w.peer, "peer")
	for _, u := range []store.User{w.victim, w.peer} {
		if _, err := x.s.CreateAPIToken(x.ctx, store.APIToken{ID: store.NewID(), UserID: u.ID, Name: "t", Hash: x.hash("cascade-api-" + u.ID), CreatedAt: t0}); err != nil {
			x.t.Fatalf("CreateAPIToken: %v", err)
		}
	}
	if err := x.s.AppendAudit(x.ctx, store.AuditEvent{Time: t0, Type: "runtime.usage", Outcome: "success", ActorUserID: w.victim.ID, ConfigID: w.orgCfg.ID, InstanceID: w.victimOrg.ID}); err != nil {
		x.t.Fatalf("AppendAudit: %v", err)
	}
	return w
}

// wantGoneInstance asserts the instance is removed (terminal) with no grant.
func (w *cworld) wantRemoved(in store.Instance) {
	w.x.t.Helper()
	got := w.x.getInstance(in.ID)
	if !got.State.Terminal() {
		w.x.t.Fatalf("instance %s state = %s, want terminal (removed)", in.ID, got.State)
	}
	if got.State != store.InstanceRemoved {
		w.x.t.Fatalf("instance %s state = %s, want removed", in.ID, got.State)
	}
	w.x.wantNoGrant(in.ID)
}

// wantIntact asserts the instance is still active with its grant.
func (w *cworld) wantIntact(in store.Instance) {
	w.x.t.Helper()
	w.x.wantState(in.ID, store.InstanceActive)
	if _, err := w.x.s.GetGrant(w.x.ctx, in.ID); err != nil {
		w.x.t.Fatalf("grant of surviving instance %s: %v", in.ID, err)
	}
}

func (w *cworld) wantPendingAlive(p store.PendingProviderState) {
	w.x.t.Helper()
	if _, err := w.x.s.ConsumePendingState(w.x.ctx, p.StateHash, t0); err != nil {
		w.x.t.Fatalf("surviving pending state: %v", err)
	}
}

func (w *cworld) assigned(configID, userID string) bool {
	w.x.t.Helper()
	as, err := w.x.s.ListAssignments(w.x.ctx, configID)
	if err != nil {
		w.x.t.Fatalf("ListAssignments: %v", err)
	}
	return slices.Contains(assignees(as), userID)
}

func (w *cworld) auditSurvives() {
	w.x.t.Helper()
	evs, _, err := w.x.s.QueryAudit(w.x.ctx, store.AuditFilter{Type: "runtime.usage", UserID: w.victim.ID})
	if err != nil || len(evs) != 1 {
		w.x.t.Fatalf("audit rows after cascade: %d, %v; want the one row to survive", len(evs), err)
	}
}

// testCascades asserts exactly what each cascade removes and what survives.
func testCascades(t *testing.T, newStore NewStore) {
	// Subtests with disjoint worlds share one store; those that list
	// everything get their own.
	shared := open(t, newStore)
	t.Run("SoftDeleteUser", func(t *testing.T) {
		x := shared.sub(t)
		w := x.cascadeWorld()
		wantErr(t, "SoftDeleteUser", x.s.SoftDeleteUser(x.ctx, w.victim.ID, &store.AuditEvent{Type: "user.delete", Outcome: "success", UserID: w.victim.ID}), nil)
		// Gone: instances, grants, pending state, refresh tokens, sessions,
		// API tokens, assignments, memberships.
		w.wantRemoved(w.victimPersonal)
		w.wantRemoved(w.victimOrg)
		w.wantRemoved(w.victimOtherOrg)
		x.wantPendingGone(w.victimPendingPers)
		x.wantPendingGone(w.victimPendingOrg)
		if g, err := x.s.GetRefreshToken(x.ctx, w.victimRefresh.Hash); err == nil && g.RevokedAt == nil {
			t.Fatalf("victim refresh token survives: %+v", g)
		} else if err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("GetRefreshToken: %v", err)
		}
		_, err := x.s.RotateRefreshToken(x.ctx, w.victimRefresh.Hash, store.RefreshToken{Hash: x.hash("cascade-next"), FamilyID: w.victimRefresh.FamilyID,
			ClientID: w.victimRefresh.ClientID, UserID: w.victim.ID, InstanceID: w.victimOrg.ID, ConfigID: w.orgCfg.ID,
			Resource: w.victimRefresh.Resource, Scopes: []string{"mcp:access"}, ExecutionContext: w.victimRefresh.ExecutionContext,
			ConfigVersion: w.victimRefresh.ConfigVersion, CreatedAt: t0, ExpiresAt: at(48 * time.Hour)}, at(time.Minute))
		wantErrIn(t, "RotateRefreshToken(victim)", err, store.ErrRevoked, store.ErrNotFound)
		_, err = x.s.GetSession(x.ctx, w.victimSession.IDHash, at(time.Minute))
		wantErrIn(t, "GetSession(victim)", err, store.ErrNotFound, store.ErrRevoked)
		_, err = x.s.GetAPITokenByHash(x.ctx, x.hash("cascade-api-"+w.victim.ID), at(time.Minute))
		wantErr(t, "GetAPITokenByHash(victim)", err, store.ErrNotFound)
		if w.assigned(w.orgCfg.ID, w.victim.ID) || w.assigned(w.otherOrgCfg.ID, w.victim.ID) {
			t.Fatalf("victim still assigned")
		}
		if ms, _ := x.s.ListMemberships(x.ctx, w.victim.ID); len(ms) != 0 {
			t.Fatalf("victim memberships = %+v", ms)
		}
		_, err = x.s.GetMember(x.ctx, w.org.ID, w.victim.ID)
		wantErr(t, "GetMember(victim)", err, store.ErrNotFound)
		if list, _ := x.s.ListUsable(x.ctx, w.victim.ID); len(list) != 0 {
			t.Fatalf("deleted user has usable configs")
		}
		// Survive: the peer's everything, orgs, org configs, audit rows.
		w.wantIntact(w.peerOrg)
		w.wantIntact(w.peerPersonal)
		w.wantPendingAlive(w.peerPendingOrg)
		if _, err := x.s.GetSession(x.ctx, w.peerSession.IDHash, at(time.Minute)); err != nil {
			t.Fatalf("peer session: %v", err)
		}
		if _, err := x.s.GetAPITokenByHash(x.ctx, x.hash("cascade-api-"+w.peer.ID), at(time.Minute)); err != nil {
			t.Fatalf("peer API token: %v", err)
		}
		if g, err := x.s.GetRefreshToken(x.ctx, w.peerRefresh.Hash); err != nil || g.RevokedAt != nil {
			t.Fatalf("peer refresh token: %+v, %v", g, err)
		}
		if !w.assigned(w.orgCfg.ID, w.peer.ID) {
			t.Fatalf("peer lost its assignment")
		}
		if c := x.getConfig(w.orgCfg.ID); c.Status != store.ConfigEnabled {
			t.Fatalf("org config status %s", c.Status)
		}
		if ms, _ := x.s.ListMembers(x.ctx, w.org.ID); len(ms) != 2 {
			t.Fatalf("org members = %d, want owner + peer", len(ms))
		}
		w.auditSurvives()
		evs, _, _ := x.s.QueryAudit(x.ctx, store.AuditFilter{Type: "user.delete"})
		if len(evs) != 1 {
			t.Fatalf("user.delete events = %d, want 1", len(evs))
		}
	})

	t.Run("RemoveMember", func(t *testing.T) {
		x := shared.sub(t)
		w := x.cascadeWorld()
		wantErr(t, "RemoveMember", x.s.RemoveMember(x.ctx, w.org.ID, w.victim.ID, &store.AuditEvent{Type: "member.remove", Outcome: "success", OwnerScope: store.ScopeOrg, OwnerID: w.org.ID, UserID: w.victim.ID}), nil)
		_, err := x.s.GetMember(x.ctx, w.org.ID, w.victim.ID)
		wantErr(t, "GetMember", err, store.ErrNotFound)
		// Gone: the victim's assignment, org instance + grant, org pending state.
		if w.assigned(w.orgCfg.ID, w.victim.ID) {
			t.Fatalf("victim still assigned to the org config")
		}
		w.wantRemoved(w.victimOrg)
		x.wantPendingGone(w.victimPendingOrg)
		// Survive: personal state, the other org's membership and state,
		// the user itself, sessions, the peer, audit rows.
		w.wantIntact(w.victimPersonal)
		w.wantIntact(w.victimOtherOrg)
		w.wantPendingAlive(w.victimPendingPers)
		if !w.assigned(w.otherOrgCfg.ID, w.victim.ID) {
			t.Fatalf("other org assignment lost")
		}
		if _, err := x.s.GetMember(x.ctx, w.otherOrg.ID, w.victim.ID); err != nil {
			t.Fatalf("other org membership lost: %v", err)
		}
		if u, _ := x.s.GetUser(x.ctx, w.victim.ID); u.Status != store.UserActive {
			t.Fatalf("victim status = %s", u.Status)
		}
		if _, err := x.s.GetSession(x.ctx, w.victimSession.IDHash, at(time.Minute)); err != nil {
			t.Fatalf("victim session lost: %v", err)
		}
		w.wantIntact(w.peerOrg)
		w.wantPendingAlive(w.peerPendingOrg)
		if !w.assigned(w.orgCfg.ID, w.peer.ID) {
			t.Fatalf("peer lost its assignment")
		}
		w.auditSurvives()
	})

	t.Run("DeleteConfig", func(t *testing.T) {
		x := shared.sub(t)
		w := x.cascadeWorld()
		wantErr(t, "PutProviderRegistration", x.s.PutProviderRegistration(x.ctx, store.ProviderRegistration{ConfigID: w.orgCfg.ID, ConfigVersion: 1, Ciphertext: []byte("ciphertext-reg"), CreatedAt: t0}), nil)
		wantErr(t, "PutProviderRegistration(other)", x.s.PutProviderRegistration(x.ctx, store.ProviderRegistration{ConfigID: w.otherOrgCfg.ID, ConfigVersion: 1, Ciphertext: []byte("ciphertext-reg2"), CreatedAt: t0}), nil)
		wantErr(t, "DeleteConfig", x.s.DeleteConfig(x.ctx, w.orgCfg.ID, &store.AuditEvent{Type: "config.delete", Outcome: "success", ConfigID: w.orgCfg.ID}), nil)
		c := x.getConfig(w.orgCfg.ID)
		if c.Status != store.ConfigDeleted {
			t.Fatalf("status = %s", c.Status)
		}
		_, err := x.s.GetActiveRoute(x.ctx, w.orgCfg.ID)
		wantErr(t, "GetActiveRoute", err, store.ErrNotFound)
		w.wantRemoved(w.victimOrg)
		w.wantRemoved(w.peerOrg)
		x.wantPendingGone(w.victimPendingOrg)
		x.wantPendingGone(w.peerPendingOrg)
		if as, _ := x.s.ListAssignments(x.ctx, w.orgCfg.ID); len(as) != 0 {
			t.Fatalf("assignments survive delete: %+v", as)
		}
		_, err = x.s.GetProviderRegistration(x.ctx, w.orgCfg.ID, 1)
		wantErr(t, "GetProviderRegistration", err, store.ErrNotFound)
		if _, err := x.s.GetRoutable(x.ctx, w.orgCfg.ID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("GetRoutable(deleted) = %v", err)
		}
		// Survive: other configs and their state, memberships, audit.
		w.wantIntact(w.victimPersonal)
		w.wantIntact(w.victimOtherOrg)
		w.wantPendingAlive(w.victimPendingPers)
		if _, err := x.s.GetProviderRegistration(x.ctx, w.otherOrgCfg.ID, 1); err != nil {
			t.Fatalf("other registration lost: %v", err)
		}
		if _, err := x.s.GetMember(x.ctx, w.org.ID, w.victim.ID); err != nil {
			t.Fatalf("membership lost: %v", err)
		}
		w.auditSurvives()
		// Idempotent, and the terminal instances stay terminal.
		wantErr(t, "DeleteConfig again", x.s.DeleteConfig(x.ctx, w.orgCfg.ID, nil), nil)
		w.wantRemoved(w.victimOrg)
	})

	t.Run("Unassign", func(t *testing.T) {
		x := shared.sub(t)
		w := x.cascadeWorld()
		wantErr(t, "Unassign", x.s.Unassign(x.ctx, w.orgCfg.ID, w.victim.ID, nil), nil)
		w.wantRemoved(w.victimOrg)
		x.wantPendingGone(w.victimPendingOrg)
		if w.assigned(w.orgCfg.ID, w.victim.ID) {
			t.Fatalf("still assigned")
		}
		if _, err := x.s.GetMember(x.ctx, w.org.ID, w.victim.ID); err != nil {
			t.Fatalf("membership lost on unassign: %v", err)
		}
		w.wantIntact(w.peerOrg)
		w.wantIntact(w.victimOtherOrg)
		w.wantIntact(w.victimPersonal)
		w.wantPendingAlive(w.peerPendingOrg)
		w.wantPendingAlive(w.victimPendingPers)
		w.auditSurvives()
	})

	t.Run("EndInstance", func(t *testing.T) {
		x := shared.sub(t)
		w := x.cascadeWorld()
		_, err := x.s.EndInstance(x.ctx, w.victimOrg.ID, store.InstanceRevoked, nil)
		wantErr(t, "EndInstance", err, nil)
		x.wantState(w.victimOrg.ID, store.InstanceRevoked)
		x.wantNoGrant(w.victimOrg.ID)
		x.wantPendingGone(w.victimPendingOrg)
		if !w.assigned(w.orgCfg.ID, w.victim.ID) {
			t.Fatalf("EndInstance removed the assignment")
		}
		w.wantIntact(w.peerOrg)
		w.wantIntact(w.victimPersonal)
		w.wantPendingAlive(w.peerPendingOrg)
		w.wantPendingAlive(w.victimPendingPers)
		w.auditSurvives()
	})
}
