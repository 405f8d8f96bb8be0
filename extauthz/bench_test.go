package extauthz

import (
	"context"
	"testing"

	"mcpgw/store"
)

// benchDecide measures the decision core alone (no gRPC, no database: the
// recheck answers from memory), i.e. extauthz's own cost per request.
func benchDecide(b *testing.B, cacheSize int) {
	fs := &fakeStore{}
	e := newEnv(b, fs, func(o *Options) { o.TokenCacheSize = cacheSize })
	r := newRoute(store.ScopeOrg)
	st := okState(r, store.AuthStaticHeaders)
	st.Config.StaticHeaders = sealStatic(b, e.kr, r.ref.ConfigID, `{"authorization":"Bearer up","x-upstream-tenant":"t1"}`)
	st.Config.StaticHeaderNames = []string{"authorization", "x-upstream-tenant"}
	st.Config.AuxHeaders = map[string]string{"x-client": "mcpgw"}
	fs.state = st
	req := requestFromEnvoy(fixture(b, "envoy_post_initialize.json", r, "", mint(b, e.key, r.claims(e.clock.Now()))))
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d, err := e.srv.Decide(ctx, req)
		if err != nil || !d.Allow {
			b.Fatalf("not allowed: %+v %v", d, err)
		}
		if i%1024 == 0 { // keep the fake store's query log bounded
			fs.mu.Lock()
			fs.queries = fs.queries[:0]
			fs.mu.Unlock()
		}
	}
}

func BenchmarkDecideCachedToken(b *testing.B)  { benchDecide(b, 0) }
func BenchmarkDecideNoTokenCache(b *testing.B) { benchDecide(b, -1) }

// BenchmarkCheckGRPC is Check over real loopback gRPC with the recheck
// answered from memory: the cost extauthz adds on top of the database
// round trip, client side included.
func BenchmarkCheckGRPC(b *testing.B) {
	fs := &fakeStore{}
	e := newEnv(b, fs, nil)
	r := newRoute(store.ScopeOrg)
	st := okState(r, store.AuthStaticHeaders)
	st.Config.StaticHeaders = sealStatic(b, e.kr, r.ref.ConfigID, `{"authorization":"Bearer up","x-upstream-tenant":"t1"}`)
	st.Config.StaticHeaderNames = []string{"authorization", "x-upstream-tenant"}
	fs.state = st
	req := fixture(b, "envoy_post_initialize.json", r, "", mint(b, e.key, r.claims(e.clock.Now())))
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			resp, err := e.client.Check(ctx, req)
			if err != nil || resp.GetOkResponse() == nil {
				b.Fatalf("not allowed: %v %v", resp, err)
			}
			if i++; i%1024 == 0 {
				fs.mu.Lock()
				fs.queries = fs.queries[:0]
				fs.mu.Unlock()
			}
		}
	})
}
