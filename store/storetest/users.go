package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"mcpgw/store"
)

// testUsers covers UserStore's user methods (DESIGN §7).
func testUsers(t *testing.T, newStore NewStore) {
	// Subtests with disjoint worlds share one store; those that list
	// everything get their own.
	shared := open(t, newStore)
	t.Run("CreateGet", func(t *testing.T) {
		x := shared.sub(t)
		u := x.user(func(u *store.User) { u.SystemAdmin = true })
		for _, get := range []struct {
			name string
			fn   func() (store.User, error)
		}{
			{"ByID", func() (store.User, error) { return x.s.GetUser(x.ctx, u.ID) }},
			{"ByEmail", func() (store.User, error) { return x.s.GetUserByEmail(x.ctx, u.Email) }},
			{"ByOIDC", func() (store.User, error) { return x.s.GetUserByOIDC(x.ctx, u.OIDCIssuer, u.OIDCSubject) }},
		} {
			got, err := get.fn()
			wantErr(t, get.name, err, nil)
			if got.ID != u.ID || got.Email != u.Email || got.DisplayName != u.DisplayName || got.Status != store.UserActive ||
				!got.SystemAdmin || got.OIDCIssuer != u.OIDCIssuer || got.OIDCSubject != u.OIDCSubject {
				t.Fatalf("%s = %+v, want %+v", get.name, got, u)
			}
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		x := shared.sub(t)
		x.user()
		_, err := x.s.GetUser(x.ctx, store.NewID())
		wantErr(t, "GetUser", err, store.ErrNotFound)
		_, err = x.s.GetUserByEmail(x.ctx, "nobody@example.test")
		wantErr(t, "GetUserByEmail", err, store.ErrNotFound)
		_, err = x.s.GetUserByOIDC(x.ctx, "https://idp.example.test", "nobody")
		wantErr(t, "GetUserByOIDC", err, store.ErrNotFound)
		_, err = x.s.SetUserStatus(x.ctx, store.NewID(), store.UserBlocked, nil)
		wantErr(t, "SetUserStatus", err, store.ErrNotFound)
		_, err = x.s.SetSystemAdmin(x.ctx, store.NewID(), true, nil)
		wantErr(t, "SetSystemAdmin", err, store.ErrNotFound)
	})

	t.Run("Conflicts", func(t *testing.T) {
		x := open(t, newStore)
		u := x.user()
		cases := []struct {
			name string
			mod  func(*store.User)
		}{
			{"DuplicateID", func(v *store.User) { v.ID = u.ID }},
			{"DuplicateEmail", func(v *store.User) { v.Email = u.Email }},
			{"DuplicateOIDC", func(v *store.User) { v.OIDCIssuer, v.OIDCSubject = u.OIDCIssuer, u.OIDCSubject }},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				id := store.NewID()
				v := store.User{ID: id, Email: "other-" + id[:8] + "@example.test", DisplayName: "Other", Status: store.UserActive,
					OIDCIssuer: "https://idp.example.test", OIDCSubject: "other-" + id, CreatedAt: t0, UpdatedAt: t0}
				tc.mod(&v)
				_, err := x.s.CreateUser(x.ctx, v)
				wantErr(t, "CreateUser", err, store.ErrConflict)
				users, err := x.s.ListUsers(x.ctx, true)
				wantErr(t, "ListUsers", err, nil)
				if len(users) != 1 {
					t.Fatalf("ListUsers = %d users after conflict, want 1", len(users))
				}
			})
		}
	})

	t.Run("ListOrderAndDeleted", func(t *testing.T) {
		x := open(t, newStore)
		c := x.user(func(u *store.User) { u.Email = "carol@example.test" })
		a := x.user(func(u *store.User) { u.Email = "alice@example.test" })
		b := x.user(func(u *store.User) { u.Email = "bob@example.test" })
		wantErr(t, "SoftDeleteUser", x.s.SoftDeleteUser(x.ctx, b.ID, nil), nil)
		users, err := x.s.ListUsers(x.ctx, false)
		wantErr(t, "ListUsers", err, nil)
		if got := userIDs(users); !slices.Equal(got, []string{a.ID, c.ID}) {
			t.Fatalf("ListUsers(false) = %v, want [alice carol] = %v", got, []string{a.ID, c.ID})
		}
		all, err := x.s.ListUsers(x.ctx, true)
		wantErr(t, "ListUsers(true)", err, nil)
		if len(all) != 3 || !slices.Contains(userIDs(all), b.ID) {
			t.Fatalf("ListUsers(true) = %v, want 3 including the deleted one", userIDs(all))
		}
	})

	t.Run("SetStatus", func(t *testing.T) {
		x := shared.sub(t)
		u := x.user()
		for _, st := range []store.UserStatus{store.UserBlocked, store.UserProvisional, store.UserActive} {
			got, err := x.s.SetUserStatus(x.ctx, u.ID, st, nil)
			wantErr(t, "SetUserStatus "+string(st), err, nil)
			if got.Status != st {
				t.Fatalf("returned status %s, want %s", got.Status, st)
			}
			if g, _ := x.s.GetUser(x.ctx, u.ID); g.Status != st {
				t.Fatalf("stored status %s, want %s", g.Status, st)
			}
		}
		// Deletion goes through SoftDeleteUser only.
		_, err := x.s.SetUserStatus(x.ctx, u.ID, store.UserDeleted, nil)
		wantErrIn(t, "SetUserStatus(deleted)", err, store.ErrInvalid, store.ErrConflict)
		if g, _ := x.s.GetUser(x.ctx, u.ID); g.Status != store.UserActive {
			t.Fatalf("status after rejected delete = %s", g.Status)
		}
		wantErr(t, "SoftDeleteUser", x.s.SoftDeleteUser(x.ctx, u.ID, nil), nil)
		_, err = x.s.SetUserStatus(x.ctx, u.ID, store.UserActive, nil)
		wantErr(t, "SetUserStatus on deleted user", err, store.ErrConflict)
		if g, _ := x.s.GetUser(x.ctx, u.ID); g.Status != store.UserDeleted {
			t.Fatalf("deleted user resurrected: %s", g.Status)
		}
	})

	t.Run("SystemAdmin", func(t *testing.T) {
		x := shared.sub(t)
		u := x.user()
		for _, v := range []bool{true, false, true} {
			got, err := x.s.SetSystemAdmin(x.ctx, u.ID, v, nil)
			wantErr(t, "SetSystemAdmin", err, nil)
			if got.SystemAdmin != v {
				t.Fatalf("SystemAdmin = %v, want %v", got.SystemAdmin, v)
			}
			if g, _ := x.s.GetUser(x.ctx, u.ID); g.SystemAdmin != v {
				t.Fatalf("stored SystemAdmin = %v, want %v", g.SystemAdmin, v)
			}
		}
	})

	t.Run("SoftDeleteAnonymizes", func(t *testing.T) {
		x := shared.sub(t)
		u := x.user()
		ev := &store.AuditEvent{Type: "user.delete", Outcome: "success", UserID: u.ID}
		wantErr(t, "SoftDeleteUser", x.s.SoftDeleteUser(x.ctx, u.ID, ev), nil)
		got, err := x.s.GetUser(x.ctx, u.ID)
		wantErr(t, "GetUser(deleted)", err, nil)
		if got.Status != store.UserDeleted {
			t.Fatalf("status = %s, want deleted", got.Status)
		}
		if got.Email == u.Email || got.DisplayName == u.DisplayName || (got.OIDCSubject == u.OIDCSubject && got.OIDCSubject != "") {
			t.Fatalf("deleted user not anonymized: %+v", got)
		}
		_, err = x.s.GetUserByEmail(x.ctx, u.Email)
		wantErr(t, "GetUserByEmail(deleted)", err, store.ErrNotFound)
		_, err = x.s.GetUserByOIDC(x.ctx, u.OIDCIssuer, u.OIDCSubject)
		wantErr(t, "GetUserByOIDC(deleted)", err, store.ErrNotFound)
		// Idempotent.
		wantErr(t, "SoftDeleteUser again", x.s.SoftDeleteUser(x.ctx, u.ID, nil), nil)
		// The email and OIDC identity are free again.
		x.user(func(v *store.User) { v.Email, v.OIDCIssuer, v.OIDCSubject = u.Email, u.OIDCIssuer, u.OIDCSubject })
		// The audit event was written with the change.
		evs, _, err := x.s.QueryAudit(x.ctx, store.AuditFilter{Type: "user.delete"})
		wantErr(t, "QueryAudit", err, nil)
		if len(evs) != 1 || evs[0].UserID != u.ID || evs[0].Time.IsZero() {
			t.Fatalf("audit = %+v, want one user.delete event with time filled", evs)
		}
	})

	t.Run("AuditInSameOperation", func(t *testing.T) {
		x := shared.sub(t)
		u := x.user()
		when := at(time.Minute)
		_, err := x.s.SetUserStatus(x.ctx, u.ID, store.UserBlocked, &store.AuditEvent{Time: when, Type: "user.block", Outcome: "success", UserID: u.ID})
		wantErr(t, "SetUserStatus", err, nil)
		_, err = x.s.SetSystemAdmin(x.ctx, u.ID, true, &store.AuditEvent{Time: when, Type: "user.admin", Outcome: "success", UserID: u.ID})
		wantErr(t, "SetSystemAdmin", err, nil)
		evs, _, err := x.s.QueryAudit(x.ctx, store.AuditFilter{UserID: u.ID})
		wantErr(t, "QueryAudit", err, nil)
		if len(evs) != 2 || !evs[0].Time.Equal(when) {
			t.Fatalf("audit = %+v, want 2 events at %v", evs, when)
		}
	})
}

func userIDs(us []store.User) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.ID
	}
	return out
}

// testAPITokens covers API tokens (hash only; DESIGN §7, §9).
func testAPITokens(t *testing.T, newStore NewStore) {
	// Subtests with disjoint worlds share one store; those that list
	// everything get their own.
	shared := open(t, newStore)
	mk := func(x *h, userID, label string, created time.Time, exp *time.Time) store.APIToken {
		x.t.Helper()
		tok := store.APIToken{ID: store.NewID(), UserID: userID, Name: label, Hash: x.hash("api-" + label), CreatedAt: created, ExpiresAt: exp}
		got, err := x.s.CreateAPIToken(x.ctx, tok)
		wantErr(x.t, "CreateAPIToken", err, nil)
		return got
	}
	t.Run("Lifecycle", func(t *testing.T) {
		x := shared.sub(t)
		u := x.user()
		a := mk(x, u.ID, "a", t0, ptime(at(time.Hour)))
		got, err := x.s.GetAPITokenByHash(x.ctx, x.hash("api-a"), at(time.Minute))
		wantErr(t, "GetAPITokenByHash", err, nil)
		if got.ID != a.ID || got.UserID != u.ID || got.Name != "a" || !sameBytes(got.Hash, x.hash("api-a")) || !samePTime(got.ExpiresAt, a.ExpiresAt) {
			t.Fatalf("token = %+v", got)
		}
		_, err = x.s.GetAPITokenByHash(x.ctx, x.hash("api-a"), at(2*time.Hour))
		wantErr(t, "GetAPITokenByHash(expired)", err, store.ErrExpired)
		_, err = x.s.GetAPITokenByHash(x.ctx, x.hash("api-unknown"), t0)
		wantErr(t, "GetAPITokenByHash(unknown)", err, store.ErrNotFound)

		// No expiry.
		mk(x, u.ID, "forever", at(time.Second), nil)
		_, err = x.s.GetAPITokenByHash(x.ctx, x.hash("api-forever"), at(24*365*time.Hour))
		wantErr(t, "GetAPITokenByHash(no expiry)", err, nil)

		// Revoke: someone else's token is not found; own token is revoked.
		other := x.user()
		wantErr(t, "RevokeAPIToken(other user)", x.s.RevokeAPIToken(x.ctx, other.ID, a.ID, t0), store.ErrNotFound)
		_, err = x.s.GetAPITokenByHash(x.ctx, x.hash("api-a"), at(time.Minute))
		wantErr(t, "token still valid after foreign revoke", err, nil)
		wantErr(t, "RevokeAPIToken", x.s.RevokeAPIToken(x.ctx, u.ID, a.ID, at(time.Minute)), nil)
		_, err = x.s.GetAPITokenByHash(x.ctx, x.hash("api-a"), at(2*time.Minute))
		wantErr(t, "GetAPITokenByHash(revoked)", err, store.ErrRevoked)
	})
	t.Run("ListNewestFirst", func(t *testing.T) {
		x := shared.sub(t)
		u := x.user()
		other := x.user()
		a := mk(x, u.ID, "old", t0, nil)
		b := mk(x, u.ID, "mid", at(time.Minute), nil)
		c := mk(x, u.ID, "new", at(2*time.Minute), nil)
		mk(x, other.ID, "others", at(3*time.Minute), nil)
		wantErr(t, "RevokeAPIToken", x.s.RevokeAPIToken(x.ctx, u.ID, b.ID, at(time.Hour)), nil)
		list, err := x.s.ListAPITokens(x.ctx, u.ID)
		wantErr(t, "ListAPITokens", err, nil)
		var ids []string
		for _, tk := range list {
			ids = append(ids, tk.ID)
		}
		if !slices.Equal(ids, []string{c.ID, b.ID, a.ID}) {
			t.Fatalf("ListAPITokens = %v, want newest first %v", ids, []string{c.ID, b.ID, a.ID})
		}
		if list[1].RevokedAt == nil {
			t.Fatalf("revoked token listed without RevokedAt")
		}
	})
	t.Run("Conflicts", func(t *testing.T) {
		x := shared.sub(t)
		u := x.user()
		a := mk(x, u.ID, "a", t0, nil)
		_, err := x.s.CreateAPIToken(x.ctx, store.APIToken{ID: a.ID, UserID: u.ID, Name: "dup-id", Hash: x.hash("api-other"), CreatedAt: t0})
		wantErr(t, "duplicate id", err, store.ErrConflict)
		_, err = x.s.CreateAPIToken(x.ctx, store.APIToken{ID: store.NewID(), UserID: u.ID, Name: "dup-hash", Hash: x.hash("api-a"), CreatedAt: t0})
		wantErr(t, "duplicate hash", err, store.ErrConflict)
		list, _ := x.s.ListAPITokens(x.ctx, u.ID)
		if len(list) != 1 {
			t.Fatalf("ListAPITokens after conflicts = %d, want 1", len(list))
		}
	})
	t.Run("DeletedOwner", func(t *testing.T) {
		x := shared.sub(t)
		u := x.user()
		mk(x, u.ID, "a", t0, nil)
		wantErr(t, "SoftDeleteUser", x.s.SoftDeleteUser(x.ctx, u.ID, nil), nil)
		_, err := x.s.GetAPITokenByHash(x.ctx, x.hash("api-a"), t0)
		wantErr(t, "GetAPITokenByHash(deleted owner)", err, store.ErrNotFound)
	})
}

// testSessions covers browser sessions (DESIGN §7).
func testSessions(t *testing.T, newStore NewStore) {
	x := open(t, newStore)
	u := x.user()
	s := store.Session{IDHash: hash("session-1"), UserID: u.ID, CSRFHash: hash("csrf-1"), CreatedAt: t0, ExpiresAt: at(time.Hour)}
	wantErr(t, "CreateSession", x.s.CreateSession(x.ctx, s), nil)
	t.Run("Get", func(t *testing.T) {
		got, err := x.s.GetSession(x.ctx, s.IDHash, at(time.Minute))
		wantErr(t, "GetSession", err, nil)
		if got.UserID != u.ID || !sameBytes(got.CSRFHash, s.CSRFHash) || !sameTime(got.ExpiresAt, s.ExpiresAt) || got.RevokedAt != nil {
			t.Fatalf("session = %+v", got)
		}
	})
	t.Run("Expired", func(t *testing.T) {
		_, err := x.s.GetSession(x.ctx, s.IDHash, at(2*time.Hour))
		wantErr(t, "GetSession(expired)", err, store.ErrExpired)
	})
	t.Run("Unknown", func(t *testing.T) {
		_, err := x.s.GetSession(x.ctx, hash("session-unknown"), t0)
		wantErr(t, "GetSession(unknown)", err, store.ErrNotFound)
		wantErr(t, "RevokeSession(unknown)", x.s.RevokeSession(x.ctx, hash("session-unknown"), t0), nil)
	})
	t.Run("Revoked", func(t *testing.T) {
		wantErr(t, "RevokeSession", x.s.RevokeSession(x.ctx, s.IDHash, at(time.Minute)), nil)
		_, err := x.s.GetSession(x.ctx, s.IDHash, at(2*time.Minute))
		wantErr(t, "GetSession(revoked)", err, store.ErrRevoked)
	})
}

// testOrgs covers OrgStore (DESIGN §7): orgs, members and the owner rule.
func testOrgs(t *testing.T, newStore NewStore) {
	// Subtests with disjoint worlds share one store; those that list
	// everything get their own.
	shared := open(t, newStore)
	t.Run("CreateMakesOwner", func(t *testing.T) {
		x := open(t, newStore)
		owner := x.user()
		o := x.org(owner.ID)
		got, err := x.s.GetOrg(x.ctx, o.ID)
		wantErr(t, "GetOrg", err, nil)
		if got.ID != o.ID || got.Name != o.Name {
			t.Fatalf("GetOrg = %+v, want %+v", got, o)
		}
		m, err := x.s.GetMember(x.ctx, o.ID, owner.ID)
		wantErr(t, "GetMember", err, nil)
		if m.Role != store.RoleOwner {
			t.Fatalf("creator role = %s, want owner", m.Role)
		}
		orgs, err := x.s.ListOrgs(x.ctx)
		wantErr(t, "ListOrgs", err, nil)
		if len(orgs) != 1 || orgs[0].ID != o.ID {
			t.Fatalf("ListOrgs = %+v", orgs)
		}
		_, err = x.s.GetOrg(x.ctx, store.NewID())
		wantErr(t, "GetOrg(unknown)", err, store.ErrNotFound)
	})
	t.Run("CreateConflicts", func(t *testing.T) {
		x := open(t, newStore)
		owner := x.user()
		o := x.org(owner.ID)
		_, err := x.s.CreateOrg(x.ctx, store.Org{ID: o.ID, Name: "another", CreatedAt: t0}, owner.ID, nil)
		wantErr(t, "duplicate id", err, store.ErrConflict)
		_, err = x.s.CreateOrg(x.ctx, store.Org{ID: store.NewID(), Name: o.Name, CreatedAt: t0}, owner.ID, nil)
		wantErr(t, "duplicate name", err, store.ErrConflict)
		if orgs, _ := x.s.ListOrgs(x.ctx); len(orgs) != 1 {
			t.Fatalf("ListOrgs after conflicts = %d orgs, want 1", len(orgs))
		}
		if ms, _ := x.s.ListMemberships(x.ctx, owner.ID); len(ms) != 1 {
			t.Fatalf("memberships after conflicts = %d, want 1", len(ms))
		}
	})
	t.Run("AddMember", func(t *testing.T) {
		x := shared.sub(t)
		owner := x.user()
		o := x.org(owner.ID)
		u := x.user()
		m, err := x.s.AddMember(x.ctx, store.Member{OrgID: o.ID, UserID: u.ID, Role: store.RoleMember, CreatedAt: t0}, nil)
		wantErr(t, "AddMember", err, nil)
		if m.Role != store.RoleMember || m.OrgID != o.ID || m.UserID != u.ID {
			t.Fatalf("AddMember = %+v", m)
		}
		_, err = x.s.AddMember(x.ctx, store.Member{OrgID: o.ID, UserID: u.ID, Role: store.RoleAdmin, CreatedAt: t0}, nil)
		wantErr(t, "AddMember(duplicate)", err, store.ErrConflict)
		if got, _ := x.s.GetMember(x.ctx, o.ID, u.ID); got.Role != store.RoleMember {
			t.Fatalf("duplicate AddMember changed role to %s", got.Role)
		}
		_, err = x.s.AddMember(x.ctx, store.Member{OrgID: store.NewID(), UserID: u.ID, Role: store.RoleMember, CreatedAt: t0}, nil)
		wantErr(t, "AddMember(unknown org)", err, store.ErrNotFound)
		_, err = x.s.AddMember(x.ctx, store.Member{OrgID: o.ID, UserID: store.NewID(), Role: store.RoleMember, CreatedAt: t0}, nil)
		wantErr(t, "AddMember(unknown user)", err, store.ErrNotFound)
		d := x.user()
		wantErr(t, "SoftDeleteUser", x.s.SoftDeleteUser(x.ctx, d.ID, nil), nil)
		_, err = x.s.AddMember(x.ctx, store.Member{OrgID: o.ID, UserID: d.ID, Role: store.RoleMember, CreatedAt: t0}, nil)
		wantErr(t, "AddMember(deleted user)", err, store.ErrNotFound)
		_, err = x.s.GetMember(x.ctx, o.ID, d.ID)
		wantErr(t, "GetMember(not a member)", err, store.ErrNotFound)
	})
	t.Run("Lists", func(t *testing.T) {
		x := shared.sub(t)
		owner := x.user()
		o1, o2 := x.org(owner.ID), x.org(owner.ID)
		a, b := x.user(), x.user()
		x.member(o1.ID, a.ID, store.RoleAdmin)
		x.member(o1.ID, b.ID, store.RoleMember)
		x.member(o2.ID, a.ID, store.RoleMember)
		ms, err := x.s.ListMembers(x.ctx, o1.ID)
		wantErr(t, "ListMembers", err, nil)
		want := []string{owner.ID, a.ID, b.ID}
		slices.Sort(want)
		var got []string
		for _, m := range ms {
			got = append(got, m.UserID)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("ListMembers = %v, want ordered by user id %v", got, want)
		}
		mss, err := x.s.ListMemberships(x.ctx, a.ID)
		wantErr(t, "ListMemberships", err, nil)
		wantOrgs := []string{o1.ID, o2.ID}
		slices.Sort(wantOrgs)
		got = got[:0]
		for _, m := range mss {
			got = append(got, m.OrgID)
			if m.UserID != a.ID {
				t.Fatalf("membership of wrong user: %+v", m)
			}
		}
		if !slices.Equal(got, wantOrgs) {
			t.Fatalf("ListMemberships = %v, want ordered by org id %v", got, wantOrgs)
		}
	})
	t.Run("LastOwner", func(t *testing.T) {
		x := shared.sub(t)
		owner := x.user()
		o := x.org(owner.ID)
		// A refused change writes no audit event (same transaction).
		ev := func() *store.AuditEvent {
			return &store.AuditEvent{Type: "member.refused", Outcome: "success", OwnerScope: store.ScopeOrg, OwnerID: o.ID}
		}
		_, err := x.s.SetMemberRole(x.ctx, o.ID, owner.ID, store.RoleAdmin, ev())
		wantErr(t, "demote last owner", err, store.ErrConflict)
		wantErr(t, "remove last owner", x.s.RemoveMember(x.ctx, o.ID, owner.ID, ev()), store.ErrConflict)
		if evs, _, _ := x.s.QueryAudit(x.ctx, store.AuditFilter{Type: "member.refused"}); len(evs) != 0 {
			t.Fatalf("refused changes wrote %d audit events", len(evs))
		}
		if m, _ := x.s.GetMember(x.ctx, o.ID, owner.ID); m.Role != store.RoleOwner {
			t.Fatalf("last owner changed to %s", m.Role)
		}
		second := x.user()
		x.member(o.ID, second.ID, store.RoleMember)
		m, err := x.s.SetMemberRole(x.ctx, o.ID, second.ID, store.RoleOwner, nil)
		wantErr(t, "promote", err, nil)
		if m.Role != store.RoleOwner {
			t.Fatalf("promoted role = %s", m.Role)
		}
		_, err = x.s.SetMemberRole(x.ctx, o.ID, owner.ID, store.RoleMember, nil)
		wantErr(t, "demote one of two owners", err, nil)
		wantErr(t, "remove demoted", x.s.RemoveMember(x.ctx, o.ID, owner.ID, nil), nil)
		_, err = x.s.GetMember(x.ctx, o.ID, owner.ID)
		wantErr(t, "GetMember(removed)", err, store.ErrNotFound)
		wantErr(t, "remove new last owner", x.s.RemoveMember(x.ctx, o.ID, second.ID, nil), store.ErrConflict)
		_, err = x.s.SetMemberRole(x.ctx, o.ID, store.NewID(), store.RoleAdmin, nil)
		wantErr(t, "SetMemberRole(not a member)", err, store.ErrNotFound)
		// Removing a non-member is unspecified beyond "changes nothing".
		if err := x.s.RemoveMember(x.ctx, o.ID, store.NewID(), nil); err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("RemoveMember(not a member) = %v, want nil or ErrNotFound", err)
		}
		if ms, _ := x.s.ListMembers(x.ctx, o.ID); len(ms) != 1 {
			t.Fatalf("members = %d, want 1", len(ms))
		}
	})
}
