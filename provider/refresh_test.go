package provider_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"mcpgw/domain/secrets"
	"mcpgw/extauthz"
	"mcpgw/internal/testsupport"
	"mcpgw/provider"
	"mcpgw/provider/providertest"
	"mcpgw/store"
	"mcpgw/store/postgres"
	"mcpgw/store/postgres/pgtest"
)

// authorized returns an env in which alice completed the provider flow.
func authorized(t *testing.T, st store.Store, ec envConfig) *env {
	t.Helper()
	e := newEnv(t, st, ec)
	b := e.browser(nil)
	b.login("alice@example.com", alicePassword)
	e.plant(e.authorizeOK(b, verifier1))
	return e
}

// hammer runs n concurrent EnsureFresh calls and returns the tokens and
// errors.
func hammer(p *provider.Provider, st store.RuntimeState, n int) ([]string, []error) {
	toks := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			toks[i], errs[i] = p.EnsureFresh(context.Background(), st)
		}(i)
	}
	close(start)
	wg.Wait()
	return toks, errs
}

// TestEnsureFreshFresh: a grant valid beyond the skew is used as stored,
// without any upstream call.
func TestEnsureFreshFresh(t *testing.T) {
	e := authorized(t, newMem(), envConfig{})
	st := e.runtimeState()
	tok, err := e.prov.EnsureFresh(context.Background(), st)
	if err != nil || tok != e.open(st.Grant.AccessToken, "access_token", st.InstanceID) {
		t.Fatalf("EnsureFresh: %v", err)
	}
	if n := e.as.RefreshRequests.Load(); n != 0 {
		t.Fatalf("refresh requests: %d", n)
	}
}

// TestEnsureFreshConcurrent: 100 concurrent EnsureFresh calls on an
// expired grant make exactly one upstream refresh; everyone gets the new
// token; the rotated refresh token is persisted with it (DESIGN §6 step 7).
func TestEnsureFreshConcurrent(t *testing.T) {
	testsupport.Backends(t, func(t *testing.T, newStore func(t *testing.T) store.Store) {
		e := authorized(t, newStore(t), envConfig{})
		st := e.runtimeState()
		oldRT := e.open(st.Grant.RefreshToken, "refresh_token", st.InstanceID)
		oldAT := e.open(st.Grant.AccessToken, "access_token", st.InstanceID)
		e.clock.Advance(2 * time.Hour) // past expires_in (1 h)

		toks, errs := hammer(e.prov, st, 100)
		for i := range toks {
			if errs[i] != nil {
				t.Fatalf("call %d: %v", i, errs[i])
			}
			if toks[i] != toks[0] {
				t.Fatalf("call %d got a different token", i)
			}
		}
		if n := e.as.RefreshRequests.Load(); n != 1 {
			t.Fatalf("upstream refresh requests: %d, want exactly 1", n)
		}
		t.Logf("refresh coordination (1 process, 100 callers): %d upstream refresh request(s)", e.as.RefreshRequests.Load())
		if toks[0] == oldAT {
			t.Fatal("token not refreshed")
		}
		if _, ok := e.as.Verify(toks[0], time.Now()); !ok {
			t.Fatal("refreshed token not accepted upstream")
		}
		g, _ := e.grant()
		if g.Version != st.GrantVersion+1 {
			t.Fatalf("grant version %d, want %d", g.Version, st.GrantVersion+1)
		}
		if rt := e.open(g.RefreshToken, "refresh_token", st.InstanceID); rt == oldRT {
			t.Fatal("rotated refresh token not persisted")
		}
		// A later call with the stale runtime state reuses the new grant.
		if tok, err := e.prov.EnsureFresh(context.Background(), st); err != nil || tok != toks[0] {
			t.Fatalf("stale state: %v", err)
		}
		if n := e.as.RefreshRequests.Load(); n != 1 {
			t.Fatalf("upstream refresh requests after reuse: %d", n)
		}
	})
}

// TestEnsureFreshTwoReplicas: two provider instances, each with its own
// connection pool to one Postgres database, 50 callers each on the same
// expired grant: still exactly one upstream refresh (the row lock plus the
// re-read under it).
func TestEnsureFreshTwoReplicas(t *testing.T) {
	dsn := pgtest.DSN(t)
	open := func() store.Store {
		s, err := postgres.Open(context.Background(), dsn)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(s.Close)
		return s
	}
	st1, st2 := open(), open()
	e := authorized(t, st1, envConfig{})
	p2, err := provider.New(provider.Options{
		Store: st2, KeyRing: e.kr, BaseURL: e.base, Now: e.clock.Now, Logger: nil,
		Allow: providertest.Allowlist(), RootCAs: providertest.CertPool(t), Timeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	st := e.runtimeState()
	e.clock.Advance(2 * time.Hour)
	var wg sync.WaitGroup
	var t1, t2 []string
	var e1, e2 []error
	wg.Add(2)
	go func() { defer wg.Done(); t1, e1 = hammer(e.prov, st, 50) }()
	go func() { defer wg.Done(); t2, e2 = hammer(p2, st, 50) }()
	wg.Wait()
	all := append(t1, t2...)
	for i, err := range append(e1, e2...) {
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if all[i] != all[0] {
			t.Fatalf("call %d got a different token", i)
		}
	}
	if n := e.as.RefreshRequests.Load(); n != 1 {
		t.Fatalf("upstream refresh requests across two replicas: %d, want exactly 1", n)
	}
	t.Logf("refresh coordination (2 replicas x 50 callers, one Postgres): %d upstream refresh request(s)", e.as.RefreshRequests.Load())
}

// reauthRacer is a store whose MarkNeedsReauth first lets a concurrent
// re-authorization commit a new grant: the exact interleaving "refresh
// refused → user re-authorizes → refresher marks needs_reauth".
type reauthRacer struct {
	store.Store
	kr    func(instanceID string) store.Grant
	wrote chan int64
}

func (r *reauthRacer) MarkNeedsReauth(ctx context.Context, instanceID string, v int64, ev *store.AuditEvent) (bool, error) {
	g, err := r.Store.PutGrant(ctx, r.kr(instanceID), -1, nil)
	if err != nil {
		return false, err
	}
	r.wrote <- g.Version
	return r.Store.MarkNeedsReauth(ctx, instanceID, v, ev)
}

// TestRefreshFailureRacesReauth: a refused refresh never clobbers a newer
// grant written by a concurrent re-authorization (DESIGN §5, §6 step 7).
func TestRefreshFailureRacesReauth(t *testing.T) {
	testsupport.Backends(t, func(t *testing.T, newStore func(t *testing.T) store.Store) {
		racer := &reauthRacer{Store: newStore(t), wrote: make(chan int64, 1)}
		e := authorized(t, racer, envConfig{})
		racer.kr = func(instanceID string) store.Grant {
			g, _ := e.grant()
			g.Version = 0
			return g // a "new" grant (same ciphertext is fine for the race)
		}
		st := e.runtimeState()
		e.clock.Advance(2 * time.Hour)
		e.as.SetFault(providertest.Fault{RefreshStatus: 400})
		_, err := e.prov.EnsureFresh(context.Background(), st)
		if !errors.Is(err, extauthz.ErrReauthRequired) {
			t.Fatalf("err = %v, want ErrReauthRequired", err)
		}
		newer := <-racer.wrote
		g, ok := e.grant()
		in, _ := e.instance()
		if !ok || g.Version != newer || in.State != store.InstanceActive {
			t.Fatalf("newer grant v%d clobbered: grant present %v (v%d), instance %s", newer, ok, g.Version, in.State)
		}
	})
}

// TestRefreshRealRaceWithReauth: the same race with real concurrency: the
// refresh is slow and refused while another replica's provider callback
// stores a re-authorized grant (PutGrant, as the callback does); whichever
// commits first, the re-authorized grant survives.
func TestRefreshRealRaceWithReauth(t *testing.T) {
	testsupport.Backends(t, func(t *testing.T, newStore func(t *testing.T) store.Store) {
		e := authorized(t, newStore(t), envConfig{})
		st := e.runtimeState()
		e.clock.Advance(2 * time.Hour)
		e.as.SetFault(providertest.Fault{RefreshStatus: 400, Delay: 300 * time.Millisecond})
		done := make(chan error, 1)
		go func() {
			_, err := e.prov.EnsureFresh(context.Background(), st)
			done <- err
		}()
		deadline := time.Now().Add(10 * time.Second)
		for e.as.RefreshRequests.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("refresh never reached the upstream")
			}
			time.Sleep(time.Millisecond)
		}
		ct, err := e.kr.Seal([]byte("reauthorized-upstream-token-7c1d"), secretsAAD("access_token", st.InstanceID))
		if err != nil {
			t.Fatal(err)
		}
		e.plant("reauthorized-upstream-token-7c1d")
		put, err := e.st.PutGrant(context.Background(), store.Grant{InstanceID: st.InstanceID, AccessToken: ct, TokenType: "Bearer"}, -1, nil)
		if err != nil {
			t.Fatalf("re-authorization PutGrant: %v", err)
		}
		if err := <-done; !errors.Is(err, extauthz.ErrReauthRequired) {
			t.Fatalf("refresh err = %v", err)
		}
		g, ok := e.grant()
		in, _ := e.instance()
		if !ok || in.State != store.InstanceActive || g.Version < put.Version || string(g.AccessToken) != string(ct) {
			t.Fatalf("re-authorized grant lost: present %v v%d (put v%d), instance %s", ok, g.Version, put.Version, in.State)
		}
	})
}

// TestRefreshFaults: every refresh fault knob gives a bounded error of
// the right class; 4xx burns the grant (needs_reauth), everything else
// keeps it (DESIGN §6 step 7). Leaks are checked by the env.
func TestRefreshFaults(t *testing.T) {
	cases := []struct {
		name   string
		fault  providertest.Fault
		as     asOptions
		reauth bool
	}{
		{name: "400 invalid_grant", fault: providertest.Fault{RefreshStatus: 400}, reauth: true},
		{name: "401 invalid_client", fault: providertest.Fault{RefreshStatus: 401}, reauth: true},
		{name: "500", fault: providertest.Fault{RefreshStatus: 500}},
		{name: "503", fault: providertest.Fault{RefreshStatus: 503}},
		{name: "timeout", fault: providertest.Fault{Delay: 5 * time.Second}},
		{name: "token_type mac", fault: providertest.Fault{TokenType: "mac"}},
		{name: "oversized response", fault: providertest.Fault{Oversized: true}},
		{name: "no refresh token", as: asOptions{NoRefreshToken: true}, reauth: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := authorized(t, newMem(), envConfig{as: tc.as, prov: func(o *provider.Options) { o.Timeout = 300 * time.Millisecond }})
			st := e.runtimeState()
			e.clock.Advance(2 * time.Hour)
			e.as.SetFault(tc.fault)
			start := time.Now()
			tok, err := e.prov.EnsureFresh(context.Background(), st)
			if tok != "" || err == nil {
				t.Fatal("expected an error and no token")
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("not bounded: %v", time.Since(start))
			}
			g, ok := e.grant()
			in, _ := e.instance()
			if tc.reauth {
				if !errors.Is(err, extauthz.ErrReauthRequired) || ok || in.State != store.InstanceNeedsReauth {
					t.Fatalf("want reauth: err=%v grant=%v state=%s", err, ok, in.State)
				}
			} else {
				if !errors.Is(err, extauthz.ErrCredentialsTransient) || !ok || g.Version != st.GrantVersion || in.State != store.InstanceActive {
					t.Fatalf("want transient with grant kept: err=%v grant=%v v%d state=%s", err, ok, g.Version, in.State)
				}
			}
			for _, s := range e.as.Issued() {
				if containsStr(err.Error(), s) {
					t.Fatal("error carries a token")
				}
			}
		})
	}
}

func containsStr(h, n string) bool {
	return n != "" && len(h) >= len(n) && (h == n || indexOf(h, n) >= 0)
}

func indexOf(h, n string) int {
	for i := 0; i+len(n) <= len(h); i++ {
		if h[i:i+len(n)] == n {
			return i
		}
	}
	return -1
}

// TestMaterialChange (DESIGN §5): a material config change revokes the
// grant and drops the registration; the next authorization discovers and
// registers again for the new version.
func TestMaterialChange(t *testing.T) {
	testsupport.Backends(t, func(t *testing.T, newStore func(t *testing.T) store.Store) {
		e := authorized(t, newStore(t), envConfig{})
		cfg, material, err := e.st.UpdateConfig(context.Background(), e.cfg.ID, func(c *store.Config) error {
			c.Provider.Scopes = []string{"files:read"}
			return nil
		}, nil)
		if err != nil || !material {
			t.Fatalf("update: %v material=%v", err, material)
		}
		e.cfg = cfg
		if _, ok := e.grant(); ok {
			t.Fatal("grant survived a material change")
		}
		b := e.browser(nil)
		b.login("alice@example.com", alicePassword)
		e.plant(e.authorizeOK(b, verifier2))
		if n := e.as.Registrations.Load(); n != 2 {
			t.Fatalf("registrations %d, want 2 (one per config version)", n)
		}
		ar := e.as.AuthorizeRequests()
		if last := ar[len(ar)-1]; last.Scope != "files:read" {
			t.Fatalf("new version's scope not used: %q", last.Scope)
		}
		// and a non-material change keeps everything
		reg := e.as.Registrations.Load()
		if _, material, err := e.st.UpdateConfig(context.Background(), e.cfg.ID, func(c *store.Config) error {
			c.Name = "renamed"
			return nil
		}, nil); err != nil || material {
			t.Fatalf("rename: %v material=%v", err, material)
		}
		if _, ok := e.grant(); !ok || e.as.Registrations.Load() != reg {
			t.Fatal("non-material change dropped the grant or registration")
		}
	})
}

func secretsAAD(col, instanceID string) []byte { return secrets.AAD("grants", col, instanceID) }

// TestEnsureFreshCallerGivesUp: a caller whose deadline passes (Envoy's
// ext_authz timeout) gets a transient error at once; the refresh
// continues and the next caller reuses it — still one upstream refresh.
func TestEnsureFreshCallerGivesUp(t *testing.T) {
	e := authorized(t, newMem(), envConfig{})
	st := e.runtimeState()
	e.clock.Advance(2 * time.Hour)
	e.as.SetFault(providertest.Fault{Delay: 500 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := e.prov.EnsureFresh(ctx, st); !errors.Is(err, extauthz.ErrCredentialsTransient) {
		t.Fatalf("err = %v, want transient", err)
	}
	tok, err := e.prov.EnsureFresh(context.Background(), st)
	if err != nil || tok == "" {
		t.Fatalf("second caller: %v", err)
	}
	if n := e.as.RefreshRequests.Load(); n != 1 {
		t.Fatalf("upstream refresh requests: %d", n)
	}
}
