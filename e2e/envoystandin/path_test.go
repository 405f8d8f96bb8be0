package envoystandin

import (
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestCanonicalPath(t *testing.T) {
	cases := []struct {
		in, want string
		bad      bool
	}{
		{in: "/", want: "/"},
		{in: "/a/b/c", want: "/a/b/c"},
		{in: "/a/./b", want: "/a/b"},
		{in: "/a/../b", want: "/b"},
		{in: "/../../a", want: "/a"},
		{in: "/a/b/..", want: "/a/"},
		{in: "/a/b/.", want: "/a/b/"},
		{in: "/a/%2e%2e/b", want: "/b"},
		{in: "/a/%2E/b", want: "/a/b"},
		{in: "/a/.%2e/b", want: "/b"},
		{in: "/%41%62%7e%2d", want: "/Ab~-"},
		{in: "/a%3fb%2fc", want: "/a%3fb%2fc"}, // kept escapes are copied exactly
		{in: "/a^b|c", want: "/a%5Eb%7Cc"},
		{in: "/a b", want: "/a%20b"},
		{in: "/a\\b", want: "/a/b"},
		{in: "/a/\\../b", want: "/a/b"},
		{in: "/%zz", want: "/%zz"},
		{in: "/a..b/..c", want: "/a..b/..c"},
		{in: "/a/b/..;jsessionid=1/c", want: "/a/c"},
		{in: "/a/.;x/c", want: "/a/c"},
		// An invalid '%' that a decoded character turns into a valid
		// escape is itself escaped, so nothing decodes further upstream.
		{in: "/%7%41", want: "/%257A"},
		{in: "/%2%65%2%65/x", want: "/%252e%252e/x"},
		{in: "/%%32%65", want: "/%252e"},
		{in: "/%%41B", want: "/%25AB"},
		{in: "/%zz%41", want: "/%zzA"},
		{in: "/a%00b", bad: true},
		{in: "relative", bad: true},
	}
	for _, c := range cases {
		got, err := canonicalPath(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("canonicalPath(%q) = %q, want error", c.in, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("canonicalPath(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestMergeSlashesAndEscapes(t *testing.T) {
	for in, want := range map[string]string{"//a///b/": "/a/b/", "/a/b": "/a/b", "///": "/"} {
		if got := mergeSlashes(in); got != want {
			t.Errorf("mergeSlashes(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]bool{"/a%2Fb": true, "/a%2fb": true, "/a%5Cb": true, "/a%5cb": true, "/a%25b": false, "/a/b": false, "/a%2": false} {
		if got := hasEscapedSlash(in); got != want {
			t.Errorf("hasEscapedSlash(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestRouteMatching(t *testing.T) {
	r := func(k matchKind, v string, cs bool) *route { return &route{kind: k, value: v, caseSens: cs} }
	cases := []struct {
		r    *route
		path string
		want bool
	}{
		{r(matchPath, "/a/b", true), "/a/b", true},
		{r(matchPath, "/a/b", true), "/a/b/", false},
		{r(matchPath, "/a/b", true), "/A/b", false},
		{r(matchPath, "/a/b", false), "/A/B", true},
		{r(matchPrefix, "/a", true), "/ab", true},
		{r(matchPrefix, "/a/", true), "/a", false},
		{r(matchPathSeparatedPrefix, "/a", true), "/a", true},
		{r(matchPathSeparatedPrefix, "/a", true), "/a/", true},
		{r(matchPathSeparatedPrefix, "/a", true), "/a/b", true},
		{r(matchPathSeparatedPrefix, "/a", true), "/ab", false},
		{r(matchPathSeparatedPrefix, "/a", false), "/A/b", true},
	}
	for _, c := range cases {
		if got := c.r.matches(c.path); got != c.want {
			t.Errorf("%s %q matches %q = %v, want %v", c.r.kind, c.r.value, c.path, got, c.want)
		}
	}

	rt := &routeTable{vhosts: []*virtualHost{
		{name: "exact", domains: []string{"api.example.com", "api.example.com:8080"}},
		{name: "suffix", domains: []string{"*.example.com"}},
		{name: "longsuffix", domains: []string{"*.b.example.com"}},
		{name: "prefix", domains: []string{"api.*"}},
		{name: "star", domains: []string{"*"}},
	}}
	for host, want := range map[string]string{
		"api.example.com":      "exact",
		"API.example.com":      "exact",
		"api.example.com:8080": "exact",
		"api.example.com:9":    "prefix", // the port is part of the host
		"x.example.com":        "suffix",
		"a.b.example.com":      "longsuffix",
		"api.other":            "prefix",
		"other":                "star",
	} {
		if vh := rt.selectVirtualHost(host); vh == nil || vh.name != want {
			t.Errorf("host %q → %v, want %s", host, vh, want)
		}
	}
}

func TestRewritePath(t *testing.T) {
	cases := []struct {
		r    *route
		in   string
		want string
	}{
		{&route{kind: matchPath, value: "/mcp/x", action: &routeAction{prefixRewrite: "/v1/mcp", hasPrefixRewrite: true}}, "/mcp/x", "/v1/mcp"},
		{&route{kind: matchPathSeparatedPrefix, value: "/mcp/x", action: &routeAction{prefixRewrite: "/v1", hasPrefixRewrite: true}}, "/mcp/x/tools", "/v1/tools"},
		{&route{kind: matchPrefix, value: "/p", action: &routeAction{}}, "/p/q", "/p/q"},
	}
	for _, c := range cases {
		if got := c.r.rewritePath(c.in); got != c.want {
			t.Errorf("rewrite %q = %q, want %q", c.in, got, c.want)
		}
	}
	if got := envoySubstitution(`/a/\1/\\/$x`); got != `/a/${1}/\/$$x` {
		t.Errorf("envoySubstitution = %q", got)
	}
}

func TestHeaderValueOption(t *testing.T) {
	opt := func(k, v string, a corev3.HeaderValueOption_HeaderAppendAction, legacy *wrapperspb.BoolValue) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: a, Append: legacy}
	}
	cases := []struct {
		name string
		o    *corev3.HeaderValueOption
		want []string // values of "x" after applying to x: [old]
	}{
		{"default appends another value", opt("x", "new", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD, nil), []string{"old", "new"}},
		{"add if absent keeps", opt("X", "new", corev3.HeaderValueOption_ADD_IF_ABSENT, nil), []string{"old"}},
		{"overwrite or add", opt("x", "new", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD, nil), []string{"new"}},
		{"overwrite if exists", opt("x", "new", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS, nil), []string{"new"}},
		{"legacy append true joins", opt("x", "new", 0, wrapperspb.Bool(true)), []string{"old,new"}},
		{"legacy append false sets", opt("x", "new", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD, wrapperspb.Bool(false)), []string{"new"}},
	}
	for _, c := range cases {
		h := headerList{{"x", "old"}, {"y", "1"}}
		h.applyOption(c.o)
		var got []string
		for _, e := range h {
			if e.k == "x" {
				got = append(got, e.v)
			}
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: x = %q, want %q", c.name, got, c.want)
		}
	}
	h := headerList{{"y", "1"}}
	h.applyOption(opt("x", "v", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS, nil))
	if h.has("x") {
		t.Error("OVERWRITE_IF_EXISTS added an absent header")
	}
	if m := (headerList{{"a", "1"}, {"a", "2"}, {"b", "3"}}).merged(); m["a"] != "1,2" || m["b"] != "3" {
		t.Errorf("merged = %v", m)
	}
}

// FuzzCanonicalPath: normalization never panics, keeps an absolute path,
// leaves no dot segment (plain or percent-encoded) and is idempotent, so a
// path extauthz sees is the path that is routed and forwarded.
func FuzzCanonicalPath(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "/%2e%2E/x", "/a\\..\\b", "/..;x/y", "/%2e%2e;x/y", "/a b/%41", "//a//b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := canonicalPath(in)
		if err != nil {
			return
		}
		if !strings.HasPrefix(out, "/") {
			t.Fatalf("canonicalPath(%q) = %q: not absolute", in, out)
		}
		for _, seg := range strings.Split(out, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("canonicalPath(%q) = %q: dot segment left", in, out)
			}
		}
		// Envoy strips ";params" from literal dot segments before decoding,
		// so "%2e%2e;x" survives one pass as "..;x" (as in Envoy); only
		// inputs without ';' must be idempotent.
		if strings.Contains(in, ";") {
			return
		}
		again, err := canonicalPath(out)
		if err != nil || again != out {
			t.Fatalf("not idempotent: %q → %q → %q (%v)", in, out, again, err)
		}
		if m := mergeSlashes(out); strings.Contains(m, "//") {
			t.Fatalf("mergeSlashes(%q) = %q", out, m)
		}
	})
}
