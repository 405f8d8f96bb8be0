package api_test

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"mcpgw/api"
	"mcpgw/domain/addrpolicy"
)

// TestDevAllowlist: the dev/test allowlist (DESIGN §6) lets exactly the
// listed hosts and prefixes use plain http and non-public addresses;
// everything else keeps the production policy.
func TestDevAllowlist(t *testing.T) {
	e := newEnvWith(t, stores()[0].open(t), func(o *api.Options) {
		o.Allowlist = addrpolicy.Allowlist{Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Hosts: []string{"internal.example.com"}}
	})
	u := e.user("dev@example.com", false)
	for _, c := range []struct {
		url  string
		want int
		msg  string
	}{
		{"http://127.0.0.1:3001/mcp", http.StatusCreated, ""},
		{"https://127.0.0.1:3001/mcp", http.StatusCreated, ""},
		{"http://internal.example.com/mcp", http.StatusCreated, ""},
		{"http://mcp.example.com/mcp", http.StatusBadRequest, "must use https"},
		{"https://10.0.0.1/mcp", http.StatusBadRequest, "non-public"},
		{"https://2130706433/mcp", http.StatusBadRequest, "non-standard"},
		{"https://localhost/mcp", http.StatusBadRequest, "localhost"},
		{"https://user:pw@127.0.0.1/mcp", http.StatusBadRequest, "userinfo"},
	} {
		r := e.do(u.token, "POST", "/api/v1/configs", map[string]any{"name": "d", "remote_url": c.url, "auth_mode": "none"})
		if r.status != c.want || (c.msg != "" && !strings.Contains(string(r.body), c.msg)) {
			t.Errorf("%s: %d %s", c.url, r.status, r.body)
		}
	}
}
