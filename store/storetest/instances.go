package storetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"mcpgw/store"
)

// testInstances covers instances (DESIGN §2: at most one non-terminal per
// tuple; terminal states are never reused).
func testInstances(t *testing.T, newStore NewStore) {
	// Subtests with disjoint worlds share one store; those that list
	// everything get their own.
	shared := open(t, newStore)
	t.Run("GetOrCreate", func(t *testing.T) {
		x := shared.sub(t)
		u := x.user()
		c, _ := x.personal(u.ID, store.AuthNone)
		id := store.NewID()
		in, created, err := x.s.GetOrCreateInstance(x.ctx, c.OwnerScope, c.OwnerID, u.ID, c.ID, id)
		wantErr(t, "GetOrCreateInstance", err, nil)
		if !created || in.ID != id || in.State != store.InstanceActive || in.UserID != u.ID || in.ConfigID != c.ID ||
			in.OwnerScope != store.ScopeUser || in.OwnerID != u.ID {
			t.Fatalf("created = %v, instance = %+v", created, in)
		}
		again, created, err := x.s.GetOrCreateInstance(x.ctx, c.OwnerScope, c.OwnerID, u.ID, c.ID, store.NewID())
		wantErr(t, "GetOrCreateInstance again", err, nil)
		if created || again.ID != id {
			t.Fatalf("second call created=%v id=%s, want the same instance %s", created, again.ID, id)
		}
		got := x.getInstance(id)
		if got.ID != id || got.State != store.InstanceActive || got.GrantVersion != in.GrantVersion {
			t.Fatalf("GetInstance = %+v", got)
		}
		_, err = x.s.GetInstance(x.ctx, store.NewID())
		wantErr(t, "GetInstance(unknown)", err, store.ErrNotFound)
	})

	t.Run("NeedsReauthIsReturned", func(t *testing.T) {
		x := shared.sub(t)
		u := x.user()
		c, _ := x.personal(u.ID, store.AuthOAuthDynamic)
		in := x.instance(c, u.ID)
		g := x.grant(in.ID, "g")
		ok, err := x.s.MarkNeedsReauth(x.ctx, in.ID, g.Version, nil)
		wantErr(t, "MarkNeedsReauth", err, nil)
		if !ok {
			t.Fatalf("MarkNeedsReauth = false")
		}
		again, created, err := x.s.GetOrCreateInstance(x.ctx, c.OwnerScope, c.OwnerID, u.ID, c.ID, store.NewID())
		wantErr(t, "GetOrCreateInstance", err, nil)
		if created || again.ID != in.ID || again.State != store.InstanceNeedsReauth {
			t.Fatalf("GetOrCreate on needs_reauth: created=%v %+v, want the same non-terminal instance", created, again)
		}
	})

	t.Run("TerminalNeverReused", func(t *testing.T) {
		shared := open(t, newStore)
		for _, st := range []store.InstanceState{store.InstanceRevoked, store.InstanceRemoved} {
			t.Run(string(st), func(t *testing.T) {
				x := shared.sub(t)
				u := x.user()
				c, _ := x.personal(u.ID, store.AuthOAuthDynamic)
				in := x.instance(c, u.ID)
				g := x.grant(in.ID, "g")
				p := x.pending("p", u.ID, c, in.ID)
				ended, err := x.s.EndInstance(x.ctx, in.ID, st, &store.AuditEvent{Type: "instance.end", Outcome: "success", InstanceID: in.ID})
				wantErr(t, "EndInstance", err, nil)
				if ended.State != st || ended.GrantVersion <= g.Version {
					t.Fatalf("ended = %+v (grant version was %d)", ended, g.Version)
				}
				x.wantState(in.ID, st)
				x.wantNoGrant(in.ID)
				x.wantPendingGone(p)
				_, err = x.s.EndInstance(x.ctx, in.ID, store.InstanceRemoved, nil)
				wantErr(t, "EndInstance(terminal)", err, store.ErrConflict)
				_, err = x.s.PutGrant(x.ctx, newGrant(in.ID, "late"), -1, nil)
				wantErr(t, "PutGrant(terminal)", err, store.ErrConflict)
				x.wantNoGrant(in.ID)
				_, err = x.s.LockGrant(x.ctx, in.ID, func(*store.Grant) (*store.Grant, error) {
					t.Errorf("LockGrant ran fn on a terminal instance")
					return nil, nil
				})
				wantErr(t, "LockGrant(terminal)", err, store.ErrConflict)

				nid := store.NewID()
				fresh, created, err := x.s.GetOrCreateInstance(x.ctx, c.OwnerScope, c.OwnerID, u.ID, c.ID, nid)
				wantErr(t, "GetOrCreateInstance after end", err, nil)
				if !created || fresh.ID != nid || fresh.State != store.InstanceActive {
					t.Fatalf("after terminal: created=%v %+v, want a new active instance %s", created, fresh, nid)
				}
				x.wantState(in.ID, st)
			})
		}
	})

	t.Run("List", func(t *testing.T) {
		x := open(t, newStore)
		u, v := x.user(), x.user()
		owner := x.user()
		o := x.org(owner.ID)
		x.member(o.ID, u.ID, store.RoleMember)
		x.member(o.ID, v.ID, store.RoleMember)
		oc, _ := x.config(store.ScopeOrg, o.ID, store.AuthNone, store.MultiUser)
		x.assign(oc.ID, u.ID)
		x.assign(oc.ID, v.ID)
		pc, _ := x.personal(u.ID, store.AuthNone)
		iu := x.instance(oc, u.ID)
		iv := x.instance(oc, v.ID)
		ip := x.instance(pc, u.ID)
		_, err := x.s.EndInstance(x.ctx, ip.ID, store.InstanceRevoked, nil)
		wantErr(t, "EndInstance", err, nil)
		ip2 := x.instance(pc, u.ID)
		cases := []struct {
			name            string
			user, config    string
			includeTerminal bool
			want            []string
		}{
			{"All", "", "", false, []string{iu.ID, iv.ID, ip2.ID}},
			{"AllWithTerminal", "", "", true, []string{iu.ID, iv.ID, ip.ID, ip2.ID}},
			{"ByUser", u.ID, "", false, []string{iu.ID, ip2.ID}},
			{"ByUserWithTerminal", u.ID, "", true, []string{iu.ID, ip.ID, ip2.ID}},
			{"ByConfig", "", oc.ID, false, []string{iu.ID, iv.ID}},
			{"ByUserAndConfig", v.ID, oc.ID, true, []string{iv.ID}},
			{"Nobody", store.NewID(), "", true, nil},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				list, err := x.s.ListInstances(x.ctx, tc.user, tc.config, tc.includeTerminal)
				wantErr(t, "ListInstances", err, nil)
				var got []string
				for _, in := range list {
					got = append(got, in.ID)
				}
				slices.Sort(got)
				want := slices.Clone(tc.want)
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Fatalf("ListInstances = %v, want %v", got, want)
				}
			})
		}
	})

	t.Run("EndInstanceRejects", func(t *testing.T) {
		x := shared.sub(t)
		_, err := x.s.EndInstance(x.ctx, store.NewID(), store.InstanceRemoved, nil)
		wantErr(t, "EndInstance(unknown)", err, store.ErrNotFound)
	})
}

// testGrants covers provider grants and the monotonic grant version
// (DESIGN §5, §6 step 7).
func testGrants(t *testing.T, newStore NewStore) {
	// Every subtest builds its own instance in one shared store.
	shared := open(t, newStore)
	setup := func(t *testing.T) (*h, store.Instance) {
		x := shared.sub(t)
		u := x.user()
		c, _ := x.personal(u.ID, store.AuthOAuthDynamic)
		return x, x.instance(c, u.ID)
	}

	t.Run("PutGetReplace", func(t *testing.T) {
		x, in := setup(t)
		x.wantNoGrant(in.ID)
		v0 := in.GrantVersion
		want := newGrant(in.ID, "one")
		want.Version = 12345 // ignored
		g1, err := x.s.PutGrant(x.ctx, want, -1, &store.AuditEvent{Type: "grant.put", Outcome: "success", InstanceID: in.ID})
		wantErr(t, "PutGrant", err, nil)
		if g1.Version != v0+1 {
			t.Fatalf("version = %d, want %d", g1.Version, v0+1)
		}
		checkGrant(t, g1, want)
		got, err := x.s.GetGrant(x.ctx, in.ID)
		wantErr(t, "GetGrant", err, nil)
		checkGrant(t, got, want)
		if got.Version != g1.Version {
			t.Fatalf("stored version = %d, want %d", got.Version, g1.Version)
		}
		if x.getInstance(in.ID).GrantVersion != g1.Version {
			t.Fatalf("instance grant version differs from grant")
		}
		// Replace; a grant without refresh token and expiry round-trips nil.
		w2 := newGrant(in.ID, "two")
		w2.RefreshToken, w2.ExpiresAt = nil, nil
		g2, err := x.s.PutGrant(x.ctx, w2, g1.Version, nil)
		wantErr(t, "PutGrant(expect current)", err, nil)
		if g2.Version != g1.Version+1 {
			t.Fatalf("replace version = %d, want %d", g2.Version, g1.Version+1)
		}
		got, _ = x.s.GetGrant(x.ctx, in.ID)
		checkGrant(t, got, w2)
	})

	t.Run("PutStale", func(t *testing.T) {
		x, in := setup(t)
		g1 := x.grant(in.ID, "one")
		for _, expect := range []int64{g1.Version - 1, g1.Version + 1, 0} {
			_, err := x.s.PutGrant(x.ctx, newGrant(in.ID, "stale"), expect, nil)
			wantErr(t, "PutGrant(stale)", err, store.ErrStale)
		}
		got, _ := x.s.GetGrant(x.ctx, in.ID)
		checkGrant(t, got, g1)
		if got.Version != g1.Version || x.getInstance(in.ID).GrantVersion != g1.Version {
			t.Fatalf("stale write changed the version")
		}
	})

	t.Run("PutReactivates", func(t *testing.T) {
		x, in := setup(t)
		g1 := x.grant(in.ID, "one")
		ok, err := x.s.MarkNeedsReauth(x.ctx, in.ID, g1.Version, nil)
		wantErr(t, "MarkNeedsReauth", err, nil)
		if !ok {
			t.Fatalf("MarkNeedsReauth = false")
		}
		x.grant(in.ID, "two")
		x.wantState(in.ID, store.InstanceActive)
	})

	t.Run("Revoke", func(t *testing.T) {
		x, in := setup(t)
		g1 := x.grant(in.ID, "one")
		v, err := x.s.RevokeGrant(x.ctx, in.ID, &store.AuditEvent{Type: "grant.revoke", Outcome: "success", InstanceID: in.ID})
		wantErr(t, "RevokeGrant", err, nil)
		if v <= g1.Version {
			t.Fatalf("RevokeGrant version %d did not advance past %d", v, g1.Version)
		}
		x.wantNoGrant(in.ID)
		if iv := x.getInstance(in.ID).GrantVersion; iv != v {
			t.Fatalf("instance grant version %d, RevokeGrant returned %d", iv, v)
		}
		v2, err := x.s.RevokeGrant(x.ctx, in.ID, nil)
		wantErr(t, "RevokeGrant(no grant)", err, nil)
		if v2 <= v {
			t.Fatalf("RevokeGrant without a grant did not advance: %d → %d", v, v2)
		}
		// A put after revocations continues from the newest version.
		g3 := x.grant(in.ID, "three")
		if g3.Version != v2+1 {
			t.Fatalf("put after revoke version = %d, want %d", g3.Version, v2+1)
		}
		_, err = x.s.RevokeGrant(x.ctx, store.NewID(), nil)
		wantErr(t, "RevokeGrant(unknown instance)", err, store.ErrNotFound)
	})

	t.Run("MarkNeedsReauth", func(t *testing.T) {
		x, in := setup(t)
		g1 := x.grant(in.ID, "one")
		g2 := x.grant(in.ID, "two")
		// A refresh that started with g1 must not clobber g2.
		ok, err := x.s.MarkNeedsReauth(x.ctx, in.ID, g1.Version, nil)
		wantErr(t, "MarkNeedsReauth(stale)", err, nil)
		if ok {
			t.Fatalf("MarkNeedsReauth with a stale version succeeded")
		}
		x.wantState(in.ID, store.InstanceActive)
		got, err := x.s.GetGrant(x.ctx, in.ID)
		wantErr(t, "GetGrant", err, nil)
		checkGrant(t, got, g2)
		ok, err = x.s.MarkNeedsReauth(x.ctx, in.ID, g2.Version, &store.AuditEvent{Type: "grant.needs_reauth", Outcome: "success", InstanceID: in.ID})
		wantErr(t, "MarkNeedsReauth(current)", err, nil)
		if !ok {
			t.Fatalf("MarkNeedsReauth with the current version failed")
		}
		after := x.wantState(in.ID, store.InstanceNeedsReauth)
		x.wantNoGrant(in.ID)
		if after.GrantVersion <= g2.Version {
			t.Fatalf("grant version did not advance: %d", after.GrantVersion)
		}
	})

	t.Run("VersionsOnlyMoveForward", func(t *testing.T) {
		x, in := setup(t)
		last := in.GrantVersion
		step := func(name string, v int64) {
			t.Helper()
			if v <= last {
				t.Fatalf("%s: grant version %d not after %d", name, v, last)
			}
			last = v
		}
		step("put", x.grant(in.ID, "a").Version)
		step("replace", x.grant(in.ID, "b").Version)
		v, err := x.s.RevokeGrant(x.ctx, in.ID, nil)
		wantErr(t, "RevokeGrant", err, nil)
		step("revoke", v)
		step("put again", x.grant(in.ID, "c").Version)
		ok, err := x.s.MarkNeedsReauth(x.ctx, in.ID, last, nil)
		if err != nil || !ok {
			t.Fatalf("MarkNeedsReauth = %v, %v", ok, err)
		}
		step("needs_reauth", x.getInstance(in.ID).GrantVersion)
		g, err := x.s.LockGrant(x.ctx, in.ID, func(cur *store.Grant) (*store.Grant, error) {
			ng := newGrant(in.ID, "locked")
			return &ng, nil
		})
		wantErr(t, "LockGrant", err, nil)
		step("lockgrant", g.Version)
		ended, err := x.s.EndInstance(x.ctx, in.ID, store.InstanceRemoved, nil)
		wantErr(t, "EndInstance", err, nil)
		step("end", ended.GrantVersion)
	})

	t.Run("LockGrant", func(t *testing.T) {
		x, in := setup(t)
		// No grant: fn sees nil; returning nil writes nothing.
		got, err := x.s.LockGrant(x.ctx, in.ID, func(cur *store.Grant) (*store.Grant, error) {
			if cur != nil {
				t.Errorf("current = %+v, want nil", cur)
			}
			return nil, nil
		})
		wantErr(t, "LockGrant(read only, no grant)", err, nil)
		if got != nil {
			t.Fatalf("LockGrant returned %+v with nothing written", got)
		}
		x.wantNoGrant(in.ID)
		if x.getInstance(in.ID).GrantVersion != in.GrantVersion {
			t.Fatalf("read-only LockGrant advanced the version")
		}
		// Write.
		g1 := x.grant(in.ID, "one")
		want := newGrant(in.ID, "refreshed")
		got, err = x.s.LockGrant(x.ctx, in.ID, func(cur *store.Grant) (*store.Grant, error) {
			if cur == nil {
				return nil, errors.New("current grant missing")
			}
			checkGrant(t, *cur, g1)
			if cur.Version != g1.Version {
				t.Errorf("current version = %d, want %d", cur.Version, g1.Version)
			}
			w := want
			return &w, nil
		})
		wantErr(t, "LockGrant(write)", err, nil)
		if got == nil || got.Version != g1.Version+1 {
			t.Fatalf("LockGrant wrote %+v, want version %d", got, g1.Version+1)
		}
		checkGrant(t, *got, want)
		stored, _ := x.s.GetGrant(x.ctx, in.ID)
		checkGrant(t, stored, want)
		// Read only with a grant returns the one read.
		got, err = x.s.LockGrant(x.ctx, in.ID, func(cur *store.Grant) (*store.Grant, error) { return nil, nil })
		wantErr(t, "LockGrant(read only)", err, nil)
		if got == nil || got.Version != g1.Version+1 {
			t.Fatalf("read-only LockGrant returned %+v", got)
		}
		// fn's error is returned and nothing is written.
		boom := errors.New("provider refresh failed")
		_, err = x.s.LockGrant(x.ctx, in.ID, func(cur *store.Grant) (*store.Grant, error) {
			ng := newGrant(in.ID, "never")
			return &ng, boom
		})
		wantErr(t, "LockGrant(fn error)", err, boom)
		stored, _ = x.s.GetGrant(x.ctx, in.ID)
		checkGrant(t, stored, want)
		if stored.Version != g1.Version+1 {
			t.Fatalf("failed LockGrant changed the version to %d", stored.Version)
		}
		_, err = x.s.LockGrant(x.ctx, store.NewID(), func(*store.Grant) (*store.Grant, error) { return nil, nil })
		wantErr(t, "LockGrant(unknown)", err, store.ErrNotFound)
	})

	t.Run("LockGrantHonoursContext", func(t *testing.T) {
		x, in := setup(t)
		x.grant(in.ID, "one")
		ctx, cancel := context.WithCancel(x.ctx)
		_, err := x.s.LockGrant(ctx, in.ID, func(cur *store.Grant) (*store.Grant, error) {
			cancel()
			<-ctx.Done()
			ng := newGrant(in.ID, "after-cancel")
			return &ng, ctx.Err()
		})
		if err == nil {
			t.Fatalf("LockGrant with cancelled fn succeeded")
		}
		// The lock is released: a second LockGrant proceeds (bounded).
		done := make(chan error, 1)
		go func() {
			_, err := x.s.LockGrant(ctxTimeout(t, 10*time.Second), in.ID, func(cur *store.Grant) (*store.Grant, error) { return nil, nil })
			done <- err
		}()
		select {
		case err := <-done:
			wantErr(t, "LockGrant after cancel", err, nil)
		case <-time.After(15 * time.Second):
			t.Fatalf("lock not released after fn returned")
		}
		got, _ := x.s.GetGrant(x.ctx, in.ID)
		if string(got.AccessToken) == "ciphertext-access-after-cancel" {
			t.Fatalf("grant written although fn failed")
		}
	})

	t.Run("Unknown", func(t *testing.T) {
		x := shared.sub(t)
		_, err := x.s.PutGrant(x.ctx, newGrant(store.NewID(), "x"), -1, nil)
		wantErr(t, "PutGrant(unknown instance)", err, store.ErrNotFound)
		_, err = x.s.GetGrant(x.ctx, store.NewID())
		wantErr(t, "GetGrant(unknown)", err, store.ErrNotFound)
		ok, err := x.s.MarkNeedsReauth(x.ctx, store.NewID(), 1, nil)
		if ok || (err != nil && !errors.Is(err, store.ErrNotFound)) {
			t.Fatalf("MarkNeedsReauth(unknown) = %v, %v", ok, err)
		}
	})
}
