package provider_test

import (
	"context"
	"testing"
	"time"

	"mcpgw/domain/secrets"
	"mcpgw/provider"
	"mcpgw/store"
	"mcpgw/store/memory"
)

// benchSetup stores one OAuth-mode instance with a grant that expires at
// exp, and returns the provider and the runtime state extauthz would pass.
func benchSetup(b *testing.B, stateExp, storedExp time.Time) (*provider.Provider, store.RuntimeState) {
	b.Helper()
	ctx := context.Background()
	st := memory.New()
	k, _ := secrets.NewKey("k1")
	kr, _ := secrets.NewKeyRing(k)
	now := time.Now().UTC()
	u, err := st.CreateUser(ctx, store.User{ID: store.NewID(), Email: "a@example.com", Status: store.UserActive, CreatedAt: now, UpdatedAt: now})
	if err != nil {
		b.Fatal(err)
	}
	cfg, _, err := st.CreateConfig(ctx, store.Config{ID: store.NewID(), OwnerScope: store.ScopeUser, OwnerID: u.ID, Name: "x",
		RemoteURL: "https://mcp.example.com/mcp", AuthMode: store.AuthOAuthDynamic, SharingMode: store.SingleUser,
		CreatedBy: u.ID, CreatedAt: now, UpdatedAt: now}, store.NewID(), "bench-route-key-0123456789abcdef", nil)
	if err != nil {
		b.Fatal(err)
	}
	in, _, err := st.GetOrCreateInstance(ctx, store.ScopeUser, u.ID, u.ID, cfg.ID, store.NewID())
	if err != nil {
		b.Fatal(err)
	}
	at, _ := kr.Seal([]byte("upstream-access-token-for-benchmarks-0123456789"), secrets.AAD("grants", "access_token", in.ID))
	g, err := st.PutGrant(ctx, store.Grant{InstanceID: in.ID, AccessToken: at, TokenType: "Bearer", ExpiresAt: &storedExp}, -1, nil)
	if err != nil {
		b.Fatal(err)
	}
	p, err := provider.New(provider.Options{Store: st, KeyRing: kr, BaseURL: "https://gw.example.com"})
	if err != nil {
		b.Fatal(err)
	}
	sg := g
	sg.ExpiresAt = &stateExp
	return p, store.RuntimeState{Config: store.RuntimeConfig{ID: cfg.ID, AuthMode: cfg.AuthMode, Version: cfg.Version},
		InstanceID: in.ID, GrantVersion: g.Version, Grant: &sg}
}

// BenchmarkEnsureFreshValid is the per-request cost for an OAuth-mode
// Check whose upstream token is valid: one AES-GCM open and validation,
// no store or upstream access.
func BenchmarkEnsureFreshValid(b *testing.B) {
	exp := time.Now().Add(time.Hour)
	p, st := benchSetup(b, exp, exp)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := p.EnsureFresh(ctx, st); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkEnsureFreshReuse is the path of a replica whose runtime state
// shows an expiring token that another replica already refreshed: take
// the grant lock, re-read, reuse (no upstream call).
func BenchmarkEnsureFreshReuse(b *testing.B) {
	p, st := benchSetup(b, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := p.EnsureFresh(ctx, st); err != nil {
			b.Fatal(err)
		}
	}
}
