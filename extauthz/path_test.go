package extauthz

import (
	"net/url"
	"path"
	"strings"
	"testing"

	"mcpgw/domain"
	"mcpgw/store"
)

func TestValidDescendant(t *testing.T) {
	cases := []struct {
		rest string
		ok   bool
	}{
		{"/tools", true},
		{"/a/b/c", true},
		{"/a-b_c~d", true},
		{"/v1/items:batch", true},
		{"/caf%C3%A9", true},
		{"/a%20b", true},
		{"/.well-known/x", true}, // leading dot inside a name is fine
		{"/a.b", true},
		{"", false},
		{"/", false},
		{"tools", false},
		{"//x", false},
		{"/x//y", false},
		{"/x/", false},
		{"/.", false},
		{"/..", false},
		{"/./x", false},
		{"/x/..", false},
		{"/x/../y", false},
		{"/...", false},
		{"/x.", false},
		{"/x. ", false},
		{"/%2e", false},
		{"/%2E%2E", false},
		{"/.%2e", false},
		{"/a%2fb", false},
		{"/a%2Fb", false},
		{"/a%5cb", false},
		{"/a%5Cb", false},
		{"/%252e%252e", false},
		{"/%25", false},
		{"/a%2", false},
		{"/a%zz", false},
		{"/a%00", false},
		{"/a%0d%0a", false},
		{"/a%7f", false},
		{"/a%3b", false},
		{"/a%3f", false},
		{"/a%23", false},
		{"/a\\b", false},
		{"/..;/x", false},
		{"/a;b", false},
		{"/a b", false},
		{"/a\tb", false},
		{"/a\x00", false},
		{"/caf\xc3\xa9", false},
		{"/a?b", false},
		{"/a#b", false},
		{"/a\"b", false},
		{"/a<b>", false},
	}
	for _, c := range cases {
		if got := validDescendant(c.rest); got != c.ok {
			t.Errorf("validDescendant(%q) = %v, want %v", c.rest, got, c.ok)
		}
	}
}

func TestParsePath(t *testing.T) {
	ref := domain.RouteRef{Scope: store.ScopeOrg, OwnerID: store.NewID(), ConfigID: store.NewID(), Key: domain.NewRouteKey()}
	root := ref.Path()
	cases := []struct {
		in   string
		rest string
		err  error
	}{
		{root, "", nil},
		{root + "?cursor=1", "", nil},
		{root + "/x?y=../z", "/x", nil},
		{root + "/x/../y", "", errBadDescendant},
		{root + "#frag", "", errNotRoute},
		{"/mcp-connect/org/" + ref.OwnerID + "/" + ref.ConfigID, "", errNotRoute},
		{"/mcp-connect/team/" + ref.OwnerID + "/" + ref.ConfigID + "/" + ref.Key, "", errNotRoute},
		{"/mcp-connect/org/not-a-uuid/" + ref.ConfigID + "/" + ref.Key, "", errNotRoute},
		{"/MCP-CONNECT/org/" + ref.OwnerID + "/" + ref.ConfigID + "/" + ref.Key, "", errNotRoute},
		{"/x" + root, "", errNotRoute},
		{root + "%2f..", "", errNotRoute},
		{"/" + strings.Repeat("a", MaxPathLength), "", errNotRoute},
	}
	for _, c := range cases {
		got, err := parsePath(c.in)
		if err != c.err {
			t.Errorf("parsePath(%q) err = %v, want %v", c.in, err, c.err)
			continue
		}
		if err == nil && (got.Route != ref || got.Rest != c.rest) {
			t.Errorf("parsePath(%q) = %+v, want route %+v rest %q", c.in, got, ref, c.rest)
		}
	}
}

func TestQueryHasAccessToken(t *testing.T) {
	cases := map[string]bool{
		"access_token=x":      true,
		"a=1&access_token=x":  true,
		"ACCESS_TOKEN=x":      true,
		"access%5Ftoken=x":    true,
		"access%5ftoken":      true,
		"access_token":        true,
		"%zz=1":               true, // undecodable names fail closed
		"a=access_token":      false,
		"access_tokens=1":     false,
		"x_access_token=1":    false,
		"cursor=abc&limit=10": false,
		"":                    false,
		"&&":                  false,
	}
	for q, want := range cases {
		if got := queryHasAccessToken(q); got != want {
			t.Errorf("queryHasAccessToken(%q) = %v, want %v", q, got, want)
		}
	}
}

// FuzzValidDescendant: whatever validDescendant accepts, appended to an
// upstream base path, neither escapes the base nor changes under path
// cleaning or percent-decoding tricks.
func FuzzValidDescendant(f *testing.F) {
	for _, s := range []string{"/tools", "/a/b", "/..", "/%2e%2e", "/%252e", "//x", "/a\\b", "/x.", "/..;/", "/caf%C3%A9", "/a%2fb", "/.well-known", "/%", "/a%5c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rest string) {
		if !validDescendant(rest) {
			return
		}
		const base = "/upstream/base"
		joined := base + rest
		if path.Clean(joined) != joined {
			t.Fatalf("accepted %q changes under path.Clean", rest)
		}
		dec, err := url.PathUnescape(rest)
		if err != nil {
			t.Fatalf("accepted %q does not decode: %v", rest, err)
		}
		if strings.ContainsAny(dec, "\\;?#%\x00") {
			t.Fatalf("accepted %q decodes to %q", rest, dec)
		}
		if c := path.Clean(base + dec); c != base+dec || !strings.HasPrefix(c, base+"/") {
			t.Fatalf("accepted %q decodes to %q which escapes or is not clean", rest, dec)
		}
		for _, seg := range strings.Split(dec[1:], "/") {
			if seg == "" || seg == "." || seg == ".." || strings.HasSuffix(seg, ".") {
				t.Fatalf("accepted %q has segment %q after decoding", rest, seg)
			}
		}
	})
}
