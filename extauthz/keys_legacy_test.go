package extauthz

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"mcpgw/domain/signing"
	"mcpgw/store"
)

// TestLegacyKeyID: a token signed under the legacy 16-character kid of a
// headerless key file (before kids became RFC 7638 thumbprints, or by a
// replica not yet upgraded) is allowed with StaticKeys and with a JWKS
// source, although the JWKS publishes only the thumbprint; an unknown kid
// still fails.
func TestLegacyKeyID(t *testing.T) {
	key, other, _ := fixtureKeys(t)
	legacy, err := signing.LegacyKeyID(&key.Private.PublicKey)
	must(t, err)
	otherLegacy, err := signing.LegacyKeyID(&other.Private.PublicKey)
	must(t, err)
	set, err := signing.NewSet(key)
	must(t, err)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(set.JWKS())
	}))
	defer srv.Close()
	j, err := NewJWKS(JWKSOptions{URL: srv.URL})
	must(t, err)
	ctx := context.Background()

	for name, keys := range map[string]Keys{"static": StaticKeys(set), "jwks": j} {
		for _, kid := range []string{key.ID, legacy} {
			if pub, err := keys.PublicKey(ctx, kid); err != nil || !pub.Equal(&key.Private.PublicKey) {
				t.Errorf("%s: PublicKey(%q): %v", name, kid, err)
			}
		}
		for _, kid := range []string{otherLegacy, other.ID, "AAAAAAAAAAAAAAAA"} {
			if _, err := keys.PublicKey(ctx, kid); !errors.Is(err, ErrUnknownKey) {
				t.Errorf("%s: PublicKey(%q) = %v, want ErrUnknownKey", name, kid, err)
			}
		}

		fs := &fakeStore{}
		e := newEnv(t, fs, func(o *Options) { o.Keys = keys })
		r := newRoute(store.ScopeUser)
		fs.state = okState(r, store.AuthNone)
		old := key
		old.ID = legacy
		if got := checkStatus(t, e, r, mint(t, old, r.claims(e.clock.Now()))); got != 200 {
			t.Errorf("%s: Check with a token under the legacy kid: %d, want 200", name, got)
		}
		stranger := other
		stranger.ID = otherLegacy
		if got := checkStatus(t, e, r, mint(t, stranger, r.claims(e.clock.Now()))); got != 401 {
			t.Errorf("%s: Check with a token under an unknown legacy kid: %d, want 401", name, got)
		}
	}
}
