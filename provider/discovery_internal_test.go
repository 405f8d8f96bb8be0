package provider

import (
	"errors"
	"net/netip"
	"testing"

	"mcpgw/domain/addrpolicy"
)

func TestParseChallenge(t *testing.T) {
	cases := []struct {
		name string
		in   []string
		want challenge
		ok   bool
	}{
		{"go-sdk form", []string{`Bearer resource_metadata="https://a.example/.well-known/oauth-protected-resource/mcp", scope="files:read files:write"`},
			challenge{ResourceMetadata: "https://a.example/.well-known/oauth-protected-resource/mcp", Scope: "files:read files:write"}, true},
		{"token values and error", []string{`Bearer error=invalid_token, scope=read`}, challenge{Scope: "read", Error: "invalid_token"}, true},
		{"case-insensitive scheme and names", []string{`bearer Resource_Metadata="https://x/y"`}, challenge{ResourceMetadata: "https://x/y"}, true},
		{"escaped quote", []string{`Bearer scope="a\"b"`}, challenge{Scope: `a"b`}, true},
		{"Basic first then Bearer", []string{`Basic realm="x", Bearer scope="s"`}, challenge{Scope: "s"}, true},
		{"Bearer params not taken from a later scheme", []string{`Bearer scope="s", DPoP algs="ES256", scope="other"`}, challenge{Scope: "s"}, true},
		{"second header value", []string{`Basic realm="x"`, `Bearer scope="s2"`}, challenge{Scope: "s2"}, true},
		{"no bearer", []string{`Basic realm="x"`}, challenge{}, false},
		{"unterminated quote", []string{`Bearer scope="abc`}, challenge{}, true},
		{"empty", nil, challenge{}, false},
		{"bare Bearer", []string{`Bearer`}, challenge{}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseChallenges(tc.in)
			if ok != tc.ok || got != tc.want {
				t.Fatalf("got %+v %v, want %+v %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func FuzzParseChallenge(f *testing.F) {
	f.Add(`Bearer resource_metadata="https://a/b", scope="x y"`)
	f.Add(`Basic realm="x", Bearer error="invalid_token"`)
	f.Add(`Bearer scope="a\"`)
	f.Fuzz(func(t *testing.T, s string) {
		c, _ := parseChallenge(s)
		if len(c.Scope) > len(s) || len(c.ResourceMetadata) > len(s) || len(c.Error) > len(s) {
			t.Fatal("parsed value longer than input")
		}
	})
}

func TestResourceMatches(t *testing.T) {
	cases := []struct {
		resource, remote string
		want             bool
	}{
		{"https://a.example/mcp", "https://a.example/mcp", true},
		{"https://a.example", "https://a.example/mcp", true},
		{"https://a.example/", "https://a.example/mcp", true},
		{"https://A.example/mcp", "https://a.example/mcp", true},
		{"https://a.example/mc", "https://a.example/mcp", false},
		{"https://a.example/mcp/x", "https://a.example/mcp", false},
		{"https://b.example/mcp", "https://a.example/mcp", false},
		{"http://a.example/mcp", "https://a.example/mcp", false},
		{"https://a.example:8443/mcp", "https://a.example/mcp", false},
		{"https://a.example/?x=1", "https://a.example/mcp", false},
	}
	for _, tc := range cases {
		if got := resourceMatches(tc.resource, tc.remote); got != tc.want {
			t.Errorf("resourceMatches(%q, %q) = %v", tc.resource, tc.remote, got)
		}
	}
}

// TestCheckURL: the scheme rule (https, http only for allowlisted
// hosts/addresses) and literal non-public addresses in any spelling are
// refused before any connection.
func TestCheckURL(t *testing.T) {
	dev := addrpolicy.Allowlist{Hosts: []string{"localhost"}, Prefixes: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}}
	cases := []struct {
		url    string
		allow  addrpolicy.Allowlist
		reason string // "" = accepted
	}{
		{"https://as.example.com/token", addrpolicy.Allowlist{}, ""},
		{"http://as.example.com/token", addrpolicy.Allowlist{}, ReasonSchemeNotAllowed},
		{"http://localhost:8080/token", dev, ""},
		{"http://localhost:8080/token", addrpolicy.Allowlist{}, ReasonSchemeNotAllowed},
		{"http://10.1.2.3/token", dev, ""},
		{"ftp://as.example.com/x", dev, ReasonSchemeNotAllowed},
		{"https://127.0.0.1/token", addrpolicy.Allowlist{}, ReasonAddressNotPublic},
		{"https://127.0.0.1/token", dev, ReasonAddressNotPublic},
		{"https://169.254.169.254/latest/meta-data", dev, ReasonAddressNotPublic},
		{"https://2130706433/token", addrpolicy.Allowlist{}, ReasonAddressNotPublic},
		{"https://0x7f.1/token", addrpolicy.Allowlist{}, ReasonAddressNotPublic},
		{"https://[::1]/token", addrpolicy.Allowlist{}, ReasonAddressNotPublic},
		{"https://[::ffff:169.254.169.254]/", addrpolicy.Allowlist{}, ReasonAddressNotPublic},
		{"https://10.0.0.1/", addrpolicy.Allowlist{}, ReasonAddressNotPublic},
		{"https://user:pw@as.example.com/", addrpolicy.Allowlist{}, ReasonBadURL},
		{"https://as.example.com/#frag", addrpolicy.Allowlist{}, ReasonBadURL},
		{"/relative", addrpolicy.Allowlist{}, ReasonBadURL},
	}
	for _, tc := range cases {
		f := newFetcher(tc.allow, nil, nil, DefaultTimeout, DefaultMaxBytes)
		_, err := f.checkURL(tc.url)
		got := ""
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("%s: untyped error %v", tc.url, err)
			}
			got = e.Reason
		}
		if got != tc.reason {
			t.Errorf("checkURL(%q) = %q, want %q", tc.url, got, tc.reason)
		}
	}
}

func TestSanitizeOAuthError(t *testing.T) {
	for in, want := range map[string]string{"": "", "invalid_grant": "invalid_grant", "<script>": "other", "upstream-at-secret": "other"} {
		if got := sanitizeOAuthError(in); got != want {
			t.Errorf("%q → %q", in, got)
		}
	}
}
