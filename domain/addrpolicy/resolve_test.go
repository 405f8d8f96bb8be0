package addrpolicy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestParseHostLiteral(t *testing.T) {
	cases := []struct {
		host string
		want string // "" = not a literal
	}{
		{"127.0.0.1", "127.0.0.1"},
		{"2130706433", "127.0.0.1"},
		{"0177.0.0.1", "127.0.0.1"},
		{"0x7f.1", "127.0.0.1"},
		{"0x7f000001", "127.0.0.1"},
		{"127.1", "127.0.0.1"},
		{"127.0.1", "127.0.0.1"},
		{"0x7F.0.0.0x1", "127.0.0.1"},
		{"017700000001", "127.0.0.1"},
		{"10.0.0.1.", "10.0.0.1"},
		{"169.254.43518", "169.254.169.254"},
		{"0", "0.0.0.0"},
		{"0x", "0.0.0.0"},
		{"[::1]", "::1"},
		{"::1", "::1"},
		{"[::ffff:7f00:1]", "::ffff:127.0.0.1"},
		{"fe80::1%eth0", "fe80::1%eth0"},
		{"8.8.8.8", "8.8.8.8"},
		{"example.com", ""},
		{"1.2.3.256", ""},
		{"256.1.1.1", ""},
		{"1.2.3.4.5", ""},
		{"4294967296", ""},
		{"08.0.0.1", ""}, // 8 is not octal
		{"0xg.1", ""},
		{"", ""},
		{"[127.0.0.1]", ""},
		{"1..1", ""},
	}
	for _, c := range cases {
		ip, ok := ParseHostLiteral(c.host)
		if c.want == "" {
			if ok {
				t.Errorf("ParseHostLiteral(%q) = %v, want not a literal", c.host, ip)
			}
			continue
		}
		if !ok || ip.String() != c.want {
			t.Errorf("ParseHostLiteral(%q) = %v, %v; want %s", c.host, ip, ok, c.want)
		}
	}
}

type fakeResolver map[string][]string

func (f fakeResolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	if network != "ip" {
		return nil, errors.New("unexpected network " + network)
	}
	v, ok := f[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []netip.Addr
	for _, s := range v {
		out = append(out, netip.MustParseAddr(s))
	}
	return out, nil
}

func TestResolvePublic(t *testing.T) {
	r := fakeResolver{
		"public.example":    {"8.8.8.8", "2606:4700::1111"},
		"mixed.example":     {"8.8.8.8", "10.0.0.1"},
		"aaaa-bad.example":  {"1.1.1.1", "::1"},
		"mapped.example":    {"::ffff:192.168.0.1"},
		"dup.example":       {"1.1.1.1", "1.1.1.1"},
		"empty.example":     {},
		"localhost":         {"127.0.0.1", "::1"},
		"lab.example":       {"10.9.0.5"},
		"metadata.internal": {"169.254.169.254"},
	}
	allow := Allowlist{Hosts: []string{"LOCALHOST."}, Prefixes: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/24")}}
	cases := []struct {
		host   string
		allow  Allowlist
		want   []string
		reason string // expected NotPublicError reason
		err    error
	}{
		{host: "public.example", want: []string{"8.8.8.8", "2606:4700::1111"}},
		{host: "dup.example", want: []string{"1.1.1.1"}},
		{host: "mixed.example", reason: ReasonPrivate},
		{host: "aaaa-bad.example", reason: ReasonLoopback},
		{host: "mapped.example", reason: "ipv4-mapped-embedded-private"},
		{host: "metadata.internal", reason: ReasonLinkLocal},
		{host: "empty.example", err: ErrResolve},
		{host: "nope.example", err: ErrResolve},
		{host: "localhost", reason: ReasonLoopback},
		{host: "localhost", allow: allow, want: []string{"127.0.0.1", "::1"}},
		{host: "lab.example", allow: allow, want: []string{"10.9.0.5"}},
		{host: "lab.example", reason: ReasonPrivate},
		{host: "127.0.0.1", reason: ReasonLoopback},
		{host: "2130706433", reason: ReasonLoopback},
		{host: "0x7f.1", reason: ReasonLoopback},
		{host: "[::1]", reason: ReasonLoopback},
		{host: "8.8.8.8", want: []string{"8.8.8.8"}},
		{host: "[2606:4700::1111]", want: []string{"2606:4700::1111"}},
		{host: "1.2.3.999", err: ErrResolve},
		{host: "foo.0x10", err: ErrResolve},
		{host: "", err: ErrResolve},
	}
	for _, c := range cases {
		t.Run(c.host, func(t *testing.T) {
			got, err := ResolvePublic(context.Background(), r, c.host, c.allow)
			switch {
			case c.reason != "":
				var npe *NotPublicError
				if !errors.As(err, &npe) || npe.Reason != c.reason || !errors.Is(err, ErrNotPublic) {
					t.Fatalf("err = %v, want reason %q", err, c.reason)
				}
				if _, lit := ParseHostLiteral(c.host); !lit && strings.Contains(err.Error(), npe.Addr.String()) {
					t.Fatalf("error message leaks the address: %v", err)
				}
			case c.err != nil:
				if !errors.Is(err, c.err) {
					t.Fatalf("err = %v, want %v", err, c.err)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				var gs []string
				for _, a := range got {
					gs = append(gs, a.String())
				}
				if strings.Join(gs, ",") != strings.Join(c.want, ",") {
					t.Fatalf("got %v want %v", gs, c.want)
				}
			}
		})
	}
}

func TestAllowlistZeroValue(t *testing.T) {
	var a Allowlist
	if a.AllowsAddr(netip.MustParseAddr("127.0.0.1")) || a.AllowsHost("localhost") || a.AllowsHost("") || !a.Empty() {
		t.Fatal("zero Allowlist allows something")
	}
	b := Allowlist{Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	if !b.AllowsAddr(netip.MustParseAddr("::ffff:127.0.0.1")) {
		t.Fatal("mapped form of an allowlisted IPv4 not allowed")
	}
	if b.AllowsAddr(netip.Addr{}) {
		t.Fatal("invalid addr allowed")
	}
}

func TestCheckAddrsNoAddresses(t *testing.T) {
	if err := CheckAddrs("x", nil, Allowlist{Hosts: []string{"x"}}); !errors.Is(err, ErrResolve) {
		t.Fatalf("got %v", err)
	}
}

// TestSafeDialContext dials a real loopback listener: refused without an
// allowlist (before any connection is made), accepted with one.
func TestSafeDialContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			io.WriteString(c, "hi")
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	r := fakeResolver{"svc.test": {"127.0.0.1"}, "rebind.test": {"8.8.8.8", "127.0.0.1"}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	deny := SafeDialContext(r, Allowlist{}, nil)
	for _, addr := range []string{"svc.test", "rebind.test", "127.0.0.1", "2130706433", "[::1]"} {
		_, err := deny(ctx, "tcp", net.JoinHostPort(strings.Trim(addr, "[]"), itoa(port)))
		if !errors.Is(err, ErrNotPublic) {
			t.Errorf("%s: err = %v, want ErrNotPublic", addr, err)
		}
	}
	if _, err := deny(ctx, "udp", "8.8.8.8:53"); err == nil {
		t.Error("udp allowed")
	}
	if _, err := deny(ctx, "tcp", "8.8.8.8"); err == nil {
		t.Error("missing port allowed")
	}
	select {
	case <-accepted:
		t.Fatal("a refused dial reached the listener")
	default:
	}

	allow := SafeDialContext(r, Allowlist{Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, &net.Dialer{Timeout: 5 * time.Second})
	c, err := allow(ctx, "tcp", net.JoinHostPort("svc.test", itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(c)
	c.Close()
	if string(b) != "hi" {
		t.Fatalf("read %q", b)
	}
	if _, err := allow(ctx, "tcp6", net.JoinHostPort("svc.test", itoa(port))); !errors.Is(err, ErrResolve) {
		t.Fatalf("tcp6 with only IPv4 answers: %v", err)
	}

	// An allowlisted host dials although its address is not allowlisted;
	// another host with the same address does not.
	byHost := SafeDialContext(r, Allowlist{Hosts: []string{"svc.test"}}, nil)
	c, err = byHost(ctx, "tcp", net.JoinHostPort("svc.test", itoa(port)))
	if err != nil {
		t.Fatalf("allowlisted host: %v", err)
	}
	c.Close()
	if _, err := byHost(ctx, "tcp", net.JoinHostPort("127.0.0.1", itoa(port))); !errors.Is(err, ErrNotPublic) {
		t.Fatalf("literal loopback with host allowlist: %v", err)
	}
}

func itoa(i int) string {
	return netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(i)).String()[len("0.0.0.0:"):]
}
