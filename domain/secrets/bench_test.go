package secrets

import (
	"bytes"
	"fmt"
	"testing"
)

// Benchmarks for the per-request paths: extauthz opens static headers or a
// provider token on every Check; oauthserver hashes every presented token.
func BenchmarkSealOpen(b *testing.B) {
	k := Key{ID: "k1", Bytes: bytes.Repeat([]byte{1}, 32)}
	r, _ := NewKeyRing(k)
	aad := AAD("configs", "static_headers", "0b0e6c1e-5a38-4a53-9f0e-2f9f8f3c7a11")
	for _, n := range []int{64, 1024} {
		pt := bytes.Repeat([]byte("x"), n)
		ct, _ := r.Seal(pt, aad)
		b.Run(fmt.Sprintf("Seal/%dB", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.Seal(pt, aad); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("Open/%dB", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.Open(ct, aad); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkHash(b *testing.B) {
	tok := NewToken("mcpgw_rt_")
	b.ReportAllocs()
	for b.Loop() {
		Hash(tok)
	}
}

func BenchmarkNewToken(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		NewToken("mcpgw_rt_")
	}
}
