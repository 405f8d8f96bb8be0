package e2e

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"mcpgw/store"
)

// Scenario 4: changes take effect on the next request (DESIGN §3 rule 5,
// §8): route rotation, assignment removal, user block, config disable.
func TestImmediacy(t *testing.T) {
	e := newEnv(t, envOptions{})
	remote := e.upstream.url + "/base/mcp"

	t.Run("rotate route key", func(t *testing.T) {
		s := e.seedConfig(configSpec{name: "rotating", remote: remote})
		e.waitRoute(s)
		tok := e.authorize(t, s)
		if code := mcpInit(t, s.url(e.base), tok.Access, nil); code != http.StatusOK {
			t.Fatalf("before rotation: %d", code)
		}
		oldURL := s.url(e.base)
		s2 := e.rotate(s)
		// From the commit on, the old key is refused whether or not the
		// data plane has the push yet: 403/404 from extauthz, then 404
		// from the data plane's catch-all. Never 200.
		if code := mcpInit(t, oldURL, tok.Access, nil); code != http.StatusNotFound && code != http.StatusForbidden {
			t.Fatalf("old URL right after rotation = %d, want 404 or 403", code)
		}
		// Once the push lands the old path is not routed at all: even
		// without a token the data plane answers 404 itself.
		eventually(t, "old route removed from the data plane", func() error {
			if code := mcpInit(t, oldURL, "", nil); code != http.StatusNotFound {
				return fmt.Errorf("status %d", code)
			}
			return nil
		})
		e.waitRoute(s2)
		// The old token names the old route (aud, route_key): useless on
		// the new URL.
		if code := mcpInit(t, s2.url(e.base), tok.Access, nil); code != http.StatusUnauthorized && code != http.StatusForbidden {
			t.Errorf("old token on the new URL = %d, want 401/403", code)
		}
		// A new authorization for the new route works.
		tok2 := e.authorize(t, s2)
		if code := mcpInit(t, s2.url(e.base), tok2.Access, nil); code != http.StatusOK {
			t.Errorf("new token on the new URL = %d", code)
		}
	})

	t.Run("rotation keeps the provider grant", func(t *testing.T) {
		s := e.seedConfig(configSpec{name: "dynamic", remote: e.upstream.url + "/protected/mcp", mode: store.AuthOAuthDynamic})
		e.waitRoute(s)
		before, _ := e.upstream.as.counts()
		tok := e.authorize(t, s)
		if code := mcpInit(t, s.url(e.base), tok.Access, nil); code != http.StatusOK {
			t.Fatalf("oauth_dynamic before rotation: %d", code)
		}
		afterFirst, _ := e.upstream.as.counts()
		if afterFirst-before != 1 {
			t.Fatalf("upstream authorizations for the first grant = %d, want 1", afterFirst-before)
		}
		s2 := e.rotate(s)
		if code := mcpInit(t, s.url(e.base), tok.Access, nil); code == http.StatusOK {
			t.Errorf("old URL still works after rotation")
		}
		e.waitRoute(s2)
		tok2 := e.authorize(t, s2)
		if code := mcpInit(t, s2.url(e.base), tok2.Access, nil); code != http.StatusOK {
			t.Errorf("new route = %d", code)
		}
		// A rotation is not a material change: the provider grant stays,
		// so the user was not sent to the upstream again.
		if n, _ := e.upstream.as.counts(); n != afterFirst {
			t.Errorf("the new route's authorization re-ran the provider flow (%d upstream authorizations)", n-afterFirst)
		}
	})

	t.Run("remove assignment", func(t *testing.T) {
		org := e.seedOrg("acme")
		s := e.seedConfig(configSpec{name: "org tool", remote: remote, org: &org})
		e.waitRoute(s)
		tok := e.authorize(t, s)
		if code := mcpInit(t, s.url(e.base), tok.Access, nil); code != http.StatusOK {
			t.Fatalf("assigned: %d", code)
		}
		if err := e.st.Unassign(context.Background(), s.cfg.ID, e.alice.ID, nil); err != nil {
			t.Fatal(err)
		}
		if code := mcpInit(t, s.url(e.base), tok.Access, nil); code != http.StatusForbidden {
			t.Errorf("after unassign = %d, want 403", code)
		}
	})

	t.Run("block user", func(t *testing.T) {
		s := e.seedConfig(configSpec{name: "blockable", remote: remote})
		e.waitRoute(s)
		tok := e.authorize(t, s)
		if code := mcpInit(t, s.url(e.base), tok.Access, nil); code != http.StatusOK {
			t.Fatalf("before block: %d", code)
		}
		if _, err := e.st.SetUserStatus(context.Background(), e.alice.ID, store.UserBlocked, nil); err != nil {
			t.Fatal(err)
		}
		code := mcpInit(t, s.url(e.base), tok.Access, nil)
		if _, err := e.st.SetUserStatus(context.Background(), e.alice.ID, store.UserActive, nil); err != nil {
			t.Fatal(err)
		}
		if code != http.StatusForbidden {
			t.Errorf("blocked user = %d, want 403", code)
		}
		if code := mcpInit(t, s.url(e.base), tok.Access, nil); code != http.StatusOK {
			t.Errorf("unblocked user = %d, want 200", code)
		}
	})

	t.Run("disable config", func(t *testing.T) {
		s := e.seedConfig(configSpec{name: "disableable", remote: remote})
		e.waitRoute(s)
		tok := e.authorize(t, s)
		if code := mcpInit(t, s.url(e.base), tok.Access, nil); code != http.StatusOK {
			t.Fatalf("enabled: %d", code)
		}
		if _, err := e.st.SetConfigStatus(context.Background(), s.cfg.ID, store.ConfigDisabled, nil); err != nil {
			t.Fatal(err)
		}
		if code := mcpInit(t, s.url(e.base), tok.Access, nil); code != http.StatusForbidden && code != http.StatusNotFound {
			t.Errorf("disabled config = %d, want 403/404", code)
		}
		eventually(t, "disabled config's route removed", func() error {
			if code := mcpInit(t, s.url(e.base), "", nil); code != http.StatusNotFound {
				return fmt.Errorf("status %d", code)
			}
			return nil
		})
	})
}
