package provider_test

import (
	"context"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"mcpgw/domain/secrets"
	"mcpgw/internal/testsupport"
	"mcpgw/provider"
	"mcpgw/store"
)

// atCallback makes a browser stop before mcpgw's provider callback, so a
// test holds the callback URL (state + code) in hand.
func atCallback(u *url.URL) bool { return u.Path == provider.CallbackPath }

// pendingCallback signs alice in, runs authorize + consent and returns
// the provider callback URL the upstream AS sent the browser to.
func (e *env) pendingCallback(b *browser) string {
	e.t.Helper()
	resp := b.consent(e.authorizeParams(verifier1))
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.Contains(loc, provider.CallbackPath) {
		e.t.Fatalf("expected the upstream's redirect to the callback, got %d %q", resp.StatusCode, loc)
	}
	u, _ := url.Parse(loc)
	e.plant(u.Query().Get("code"), u.Query().Get("state"))
	return loc
}

// TestPendingState (DESIGN §5): the pending state is one-time, bounded in
// time, bound to the user who started the flow and to the config version;
// every misuse ends with no grant, and the state is consumed whatever the
// outcome.
func TestPendingState(t *testing.T) {
	testsupport.Backends(t, func(t *testing.T, newStore func(t *testing.T) store.Store) {
		t.Run("replayed after success", func(t *testing.T) {
			e := newEnv(t, newStore(t), envConfig{})
			b := e.browser(atCallback)
			b.login("alice@example.com", alicePassword)
			cb := e.pendingCallback(b)
			q := clientRedirect(t, b.get(cb))
			e.plant(q.Get("code"))
			g1, ok := e.grant()
			if !ok || q.Get("code") == "" {
				t.Fatal("first use failed")
			}
			if resp := b.get(cb); resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("replay: %d", resp.StatusCode)
			}
			if g2, _ := e.grant(); g2.Version != g1.Version {
				t.Fatal("replay wrote a grant")
			}
			if r := e.failureReason("provider.authorize"); r != provider.ReasonStateConsumed {
				t.Fatalf("reason %q", r)
			}
		})
		t.Run("expired", func(t *testing.T) {
			e := newEnv(t, newStore(t), envConfig{})
			b := e.browser(atCallback)
			b.login("alice@example.com", alicePassword)
			cb := e.pendingCallback(b)
			e.clock.Advance(provider.DefaultPendingTTL + time.Second)
			if resp := b.get(cb); resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("expired: %d", resp.StatusCode)
			}
			if _, ok := e.grant(); ok {
				t.Fatal("grant stored")
			}
			if e.as.CodeRequests.Load() != 0 {
				t.Fatal("code exchanged")
			}
		})
		t.Run("other user's browser", func(t *testing.T) {
			e := newEnv(t, newStore(t), envConfig{})
			b := e.browser(atCallback)
			b.login("alice@example.com", alicePassword)
			cb := e.pendingCallback(b)
			bob := e.browser(nil)
			bob.login("bob@example.com", bobPassword)
			q := clientRedirect(t, bob.get(cb))
			if q.Get("error") != "access_denied" || q.Get("code") != "" {
				t.Fatalf("bob got %v", redactQuery(q))
			}
			if _, ok := e.grant(); ok || e.as.CodeRequests.Load() != 0 {
				t.Fatal("grant stored or code exchanged for the wrong user")
			}
			// consumed: alice cannot use it afterwards either
			if resp := b.get(cb); resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("alice after bob: %d", resp.StatusCode)
			}
			if _, ok := e.grant(); ok {
				t.Fatal("grant stored")
			}
		})
		t.Run("no session", func(t *testing.T) {
			e := newEnv(t, newStore(t), envConfig{})
			b := e.browser(atCallback)
			b.login("alice@example.com", alicePassword)
			cb := e.pendingCallback(b)
			q := clientRedirect(t, e.browser(nil).get(cb))
			if q.Get("error") != "access_denied" {
				t.Fatalf("anonymous got %v", redactQuery(q))
			}
			if _, ok := e.grant(); ok {
				t.Fatal("grant stored")
			}
		})
		t.Run("consumed by an error outcome", func(t *testing.T) {
			e := newEnv(t, newStore(t), envConfig{})
			b := e.browser(atCallback)
			b.login("alice@example.com", alicePassword)
			cb := e.pendingCallback(b)
			u, _ := url.Parse(cb)
			qq := u.Query()
			code := qq.Get("code")
			qq.Del("code")
			qq.Set("error", "access_denied")
			u.RawQuery = qq.Encode()
			q := clientRedirect(t, b.get(u.String()))
			if q.Get("error") != "access_denied" {
				t.Fatalf("got %v", redactQuery(q))
			}
			qq.Del("error")
			qq.Set("code", code)
			u.RawQuery = qq.Encode()
			if resp := b.get(u.String()); resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("retry with the code after an error: %d", resp.StatusCode)
			}
			if _, ok := e.grant(); ok {
				t.Fatal("grant stored")
			}
		})
		t.Run("config changed meanwhile", func(t *testing.T) {
			e := newEnv(t, newStore(t), envConfig{})
			b := e.browser(atCallback)
			b.login("alice@example.com", alicePassword)
			cb := e.pendingCallback(b)
			if _, _, err := e.st.UpdateConfig(context.Background(), e.cfg.ID, func(c *store.Config) error {
				c.Provider.Scopes = []string{"files:read"}
				return nil
			}, nil); err != nil {
				t.Fatal(err)
			}
			// the material change deleted the pending state
			if resp := b.get(cb); resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusFound {
				t.Fatalf("after material change: %d", resp.StatusCode)
			}
			if _, ok := e.grant(); ok || e.as.CodeRequests.Load() != 0 {
				t.Fatal("grant stored or code exchanged after a material change")
			}
		})
		t.Run("ciphertext moved to another state", func(t *testing.T) {
			e := newEnv(t, newStore(t), envConfig{})
			in, _, err := e.st.GetOrCreateInstance(context.Background(), store.ScopeUser, e.alice.ID, e.alice.ID, e.cfg.ID, store.NewID())
			if err != nil {
				t.Fatal(err)
			}
			stateA, stateB := secrets.NewToken("mcpgw_ps_"), secrets.NewToken("mcpgw_ps_")
			e.plant(stateA, stateB)
			ct, _ := e.kr.Seal([]byte(`{"v":1}`), secrets.AAD("pending_provider_states", "payload", hex.EncodeToString(secrets.Hash(stateA))))
			now := e.clock.Now()
			if err := e.st.CreatePendingState(context.Background(), store.PendingProviderState{
				StateHash: secrets.Hash(stateB), UserID: e.alice.ID, ConfigID: e.cfg.ID, ConfigVersion: e.cfg.Version,
				InstanceID: in.ID, Ciphertext: ct, CreatedAt: now, ExpiresAt: now.Add(time.Minute),
			}); err != nil {
				t.Fatal(err)
			}
			b := e.browser(nil)
			b.login("alice@example.com", alicePassword)
			if resp := b.get(e.base + provider.CallbackPath + "?state=" + stateB + "&code=x"); resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("moved ciphertext: %d", resp.StatusCode)
			}
			if r := e.failureReason("provider.authorize"); r != provider.ReasonStateUndecryptable {
				t.Fatalf("reason %q", r)
			}
		})
		t.Run("unknown or missing state", func(t *testing.T) {
			e := newEnv(t, newStore(t), envConfig{})
			b := e.browser(nil)
			for _, q := range []string{"", "?code=x", "?state=mcpgw_ps_unknown&code=x", "?state=a&state=b&code=x", "?state=" + strings.Repeat("x", 300)} {
				if resp := b.get(e.base + provider.CallbackPath + q); resp.StatusCode != http.StatusBadRequest {
					t.Fatalf("%q: %d", q, resp.StatusCode)
				}
			}
		})
	})
}

// TestIssMismatch (RFC 9207): when the upstream AS advertises the iss
// parameter, a response with another iss is refused.
func TestIssMismatch(t *testing.T) {
	e := newEnv(t, newMem(), envConfig{as: asOptions{ISSParameter: true}})
	b := e.browser(atCallback)
	b.login("alice@example.com", alicePassword)
	cb := e.pendingCallback(b)
	u, _ := url.Parse(cb)
	q := u.Query()
	q.Set("iss", "https://attacker.example.com")
	u.RawQuery = q.Encode()
	got := clientRedirect(t, b.get(u.String()))
	if got.Get("error") != "access_denied" {
		t.Fatalf("got %v", redactQuery(got))
	}
	if _, ok := e.grant(); ok || e.as.CodeRequests.Load() != 0 {
		t.Fatal("grant stored or code exchanged")
	}
	if r := e.failureReason("provider.authorize"); r != provider.ReasonIssMismatch {
		t.Fatalf("reason %q", r)
	}
}
