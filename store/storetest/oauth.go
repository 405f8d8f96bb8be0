package storetest

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"mcpgw/store"
)

// testOAuthClients covers RFC 7591/7592 client storage.
func testOAuthClients(t *testing.T, newStore NewStore) {
	// Subtests with disjoint worlds share one store; those that list
	// everything get their own.
	shared := open(t, newStore)
	t.Run("CreateGetUpdateDelete", func(t *testing.T) {
		x := shared.sub(t)
		c := x.client()
		got, err := x.s.GetClient(x.ctx, c.ID)
		wantErr(t, "GetClient", err, nil)
		if got.ID != c.ID || !sameBytes(got.SecretHash, c.SecretHash) || !sameBytes(got.RegistrationTokenHash, c.RegistrationTokenHash) ||
			!slices.Equal(got.RedirectURIs, c.RedirectURIs) || !slices.Equal(got.GrantTypes, c.GrantTypes) ||
			!slices.Equal(got.ResponseTypes, c.ResponseTypes) || got.TokenEndpointAuthMethod != c.TokenEndpointAuthMethod ||
			got.Scope != c.Scope || got.ClientName != c.ClientName || got.ApplicationType != c.ApplicationType || !sameJSON(got.Metadata, c.Metadata) {
			t.Fatalf("GetClient = %+v, want %+v", got, c)
		}
		_, err = x.s.CreateClient(x.ctx, c)
		wantErr(t, "CreateClient(duplicate)", err, store.ErrConflict)

		// Update keeps the hashes when nil and CreatedAt always.
		up := store.OAuthClient{
			ID:                      c.ID,
			RedirectURIs:            []string{"https://app.example.com/cb", "http://localhost:9999/cb"},
			GrantTypes:              []string{"authorization_code"},
			ResponseTypes:           []string{"code"},
			TokenEndpointAuthMethod: "client_secret_post",
			Scope:                   "mcp:access",
			ClientName:              "Renamed",
			ClientURI:               "https://app.example.com",
			Metadata:                json.RawMessage(`{"client_name":"Renamed"}`),
			CreatedAt:               at(time.Hour),
			UpdatedAt:               at(time.Hour),
		}
		_, err = x.s.UpdateClient(x.ctx, up)
		wantErr(t, "UpdateClient", err, nil)
		got, _ = x.s.GetClient(x.ctx, c.ID)
		if !sameBytes(got.SecretHash, c.SecretHash) || !sameBytes(got.RegistrationTokenHash, c.RegistrationTokenHash) {
			t.Fatalf("UpdateClient with nil hashes dropped them")
		}
		if !slices.Equal(got.RedirectURIs, up.RedirectURIs) || got.ClientName != "Renamed" || got.TokenEndpointAuthMethod != "client_secret_post" || got.ClientURI != up.ClientURI {
			t.Fatalf("UpdateClient not applied: %+v", got)
		}
		if !got.CreatedAt.Equal(c.CreatedAt) {
			t.Fatalf("UpdateClient changed CreatedAt to %v", got.CreatedAt)
		}
		// New hashes replace the old ones.
		up.SecretHash, up.RegistrationTokenHash = hash("new-secret"), hash("new-reg")
		_, err = x.s.UpdateClient(x.ctx, up)
		wantErr(t, "UpdateClient(new hashes)", err, nil)
		got, _ = x.s.GetClient(x.ctx, c.ID)
		if !sameBytes(got.SecretHash, hash("new-secret")) || !sameBytes(got.RegistrationTokenHash, hash("new-reg")) {
			t.Fatalf("UpdateClient did not replace hashes")
		}
		up.ID = "dcr:" + store.NewID()
		_, err = x.s.UpdateClient(x.ctx, up)
		wantErr(t, "UpdateClient(unknown)", err, store.ErrNotFound)

		wantErr(t, "DeleteClient", x.s.DeleteClient(x.ctx, c.ID), nil)
		_, err = x.s.GetClient(x.ctx, c.ID)
		wantErr(t, "GetClient(deleted)", err, store.ErrNotFound)
		_, err = x.s.GetClient(x.ctx, "dcr:"+store.NewID())
		wantErr(t, "GetClient(unknown)", err, store.ErrNotFound)
	})

	t.Run("PublicClient", func(t *testing.T) {
		x := shared.sub(t)
		c := store.OAuthClient{ID: "dcr:" + store.NewID(), RegistrationTokenHash: hash("reg"), RedirectURIs: []string{"http://127.0.0.1/cb"},
			GrantTypes: []string{"authorization_code", "refresh_token"}, ResponseTypes: []string{"code"}, TokenEndpointAuthMethod: "none",
			Scope: "mcp:access", CreatedAt: t0, UpdatedAt: t0}
		_, err := x.s.CreateClient(x.ctx, c)
		wantErr(t, "CreateClient(public)", err, nil)
		got, err := x.s.GetClient(x.ctx, c.ID)
		wantErr(t, "GetClient", err, nil)
		if len(got.SecretHash) != 0 || got.TokenEndpointAuthMethod != "none" {
			t.Fatalf("public client = %+v", got)
		}
	})

	t.Run("DeleteRevokesRefreshTokens", func(t *testing.T) {
		x := shared.sub(t)
		w := x.oauthWorld()
		rt := w.refreshToken("r1", store.NewID(), at(time.Hour))
		wantErr(t, "CreateRefreshToken", x.s.CreateRefreshToken(x.ctx, rt), nil)
		wantErr(t, "DeleteClient", x.s.DeleteClient(x.ctx, w.client.ID), nil)
		got, err := x.s.GetRefreshToken(x.ctx, rt.Hash)
		if err == nil && got.RevokedAt == nil {
			t.Fatalf("refresh token of deleted client not revoked: %+v", got)
		}
		_, err = x.s.RotateRefreshToken(x.ctx, rt.Hash, w.refreshToken("r2", rt.FamilyID, at(2*time.Hour)), at(time.Minute))
		wantErrIn(t, "RotateRefreshToken after client delete", err, store.ErrRevoked, store.ErrNotFound)
		_, err = x.s.GetRefreshToken(x.ctx, w.hash("refresh-r2"))
		wantErr(t, "next token stored on failure", err, store.ErrNotFound)
	})
}

// testAuthRequests covers pending first-level authorization requests.
func testAuthRequests(t *testing.T, newStore NewStore) {
	x := open(t, newStore)
	w := x.oauthWorld()
	r := w.authRequest(at(30 * time.Minute))
	wantErr(t, "CreateAuthRequest", x.s.CreateAuthRequest(x.ctx, r), nil)
	t.Run("Get", func(t *testing.T) {
		got, err := x.s.GetAuthRequest(x.ctx, r.ID, at(time.Minute))
		wantErr(t, "GetAuthRequest", err, nil)
		if got.ID != r.ID || got.ClientID != r.ClientID || got.RedirectURI != r.RedirectURI || got.Resource != r.Resource ||
			!slices.Equal(got.Scopes, r.Scopes) || got.State != r.State || got.CodeChallenge != r.CodeChallenge ||
			got.ConfigID != r.ConfigID || got.RouteKey != r.RouteKey || got.OwnerScope != r.OwnerScope || got.OwnerID != r.OwnerID ||
			got.UserID != "" || !got.ExpiresAt.Equal(r.ExpiresAt) {
			t.Fatalf("GetAuthRequest = %+v, want %+v", got, r)
		}
	})
	t.Run("Duplicate", func(t *testing.T) {
		wantErr(t, "CreateAuthRequest(duplicate)", x.s.CreateAuthRequest(x.ctx, r), store.ErrConflict)
	})
	t.Run("SetUser", func(t *testing.T) {
		wantErr(t, "SetAuthRequestUser", x.s.SetAuthRequestUser(x.ctx, r.ID, w.user.ID), nil)
		got, err := x.s.GetAuthRequest(x.ctx, r.ID, at(time.Minute))
		wantErr(t, "GetAuthRequest", err, nil)
		if got.UserID != w.user.ID {
			t.Fatalf("UserID = %q, want %q", got.UserID, w.user.ID)
		}
		wantErr(t, "SetAuthRequestUser(unknown)", x.s.SetAuthRequestUser(x.ctx, store.NewID(), w.user.ID), store.ErrNotFound)
	})
	t.Run("Expired", func(t *testing.T) {
		_, err := x.s.GetAuthRequest(x.ctx, r.ID, at(31*time.Minute))
		wantErr(t, "GetAuthRequest(expired)", err, store.ErrExpired)
	})
	t.Run("Delete", func(t *testing.T) {
		wantErr(t, "DeleteAuthRequest", x.s.DeleteAuthRequest(x.ctx, r.ID), nil)
		_, err := x.s.GetAuthRequest(x.ctx, r.ID, at(time.Minute))
		wantErr(t, "GetAuthRequest(deleted)", err, store.ErrNotFound)
		_, err = x.s.GetAuthRequest(x.ctx, store.NewID(), t0)
		wantErr(t, "GetAuthRequest(unknown)", err, store.ErrNotFound)
	})
}

// testConsentTickets covers one-use consent decisions (DESIGN §4).
func testConsentTickets(t *testing.T, newStore NewStore) {
	x := open(t, newStore)
	w := x.oauthWorld()
	r := w.authRequest(at(30 * time.Minute))
	wantErr(t, "CreateAuthRequest", x.s.CreateAuthRequest(x.ctx, r), nil)
	ct := w.consentTicket("c1", r.ID, at(5*time.Minute))
	wantErr(t, "CreateConsentTicket", x.s.CreateConsentTicket(x.ctx, ct), nil)
	exp := w.consentTicket("c2", r.ID, at(5*time.Minute))
	wantErr(t, "CreateConsentTicket", x.s.CreateConsentTicket(x.ctx, exp), nil)
	t.Run("Duplicate", func(t *testing.T) {
		wantErr(t, "CreateConsentTicket(duplicate)", x.s.CreateConsentTicket(x.ctx, ct), store.ErrConflict)
	})
	t.Run("ConsumeOnce", func(t *testing.T) {
		got, err := x.s.ConsumeConsentTicket(x.ctx, ct.Hash, at(time.Minute))
		wantErr(t, "ConsumeConsentTicket", err, nil)
		if got.AuthRequestID != r.ID || got.UserID != w.user.ID || got.ClientID != ct.ClientID || got.RedirectURI != ct.RedirectURI ||
			got.Resource != ct.Resource || !slices.Equal(got.Scopes, ct.Scopes) || got.State != ct.State ||
			got.CodeChallenge != ct.CodeChallenge || got.ExecutionContext != ct.ExecutionContext {
			t.Fatalf("consumed ticket = %+v, want %+v", got, ct)
		}
		_, err = x.s.ConsumeConsentTicket(x.ctx, ct.Hash, at(2*time.Minute))
		wantErr(t, "ConsumeConsentTicket(replay)", err, store.ErrConsumed)
	})
	t.Run("Expired", func(t *testing.T) {
		_, err := x.s.ConsumeConsentTicket(x.ctx, exp.Hash, at(6*time.Minute))
		wantErr(t, "ConsumeConsentTicket(expired)", err, store.ErrExpired)
	})
	t.Run("Unknown", func(t *testing.T) {
		_, err := x.s.ConsumeConsentTicket(x.ctx, hash("consent-unknown"), t0)
		wantErr(t, "ConsumeConsentTicket(unknown)", err, store.ErrNotFound)
	})
}

// testAuthCodes covers authorization codes (DESIGN §4: one use; reuse is
// detectable so the family can be revoked).
func testAuthCodes(t *testing.T, newStore NewStore) {
	x := open(t, newStore)
	w := x.oauthWorld()
	code := w.authCode("a", at(10*time.Minute))
	wantErr(t, "CreateAuthCode", x.s.CreateAuthCode(x.ctx, code), nil)
	t.Run("Duplicate", func(t *testing.T) {
		wantErr(t, "CreateAuthCode(duplicate)", x.s.CreateAuthCode(x.ctx, code), store.ErrConflict)
	})
	t.Run("ConsumeOnce", func(t *testing.T) {
		got, err := x.s.ConsumeAuthCode(x.ctx, code.Hash, at(time.Minute))
		wantErr(t, "ConsumeAuthCode", err, nil)
		if got.FamilyID != code.FamilyID || got.ClientID != code.ClientID || got.RedirectURI != code.RedirectURI ||
			got.Resource != code.Resource || !slices.Equal(got.Scopes, code.Scopes) || got.CodeChallenge != code.CodeChallenge ||
			got.ConfigID != code.ConfigID || got.RouteKey != code.RouteKey || got.OwnerScope != code.OwnerScope ||
			got.OwnerID != code.OwnerID || got.ExecutionContext != code.ExecutionContext || got.UserID != code.UserID ||
			got.InstanceID != code.InstanceID || got.ConfigVersion != code.ConfigVersion {
			t.Fatalf("consumed code = %+v, want %+v", got, code)
		}
		// Reuse returns the code (its family) with ErrConsumed.
		again, err := x.s.ConsumeAuthCode(x.ctx, code.Hash, at(2*time.Minute))
		wantErr(t, "ConsumeAuthCode(reuse)", err, store.ErrConsumed)
		if again.FamilyID != code.FamilyID {
			t.Fatalf("reuse returned family %q, want %q", again.FamilyID, code.FamilyID)
		}
	})
	t.Run("ReuseRevokesTokensIssuedFromCode", func(t *testing.T) {
		// DESIGN §4: a second use of a code revokes the tokens issued from it.
		c := w.authCode("family", at(10*time.Minute))
		wantErr(t, "CreateAuthCode", x.s.CreateAuthCode(x.ctx, c), nil)
		_, err := x.s.ConsumeAuthCode(x.ctx, c.Hash, at(time.Minute))
		wantErr(t, "ConsumeAuthCode", err, nil)
		issued := w.refreshToken("from-code", c.FamilyID, at(24*time.Hour))
		wantErr(t, "CreateRefreshToken", x.s.CreateRefreshToken(x.ctx, issued), nil)
		rotated := w.refreshToken("from-code-2", c.FamilyID, at(48*time.Hour))
		_, err = x.s.RotateRefreshToken(x.ctx, issued.Hash, rotated, at(2*time.Minute))
		wantErr(t, "RotateRefreshToken", err, nil)
		reused, err := x.s.ConsumeAuthCode(x.ctx, c.Hash, at(3*time.Minute))
		wantErr(t, "ConsumeAuthCode(reuse)", err, store.ErrConsumed)
		n, err := x.s.RevokeFamily(x.ctx, reused.FamilyID, at(3*time.Minute))
		wantErr(t, "RevokeFamily", err, nil)
		if n != 2 {
			t.Fatalf("RevokeFamily = %d, want 2", n)
		}
		_, err = x.s.RotateRefreshToken(x.ctx, rotated.Hash, w.refreshToken("from-code-3", c.FamilyID, at(72*time.Hour)), at(4*time.Minute))
		wantErr(t, "RotateRefreshToken(after code reuse)", err, store.ErrRevoked)
	})
	t.Run("Expired", func(t *testing.T) {
		c := w.authCode("expired", at(10*time.Minute))
		wantErr(t, "CreateAuthCode", x.s.CreateAuthCode(x.ctx, c), nil)
		got, err := x.s.ConsumeAuthCode(x.ctx, c.Hash, at(11*time.Minute))
		wantErr(t, "ConsumeAuthCode(expired)", err, store.ErrExpired)
		if got.FamilyID != c.FamilyID {
			t.Fatalf("expired code not returned: %+v", got)
		}
	})
	t.Run("Unknown", func(t *testing.T) {
		_, err := x.s.ConsumeAuthCode(x.ctx, hash("code-unknown"), t0)
		wantErr(t, "ConsumeAuthCode(unknown)", err, store.ErrNotFound)
	})
}

// testRefreshTokens covers rotation and reuse detection (DESIGN §4, RFC
// 9700 §4.14).
func testRefreshTokens(t *testing.T, newStore NewStore) {
	// Subtests with disjoint worlds share one store; those that list
	// everything get their own.
	shared := open(t, newStore)
	t.Run("RotateAndReuse", func(t *testing.T) {
		x := shared.sub(t)
		w := x.oauthWorld()
		fam := store.NewID()
		r1 := w.refreshToken("r1", fam, at(24*time.Hour))
		wantErr(t, "CreateRefreshToken", x.s.CreateRefreshToken(x.ctx, r1), nil)
		got, err := x.s.GetRefreshToken(x.ctx, r1.Hash)
		wantErr(t, "GetRefreshToken", err, nil)
		if got.FamilyID != fam || got.ClientID != r1.ClientID || got.UserID != r1.UserID || got.InstanceID != r1.InstanceID ||
			got.ConfigID != r1.ConfigID || got.Resource != r1.Resource || !slices.Equal(got.Scopes, r1.Scopes) ||
			got.ExecutionContext != r1.ExecutionContext || got.ConfigVersion != r1.ConfigVersion || got.ConfigVersion < 1 ||
			!got.ExpiresAt.Equal(r1.ExpiresAt) || got.ConsumedAt != nil || got.RevokedAt != nil {
			t.Fatalf("GetRefreshToken = %+v, want %+v", got, r1)
		}
		r2 := w.refreshToken("r2", fam, at(48*time.Hour))
		old, err := x.s.RotateRefreshToken(x.ctx, r1.Hash, r2, at(time.Minute))
		wantErr(t, "RotateRefreshToken", err, nil)
		if old.FamilyID != fam || old.UserID != r1.UserID || !sameBytes(old.Hash, r1.Hash) {
			t.Fatalf("rotation returned %+v", old)
		}
		if g, err := x.s.GetRefreshToken(x.ctx, r1.Hash); err != nil || g.ConsumedAt == nil {
			t.Fatalf("old token after rotation: %+v, %v; want consumed", g, err)
		}
		if g, err := x.s.GetRefreshToken(x.ctx, r2.Hash); err != nil || g.ConsumedAt != nil || g.FamilyID != fam {
			t.Fatalf("next token after rotation: %+v, %v", g, err)
		}
		// Reuse of r1: ErrConsumed with the token, so the family can go.
		r3 := w.refreshToken("r3", fam, at(48*time.Hour))
		reused, err := x.s.RotateRefreshToken(x.ctx, r1.Hash, r3, at(2*time.Minute))
		wantErr(t, "RotateRefreshToken(reuse)", err, store.ErrConsumed)
		if reused.FamilyID != fam {
			t.Fatalf("reuse returned family %q, want %q", reused.FamilyID, fam)
		}
		_, err = x.s.GetRefreshToken(x.ctx, r3.Hash)
		wantErr(t, "next stored on reuse", err, store.ErrNotFound)
		// An unrelated family survives revocation.
		other := w.refreshToken("other", store.NewID(), at(24*time.Hour))
		wantErr(t, "CreateRefreshToken(other)", x.s.CreateRefreshToken(x.ctx, other), nil)
		n, err := x.s.RevokeFamily(x.ctx, reused.FamilyID, at(3*time.Minute))
		wantErr(t, "RevokeFamily", err, nil)
		if n != 2 {
			t.Fatalf("RevokeFamily = %d, want 2 (r1, r2)", n)
		}
		_, err = x.s.RotateRefreshToken(x.ctx, r2.Hash, w.refreshToken("r4", fam, at(48*time.Hour)), at(4*time.Minute))
		wantErr(t, "RotateRefreshToken(revoked family)", err, store.ErrRevoked)
		if g, _ := x.s.GetRefreshToken(x.ctx, r2.Hash); g.RevokedAt == nil {
			t.Fatalf("family member not revoked")
		}
		_, err = x.s.RotateRefreshToken(x.ctx, other.Hash, w.refreshToken("other2", other.FamilyID, at(48*time.Hour)), at(4*time.Minute))
		wantErr(t, "unrelated family", err, nil)
	})
	t.Run("ExpiredRevokedUnknown", func(t *testing.T) {
		x := shared.sub(t)
		w := x.oauthWorld()
		exp := w.refreshToken("exp", store.NewID(), at(time.Hour))
		rev := w.refreshToken("rev", store.NewID(), at(time.Hour))
		for _, r := range []store.RefreshToken{exp, rev} {
			wantErr(t, "CreateRefreshToken", x.s.CreateRefreshToken(x.ctx, r), nil)
		}
		wantErr(t, "CreateRefreshToken(duplicate)", x.s.CreateRefreshToken(x.ctx, exp), store.ErrConflict)
		wantErr(t, "RevokeRefreshToken", x.s.RevokeRefreshToken(x.ctx, rev.Hash, t0), nil)
		wantErr(t, "RevokeRefreshToken(unknown)", x.s.RevokeRefreshToken(x.ctx, hash("refresh-none"), t0), nil)
		cases := []struct {
			name string
			old  []byte
			now  time.Time
			want error
		}{
			{"Expired", exp.Hash, at(2 * time.Hour), store.ErrExpired},
			{"Revoked", rev.Hash, at(time.Minute), store.ErrRevoked},
			{"Unknown", hash("refresh-unknown"), at(time.Minute), store.ErrNotFound},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				next := w.refreshToken("next-"+tc.name, store.NewID(), at(48*time.Hour))
				_, err := x.s.RotateRefreshToken(x.ctx, tc.old, next, tc.now)
				wantErr(t, "RotateRefreshToken", err, tc.want)
				_, err = x.s.GetRefreshToken(x.ctx, next.Hash)
				wantErr(t, "next stored on failure", err, store.ErrNotFound)
			})
		}
		_, err := x.s.GetRefreshToken(x.ctx, hash("refresh-unknown"))
		wantErr(t, "GetRefreshToken(unknown)", err, store.ErrNotFound)
		if g, err := x.s.GetRefreshToken(x.ctx, exp.Hash); err != nil || g.ConsumedAt != nil {
			t.Fatalf("expired token consumed by failed rotation: %+v %v", g, err)
		}
	})
}

// testRateLimits covers fixed-window rate limiting with injected time.
func testRateLimits(t *testing.T, newStore NewStore) {
	x := open(t, newStore)
	key := "register:198.51.100.7"
	hit := func(t *testing.T, k string, now time.Time) (bool, time.Duration) {
		t.Helper()
		ok, retry, err := x.s.HitRateLimit(x.ctx, k, time.Minute, 3, now)
		wantErr(t, "HitRateLimit", err, nil)
		return ok, retry
	}
	t.Run("WithinLimit", func(t *testing.T) {
		for i, d := range []time.Duration{0, 10 * time.Second, 20 * time.Second} {
			if ok, _ := hit(t, key, at(d)); !ok {
				t.Fatalf("hit %d denied", i+1)
			}
		}
	})
	t.Run("OverLimit", func(t *testing.T) {
		ok, retry := hit(t, key, at(30*time.Second))
		if ok {
			t.Fatalf("4th hit in the window allowed")
		}
		if retry != 30*time.Second {
			t.Fatalf("retryAfter = %v, want 30s (end of the window)", retry)
		}
		ok, retry = hit(t, key, at(59*time.Second))
		if ok || retry != time.Second {
			t.Fatalf("hit at 59s = %v, retry %v; want denied, 1s", ok, retry)
		}
	})
	t.Run("OtherKeyIndependent", func(t *testing.T) {
		if ok, _ := hit(t, "register:203.0.113.9", at(30*time.Second)); !ok {
			t.Fatalf("other key denied")
		}
	})
	t.Run("Rollover", func(t *testing.T) {
		for i := range 3 {
			if ok, _ := hit(t, key, at(time.Minute+time.Duration(i)*time.Second)); !ok {
				t.Fatalf("hit %d in the next window denied", i+1)
			}
		}
		if ok, _ := hit(t, key, at(time.Minute+5*time.Second)); ok {
			t.Fatalf("4th hit in the next window allowed")
		}
	})
}

// testProviderState covers pending provider state (DESIGN §5: one-time,
// ≤30 minutes).
func testProviderState(t *testing.T, newStore NewStore) {
	x := open(t, newStore)
	u := x.user()
	c, _ := x.personal(u.ID, store.AuthOAuthDynamic)
	in := x.instance(c, u.ID)
	p := x.pending("p1", u.ID, c, in.ID)
	exp := x.pending("p2", u.ID, c, in.ID)
	t.Run("Duplicate", func(t *testing.T) {
		wantErr(t, "CreatePendingState(duplicate)", x.s.CreatePendingState(x.ctx, p), store.ErrConflict)
	})
	t.Run("ConsumeOnce", func(t *testing.T) {
		got, err := x.s.ConsumePendingState(x.ctx, p.StateHash, at(time.Minute))
		wantErr(t, "ConsumePendingState", err, nil)
		if got.UserID != u.ID || got.ConfigID != c.ID || got.ConfigVersion != c.Version || got.InstanceID != in.ID ||
			!sameBytes(got.Ciphertext, p.Ciphertext) || !got.ExpiresAt.Equal(p.ExpiresAt) {
			t.Fatalf("consumed state = %+v, want %+v", got, p)
		}
		_, err = x.s.ConsumePendingState(x.ctx, p.StateHash, at(2*time.Minute))
		wantErr(t, "ConsumePendingState(replay)", err, store.ErrConsumed)
	})
	t.Run("Expired", func(t *testing.T) {
		_, err := x.s.ConsumePendingState(x.ctx, exp.StateHash, at(31*time.Minute))
		wantErr(t, "ConsumePendingState(expired)", err, store.ErrExpired)
	})
	t.Run("Unknown", func(t *testing.T) {
		_, err := x.s.ConsumePendingState(x.ctx, hash("pending-unknown"), t0)
		wantErr(t, "ConsumePendingState(unknown)", err, store.ErrNotFound)
	})
}

// testProviderRegistrations covers the per-(config, version) DCR cache.
func testProviderRegistrations(t *testing.T, newStore NewStore) {
	x := open(t, newStore)
	u := x.user()
	c, _ := x.personal(u.ID, store.AuthOAuthDynamic)
	reg := func(v int64, label string) store.ProviderRegistration {
		return store.ProviderRegistration{ConfigID: c.ID, ConfigVersion: v, Ciphertext: []byte("ciphertext-reg-" + label), CreatedAt: t0}
	}
	t.Run("PutGetReplace", func(t *testing.T) {
		wantErr(t, "Put", x.s.PutProviderRegistration(x.ctx, reg(1, "a")), nil)
		got, err := x.s.GetProviderRegistration(x.ctx, c.ID, 1)
		wantErr(t, "Get", err, nil)
		if got.ConfigID != c.ID || got.ConfigVersion != 1 || string(got.Ciphertext) != "ciphertext-reg-a" {
			t.Fatalf("registration = %+v", got)
		}
		wantErr(t, "Put(replace)", x.s.PutProviderRegistration(x.ctx, reg(1, "b")), nil)
		got, _ = x.s.GetProviderRegistration(x.ctx, c.ID, 1)
		if string(got.Ciphertext) != "ciphertext-reg-b" {
			t.Fatalf("replace not applied: %q", got.Ciphertext)
		}
	})
	t.Run("StaleVersion", func(t *testing.T) {
		wantErr(t, "Put(future version)", x.s.PutProviderRegistration(x.ctx, reg(2, "x")), store.ErrStale)
		_, err := x.s.GetProviderRegistration(x.ctx, c.ID, 2)
		wantErr(t, "Get(2)", err, store.ErrNotFound)
	})
	t.Run("MaterialChangeDrops", func(t *testing.T) {
		_, material, err := x.s.UpdateConfig(x.ctx, c.ID, func(c *store.Config) error { c.RemoteURL = "https://moved.example.com/mcp"; return nil }, nil)
		if err != nil || !material {
			t.Fatalf("UpdateConfig = %v, %v", material, err)
		}
		_, err = x.s.GetProviderRegistration(x.ctx, c.ID, 1)
		wantErr(t, "Get(old version)", err, store.ErrNotFound)
		wantErr(t, "Put(old version)", x.s.PutProviderRegistration(x.ctx, reg(1, "late")), store.ErrStale)
		wantErr(t, "Put(new version)", x.s.PutProviderRegistration(x.ctx, reg(2, "new")), nil)
	})
	t.Run("Unknown", func(t *testing.T) {
		_, err := x.s.GetProviderRegistration(x.ctx, store.NewID(), 1)
		wantErr(t, "Get(unknown)", err, store.ErrNotFound)
	})
}
