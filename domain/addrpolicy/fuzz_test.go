package addrpolicy

import (
	"net/netip"
	"testing"
)

// FuzzParseHostLiteral checks invariants on arbitrary hosts: no panics; a
// recognised literal is valid and its canonical form parses back to itself;
// Reason is "" exactly when IsPublic; the IPv4-mapped form of an IPv4
// address gets the same verdict as the address itself.
func FuzzParseHostLiteral(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "2130706433", "0x7f.1", "0177.0.0.1", "[::1]", "::ffff:10.0.0.1",
		"64:ff9b::8.8.8.8", "2002:a00:1::1", "2001:0:4136:e378:8000:63bf:f5ff:fffe", "example.com", "1.2.3.999", "fe80::1%eth0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		ip, ok := ParseHostLiteral(host)
		if !ok {
			return
		}
		if !ip.IsValid() {
			t.Fatalf("%q: literal but invalid", host)
		}
		back, err := netip.ParseAddr(ip.String())
		if err != nil || back != ip {
			t.Fatalf("%q: %v does not round-trip", host, ip)
		}
		r := Reason(ip)
		if (r == "") != IsPublic(ip) {
			t.Fatalf("%v: Reason %q vs IsPublic", ip, r)
		}
		if ip.Is4() {
			mapped := netip.AddrFrom16(ip.As16())
			if IsPublic(mapped) != IsPublic(ip) {
				t.Fatalf("%v: mapped verdict differs", ip)
			}
		}
	})
}
