package api_test

import (
	"net/http"
	"strings"
	"testing"

	"mcpgw/api"
	"mcpgw/store"
)

// plantedSecret is a static header value that must never come back in any
// answer, log line or audit row.
const plantedSecret = "planted-SECRET-6b1f0c2e"

// TestBadInput sends every kind of bad request the issue lists: each must
// be a 400 with a stable code and a message naming the problem, and must
// write nothing (no config, no audit event, config unchanged).
func TestBadInput(t *testing.T) {
	for _, sk := range stores() {
		t.Run(sk.name, func(t *testing.T) {
			e := newEnv(t, sk.open(t), 8192)
			owner := e.user("owner@example.com", false)
			admin := e.user("admin@example.com", true)
			var org api.OrgView
			e.must(http.StatusCreated, owner.token, "POST", "/api/v1/orgs", map[string]any{"name": "Org"}).decode(t, &org)
			existing := e.createConfig(owner.token, orgConfigBody(org.ID, "existing", store.MultiUser, store.AuthStaticHeaders))

			personal := func(mod func(m map[string]any)) map[string]any {
				m := map[string]any{"name": "p", "remote_url": "https://mcp.example.com/mcp", "auth_mode": "static_headers",
					"static_headers": map[string]string{"authorization": "Bearer " + plantedSecret}}
				mod(m)
				return m
			}
			url := func(u string) map[string]any { return personal(func(m map[string]any) { m["remote_url"] = u }) }
			static := func(h map[string]string) map[string]any {
				return personal(func(m map[string]any) { m["static_headers"] = h })
			}
			aux := func(h map[string]string) map[string]any {
				return personal(func(m map[string]any) { m["aux_headers"] = h })
			}

			type tc struct {
				name         string
				token        string
				method, path string
				body         any
				code         string
				msg          string
			}
			post := func(name string, body any, code, msg string) tc {
				return tc{name, owner.token, "POST", "/api/v1/configs", body, code, msg}
			}
			patch := func(name string, body any, code, msg string) tc {
				return tc{name, owner.token, "PATCH", "/api/v1/configs/" + existing.ID, body, code, msg}
			}
			cases := []tc{
				post("malformed json", `{"name": `, api.CodeInvalidJSON, "not a valid JSON object"),
				post("json array", `[1,2]`, api.CodeInvalidJSON, "not a valid JSON object"),
				post("two objects", `{"name":"a"} {"name":"b"}`, api.CodeInvalidJSON, "exactly one JSON object"),
				post("trailing garbage", `{"name":"a"} x`, api.CodeInvalidJSON, "exactly one JSON object"),
				post("wrong type", `{"name": 5}`, api.CodeInvalidJSON, `field "name" has the wrong type`),
				post("unknown field", personal(func(m map[string]any) { m["remote_urll"] = "x" }), api.CodeUnknownField, `unknown field "remote_urll"`),
				post("unknown nested field", personal(func(m map[string]any) { m["provider"] = map[string]any{"client_idd": "x"} }), api.CodeUnknownField, `unknown field "client_idd"`),
				post("oversized body", personal(func(m map[string]any) { m["name"] = strings.Repeat("n", 9000) }), api.CodeBodyTooLarge, "exceeds 8192 bytes"),
				{"wrong content type", owner.token, "POST", "/api/v1/configs", nil, api.CodeInvalidJSON, "not a valid JSON object"},

				post("static Host", static(map[string]string{"Host": "x"}), api.CodeInvalidRequest, `"host": reserved or hop-by-hop`),
				post("static Connection", static(map[string]string{"Connection": "close"}), api.CodeInvalidRequest, `"connection": reserved or hop-by-hop`),
				post("static Transfer-Encoding", static(map[string]string{"Transfer-Encoding": "chunked"}), api.CodeInvalidRequest, `"transfer-encoding": reserved or hop-by-hop`),
				post("static name with space", static(map[string]string{"X Bad": "v"}), api.CodeInvalidRequest, "name is not a lower-case HTTP token"),
				post("static name with colon", static(map[string]string{"X:Bad": "v"}), api.CodeInvalidRequest, "name is not a lower-case HTTP token"),
				post("static empty name", static(map[string]string{"": "v"}), api.CodeInvalidRequest, "name is not a lower-case HTTP token"),
				post("static CRLF value", static(map[string]string{"authorization": "Bearer " + plantedSecret + "\r\nX-Injected: 1"}), api.CodeInvalidRequest, "value has control characters"),
				post("static LF value", static(map[string]string{"x-key": plantedSecret + "\nx"}), api.CodeInvalidRequest, "value has control characters"),
				post("static duplicate case", static(map[string]string{"X-A": "1", "x-a": "2"}), api.CodeInvalidRequest, "unique regardless of case"),
				post("aux Authorization", aux(map[string]string{"Authorization": "Bearer x"}), api.CodeInvalidRequest, "looks like a credential"),
				post("aux X-Api-Key", aux(map[string]string{"X-Api-Key": "x"}), api.CodeInvalidRequest, "looks like a credential"),
				post("aux X-Auth-User", aux(map[string]string{"X-Auth-User": "x"}), api.CodeInvalidRequest, "looks like a credential"),
				post("aux Cookie", aux(map[string]string{"Cookie": "a=b"}), api.CodeInvalidRequest, "looks like a credential"),
				post("aux X-Session-Id", aux(map[string]string{"X-Session-Id": "x"}), api.CodeInvalidRequest, "looks like a credential"),
				post("aux Host", aux(map[string]string{"Host": "x"}), api.CodeInvalidRequest, "reserved or hop-by-hop"),
				post("aux CRLF", aux(map[string]string{"X-Tenant": "a\r\nb"}), api.CodeInvalidRequest, "value has control characters"),
				post("aux duplicates static", personal(func(m map[string]any) {
					m["static_headers"] = map[string]string{"x-tenant": "a"}
					m["aux_headers"] = map[string]string{"x-tenant": "b"}
				}), api.CodeInvalidRequest, "also set by a static header"),

				post("url userinfo", url("https://user:pass@mcp.example.com/mcp"), api.CodeInvalidRequest, "must not contain userinfo"),
				post("url user only", url("https://user@mcp.example.com/mcp"), api.CodeInvalidRequest, "must not contain userinfo"),
				post("url http", url("http://mcp.example.com/mcp"), api.CodeInvalidRequest, "must use https"),
				post("url ftp", url("ftp://mcp.example.com/mcp"), api.CodeInvalidRequest, "must use https"),
				post("url relative", url("mcp.example.com/mcp"), api.CodeInvalidRequest, "absolute https URL"),
				post("url query", url("https://mcp.example.com/mcp?x=1"), api.CodeInvalidRequest, "must not contain a query"),
				post("url fragment", url("https://mcp.example.com/mcp#x"), api.CodeInvalidRequest, "must not contain a fragment"),
				post("url space", url("https://mcp.example.com/m cp"), api.CodeInvalidRequest, "whitespace"),
				post("url private 10/8", url("https://10.0.0.1/mcp"), api.CodeInvalidRequest, "non-public address"),
				post("url private 192.168", url("https://192.168.1.1/mcp"), api.CodeInvalidRequest, "non-public address"),
				post("url loopback", url("https://127.0.0.1/mcp"), api.CodeInvalidRequest, "non-public address"),
				post("url loopback v6", url("https://[::1]/mcp"), api.CodeInvalidRequest, "non-public address"),
				post("url v4-mapped loopback", url("https://[::ffff:127.0.0.1]/mcp"), api.CodeInvalidRequest, "non-public address"),
				post("url link-local metadata", url("https://169.254.169.254/latest"), api.CodeInvalidRequest, "non-public address"),
				post("url decimal literal", url("https://2130706433/mcp"), api.CodeInvalidRequest, "non-standard (decimal, octal or hex) form"),
				post("url octal literal", url("https://0177.0.0.1/mcp"), api.CodeInvalidRequest, "non-standard (decimal, octal or hex) form"),
				post("url hex literal", url("https://0x7f000001/mcp"), api.CodeInvalidRequest, "non-standard (decimal, octal or hex) form"),
				post("url hex dotted literal", url("https://0x7f.0.0.1/mcp"), api.CodeInvalidRequest, "non-standard (decimal, octal or hex) form"),
				post("url short literal", url("https://127.1/mcp"), api.CodeInvalidRequest, "non-standard (decimal, octal or hex) form"),
				post("url public decimal literal", url("https://1572395042/mcp"), api.CodeInvalidRequest, "non-standard (decimal, octal or hex) form"),
				post("url bogus numeric host", url("https://1.2.3.999/mcp"), api.CodeInvalidRequest, "could not be resolved"),
				post("url localhost", url("https://localhost/mcp"), api.CodeInvalidRequest, "must not point at localhost"),
				post("url localhost port", url("https://localhost:8443/mcp"), api.CodeInvalidRequest, "must not point at localhost"),
				post("url sub.localhost", url("https://app.localhost/mcp"), api.CodeInvalidRequest, "must not point at localhost"),
				post("url resolves private", url("https://internal.example.com/mcp"), api.CodeInvalidRequest, "non-public address"),
				post("url resolves partly private", url("https://mixed.example.com/mcp"), api.CodeInvalidRequest, "non-public address"),
				post("url resolves ULA", url("https://v6local.example.com/mcp"), api.CodeInvalidRequest, "non-public address"),
				post("url resolves metadata", url("https://metadata.example.com/mcp"), api.CodeInvalidRequest, "non-public address"),
				post("url unresolvable", url("https://nxdomain.example.com/mcp"), api.CodeInvalidRequest, "could not be resolved"),
				post("url bad port", url("https://mcp.example.com:99999/mcp"), api.CodeInvalidRequest, "invalid port"),
				post("url dot segment", url("https://mcp.example.com/a/../admin"), api.CodeInvalidRequest, "dot segments"),
				post("url encoded dot segment", url("https://mcp.example.com/a/%2e%2e/admin"), api.CodeInvalidRequest, "dot segments"),
				post("url encoded dot segment upper", url("https://mcp.example.com/a/%2E%2E/admin"), api.CodeInvalidRequest, "dot segments"),
				post("url mixed dot segment .%2e", url("https://mcp.example.com/a/.%2e/admin"), api.CodeInvalidRequest, "dot segments"),
				post("url mixed dot segment %2e.", url("https://mcp.example.com/a/%2e./admin"), api.CodeInvalidRequest, "dot segments"),
				post("url mixed dot segment .%2E", url("https://mcp.example.com/a/.%2E/admin"), api.CodeInvalidRequest, "dot segments"),
				post("url mixed dot segment %2E.", url("https://mcp.example.com/a/%2E./admin"), api.CodeInvalidRequest, "dot segments"),
				post("url mixed case %2e%2E", url("https://mcp.example.com/a/%2e%2E/admin"), api.CodeInvalidRequest, "dot segments"),
				post("url encoded single dot", url("https://mcp.example.com/a/%2E/mcp"), api.CodeInvalidRequest, "dot segments"),
				post("url trailing mixed dot segment", url("https://mcp.example.com/a/.%2E"), api.CodeInvalidRequest, "dot segments"),
				post("url dot segment with encoded slash", url("https://mcp.example.com/a/..%2Fadmin"), api.CodeInvalidRequest, "dot segments"),
				post("url dot segment with encoded backslash", url("https://mcp.example.com/a/%2e%2e%5Cadmin"), api.CodeInvalidRequest, "dot segments"),
				post("url dot segment with parameter", url("https://mcp.example.com/a/..;x/admin"), api.CodeInvalidRequest, "dot segments"),
				post("url double-encoded dot segment", url("https://mcp.example.com/a/%252e%252E/admin"), api.CodeInvalidRequest, "dot segments"),
				post("url empty segment", url("https://mcp.example.com/a//b"), api.CodeInvalidRequest, "empty segments"),
				post("url missing", personal(func(m map[string]any) { delete(m, "remote_url") }), api.CodeInvalidRequest, "remote_url is required"),

				post("auth mode unknown", personal(func(m map[string]any) { m["auth_mode"] = "magic" }), api.CodeInvalidRequest, "auth_mode must be"),
				post("static mode without headers", personal(func(m map[string]any) { delete(m, "static_headers") }), api.CodeInvalidRequest, "needs at least one static header"),
				post("none mode with headers", personal(func(m map[string]any) { m["auth_mode"] = "none" }), api.CodeInvalidRequest, "auth_mode none takes no static headers"),
				post("personal multi_user", personal(func(m map[string]any) { m["sharing_mode"] = "multi_user" }), api.CodeInvalidRequest, "personal configs must be single_user"),
				post("sharing unknown", personal(func(m map[string]any) { m["sharing_mode"] = "everyone" }), api.CodeInvalidRequest, "sharing_mode must be"),
				post("provider without oauth", personal(func(m map[string]any) { m["provider"] = map[string]any{"issuer": "https://as.example.com"} }), api.CodeInvalidRequest, "provider settings need auth_mode"),
				post("oauth_static without client", personal(func(m map[string]any) {
					m["auth_mode"] = "oauth_static"
					delete(m, "static_headers")
				}), api.CodeInvalidRequest, "needs provider.client_id"),
				post("oauth_dynamic with client", personal(func(m map[string]any) {
					m["auth_mode"] = "oauth_dynamic"
					delete(m, "static_headers")
					m["provider"] = map[string]any{"client_id": "c", "client_secret": plantedSecret}
				}), api.CodeInvalidRequest, "provider.client_id is for oauth_static"),
				post("oauth with static authorization", personal(func(m map[string]any) {
					m["auth_mode"] = "oauth_dynamic"
				}), api.CodeInvalidRequest, "owned by the provider grant"),
				post("provider http endpoint", personal(func(m map[string]any) {
					m["auth_mode"] = "oauth_dynamic"
					delete(m, "static_headers")
					m["provider"] = map[string]any{"token_endpoint": "http://as.example.com/token"}
				}), api.CodeInvalidRequest, "provider.token_endpoint must use https"),
				post("empty name", personal(func(m map[string]any) { m["name"] = "  " }), api.CodeInvalidRequest, "name is required"),
				post("owner scope unknown", personal(func(m map[string]any) { m["owner_scope"] = "team" }), api.CodeInvalidRequest, "owner_scope must be"),

				patch("patch url private", map[string]any{"remote_url": "https://10.0.0.1/"}, api.CodeInvalidRequest, "non-public address"),
				patch("patch url userinfo", map[string]any{"remote_url": "https://a:b@mcp.example.com/"}, api.CodeInvalidRequest, "userinfo"),
				patch("patch unknown field", map[string]any{"nmae": "x"}, api.CodeUnknownField, `unknown field "nmae"`),
				patch("patch static CRLF", map[string]any{"static_headers": map[string]string{"authorization": plantedSecret + "\r\n"}}, api.CodeInvalidRequest, "value has control characters"),
				patch("patch aux credential", map[string]any{"aux_headers": map[string]string{"x-token-id": "1"}}, api.CodeInvalidRequest, "looks like a credential"),
				patch("patch to personal-only sharing", map[string]any{"sharing_mode": "solo"}, api.CodeInvalidRequest, "sharing_mode must be"),
				patch("patch none keeps headers", map[string]any{"auth_mode": "none", "static_headers": map[string]string{"authorization": "x"}}, api.CodeInvalidRequest, "auth_mode none takes no static headers"),

				{"user bad email", admin.token, "POST", "/api/v1/users", map[string]any{"email": "nobody"}, api.CodeInvalidRequest, "email"},
				{"user bad status", admin.token, "POST", "/api/v1/users", map[string]any{"email": "x@example.com", "status": "deleted"}, api.CodeInvalidRequest, "status must be"},
				{"token no name", owner.token, "POST", "/api/v1/users/" + owner.user.ID + "/tokens", map[string]any{"name": ""}, api.CodeInvalidRequest, "name is required"},
				{"token negative ttl", owner.token, "POST", "/api/v1/users/" + owner.user.ID + "/tokens", map[string]any{"name": "x", "expires_in_seconds": -1}, api.CodeInvalidRequest, "expires_in_seconds"},
				{"member bad role", owner.token, "POST", "/api/v1/orgs/" + org.ID + "/members", map[string]any{"user_id": admin.user.ID, "role": "god"}, api.CodeInvalidRequest, "role must be"},
				{"member bad user", owner.token, "POST", "/api/v1/orgs/" + org.ID + "/members", map[string]any{"user_id": "x", "role": "member"}, api.CodeInvalidRequest, "user_id must be"},
				{"assign bad user", owner.token, "POST", "/api/v1/configs/" + existing.ID + "/assignments", map[string]any{"user_id": "../x"}, api.CodeInvalidRequest, "user_id must be"},
				{"org empty name", owner.token, "POST", "/api/v1/orgs", map[string]any{"name": ""}, api.CodeInvalidRequest, "name is required"},
				{"audit bad since", admin.token, "GET", "/api/v1/audit?since=yesterday", nil, api.CodeInvalidRequest, "since must be an RFC 3339 time"},
				{"audit big limit", admin.token, "GET", "/api/v1/audit?limit=5000", nil, api.CodeInvalidRequest, "limit must be 1 to 1000"},
				{"audit unknown param", admin.token, "GET", "/api/v1/audit?actor=x", nil, api.CodeInvalidRequest, `unknown query parameter "actor"`},
				{"audit bad id", admin.token, "GET", "/api/v1/audit?config_id=nope", nil, api.CodeInvalidRequest, "config_id must be an id"},
				{"list bad filter", owner.token, "GET", "/api/v1/configs?owner_scope=org", nil, api.CodeInvalidRequest, "owner_scope"},
			}
			for _, c := range cases {
				cfgsBefore, _ := e.st.ListConfigs(e.ctx, "", "")
				before := auditCount(t, e)
				cur, _ := e.st.GetConfig(e.ctx, existing.ID)
				var r resp
				if c.name == "wrong content type" {
					r = e.doRaw(c.token, "POST", c.path, "text/plain", `{"name":"x"}`)
				} else {
					r = e.do(c.token, c.method, c.path, c.body)
				}
				if r.status != http.StatusBadRequest {
					t.Errorf("%s: status %d, want 400: %s", c.name, r.status, r.body)
					continue
				}
				var b api.ErrorBody
				r.decode(t, &b)
				if c.name == "wrong content type" {
					c.msg = "Content-Type must be application/json"
				}
				if b.Error.Code != c.code || !strings.Contains(b.Error.Message, c.msg) {
					t.Errorf("%s: error %+v, want code %q and message containing %q", c.name, b.Error, c.code, c.msg)
				}
				if strings.Contains(string(r.body), plantedSecret) {
					t.Errorf("%s: the answer echoes a secret: %s", c.name, r.body)
				}
				cfgsAfter, _ := e.st.ListConfigs(e.ctx, "", "")
				after, _ := e.st.GetConfig(e.ctx, existing.ID)
				if len(cfgsAfter) != len(cfgsBefore) || auditCount(t, e) != before || after.Version != cur.Version ||
					after.RemoteURL != cur.RemoteURL || string(after.StaticHeaders) != string(cur.StaticHeaders) || len(after.AuxHeaders) != len(cur.AuxHeaders) ||
					after.AuthMode != cur.AuthMode || after.SharingMode != cur.SharingMode {
					t.Errorf("%s: a rejected request changed something", c.name)
				}
			}
			t.Logf("%d bad-input cases", len(cases))
			if strings.Contains(logs.String(), plantedSecret) {
				t.Errorf("a planted secret reached the logs")
			}
			evs, _, _ := e.st.QueryAudit(e.ctx, store.AuditFilter{Limit: 1000})
			for _, ev := range evs {
				for _, v := range ev.Metadata {
					if strings.Contains(v, plantedSecret) || strings.Contains(v, "upstream-secret") {
						t.Errorf("a secret reached the audit log: %+v", ev)
					}
				}
			}
		})
	}
}
