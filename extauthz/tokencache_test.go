package extauthz

import (
	"context"
	"crypto/rsa"
	"net/http"
	"sync"
	"testing"
	"time"

	"mcpgw/store"
)

// swappableKeys is a Keys source whose keys a test can withdraw (a key
// rotated out of the JWKS).
type swappableKeys struct {
	mu sync.Mutex
	m  map[string]*rsa.PublicKey
}

func (k *swappableKeys) PublicKey(_ context.Context, kid string) (*rsa.PublicKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if pk, ok := k.m[kid]; ok {
		return pk, nil
	}
	return nil, ErrUnknownKey
}

// TestTokenCacheChecksEveryRequest: the verified-token cache saves only the
// signature check. Every request still checks the token against its own
// route (aud, route claims), its expiry against the clock (with leeway) and
// that its key is still published (DESIGN §6 step 4).
func TestTokenCacheChecksEveryRequest(t *testing.T) {
	fs := &fakeStore{}
	keys := &swappableKeys{}
	e := newEnv(t, fs, func(o *Options) { o.Keys = keys })
	keys.m = map[string]*rsa.PublicKey{e.key.ID: &e.key.Private.PublicKey}
	r, other := newRoute(store.ScopeUser), newRoute(store.ScopeUser)
	fs.state = okState(r, store.AuthNone)

	decide := func(rt route, tok string) Decision {
		t.Helper()
		d, err := e.srv.Decide(context.Background(), requestFromEnvoy(fixture(t, "envoy_post_initialize.json", rt, "", tok)))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	expect := func(what string, d Decision, status int, reason string) {
		t.Helper()
		if d.Status != status || d.Reason != reason {
			t.Fatalf("%s: %d %s, want %d %s", what, d.Status, d.Reason, status, reason)
		}
	}
	cached := func() int { return e.srv.verifier.cache.len() }

	tok := mint(t, e.key, r.claims(e.clock.Now()))
	for i := 0; i < 2; i++ {
		expect("fresh token", decide(r, tok), http.StatusOK, ReasonAllowed)
	}
	if cached() != 1 {
		t.Fatalf("token cache holds %d entries, want 1", cached())
	}

	// Another route: the cached token's audience is not this route's.
	expect("cached token on another route", decide(other, tok), http.StatusUnauthorized, ReasonTokenAudience)

	// The signing key is withdrawn: the cached token goes with it.
	keys.mu.Lock()
	delete(keys.m, e.key.ID)
	keys.mu.Unlock()
	expect("cached token after its key was withdrawn", decide(r, tok), http.StatusUnauthorized, ReasonTokenUnknownKey)
	if cached() != 0 {
		t.Fatalf("token cache holds %d entries after the key was withdrawn, want 0", cached())
	}
	keys.mu.Lock()
	keys.m[e.key.ID] = &e.key.Private.PublicKey
	keys.mu.Unlock()

	// Expiry: accepted within the leeway after exp, refused beyond it.
	tok = mint(t, e.key, r.claims(e.clock.Now()))
	expect("new token", decide(r, tok), http.StatusOK, ReasonAllowed)
	e.clock.Advance(15*time.Minute + 29*time.Second) // exp + 29 s, leeway 30 s
	expect("cached token within leeway", decide(r, tok), http.StatusOK, ReasonAllowed)
	e.clock.Advance(2 * time.Second)
	expect("cached token past exp+leeway", decide(r, tok), http.StatusUnauthorized, ReasonTokenExpired)
	if cached() != 0 {
		t.Fatalf("token cache holds %d entries after expiry, want 0", cached())
	}
}
