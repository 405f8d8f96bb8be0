package domain

import (
	"strings"
	"testing"

	"mcpgw/store"
)

const (
	testOwner  = "7b0c1d2e-3f40-4a5b-8c6d-7e8f90a1b2c3"
	testConfig = "0a1b2c3d-4e5f-4061-8273-849506172839"
	testKey    = "abcdefghijklmnopqrstuvwxyz012345"
	testBase   = "https://gw.example.com"
)

func TestNewRouteKey(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		k := NewRouteKey()
		if !ValidRouteKey(k) {
			t.Fatalf("NewRouteKey() = %q, not a valid route key", k)
		}
		if len(k) != 32 { // 24 bytes, base64url without padding: 192 bits
			t.Fatalf("route key length %d, want 32", len(k))
		}
		if seen[k] {
			t.Fatal("NewRouteKey repeated a key")
		}
		seen[k] = true
	}
}

func TestValidRouteKey(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want bool
	}{
		{testKey, true},
		{strings.Repeat("a", 22), true},
		{strings.Repeat("a", 21), false}, // < 128 bits
		{strings.Repeat("a", 64), true},
		{strings.Repeat("a", 65), false},
		{"abcdefghijklmnopqrstu+", false}, // standard base64 alphabet
		{"abcdefghijklmnopqrstu/", false},
		{"abcdefghijklmnopqrstuv=", false}, // padding
		{"abcdefghijklmnopqrs%2e", false},
		{"abcdefghijklmnopqrst..", false},
		{"", false},
	} {
		if got := ValidRouteKey(tc.key); got != tc.want {
			t.Errorf("ValidRouteKey(%q) = %v, want %v", tc.key, got, tc.want)
		}
	}
}

func TestRouteRef(t *testing.T) {
	ref := RouteRef{Scope: store.ScopeOrg, OwnerID: testOwner, ConfigID: testConfig, Key: testKey}
	wantPath := "/mcp-connect/org/" + testOwner + "/" + testConfig + "/" + testKey
	if ref.Path() != wantPath {
		t.Fatalf("Path() = %q, want %q", ref.Path(), wantPath)
	}
	if got := ref.URL(testBase + "/"); got != testBase+wantPath {
		t.Fatalf("URL() = %q (trailing slash of the base must not double)", got)
	}
	if got, want := ref.MCPID(), "org:"+testOwner+":"+testConfig+":"+testKey; got != want {
		t.Fatalf("MCPID() = %q, want %q", got, want)
	}
	if got := ref.ExecutionContext(); got != "org:"+testOwner {
		t.Fatalf("ExecutionContext() = %q", got)
	}
	personal := ref
	personal.Scope = store.ScopeUser
	if got := personal.ExecutionContext(); got != "personal" {
		t.Fatalf("personal ExecutionContext() = %q", got)
	}
}

func TestParseRoutePath(t *testing.T) {
	root := "/mcp-connect/user/" + testOwner + "/" + testConfig + "/" + testKey
	for _, tc := range []struct {
		name, path, rest string
		ok               bool
	}{
		{"root", root, "", true},
		{"descendant", root + "/tools/x", "/tools/x", true},
		{"trailing slash is a descendant", root + "/", "/", true},
		{"org scope", strings.Replace(root, "/user/", "/org/", 1), "", true},
		{"unknown scope", strings.Replace(root, "/user/", "/team/", 1), "", false},
		{"missing key", "/mcp-connect/user/" + testOwner + "/" + testConfig, "", false},
		{"owner not a uuid", "/mcp-connect/user/alice/" + testConfig + "/" + testKey, "", false},
		{"config not a uuid", "/mcp-connect/user/" + testOwner + "/cfg/" + testKey, "", false},
		{"short key", "/mcp-connect/user/" + testOwner + "/" + testConfig + "/short", "", false},
		{"encoded key", "/mcp-connect/user/" + testOwner + "/" + testConfig + "/" + testKey[:20] + "%2e", "", false},
		{"other prefix", "/oauth/token", "", false},
		{"no leading slash", root[1:], "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref, rest, err := ParseRoutePath(tc.path)
			if (err == nil) != tc.ok {
				t.Fatalf("ParseRoutePath(%q) err = %v, want ok=%v", tc.path, err, tc.ok)
			}
			if !tc.ok {
				if err != ErrNotRoute {
					t.Fatalf("err = %v, want ErrNotRoute", err)
				}
				return
			}
			if rest != tc.rest {
				t.Fatalf("rest = %q, want %q", rest, tc.rest)
			}
			if ref.OwnerID != testOwner || ref.ConfigID != testConfig || ref.Key != testKey {
				t.Fatalf("ref = %+v", ref)
			}
		})
	}
}

func TestParseResourceURL(t *testing.T) {
	ref := RouteRef{Scope: store.ScopeUser, OwnerID: testOwner, ConfigID: testConfig, Key: testKey}
	canonical := ref.URL(testBase)
	got, err := ParseResourceURL(testBase, canonical)
	if err != nil || got != ref {
		t.Fatalf("ParseResourceURL(canonical) = %+v, %v", got, err)
	}
	for _, bad := range []string{
		canonical + "/",                      // trailing slash
		canonical + "/sub",                   // descendant
		canonical + "?x=1",                   // query
		canonical + "#f",                     // fragment
		"http://gw.example.com" + ref.Path(), // other scheme
		"https://evil.example.com" + ref.Path(),
		"https://gw.example.com.evil.example" + ref.Path(),
		"https://user@gw.example.com" + ref.Path(),
		testBase + "/mcp-connect/user/" + testOwner + "/" + testConfig,
		"",
	} {
		if _, err := ParseResourceURL(testBase, bad); err == nil {
			t.Errorf("ParseResourceURL(%q) accepted a non-canonical resource", bad)
		}
	}
}

func TestClaimsConsistent(t *testing.T) {
	ref := RouteRef{Scope: store.ScopeOrg, OwnerID: testOwner, ConfigID: testConfig, Key: testKey}
	good := func() *Claims {
		return &Claims{MCPID: ref.MCPID(), OwnerScope: "org", OwnerID: testOwner, ConfigID: testConfig,
			RouteKey: testKey, ExecutionContext: "org:" + testOwner}
	}
	if !good().Consistent(ref) {
		t.Fatal("consistent claims rejected")
	}
	for name, mutate := range map[string]func(*Claims){
		"mcp_id":            func(c *Claims) { c.MCPID = "org:" + testOwner + ":" + testConfig + ":other" },
		"owner_scope":       func(c *Claims) { c.OwnerScope = "user" },
		"owner_id":          func(c *Claims) { c.OwnerID = testConfig },
		"config_id":         func(c *Claims) { c.ConfigID = testOwner },
		"route_key":         func(c *Claims) { c.RouteKey = strings.Repeat("b", 32) },
		"execution_context": func(c *Claims) { c.ExecutionContext = "personal" },
	} {
		c := good()
		mutate(c)
		if c.Consistent(ref) {
			t.Errorf("claims with a different %s accepted", name)
		}
	}
}

func TestScopes(t *testing.T) {
	got := ParseScope("  mcp:access profile mcp:access ")
	if JoinScope(got) != "mcp:access profile" {
		t.Fatalf("ParseScope dedupe/order: %q", JoinScope(got))
	}
	if !KnownScopes(got) || KnownScopes([]string{"mcp:access", "admin"}) {
		t.Fatal("KnownScopes wrong")
	}
	if !HasScope(got, ScopeMCPAccess) || HasScope([]string{"profile"}, ScopeMCPAccess) {
		t.Fatal("HasScope wrong")
	}
	if len(ParseScope("")) != 0 {
		t.Fatal("empty scope should parse to nothing")
	}
}
