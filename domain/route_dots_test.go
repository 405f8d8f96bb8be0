package domain

import (
	"net/url"
	"testing"
)

// TestHasDotSegment: every spelling of a dot segment that a server may
// decode into one is found; ordinary paths, including dotted names and
// encoded characters that cannot form a dot segment, are not.
func TestHasDotSegment(t *testing.T) {
	cases := []struct {
		path string
		want bool
	}{
		// Ordinary paths.
		{"", false},
		{"/", false},
		{"/mcp", false},
		{"/v1.0/mcp", false},
		{"/a/.well-known/b", false},
		{"/a/.../b", true}, // Windows/IIS: trailing dots dropped
		{"/a/b.c./d", false},
		{"/a/.b/c", false},
		{"/a/x%20y/c", false},
		{"/a/%c3%a9t%c3%a9/c", false}, // é: ordinary UTF-8 stays fine
		{"/a/..b/c", false},
		{"/a/b../c", false},
		{"/a/file%2ejson", false},
		{"/a/%2e%2e%2e", true},
		{"/group%2Fproject/mcp", false},
		{"/a%20b/c", false},
		{"/100%/mcp", false},    // a literal percent starts no escape
		{"/a%zz/mcp", false},    // nor does an invalid one
		{"/a%252/mcp", false},   // decodes to "%2", still no dot
		{"/a/%252ejson", false}, // decodes to ".json"
		{"/a;x/b", false},

		// Spellings some servers resolve as dot segments.
		{"/a/..%20/b", true},
		{"/a/.%20./b", true},
		{"/a/..%00x/b", true},
		{"/a/%c0%ae%c0%ae/b", true},       // overlong UTF-8
		{"/a/%e0%80%ae%e0%80%ae/b", true}, // overlong, 3 bytes
		{"/a/%ef%bc%8e%ef%bc%8e/b", true}, // fullwidth full stop
		{"/a/%e2%80%a4%e2%80%a4/b", true}, // one dot leader
		{"/a/%25c0%25ae%25c0%25ae/b", true},
		{"/a/b%09/c", true}, // control byte

		// Literal dot segments.
		{"/a/../admin", true},
		{"/a/./b", true},
		{"/..", true},
		{"/a/..", true},
		{"..", true},
		{"/a/../", true},

		// Fully encoded, either case.
		{"/a/%2e%2e/admin", true},
		{"/a/%2E%2E/admin", true},
		{"/a/%2e%2E/admin", true},
		{"/a/%2E%2e/admin", true},
		{"/a/%2e/b", true},
		{"/a/%2E/b", true},
		{"/a/%2e%2e", true},

		// Mixed literal and encoded dots.
		{"/a/.%2e/admin", true},
		{"/a/.%2E/admin", true},
		{"/a/%2e./admin", true},
		{"/a/%2E./admin", true},
		{"/a/.%2e", true},
		{"/a/%2E.", true},

		// Next to encoded or literal separators.
		{"/a/..%2fadmin", true},
		{"/a/..%2Fadmin", true},
		{"/a/%2e%2e%2fadmin", true},
		{"/a%2f..%2fadmin", true},
		{"/a/..%5cadmin", true},
		{"/a/%5C..%5Cadmin", true},
		{"/a\\..\\admin", true},

		// Path parameters.
		{"/a/..;x/admin", true},
		{"/a/.;/b", true},
		{"/a/%2e%2e;x/admin", true},
		{"/a/..%3bx/admin", true},

		// Encoded more than once.
		{"/a/%252e%252e/admin", true},
		{"/a/%252E%252E/admin", true},
		{"/a/.%252e/admin", true},
		{"/a/%25252e%25252e/admin", true},
		{"/a/..%252fadmin", true},
		// Still decoding after maxPathDecodes rounds: refused.
		{"/a/%2525252525/b", true},
	}
	for _, c := range cases {
		if got := HasDotSegment(c.path); got != c.want {
			t.Errorf("HasDotSegment(%q) = %v, want %v", c.path, got, c.want)
		}
	}
}

// FuzzHasDotSegment: a path HasDotSegment accepts shows no dot segment
// however many times a server decodes it (checked with the standard
// library's decoder, not ours).
func FuzzHasDotSegment(f *testing.F) {
	for _, s := range []string{"/mcp", "/a/%2e%2e/b", "/a/.%2E/b", "/a/%252e./b", "/a/..%2f", "/a%zz/%2", "/a;b/..;c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if HasDotSegment(p) {
			return
		}
		q := p
		for range 8 {
			if hasPlainDotSegment(q) {
				t.Fatalf("HasDotSegment(%q) = false, but it decodes to %q", p, q)
			}
			d, err := url.PathUnescape(q)
			if err != nil || d == q {
				return
			}
			q = d
		}
	})
}
