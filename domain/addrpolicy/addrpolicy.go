// Package addrpolicy decides whether an upstream address is public (DESIGN
// §6 "Upstream destinations"). Every A and AAAA answer of an upstream host
// must be public, or the config is rejected; xds pins the validated
// addresses as Envoy endpoints, and SSRF-safe HTTP clients (CIMD fetches,
// provider discovery) dial only validated addresses via SafeDialContext.
//
// The policy is deliberately stricter than "globally reachable" in the IANA
// special-purpose registries (RFC 6890): whole blocks whose members are
// mostly non-global (192.0.0.0/24, 2001::/23) are refused entirely, and
// transition forms (IPv4-mapped, NAT64, 6to4, Teredo) are judged by the IPv4
// address they embed. IPv6 is public only inside global unicast 2000::/3.
package addrpolicy

import (
	"net/netip"
)

// Reasons returned by Reason. They are stable strings used in errors, audit
// metadata and metric labels.
const (
	ReasonInvalid        = "invalid"
	ReasonUnspecified    = "unspecified"
	ReasonThisNetwork    = "this-network"
	ReasonLoopback       = "loopback"
	ReasonPrivate        = "private"
	ReasonCGNAT          = "cgnat"
	ReasonLinkLocal      = "link-local"
	ReasonIETFProtocol   = "ietf-protocol-assignment"
	ReasonDocumentation  = "documentation"
	ReasonBenchmarking   = "benchmarking"
	Reason6to4Relay      = "6to4-relay-anycast"
	ReasonMulticast      = "multicast"
	ReasonReserved       = "reserved"
	ReasonBroadcast      = "broadcast"
	ReasonULA            = "unique-local"
	ReasonSiteLocal      = "site-local"
	ReasonDiscard        = "discard-only"
	ReasonORCHID         = "orchid"
	ReasonTeredo         = "teredo"
	ReasonNAT64Local     = "nat64-local-use"
	ReasonSRv6           = "srv6-sid"
	ReasonIPv4Compatible = "ipv4-compatible"
	ReasonZoned          = "zoned"
)

type block struct {
	p      netip.Prefix
	reason string
}

func mustBlocks(pairs ...string) []block {
	out := make([]block, 0, len(pairs)/2)
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, block{netip.MustParsePrefix(pairs[i]), pairs[i+1]})
	}
	return out
}

// v4Blocks: IANA IPv4 Special-Purpose Address Registry entries that are not
// globally reachable, plus multicast and class E. Order matters only where
// blocks nest (broadcast before reserved).
var v4Blocks = mustBlocks(
	"0.0.0.0/32", ReasonUnspecified,
	"0.0.0.0/8", ReasonThisNetwork, // RFC 791
	"10.0.0.0/8", ReasonPrivate, // RFC 1918
	"100.64.0.0/10", ReasonCGNAT, // RFC 6598
	"127.0.0.0/8", ReasonLoopback, // RFC 1122
	"169.254.0.0/16", ReasonLinkLocal, // RFC 3927
	"172.16.0.0/12", ReasonPrivate, // RFC 1918
	"192.0.0.0/24", ReasonIETFProtocol, // RFC 6890 (whole block refused)
	"192.0.2.0/24", ReasonDocumentation, // RFC 5737 TEST-NET-1
	"192.88.99.0/24", Reason6to4Relay, // RFC 7526 (deprecated)
	"192.168.0.0/16", ReasonPrivate, // RFC 1918
	"198.18.0.0/15", ReasonBenchmarking, // RFC 2544
	"198.51.100.0/24", ReasonDocumentation, // RFC 5737 TEST-NET-2
	"203.0.113.0/24", ReasonDocumentation, // RFC 5737 TEST-NET-3
	"224.0.0.0/4", ReasonMulticast, // RFC 5771
	"255.255.255.255/32", ReasonBroadcast, // RFC 919
	"240.0.0.0/4", ReasonReserved, // RFC 1112 class E
)

// v6Blocks: IANA IPv6 Special-Purpose Address Registry entries that are not
// handled by the transition decoders in reason6, plus the non-unicast
// architecture blocks (RFC 4291).
var v6Blocks = mustBlocks(
	"64:ff9b:1::/48", ReasonNAT64Local, // RFC 8215: local-use, never global
	"100::/64", ReasonDiscard, // RFC 6666
	"2001:10::/28", ReasonORCHID, // RFC 4843 (deprecated ORCHID)
	"2001:20::/28", ReasonORCHID, // RFC 7343 ORCHIDv2: identifiers, not locators
	"2001:db8::/32", ReasonDocumentation, // RFC 3849
	"2001::/23", ReasonIETFProtocol, // RFC 2928 (whole block refused)
	"3fff::/20", ReasonDocumentation, // RFC 9637
	"5f00::/16", ReasonSRv6, // RFC 9602
	"fc00::/7", ReasonULA, // RFC 4193
	"fe80::/10", ReasonLinkLocal, // RFC 4291
	"fec0::/10", ReasonSiteLocal, // RFC 3879 (deprecated)
	"ff00::/8", ReasonMulticast, // RFC 4291
)

var (
	nat64WKP  = netip.MustParsePrefix("64:ff9b::/96") // RFC 6052 well-known prefix
	sixToFour = netip.MustParsePrefix("2002::/16")    // RFC 3056
	teredo    = netip.MustParsePrefix("2001::/32")    // RFC 4380
	v4Compat  = netip.MustParsePrefix("::/96")        // RFC 4291 §2.5.5.1 (deprecated)
	global6   = netip.MustParsePrefix("2000::/3")     // RFC 4291 global unicast
)

// IsPublic reports whether ip may be used as an upstream destination.
func IsPublic(ip netip.Addr) bool { return Reason(ip) == "" }

// Reason returns "" when ip is public, else a short stable reason such as
// "loopback", "private", "cgnat", or, for an IPv6 form that embeds a
// non-public IPv4 address, "<form>-embedded-<reason>" (e.g.
// "nat64-embedded-private", "6to4-embedded-loopback",
// "ipv4-mapped-embedded-link-local").
func Reason(ip netip.Addr) string {
	if !ip.IsValid() {
		return ReasonInvalid
	}
	if ip.Zone() != "" {
		// A zone only makes sense for link-local scopes; never a public
		// destination.
		return ReasonZoned
	}
	if ip.Is4() {
		return reason4(ip)
	}
	return reason6(ip)
}

func reason4(ip netip.Addr) string {
	for _, b := range v4Blocks {
		if b.p.Contains(ip) {
			return b.reason
		}
	}
	return ""
}

func reason6(ip netip.Addr) string {
	switch {
	case ip == netip.IPv6Unspecified():
		return ReasonUnspecified
	case ip == netip.IPv6Loopback():
		return ReasonLoopback
	case ip.Is4In6(): // ::ffff:a.b.c.d — the IPv4 address itself on a dual-stack socket
		return embedded("ipv4-mapped", ip.Unmap())
	case nat64WKP.Contains(ip): // RFC 6052 §2.2: IPv4 in the last 32 bits
		return embedded("nat64", last32(ip))
	case v4Compat.Contains(ip):
		// Deprecated; refused whatever it embeds, but say what it embeds.
		if r := reason4(last32(ip)); r != "" {
			return ReasonIPv4Compatible + "-embedded-" + r
		}
		return ReasonIPv4Compatible
	case sixToFour.Contains(ip): // RFC 3056 §2: 2002:AABB:CCDD::/48
		b := ip.As16()
		return embedded("6to4", netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}))
	case teredo.Contains(ip):
		// RFC 4380 §4: server IPv4 in bits 32-63, client IPv4 inverted in
		// the last 32 bits. Teredo is refused whatever it embeds (a
		// tunnel endpoint is no place for an upstream), but the reason
		// names a non-public embedded client or server.
		b := ip.As16()
		client := netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]})
		server := netip.AddrFrom4([4]byte{b[4], b[5], b[6], b[7]})
		if r := reason4(client); r != "" {
			return ReasonTeredo + "-embedded-" + r
		}
		if r := reason4(server); r != "" {
			return ReasonTeredo + "-embedded-" + r
		}
		return ReasonTeredo
	}
	for _, b := range v6Blocks {
		if b.p.Contains(ip) {
			return b.reason
		}
	}
	if !global6.Contains(ip) {
		return ReasonReserved
	}
	return ""
}

func last32(ip netip.Addr) netip.Addr {
	b := ip.As16()
	return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
}

func embedded(form string, v4 netip.Addr) string {
	if r := reason4(v4); r != "" {
		return form + "-embedded-" + r
	}
	return ""
}
