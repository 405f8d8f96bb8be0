package addrpolicy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrNotPublic matches every *NotPublicError.
var ErrNotPublic = errors.New("addrpolicy: non-public address")

// ErrResolve reports that a host could not be resolved (or resolved to
// nothing, or is a malformed numeric host).
var ErrResolve = errors.New("addrpolicy: cannot resolve host")

// NotPublicError says which host resolved to a non-public address and why.
// Error() names the host and the reason but not the address: the message
// may reach the person who submitted the URL, and echoing internal
// addresses would turn config validation into a network scanner. Addr is
// there for server-side logs.
type NotPublicError struct {
	Host   string
	Addr   netip.Addr
	Reason string
}

func (e *NotPublicError) Error() string {
	if e.Host == "" {
		return "addrpolicy: refusing to connect to a non-public address (" + e.Reason + ")"
	}
	return fmt.Sprintf("addrpolicy: host %q resolves to a non-public address (%s)", e.Host, e.Reason)
}

// Is makes errors.Is(err, ErrNotPublic) true.
func (e *NotPublicError) Is(target error) bool { return target == ErrNotPublic }

// Allowlist is the explicit dev/test exception list (DESIGN §6): addresses
// inside Prefixes, and hosts named exactly in Hosts, are accepted although
// not public. The zero value allows nothing. Never configure it in
// production.
type Allowlist struct {
	Prefixes []netip.Prefix
	Hosts    []string
}

// AllowsAddr reports whether ip is inside an allowlisted prefix (an
// IPv4-mapped address is also checked as IPv4).
func (a Allowlist) AllowsAddr(ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	ip = ip.WithZone("")
	for _, p := range a.Prefixes {
		if p.Contains(ip) || (ip.Is4In6() && p.Contains(ip.Unmap())) {
			return true
		}
	}
	return false
}

// AllowsHost reports whether host is named in Hosts (case-insensitive, a
// trailing dot ignored, exact match — no wildcards).
func (a Allowlist) AllowsHost(host string) bool {
	h := normHost(host)
	if h == "" {
		return false
	}
	for _, x := range a.Hosts {
		if normHost(x) == h {
			return true
		}
	}
	return false
}

// Empty reports whether the allowlist allows nothing.
func (a Allowlist) Empty() bool { return len(a.Prefixes) == 0 && len(a.Hosts) == 0 }

func normHost(h string) string {
	h = strings.TrimSuffix(strings.TrimSpace(h), ".")
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	return strings.ToLower(h)
}

// CheckAddrs checks that every address a host resolved to (all A and AAAA
// answers) is public or allowlisted. One bad answer rejects the host: a
// resolver may hand any answer to the connecting client, so all of them
// must be safe. An allowlisted host is accepted whatever it resolves to.
// No addresses is an error (ErrResolve).
func CheckAddrs(host string, addrs []netip.Addr, allow Allowlist) error {
	if allow.AllowsHost(host) {
		if len(addrs) == 0 {
			return fmt.Errorf("%w: host %q has no addresses", ErrResolve, host)
		}
		return nil
	}
	if len(addrs) == 0 {
		return fmt.Errorf("%w: host %q has no addresses", ErrResolve, host)
	}
	for _, ip := range addrs {
		if allow.AllowsAddr(ip) {
			continue
		}
		if r := Reason(ip); r != "" {
			return &NotPublicError{Host: host, Addr: ip, Reason: r}
		}
	}
	return nil
}

// Resolver is the part of *net.Resolver that ResolvePublic needs; tests
// substitute fakes.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// ResolvePublic resolves host (A and AAAA) and returns its addresses only if
// every one passes CheckAddrs. A literal IP (including the legacy numeric
// IPv4 forms ParseHostLiteral recognises) is checked without DNS. A host
// whose last label is numeric but which is not a valid IPv4 literal (e.g.
// "1.2.3.999", "foo.0x10") is refused: URL parsers disagree about such
// hosts, and disagreement is where SSRF bypasses live. Duplicates are
// removed; order is kept.
func ResolvePublic(ctx context.Context, r Resolver, host string, allow Allowlist) ([]netip.Addr, error) {
	h := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if h == "" {
		return nil, fmt.Errorf("%w: empty host", ErrResolve)
	}
	if ip, ok := ParseHostLiteral(h); ok {
		addrs := []netip.Addr{ip}
		if err := CheckAddrs(host, addrs, allow); err != nil {
			return nil, err
		}
		return addrs, nil
	}
	if numericLastLabel(h) {
		return nil, fmt.Errorf("%w: host %q looks numeric but is not a valid IP address", ErrResolve, host)
	}
	if r == nil {
		r = net.DefaultResolver
	}
	addrs, err := r.LookupNetIP(ctx, "ip", h)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrResolve, host, err)
	}
	var out []netip.Addr
	for _, a := range addrs {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	if err := CheckAddrs(host, out, allow); err != nil {
		return nil, err
	}
	return out, nil
}

// ParseHostLiteral reports whether host (optionally in brackets, optionally
// with one trailing dot for IPv4) is an IP literal, including the legacy
// inet_aton IPv4 spellings that URL parsers and C resolvers accept:
// one to four dot-separated parts, each decimal, octal (leading 0) or hex
// (0x), the last part filling the remaining bytes — "2130706433",
// "0177.0.0.1", "0x7f.1", "127.1". Callers use it to reject hosts that are
// addresses in disguise, and to check literals without DNS.
func ParseHostLiteral(host string) (netip.Addr, bool) {
	h := host
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
		ip, err := netip.ParseAddr(h)
		if err != nil || !ip.Is6() {
			return netip.Addr{}, false
		}
		return ip, true
	}
	if ip, err := netip.ParseAddr(h); err == nil {
		return ip, true
	}
	return parseLegacyIPv4(strings.TrimSuffix(h, "."))
}

func parseLegacyIPv4(s string) (netip.Addr, bool) {
	if s == "" || len(s) > 64 {
		return netip.Addr{}, false
	}
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		v, ok := parseLegacyPart(p)
		if !ok {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	last := len(vals) - 1
	for i := 0; i < last; i++ {
		if vals[i] > 0xff {
			return netip.Addr{}, false
		}
	}
	if vals[last] >= 1<<(8*(4-last)) {
		return netip.Addr{}, false
	}
	var n uint64
	for i := 0; i < last; i++ {
		n |= vals[i] << (8 * (3 - i))
	}
	n |= vals[last]
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}

func parseLegacyPart(p string) (uint64, bool) {
	if p == "" {
		return 0, false
	}
	base := 10
	digits := p
	switch {
	case len(p) >= 2 && (p[:2] == "0x" || p[:2] == "0X"):
		base, digits = 16, p[2:]
		if digits == "" { // "0x" alone is 0 for inet_aton and WHATWG
			return 0, true
		}
	case len(p) > 1 && p[0] == '0':
		base, digits = 8, p[1:]
	}
	if len(digits) > 12 {
		return 0, false
	}
	v, err := strconv.ParseUint(digits, base, 64)
	if err != nil {
		return 0, false
	}
	return v, true
}

// numericLastLabel reports whether the last DNS label of h is all decimal
// digits or a 0x hex number — the WHATWG URL rule for "this host must be
// an IPv4 address".
func numericLastLabel(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if i := strings.LastIndexByte(h, '.'); i >= 0 {
		h = h[i+1:]
	}
	if h == "" {
		return false
	}
	if len(h) >= 2 && (h[:2] == "0x" || h[:2] == "0X") {
		for _, c := range h[2:] {
			if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
				return false
			}
		}
		return true
	}
	for _, c := range h {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// SafeDialContext returns a DialContext for http.Transport (and similar)
// that resolves the host with r, requires every answer to be public or
// allowlisted (ResolvePublic), and dials only the validated IPs, in order,
// until one connects. It also re-checks the socket's actual destination in
// the dialer's Control hook, so nothing the resolver or dialer does can
// reach a non-public address (except for a host the allowlist names). Only
// tcp, tcp4 and tcp6 are allowed. d may be nil (a 10 s connect timeout is
// used); d is copied, not modified.
//
// Pair it with an http.Transport whose Proxy is nil (a proxy would dial on
// our behalf, bypassing the check) and an http.Client that does not follow
// redirects, or follows them only through this same dialer.
func SafeDialContext(r Resolver, allow Allowlist, d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var base net.Dialer
	if d != nil {
		base = *d
	} else {
		base.Timeout = 10 * time.Second
	}
	// plain dials allowlisted hosts (dev/test), whose addresses are
	// accepted whatever they are; checked re-validates the destination.
	plain := base
	checked := base
	inner := base.Control
	checked.Control = func(network, address string, c syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("%w: unparsable dial address", ErrNotPublic)
		}
		ip := ap.Addr()
		if !allow.AllowsAddr(ip) {
			if r := Reason(ip); r != "" {
				return &NotPublicError{Host: "", Addr: ip, Reason: r}
			}
		}
		if inner != nil {
			return inner(network, address, c)
		}
		return nil
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		switch network {
		case "tcp", "tcp4", "tcp6":
		default:
			return nil, fmt.Errorf("addrpolicy: network %q not allowed", network)
		}
		host, portStr, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("addrpolicy: bad address: %w", err)
		}
		port, err := strconv.ParseUint(portStr, 10, 16)
		if err != nil || port == 0 {
			return nil, fmt.Errorf("addrpolicy: bad port in %q", addr)
		}
		ips, err := ResolvePublic(ctx, r, host, allow)
		if err != nil {
			return nil, err
		}
		d := &checked
		if allow.AllowsHost(host) {
			d = &plain
		}
		var firstErr error
		for _, ip := range ips {
			ip = ip.Unmap()
			if (network == "tcp4" && !ip.Is4()) || (network == "tcp6" && !ip.Is6()) {
				continue
			}
			conn, err := d.DialContext(ctx, network, netip.AddrPortFrom(ip, uint16(port)).String())
			if err == nil {
				return conn, nil
			}
			if firstErr == nil {
				firstErr = err
			}
			if ctx.Err() != nil {
				break
			}
		}
		if firstErr == nil {
			firstErr = fmt.Errorf("%w: host %q has no %s addresses", ErrResolve, host, network)
		}
		return nil, firstErr
	}
}
