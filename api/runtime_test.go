package api_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"mcpgw/api"
	"mcpgw/extauthz"
)

// TestAPIChangesReachTheRuntime ties the API to extauthz's Decide (the
// runtime check, DESIGN §6) on the same store: a config created through
// the API is usable with a connect token and its sealed static header is
// injected; then every API change that must end access (DESIGN §3 rule 5)
// makes the next request fail.
func TestAPIChangesReachTheRuntime(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		const secret = "upstream-key-7c1d"
		admin := e.user("admin@example.com", true)
		u := e.user("user@example.com", false)
		az, err := extauthz.New(extauthz.Options{Store: e.st, Keys: extauthz.StaticKeys(e.keys), Issuer: "http://127.0.0.1",
			PublicBaseURL: publicBase, KeyRing: e.kr, Now: func() time.Time { return t0 }, TokenCacheSize: -1, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		type conn struct {
			cfg api.ConfigView
			url string
			jwt string
		}
		connect := func(cfgID string) conn {
			var ct struct {
				AccessToken string `json:"access_token"`
				Resource    string `json:"resource"`
			}
			e.must(http.StatusOK, u.token, "POST", "/api/v1/connect-tokens", map[string]any{"config_id": cfgID}).decode(t, &ct)
			var v api.ConfigView
			e.must(http.StatusOK, u.token, "GET", "/api/v1/configs/"+cfgID, nil).decode(t, &v)
			return conn{cfg: v, url: ct.Resource, jwt: ct.AccessToken}
		}
		decide := func(c conn) extauthz.Decision {
			t.Helper()
			ru, err := url.Parse(c.url)
			if err != nil {
				t.Fatal(err)
			}
			parts := strings.Split(strings.TrimPrefix(ru.Path, "/mcp-connect/"), "/")
			d, err := az.Decide(context.Background(), extauthz.Request{Method: "POST", Scheme: "https", Host: ru.Host, Path: ru.Path,
				Headers:           map[string]string{"authorization": "Bearer " + c.jwt, "content-type": "application/json"},
				ContextExtensions: map[string]string{"owner_scope": parts[0], "owner_id": parts[1], "config_id": parts[2], "route_key": parts[3]}})
			if err != nil {
				t.Fatal(err)
			}
			return d
		}
		var org api.OrgView
		e.must(http.StatusCreated, admin.token, "POST", "/api/v1/orgs", map[string]any{"name": "Runtime"}).decode(t, &org)
		e.must(http.StatusCreated, admin.token, "POST", "/api/v1/orgs/"+org.ID+"/members", map[string]any{"user_id": u.user.ID, "role": "member"})
		createOrg := func(name string) string {
			v := e.createConfig(admin.token, map[string]any{"owner_scope": "org", "owner_id": org.ID, "name": name, "remote_url": "https://mcp.example.com/mcp",
				"auth_mode": "none", "sharing_mode": "multi_user"})
			e.must(http.StatusCreated, admin.token, "POST", "/api/v1/configs/"+v.ID+"/assignments", map[string]any{"user_id": u.user.ID})
			return v.ID
		}
		create := func(name string) string {
			v := e.createConfig(u.token, map[string]any{"name": name, "remote_url": "https://mcp.example.com/mcp", "auth_mode": "static_headers",
				"static_headers": map[string]string{"X-Upstream-Key": secret}, "aux_headers": map[string]string{"X-Tenant": "acme"}})
			return v.ID
		}

		c := connect(create("live"))
		d := decide(c)
		if !d.Allow {
			t.Fatalf("fresh connection denied: %+v", d)
		}
		got := map[string]string{}
		for _, h := range d.Headers {
			got[h.Name] = h.Value
		}
		if got["x-upstream-key"] != secret || got["x-tenant"] != "acme" {
			t.Fatalf("injected headers %v", d.Headers)
		}

		// Non-material change: the same token keeps working.
		e.must(http.StatusOK, u.token, "PATCH", "/api/v1/configs/"+c.cfg.ID, map[string]any{"name": "renamed"})
		if d := decide(c); !d.Allow {
			t.Fatalf("non-material change ended access: %+v", d)
		}

		for _, step := range []struct {
			name   string
			org    bool
			change func(id string)
		}{
			{"unassign", true, func(id string) {
				e.must(http.StatusNoContent, admin.token, "DELETE", "/api/v1/configs/"+id+"/assignments/"+u.user.ID, nil)
			}},
			{"org member removal", true, func(string) {
				e.must(http.StatusNoContent, admin.token, "DELETE", "/api/v1/orgs/"+org.ID+"/members/"+u.user.ID, nil)
			}},
			{"route rotation", false, func(id string) { e.must(http.StatusOK, u.token, "POST", "/api/v1/configs/"+id+"/rotate-route", nil) }},
			{"disable", false, func(id string) { e.must(http.StatusOK, u.token, "POST", "/api/v1/configs/"+id+"/disable", nil) }},
			{"material change", false, func(id string) {
				e.must(http.StatusOK, u.token, "PATCH", "/api/v1/configs/"+id, map[string]any{"remote_url": "https://other.example.com/mcp"})
			}},
			{"delete", false, func(id string) { e.must(http.StatusNoContent, u.token, "DELETE", "/api/v1/configs/"+id, nil) }},
			{"instance revoke", false, func(id string) {
				var is struct{ Instances []api.InstanceView }
				e.must(http.StatusOK, u.token, "GET", "/api/v1/instances", nil).decode(t, &is)
				for _, i := range is.Instances {
					if i.ConfigID == id {
						e.must(http.StatusOK, u.token, "DELETE", "/api/v1/instances/"+i.ID, nil)
					}
				}
			}},
			{"user blocked", false, func(string) { e.must(http.StatusOK, admin.token, "POST", "/api/v1/users/"+u.user.ID+"/block", nil) }},
		} {
			id := ""
			if step.org {
				id = createOrg(step.name)
			} else {
				id = create(step.name)
			}
			c := connect(id)
			if d := decide(c); !d.Allow {
				t.Fatalf("%s: denied before the change: %+v", step.name, d)
			}
			step.change(c.cfg.ID)
			if d := decide(c); d.Allow {
				t.Fatalf("%s: the next request was still allowed", step.name)
			}
		}
	})
}
