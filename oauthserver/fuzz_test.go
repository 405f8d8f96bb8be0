package oauthserver

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzRedirectURI: whatever validateRedirectURI accepts is an absolute
// https URL, or http on a loopback host, without fragment or userinfo; and
// its CSP source expression can never end the form-action directive.
func FuzzRedirectURI(f *testing.F) {
	for _, s := range []string{testRedirect, "https://app.example/cb", "http://evil.example/cb", "https://a/b#c",
		"javascript:alert(1)", "http://localhost:1/x;y", "https://u:p@h/x", "http://[::1]:9/cb", "http://127.0.0.1.nip.io/cb",
		"https://h/a b", "https://h/'", "http://0x7f.1/cb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		loop, e := validateRedirectURI(raw)
		if e != nil {
			return
		}
		u, err := url.Parse(raw)
		if err != nil || u.Fragment != "" || strings.Contains(raw, "#") || u.User != nil || u.Host == "" {
			t.Fatalf("accepted %q", raw)
		}
		if u.Scheme != "https" && !(u.Scheme == "http" && loop && isLoopbackHost(u.Hostname())) {
			t.Fatalf("accepted non-https %q", raw)
		}
		src := cspSource(raw)
		if strings.ContainsAny(src, "; ,'\t\n\r") {
			t.Fatalf("CSP source %q from %q", src, raw)
		}
	})
}

// FuzzCIMDURL: an accepted Client ID Metadata Document URL is https with a
// non-root path and no query, fragment, userinfo or dot segments.
func FuzzCIMDURL(f *testing.F) {
	for _, s := range []string{"https://app.example/client.json", "https://app.example/", "https://app.example",
		"http://app.example/c", "https://app.example/a/../b", "https://app.example/c?x=1", "https://u@app.example/c",
		"https://app.example/%2e%2e/c", "https://app.example/c#f", "https://app.example/.%2E/c", "https://app.example/%252e%252e/c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if !validCIMDURL(raw) {
			return
		}
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.Path == "" || u.Path == "/" || u.RawQuery != "" ||
			u.Fragment != "" || u.User != nil || strings.Contains(u.Path, "/../") || strings.HasSuffix(u.Path, "/..") {
			t.Fatalf("accepted %q", raw)
		}
	})
}

// TestCIMDURLDotSegments: every spelling of a dot segment in a client_id
// metadata URL is refused (same rule as remote_url, domain.HasDotSegment);
// look-alikes that are not segments stay accepted.
func TestCIMDURLDotSegments(t *testing.T) {
	for _, c := range []struct {
		path string
		ok   bool
	}{
		{"/a/../c.json", false}, {"/a/./c.json", false}, {"/%2e%2e/c.json", false}, {"/.%2E/c.json", false},
		{"/%2e./c.json", false}, {"/%2E/c.json", false}, {"/%252e%252e/c.json", false}, {"/a/..%2fb/c.json", false}, {"/.../c.json", false}, {"/%c0%ae%c0%ae/c.json", false},
		{"/v1.0/c.json", true}, {"/.well-known/c.json", true}, {"/file%2ejson", true},
	} {
		if got := validCIMDURL("https://app.example" + c.path); got != c.ok {
			t.Errorf("validCIMDURL(%q) = %v, want %v", c.path, got, c.ok)
		}
	}
}
