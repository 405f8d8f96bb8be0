package addrpolicy

import (
	"net/netip"
	"testing"
)

// BenchmarkReason covers the address check run for every resolved answer
// (config save, periodic re-resolution, each SSRF-safe dial).
func BenchmarkReason(b *testing.B) {
	for _, s := range []string{"8.8.8.8", "10.1.2.3", "2606:4700::1111", "2002:a00:1::1"} {
		ip := netip.MustParseAddr(s)
		b.Run(s, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Reason(ip)
			}
		})
	}
}
