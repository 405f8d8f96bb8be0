package oauthserver

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"mcpgw/domain/secrets"
	"mcpgw/store"
	"mcpgw/store/memory"
	"mcpgw/store/postgres/pgtest"
)

// benchSetup prepares a public client, alice's instance and n codes bound
// to them, stored directly (the browser part of the flow is not what is
// measured).
func benchSetup(b *testing.B, e *env, n int) (clientID, verifier string, codes chan string) {
	ctx := context.Background()
	now := e.clock.Now()
	clientID = "dcr:bench" + strings.ReplaceAll(store.NewID(), "-", "")
	if _, err := e.st.CreateClient(ctx, store.OAuthClient{ID: clientID, RedirectURIs: []string{testRedirect},
		GrantTypes: []string{"authorization_code", "refresh_token"}, ResponseTypes: []string{"code"}, TokenEndpointAuthMethod: "none",
		Scope: "mcp:access", RegistrationTokenHash: secrets.Hash(secrets.NewToken("x")), CreatedAt: now, UpdatedAt: now}); err != nil {
		b.Fatal(err)
	}
	inst, _, err := e.st.GetOrCreateInstance(ctx, store.ScopeUser, e.alice.ID, e.alice.ID, e.aliceCfg.ID, store.NewID())
	if err != nil {
		b.Fatal(err)
	}
	verifier = strings.Repeat("v", 50)
	codes = make(chan string, n)
	for range n {
		raw := secrets.NewToken(prefixCode)
		if err := e.st.CreateAuthCode(ctx, store.AuthCode{Hash: secrets.Hash(raw), FamilyID: newFamilyID(), ClientID: clientID,
			RedirectURI: testRedirect, Resource: e.routeURL(e.aliceRoute), Scopes: []string{"mcp:access"}, CodeChallenge: s256(verifier),
			ConfigID: e.aliceCfg.ID, RouteKey: e.aliceRoute.Key, OwnerScope: store.ScopeUser, OwnerID: e.alice.ID,
			ExecutionContext: "personal", UserID: e.alice.ID, InstanceID: inst.ID, ConfigVersion: e.aliceCfg.Version,
			CreatedAt: now, ExpiresAt: now.Add(10 * time.Minute)}); err != nil {
			b.Fatal(err)
		}
		codes <- raw
	}
	close(codes)
	return clientID, verifier, codes
}

func benchBackends(b *testing.B, fn func(b *testing.B, newStore func(b *testing.B) store.Store)) {
	b.Run("memory", func(b *testing.B) { fn(b, func(*testing.B) store.Store { return memory.New() }) })
	b.Run("postgres", func(b *testing.B) { fn(b, func(b *testing.B) store.Store { return pgtest.Store(b) }) })
}

// BenchmarkTokenExchange measures POST /oauth/token with
// grant_type=authorization_code over real HTTP: client lookup, atomic code
// consumption, the eligibility recheck (ResolveRuntime), refresh-token
// insert, audit row, and RS256 signing of the gateway JWT.
func BenchmarkTokenExchange(b *testing.B) {
	benchBackends(b, func(b *testing.B, newStore func(b *testing.B) store.Store) {
		for _, par := range []bool{false, true} {
			name := "serial"
			if par {
				name = "parallel"
			}
			b.Run(name, func(b *testing.B) {
				e := newEnv(b, newStore(b))
				clientID, verifier, codes := benchSetup(b, e, b.N)
				resource := e.routeURL(e.aliceRoute)
				hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
				one := func(code string) {
					f := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {testRedirect},
						"code_verifier": {verifier}, "resource": {resource}, "client_id": {clientID}}
					resp, err := hc.Post(e.base+"/oauth/token", "application/x-www-form-urlencoded", strings.NewReader(f.Encode()))
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
					}
				}
				b.ReportAllocs()
				b.ResetTimer()
				if par {
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							one(<-codes)
						}
					})
				} else {
					for code := range codes {
						one(code)
					}
				}
			})
		}
	})
}

// BenchmarkMintRS256 is the RS256 signing share of the token endpoint:
// minting one gateway JWT (claims + 2048-bit RSA PKCS#1 v1.5 signature).
func BenchmarkMintRS256(b *testing.B) {
	e := newEnv(b, memory.New())
	f := tokenFacts{Ref: e.aliceRoute, UserID: e.alice.ID, ClientID: "dcr:x", Scopes: []string{"mcp:access"}, InstanceID: store.NewID(), ConfigVersion: 1}
	now := e.clock.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, _, err := e.srv.mint(f, now); err != nil {
			b.Fatal(err)
		}
	}
}
