package e2e

import (
	"fmt"
	"net/http"
	"testing"
)

// Scenario 6: faults. oauth, authz and xds run as three processes so each
// can fail on its own; "Postgres down" is the TCP path from mcpgw to the
// shared Postgres server being cut (stopping the server itself would break
// every other test on the machine).
func TestFaults(t *testing.T) {
	e := newEnv(t, envOptions{split: true})
	s := e.seedConfig(configSpec{name: "faulty", remote: e.upstream.url + "/base/mcp"})
	e.waitRoute(s)
	tok := e.authorize(t, s)
	if code := mcpInit(t, s.url(e.base), tok.Access, nil); code != http.StatusOK {
		t.Fatalf("healthy: %d", code)
	}

	t.Run("postgres down: 503, nothing proxied, recovery without restart", func(t *testing.T) {
		e.pg.Cut()
		before := len(e.upstream.seenPaths())
		for i := range 5 {
			if code := mcpInit(t, s.url(e.base), tok.Access, nil); code != http.StatusServiceUnavailable {
				t.Errorf("request %d with the database down = %d, want 503", i, code)
			}
		}
		if n := len(e.upstream.seenPaths()) - before; n != 0 {
			t.Errorf("%d requests were proxied without a check", n)
		}
		if code, _, _ := get(t, "GET", e.base+"/health", nil); code != http.StatusServiceUnavailable {
			t.Errorf("/health with the database down = %d, want 503", code)
		}
		e.pg.Restore()
		// Recovery is immediate: the first request and the first
		// /health after the path is restored succeed (the stores never
		// use a pooled connection that died in the cut;
		// store/postgres/conncheck.go).
		if code := mcpInit(t, s.url(e.base), tok.Access, nil); code != http.StatusOK {
			t.Errorf("first request after the database is back = %d, want 200", code)
		}
		if code, _, _ := get(t, "GET", e.base+"/health", nil); code != http.StatusOK {
			t.Errorf("/health on the first call after the database is back = %d, want 200", code)
		}
	})

	t.Run("xds restart: last config kept, resync after", func(t *testing.T) {
		e.stopComponent("xds")
		// The data plane keeps serving what it has.
		if code := mcpInit(t, s.url(e.base), tok.Access, nil); code != http.StatusOK {
			t.Errorf("with xds down = %d, want 200 from the last config", code)
		}
		if code, _, _ := get(t, "GET", e.base+"/health", nil); code != http.StatusOK {
			t.Errorf("/health with xds down = %d", code)
		}
		// A change made while xds is down arrives after it restarts.
		s2 := e.seedConfig(configSpec{name: "while xds was down", remote: e.upstream.url + "/base/mcp"})
		if code := mcpInit(t, s2.url(e.base), "", nil); code != http.StatusNotFound {
			t.Errorf("new route before xds is back = %d, want 404", code)
		}
		e.startComponent("xds")
		e.waitRoute(s2)
		if code := mcpInit(t, s.url(e.base), tok.Access, nil); code != http.StatusOK {
			t.Errorf("after resync = %d", code)
		}
	})

	t.Run("extauthz killed: fail closed", func(t *testing.T) {
		e.procs["authz"].kill()
		before := len(e.upstream.seenPaths())
		if code := mcpInit(t, s.url(e.base), tok.Access, nil); code != http.StatusServiceUnavailable {
			t.Errorf("with extauthz down = %d, want 503", code)
		}
		if n := len(e.upstream.seenPaths()) - before; n != 0 {
			t.Errorf("%d requests were proxied without a check", n)
		}
		// Control-plane routes do not depend on extauthz.
		if code, _, _ := get(t, "GET", e.base+"/health", nil); code != http.StatusOK {
			t.Errorf("/health with extauthz down = %d", code)
		}
		e.startComponent("authz")
		eventually(t, "extauthz back", func() error {
			if code := mcpInit(t, s.url(e.base), tok.Access, nil); code != http.StatusOK {
				return fmt.Errorf("status %d", code)
			}
			return nil
		})
	})
}
