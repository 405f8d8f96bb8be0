package addrpolicy

import (
	"net/netip"
	"strings"
	"testing"
)

// TestReason is the issue 2 item 6 table: every non-public family in IPv4
// and IPv6, every transition form embedding non-public IPv4, and public
// addresses that must pass.
func TestReason(t *testing.T) {
	cases := []struct {
		ip   string
		want string // "" = public
	}{
		// IPv4 loopback, unspecified, this network
		{"127.0.0.1", ReasonLoopback},
		{"127.255.255.254", ReasonLoopback},
		{"127.1.2.3", ReasonLoopback},
		{"0.0.0.0", ReasonUnspecified},
		{"0.1.2.3", ReasonThisNetwork},
		{"0.255.255.255", ReasonThisNetwork},
		// RFC 1918
		{"10.0.0.1", ReasonPrivate},
		{"10.255.255.255", ReasonPrivate},
		{"172.16.0.1", ReasonPrivate},
		{"172.31.255.254", ReasonPrivate},
		{"192.168.0.1", ReasonPrivate},
		{"192.168.255.255", ReasonPrivate},
		// just outside RFC 1918 edges
		{"172.15.255.255", ""},
		{"172.32.0.0", ""},
		{"11.0.0.0", ""},
		{"9.255.255.255", ""},
		// link-local, CGNAT
		{"169.254.0.1", ReasonLinkLocal},
		{"169.254.169.254", ReasonLinkLocal}, // cloud metadata
		{"100.64.0.1", ReasonCGNAT},
		{"100.127.255.255", ReasonCGNAT},
		{"100.63.255.255", ""},
		{"100.128.0.0", ""},
		// IETF protocol assignments, documentation, benchmarking, 6to4 relay
		{"192.0.0.1", ReasonIETFProtocol},
		{"192.0.0.170", ReasonIETFProtocol},
		{"192.0.2.1", ReasonDocumentation},
		{"198.51.100.7", ReasonDocumentation},
		{"203.0.113.200", ReasonDocumentation},
		{"198.18.0.1", ReasonBenchmarking},
		{"198.19.255.255", ReasonBenchmarking},
		{"198.20.0.0", ""},
		{"192.88.99.1", Reason6to4Relay},
		// multicast, reserved, broadcast
		{"224.0.0.1", ReasonMulticast},
		{"239.255.255.250", ReasonMulticast},
		{"240.0.0.1", ReasonReserved},
		{"254.255.255.255", ReasonReserved},
		{"255.255.255.255", ReasonBroadcast},
		// public IPv4
		{"8.8.8.8", ""},
		{"1.1.1.1", ""},
		{"93.184.216.34", ""},
		{"223.255.255.255", ""},
		// IPv6 basics
		{"::", ReasonUnspecified},
		{"::1", ReasonLoopback},
		{"fe80::1", ReasonLinkLocal},
		{"febf:ffff::1", ReasonLinkLocal},
		{"fec0::1", ReasonSiteLocal},
		{"fc00::1", ReasonULA},
		{"fd12:3456:789a::1", ReasonULA},
		{"ff02::1", ReasonMulticast},
		{"ff05::1:3", ReasonMulticast},
		{"ff0e::1", ReasonMulticast},
		{"2001:db8::1", ReasonDocumentation},
		{"2001:db8:ffff::1", ReasonDocumentation},
		{"3fff::1", ReasonDocumentation},
		{"3fff:fff:ffff::1", ReasonDocumentation},
		{"100::1", ReasonDiscard},
		{"2001:10::1", ReasonORCHID},
		{"2001:20::1", ReasonORCHID},
		{"2001:2::1", ReasonIETFProtocol},
		{"5f00::1", ReasonSRv6},
		{"4000::1", ReasonReserved},   // outside 2000::/3
		{"1234::1", ReasonReserved},   // outside 2000::/3
		{"::2:0:0:1", ReasonReserved}, // ::/8 but not a known form
		// IPv4-mapped
		{"::ffff:127.0.0.1", "ipv4-mapped-embedded-loopback"},
		{"::ffff:10.1.2.3", "ipv4-mapped-embedded-private"},
		{"::ffff:169.254.169.254", "ipv4-mapped-embedded-link-local"},
		{"::ffff:0.0.0.0", "ipv4-mapped-embedded-unspecified"},
		{"::ffff:8.8.8.8", ""},
		// IPv4-compatible (deprecated): always refused
		{"::127.0.0.1", "ipv4-compatible-embedded-loopback"},
		{"::10.0.0.1", "ipv4-compatible-embedded-private"},
		{"::8.8.8.8", ReasonIPv4Compatible},
		// NAT64 well-known prefix
		{"64:ff9b::10.0.0.1", "nat64-embedded-private"},
		{"64:ff9b::127.0.0.1", "nat64-embedded-loopback"},
		{"64:ff9b::192.168.1.1", "nat64-embedded-private"},
		{"64:ff9b::100.64.0.1", "nat64-embedded-cgnat"},
		{"64:ff9b::8.8.8.8", ""},
		// NAT64 local-use prefix: never global
		{"64:ff9b:1::a00:1", ReasonNAT64Local},
		{"64:ff9b:1:ffff::808:808", ReasonNAT64Local},
		// 6to4: 2002:AABB:CCDD::/48 embeds AA.BB.CC.DD
		{"2002:7f00:1::1", "6to4-embedded-loopback"},
		{"2002:a00:1::1", "6to4-embedded-private"},
		{"2002:c0a8:101::1", "6to4-embedded-private"},
		{"2002:a9fe:a9fe::1", "6to4-embedded-link-local"},
		{"2002:808:808::1", ""},
		// Teredo: client IPv4 is the inverted last 32 bits
		{"2001:0:4136:e378:8000:63bf:f5ff:fffe", "teredo-embedded-private"},       // client 10.0.0.1
		{"2001:0:4136:e378:8000:63bf:80ff:fffe", "teredo-embedded-loopback"},      // client 127.0.0.1
		{"2001:0:a00:1:8000:63bf:f7f7:f7f7", "teredo-embedded-private"},           // server 10.0.0.1
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", "teredo-embedded-documentation"}, // client 192.0.2.45
		// public IPv6
		{"2606:4700::1111", ""},
		{"2001:4860:4860::8888", ""},
		{"2a00:1450:4001:80b::200e", ""},
		{"2620:4f:8000::1", ""},
		// zones
		{"fe80::1%eth0", ReasonZoned},
	}
	if len(cases) < 60 {
		t.Fatalf("need at least 60 cases, have %d", len(cases))
	}
	for _, c := range cases {
		t.Run(c.ip, func(t *testing.T) {
			ip := netip.MustParseAddr(c.ip)
			want := c.want
			if got := Reason(ip); got != want {
				t.Errorf("Reason(%s) = %q, want %q", c.ip, got, want)
			}
			if got := IsPublic(ip); got != (want == "") {
				t.Errorf("IsPublic(%s) = %v", c.ip, got)
			}
		})
	}
}

func TestReasonInvalid(t *testing.T) {
	if got := Reason(netip.Addr{}); got != ReasonInvalid {
		t.Fatalf("zero Addr: %q", got)
	}
	if IsPublic(netip.Addr{}) {
		t.Fatal("zero Addr is public")
	}
}

// TestTeredoPublic: a Teredo address embedding only public IPv4 is still
// refused (tunnel endpoints are no place for an upstream).
func TestTeredoPublic(t *testing.T) {
	// server 65.54.227.120, client 8.8.8.8 (inverted f7f7:f7f7)
	ip := netip.MustParseAddr("2001:0:4136:e378:8000:63bf:f7f7:f7f7")
	if got := Reason(ip); got != ReasonTeredo {
		t.Fatalf("got %q", got)
	}
}

func TestReasonStringsAreStable(t *testing.T) {
	for _, r := range []string{ReasonLoopback, ReasonPrivate, ReasonCGNAT} {
		if strings.ContainsAny(r, " \t") {
			t.Fatalf("reason %q has whitespace", r)
		}
	}
}
