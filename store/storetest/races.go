package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mcpgw/domain"
	"mcpgw/store"
)

// racers is how many goroutines race for one one-time value (issue 2).
const racers = 50

// race runs fn(i) in n goroutines released at once and returns their errors.
func race(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = fn(i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

// exactlyOne asserts one nil error and ErrConsumed for every other.
func exactlyOne(t *testing.T, what string, errs []error) int {
	t.Helper()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("%s: goroutines %d and %d both won", what, winner, i)
			}
			winner = i
		case !errors.Is(err, store.ErrConsumed):
			t.Fatalf("%s: goroutine %d: %v, want ErrConsumed", what, i, err)
		}
	}
	if winner < 0 {
		t.Fatalf("%s: nobody won", what)
	}
	return winner
}

// testRaces proves atomicity under concurrency (run with -race).
func testRaces(t *testing.T, newStore NewStore) {
	// Subtests with disjoint worlds share one store; those that list
	// everything get their own.
	shared := open(t, newStore)
	t.Run("ConsumeAuthCode", func(t *testing.T) {
		x := shared.sub(t)
		w := x.oauthWorld()
		c := w.authCode("race", at(10*time.Minute))
		wantErr(t, "CreateAuthCode", x.s.CreateAuthCode(x.ctx, c), nil)
		errs := race(racers, func(int) error {
			_, err := x.s.ConsumeAuthCode(x.ctx, c.Hash, at(time.Minute))
			return err
		})
		exactlyOne(t, "ConsumeAuthCode", errs)
	})

	t.Run("RotateRefreshToken", func(t *testing.T) {
		x := shared.sub(t)
		w := x.oauthWorld()
		fam := store.NewID()
		r := w.refreshToken("race", fam, at(24*time.Hour))
		wantErr(t, "CreateRefreshToken", x.s.CreateRefreshToken(x.ctx, r), nil)
		nexts := make([]store.RefreshToken, racers)
		for i := range nexts {
			nexts[i] = w.refreshToken(fmt.Sprintf("race-next-%d", i), fam, at(48*time.Hour))
		}
		errs := race(racers, func(i int) error {
			got, err := x.s.RotateRefreshToken(x.ctx, r.Hash, nexts[i], at(time.Minute))
			if errors.Is(err, store.ErrConsumed) && got.FamilyID != fam {
				return fmt.Errorf("reuse returned family %q", got.FamilyID)
			}
			return err
		})
		winner := exactlyOne(t, "RotateRefreshToken", errs)
		// Exactly the winner's next token was stored.
		for i, n := range nexts {
			_, err := x.s.GetRefreshToken(x.ctx, n.Hash)
			if i == winner {
				wantErr(t, "winner's next token", err, nil)
			} else if !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("loser %d's next token: %v, want ErrNotFound", i, err)
			}
		}
	})

	t.Run("ConsumeConsentTicket", func(t *testing.T) {
		x := shared.sub(t)
		w := x.oauthWorld()
		r := w.authRequest(at(30 * time.Minute))
		wantErr(t, "CreateAuthRequest", x.s.CreateAuthRequest(x.ctx, r), nil)
		ct := w.consentTicket("race", r.ID, at(5*time.Minute))
		wantErr(t, "CreateConsentTicket", x.s.CreateConsentTicket(x.ctx, ct), nil)
		errs := race(racers, func(int) error {
			_, err := x.s.ConsumeConsentTicket(x.ctx, ct.Hash, at(time.Minute))
			return err
		})
		exactlyOne(t, "ConsumeConsentTicket", errs)
	})

	t.Run("ConsumePendingState", func(t *testing.T) {
		x := shared.sub(t)
		u := x.user()
		c, _ := x.personal(u.ID, store.AuthOAuthDynamic)
		in := x.instance(c, u.ID)
		p := x.pending("race", u.ID, c, in.ID)
		errs := race(racers, func(int) error {
			_, err := x.s.ConsumePendingState(x.ctx, p.StateHash, at(time.Minute))
			return err
		})
		exactlyOne(t, "ConsumePendingState", errs)
	})

	t.Run("GetOrCreateInstance", func(t *testing.T) {
		x := shared.sub(t)
		u := x.user()
		c, _ := x.personal(u.ID, store.AuthNone)
		ids := make([]string, racers)
		var created atomic.Int32
		errs := race(racers, func(i int) error {
			in, made, err := x.s.GetOrCreateInstance(x.ctx, c.OwnerScope, c.OwnerID, u.ID, c.ID, store.NewID())
			if made {
				created.Add(1)
			}
			ids[i] = in.ID
			return err
		})
		for i, err := range errs {
			wantErr(t, fmt.Sprintf("goroutine %d", i), err, nil)
		}
		if n := created.Load(); n != 1 {
			t.Fatalf("%d goroutines created an instance, want 1", n)
		}
		for i, id := range ids {
			if id != ids[0] {
				t.Fatalf("goroutine %d got instance %s, goroutine 0 got %s", i, id, ids[0])
			}
		}
		list, err := x.s.ListInstances(x.ctx, u.ID, c.ID, true)
		wantErr(t, "ListInstances", err, nil)
		if len(list) != 1 {
			t.Fatalf("%d instances stored, want 1", len(list))
		}
	})

	t.Run("AssignSingleUser", func(t *testing.T) {
		x := shared.sub(t)
		owner := x.user()
		o := x.org(owner.ID)
		const n = 10
		users := make([]store.User, n)
		for i := range users {
			users[i] = x.user()
			x.member(o.ID, users[i].ID, store.RoleMember)
		}
		c, _ := x.config(store.ScopeOrg, o.ID, store.AuthOAuthStatic, store.SingleUser)

		// An observer checks the invariant while the writers race.
		stop := make(chan struct{})
		var observed atomic.Int64
		obsErr := make(chan error, 1)
		go func() {
			defer close(obsErr)
			for {
				select {
				case <-stop:
					return
				default:
				}
				as, err := x.s.ListAssignments(x.ctx, c.ID)
				if err != nil {
					obsErr <- err
					return
				}
				if len(as) > 1 {
					obsErr <- fmt.Errorf("observed %d assignees of a single_user config", len(as))
					return
				}
				live, err := x.s.ListInstances(x.ctx, "", c.ID, false)
				if err != nil {
					obsErr <- err
					return
				}
				if len(live) > 1 {
					obsErr <- fmt.Errorf("observed %d non-terminal instances of a single_user config", len(live))
					return
				}
				observed.Add(1)
			}
		}()

		var winners []string
		for round := range 5 {
			errs := race(n, func(i int) error {
				_, err := x.s.Assign(x.ctx, store.Assignment{ConfigID: c.ID, UserID: users[i].ID, CreatedAt: t0}, nil)
				return err
			})
			for i, err := range errs {
				wantErr(t, fmt.Sprintf("round %d Assign %d", round, i), err, nil)
			}
			as, err := x.s.ListAssignments(x.ctx, c.ID)
			wantErr(t, "ListAssignments", err, nil)
			if len(as) != 1 {
				t.Fatalf("round %d: %d assignees, want 1", round, len(as))
			}
			// The winner connects (instance + grant), as authorize would.
			in := x.instance(c, as[0].UserID)
			x.grant(in.ID, fmt.Sprintf("round-%d", round))
			winners = append(winners, as[0].UserID)
			live, err := x.s.ListInstances(x.ctx, "", c.ID, false)
			wantErr(t, "ListInstances", err, nil)
			if len(live) != 1 || live[0].UserID != as[0].UserID {
				t.Fatalf("round %d: non-terminal instances %+v, want only the assignee's", round, live)
			}
		}
		close(stop)
		if err := <-obsErr; err != nil {
			t.Fatal(err)
		}
		// Every previous winner that lost its seat lost its instance and grant.
		all, err := x.s.ListInstances(x.ctx, "", c.ID, true)
		wantErr(t, "ListInstances(all)", err, nil)
		final := winners[len(winners)-1]
		for _, in := range all {
			if in.UserID == final && !in.State.Terminal() {
				continue
			}
			if in.State != store.InstanceRemoved {
				t.Fatalf("instance of %s is %s, want removed", in.UserID, in.State)
			}
			x.wantNoGrant(in.ID)
		}
	})

	t.Run("LockGrant", func(t *testing.T) {
		x := shared.sub(t)
		u := x.user()
		c, _ := x.personal(u.ID, store.AuthOAuthDynamic)
		in := x.instance(c, u.ID)
		base := x.grant(in.ID, "0")
		const n = 20
		var inside atomic.Int32
		versions := make([]int64, n)
		errs := race(n, func(i int) error {
			g, err := x.s.LockGrant(x.ctx, in.ID, func(cur *store.Grant) (*store.Grant, error) {
				if inside.Add(1) != 1 {
					return nil, errors.New("two holders inside LockGrant at once")
				}
				defer inside.Add(-1)
				if cur == nil {
					return nil, errors.New("current grant missing")
				}
				// The access token carries a counter: each holder increments
				// what it read, so a lost update shows as a smaller count.
				var count int
				if _, err := fmt.Sscanf(string(cur.AccessToken), "ciphertext-count-%d", &count); err != nil {
					count = 0
				}
				ng := newGrant(in.ID, "x")
				ng.AccessToken = fmt.Appendf(nil, "ciphertext-count-%d", count+1)
				return &ng, nil
			})
			if err == nil {
				if g == nil {
					return errors.New("LockGrant returned no grant after a write")
				}
				versions[i] = g.Version
			}
			return err
		})
		for i, err := range errs {
			wantErr(t, fmt.Sprintf("LockGrant %d", i), err, nil)
		}
		got, err := x.s.GetGrant(x.ctx, in.ID)
		wantErr(t, "GetGrant", err, nil)
		if want := fmt.Sprintf("ciphertext-count-%d", n); string(got.AccessToken) != want {
			t.Fatalf("final grant %q, want %q (a write was lost)", got.AccessToken, want)
		}
		slices.Sort(versions)
		for i, v := range versions {
			if v != base.Version+int64(i)+1 {
				t.Fatalf("written versions %v, want %d..%d strictly increasing", versions, base.Version+1, base.Version+n)
			}
		}
		if got.Version != base.Version+n {
			t.Fatalf("final version %d, want %d", got.Version, base.Version+n)
		}
	})

	t.Run("PutGrantExpectVersion", func(t *testing.T) {
		x := shared.sub(t)
		u := x.user()
		c, _ := x.personal(u.ID, store.AuthOAuthDynamic)
		in := x.instance(c, u.ID)
		base := x.grant(in.ID, "0")
		errs := race(racers, func(i int) error {
			_, err := x.s.PutGrant(x.ctx, newGrant(in.ID, fmt.Sprint(i)), base.Version, nil)
			return err
		})
		wins := 0
		for i, err := range errs {
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, store.ErrStale):
				t.Fatalf("PutGrant %d: %v, want nil or ErrStale", i, err)
			}
		}
		if wins != 1 {
			t.Fatalf("%d conditional writes won, want 1", wins)
		}
		if g, _ := x.s.GetGrant(x.ctx, in.ID); g.Version != base.Version+1 {
			t.Fatalf("version %d, want %d", g.Version, base.Version+1)
		}
	})

	t.Run("RotateRoute", func(t *testing.T) {
		x := shared.sub(t)
		u := x.user()
		c, first := x.personal(u.ID, store.AuthNone)
		const n = 20
		keys := make([]string, n)
		for i := range keys {
			keys[i] = domain.NewRouteKey()
		}
		errs := race(n, func(i int) error {
			_, err := x.s.RotateRoute(x.ctx, c.ID, store.NewID(), keys[i], nil)
			return err
		})
		for i, err := range errs {
			wantErr(t, fmt.Sprintf("RotateRoute %d", i), err, nil)
		}
		active, err := x.s.GetActiveRoute(x.ctx, c.ID)
		wantErr(t, "GetActiveRoute", err, nil)
		if !slices.Contains(keys, active.Key) {
			t.Fatalf("active key is none of the rotated ones")
		}
		// Exactly one key of all ever used resolves.
		for _, k := range append(keys, first.Key) {
			_, _, err := x.s.LookupRoute(x.ctx, c.OwnerScope, c.OwnerID, c.ID, k)
			if k == active.Key {
				wantErr(t, "LookupRoute(active)", err, nil)
			} else {
				wantErr(t, "LookupRoute(retired)", err, store.ErrNotFound)
			}
		}
	})

	t.Run("HitRateLimit", func(t *testing.T) {
		x := shared.sub(t)
		key := "race:" + x.salt
		var allowed atomic.Int32
		errs := race(racers, func(int) error {
			ok, _, err := x.s.HitRateLimit(x.ctx, key, time.Minute, 10, at(5*time.Second))
			if ok {
				allowed.Add(1)
			}
			return err
		})
		for i, err := range errs {
			wantErr(t, fmt.Sprintf("HitRateLimit %d", i), err, nil)
		}
		if n := allowed.Load(); n != 10 {
			t.Fatalf("%d of %d concurrent hits allowed, want exactly the limit 10", n, racers)
		}
	})

	t.Run("UpdateConfigNoLostUpdate", func(t *testing.T) {
		x := shared.sub(t)
		u := x.user()
		c, _ := x.personal(u.ID, store.AuthNone)
		const n = 20
		errs := race(n, func(i int) error {
			_, material, err := x.s.UpdateConfig(x.ctx, c.ID, func(c *store.Config) error {
				c.RemoteURL = fmt.Sprintf("https://mcp.example.com/v%d", i)
				c.AuxHeaders = map[string]string{"x-writer": fmt.Sprint(i)}
				return nil
			}, nil)
			if err == nil && !material {
				return errors.New("material change not reported")
			}
			return err
		})
		for i, err := range errs {
			wantErr(t, fmt.Sprintf("UpdateConfig %d", i), err, nil)
		}
		got := x.getConfig(c.ID)
		if got.Version != 1+n {
			t.Fatalf("version %d after %d material updates, want %d (an update was lost)", got.Version, n, 1+n)
		}
		// The last writer's update is whole (read-modify-write is atomic).
		if got.RemoteURL != "https://mcp.example.com/v"+got.AuxHeaders["x-writer"] {
			t.Fatalf("torn update: url %q, writer %q", got.RemoteURL, got.AuxHeaders["x-writer"])
		}
	})

	t.Run("MarkNeedsReauthNeverClobbers", func(t *testing.T) {
		x := shared.sub(t)
		u := x.user()
		c, _ := x.personal(u.ID, store.AuthOAuthDynamic)
		in := x.instance(c, u.ID)
		for round := range 10 {
			old := x.grant(in.ID, fmt.Sprintf("old-%d", round))
			fresh := newGrant(in.ID, fmt.Sprintf("fresh-%d", round))
			errs := race(2, func(i int) error {
				if i == 0 {
					_, err := x.s.MarkNeedsReauth(x.ctx, in.ID, old.Version, nil)
					return err
				}
				_, err := x.s.PutGrant(x.ctx, fresh, -1, nil)
				return err
			})
			for i, err := range errs {
				wantErr(t, fmt.Sprintf("round %d op %d", round, i), err, nil)
			}
			// Whichever ran first, the fresh grant survives and the
			// instance is usable.
			got, err := x.s.GetGrant(x.ctx, in.ID)
			wantErr(t, "GetGrant", err, nil)
			if !sameBytes(got.AccessToken, fresh.AccessToken) {
				t.Fatalf("round %d: the fresh grant was clobbered", round)
			}
			x.wantState(in.ID, store.InstanceActive)
		}
	})

	t.Run("CreateUserSameEmail", func(t *testing.T) {
		x := shared.sub(t)
		email := "race-" + x.salt[:8] + "@example.test"
		errs := race(racers, func(int) error {
			id := store.NewID()
			_, err := x.s.CreateUser(x.ctx, store.User{ID: id, Email: email, DisplayName: "Racer", Status: store.UserActive, CreatedAt: t0})
			return err
		})
		wins := 0
		for i, err := range errs {
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, store.ErrConflict):
				t.Fatalf("CreateUser %d: %v, want nil or ErrConflict", i, err)
			}
		}
		if wins != 1 {
			t.Fatalf("%d users created with one email, want 1", wins)
		}
	})

}
