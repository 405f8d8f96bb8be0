package api_test

import (
	"fmt"
	"net/http"
	"testing"

	"mcpgw/api"
	"mcpgw/store"
)

// world is the fixture of the authorization matrix: one org with an owner,
// an admin, an assigned member and an unassigned member, one user outside
// the org, one system admin, and an org config assigned to the member.
type world struct {
	e                                            *env
	sysadmin, owner, admin, assigned, unassigned principal
	other                                        principal
	org                                          string
	cfg, personal                                api.ConfigView
	n                                            int
}

func newWorld(t *testing.T, e *env) *world {
	w := &world{e: e}
	w.sysadmin = e.user("root@example.com", true)
	w.owner = e.user("owner@example.com", false)
	w.admin = e.user("orgadmin@example.com", false)
	w.assigned = e.user("assigned@example.com", false)
	w.unassigned = e.user("unassigned@example.com", false)
	w.other = e.user("other@example.com", false)
	var org api.OrgView
	e.must(http.StatusCreated, w.owner.token, "POST", "/api/v1/orgs", map[string]any{"name": "Matrix"}).decode(t, &org)
	w.org = org.ID
	for _, m := range []struct {
		p    principal
		role string
	}{{w.admin, "admin"}, {w.assigned, "member"}, {w.unassigned, "member"}} {
		e.must(http.StatusCreated, w.owner.token, "POST", "/api/v1/orgs/"+w.org+"/members", map[string]any{"user_id": m.p.user.ID, "role": m.role})
	}
	w.cfg = e.createConfig(w.owner.token, orgConfigBody(w.org, "shared", store.MultiUser, store.AuthNone))
	e.must(http.StatusCreated, w.owner.token, "POST", "/api/v1/configs/"+w.cfg.ID+"/assignments", map[string]any{"user_id": w.assigned.user.ID})
	w.personal = e.createConfig(w.owner.token, map[string]any{"name": "owner-personal", "remote_url": "https://mcp.example.com/", "auth_mode": "none"})
	return w
}

// spare makes a fresh org member (a target that no cell's caller is).
func (w *world) spare(role store.Role) string {
	w.n++
	u, err := w.e.st.CreateUser(w.e.ctx, store.User{ID: store.NewID(), Email: fmt.Sprintf("spare%d@example.com", w.n), Status: store.UserActive, CreatedAt: t0, UpdatedAt: t0})
	if err != nil {
		w.e.t.Fatal(err)
	}
	if role != "" {
		if _, err := w.e.st.AddMember(w.e.ctx, store.Member{OrgID: w.org, UserID: u.ID, Role: role, CreatedAt: t0}, nil); err != nil {
			w.e.t.Fatal(err)
		}
	}
	return u.ID
}

// throwaway makes a fresh org config (for destructive cells).
func (w *world) throwaway() api.ConfigView {
	w.n++
	return w.e.createConfig(w.owner.token, orgConfigBody(w.org, fmt.Sprintf("tmp%d", w.n), store.MultiUser, store.AuthNone))
}

// op is one matrix column: prepare returns the request.
type op struct {
	name    string
	prepare func(w *world) (method, path string, body any)
}

// Expected outcomes per role: a = allowed (2xx), f = 403, n = 404, u = 401.
type expect map[string]byte

const roles = "sysadmin owner admin assigned unassigned other anonymous"

func matrixOps() []op {
	cfgPath := func(w *world) string { return "/api/v1/configs/" + w.cfg.ID }
	return []op{
		{"get_config", func(w *world) (string, string, any) { return "GET", cfgPath(w), nil }},
		{"update_config", func(w *world) (string, string, any) {
			return "PATCH", cfgPath(w), map[string]any{"registry": map[string]any{"n": w.n}}
		}},
		{"disable_config", func(w *world) (string, string, any) {
			return "POST", "/api/v1/configs/" + w.throwaway().ID + "/disable", nil
		}},
		{"enable_config", func(w *world) (string, string, any) { return "POST", cfgPath(w) + "/enable", nil }},
		{"rotate_route", func(w *world) (string, string, any) {
			return "POST", "/api/v1/configs/" + w.throwaway().ID + "/rotate-route", nil
		}},
		{"delete_config", func(w *world) (string, string, any) { return "DELETE", "/api/v1/configs/" + w.throwaway().ID, nil }},
		{"list_assignments", func(w *world) (string, string, any) { return "GET", cfgPath(w) + "/assignments", nil }},
		{"assign", func(w *world) (string, string, any) {
			return "POST", cfgPath(w) + "/assignments", map[string]any{"user_id": w.spare(store.RoleMember)}
		}},
		{"unassign", func(w *world) (string, string, any) {
			id := w.spare(store.RoleMember)
			if _, err := w.e.st.Assign(w.e.ctx, store.Assignment{ConfigID: w.cfg.ID, UserID: id, CreatedAt: t0}, nil); err != nil {
				w.e.t.Fatal(err)
			}
			return "DELETE", cfgPath(w) + "/assignments/" + id, nil
		}},
		{"create_org_config", func(w *world) (string, string, any) {
			w.n++
			return "POST", "/api/v1/configs", orgConfigBody(w.org, fmt.Sprintf("new%d", w.n), store.SingleUser, store.AuthNone)
		}},
		{"list_org_configs", func(w *world) (string, string, any) {
			return "GET", "/api/v1/configs?owner_scope=org&owner_id=" + w.org, nil
		}},
		{"get_org", func(w *world) (string, string, any) { return "GET", "/api/v1/orgs/" + w.org, nil }},
		{"list_members", func(w *world) (string, string, any) { return "GET", "/api/v1/orgs/" + w.org + "/members", nil }},
		{"add_member", func(w *world) (string, string, any) {
			return "POST", "/api/v1/orgs/" + w.org + "/members", map[string]any{"user_id": w.spare(""), "role": "member"}
		}},
		{"set_member_role", func(w *world) (string, string, any) {
			return "PATCH", "/api/v1/orgs/" + w.org + "/members/" + w.spare(store.RoleMember), map[string]any{"role": "admin"}
		}},
		{"remove_member", func(w *world) (string, string, any) {
			return "DELETE", "/api/v1/orgs/" + w.org + "/members/" + w.spare(store.RoleMember), nil
		}},
		{"org_instances", func(w *world) (string, string, any) { return "GET", "/api/v1/orgs/" + w.org + "/instances", nil }},
		{"revoke_assignee_instance", func(w *world) (string, string, any) {
			inst, _, err := w.e.st.GetOrCreateInstance(w.e.ctx, store.ScopeOrg, w.org, w.assigned.user.ID, w.cfg.ID, store.NewID())
			if err != nil {
				w.e.t.Fatal(err)
			}
			return "DELETE", "/api/v1/instances/" + inst.ID, nil
		}},
		{"org_audit", func(w *world) (string, string, any) { return "GET", "/api/v1/audit?org_id=" + w.org, nil }},
		{"get_personal_config", func(w *world) (string, string, any) { return "GET", "/api/v1/configs/" + w.personal.ID, nil }},
		{"update_personal_config", func(w *world) (string, string, any) {
			return "PATCH", "/api/v1/configs/" + w.personal.ID, map[string]any{"name": fmt.Sprintf("p%d", w.n)}
		}},
		{"rotate_personal_route", func(w *world) (string, string, any) {
			return "POST", "/api/v1/configs/" + w.personal.ID + "/rotate-route", nil
		}},
		{"create_personal_config_for_owner", func(w *world) (string, string, any) {
			w.n++
			return "POST", "/api/v1/configs", map[string]any{"owner_scope": "user", "owner_id": w.owner.user.ID,
				"name": fmt.Sprintf("for-owner-%d", w.n), "remote_url": "https://mcp.example.com/", "auth_mode": "none"}
		}},
		{"available", func(w *world) (string, string, any) { return "GET", "/api/v1/available", nil }},
		{"my_instances", func(w *world) (string, string, any) { return "GET", "/api/v1/instances", nil }},
		{"create_org", func(w *world) (string, string, any) {
			w.n++
			return "POST", "/api/v1/orgs", map[string]any{"name": fmt.Sprintf("org-%d", w.n)}
		}},
		{"list_users", func(w *world) (string, string, any) { return "GET", "/api/v1/users", nil }},
		{"create_user", func(w *world) (string, string, any) {
			w.n++
			return "POST", "/api/v1/users", map[string]any{"email": fmt.Sprintf("made%d@example.com", w.n)}
		}},
		{"block_user", func(w *world) (string, string, any) { return "POST", "/api/v1/users/" + w.spare("") + "/block", nil }},
		{"get_owner_user", func(w *world) (string, string, any) { return "GET", "/api/v1/users/" + w.owner.user.ID, nil }},
		{"owner_tokens", func(w *world) (string, string, any) {
			return "GET", "/api/v1/users/" + w.owner.user.ID + "/tokens", nil
		}},
	}
}

// expectations, one string per op in roles order:
// sysadmin owner admin assigned unassigned other anonymous.
var expectations = map[string]string{
	"get_config":                       "aaaannu",
	"update_config":                    "aaafnnu",
	"disable_config":                   "aaannnu",
	"enable_config":                    "aaafnnu",
	"rotate_route":                     "aaannnu",
	"delete_config":                    "aaannnu",
	"list_assignments":                 "aaafnnu",
	"assign":                           "aaafnnu",
	"unassign":                         "aaafnnu",
	"create_org_config":                "aaaffnu",
	"list_org_configs":                 "aaaffnu",
	"get_org":                          "aaaaanu",
	"list_members":                     "aaaffnu",
	"add_member":                       "aaaffnu",
	"set_member_role":                  "aaaffnu",
	"remove_member":                    "aaaffnu",
	"org_instances":                    "aaaffnu",
	"revoke_assignee_instance":         "aaaannu",
	"org_audit":                        "aaafffu",
	"get_personal_config":              "aannnnu",
	"update_personal_config":           "aannnnu",
	"rotate_personal_route":            "aannnnu",
	"create_personal_config_for_owner": "aaffffu",
	"available":                        "aaaaaau",
	"my_instances":                     "aaaaaau",
	"create_org":                       "aaaaaau",
	"list_users":                       "afffffu",
	"create_user":                      "afffffu",
	"block_user":                       "afffffu",
	"get_owner_user":                   "aannnnu",
	"owner_tokens":                     "aannnnu",
}

// TestAuthorizationMatrix checks every (role, operation) cell on both
// stores: allowed (2xx), 403, 404 or 401, and that a refused cell changed
// nothing visible in the audit log.
func TestAuthorizationMatrix(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		w := newWorld(t, e)
		who := map[string]principal{"sysadmin": w.sysadmin, "owner": w.owner, "admin": w.admin, "assigned": w.assigned,
			"unassigned": w.unassigned, "other": w.other, "anonymous": {}}
		names := splitFields(roles)
		cells := 0
		for _, o := range matrixOps() {
			exp, ok := expectations[o.name]
			if !ok || len(exp) != len(names) {
				t.Fatalf("op %s: bad expectation %q", o.name, exp)
			}
			for i, role := range names {
				method, path, body := o.prepare(w)
				before := auditCount(t, e)
				r := e.do(who[role].token, method, path, body)
				cells++
				want := exp[i]
				var got byte
				switch {
				case r.status >= 200 && r.status < 300:
					got = 'a'
				case r.status == http.StatusForbidden:
					got = 'f'
				case r.status == http.StatusNotFound:
					got = 'n'
				case r.status == http.StatusUnauthorized:
					got = 'u'
				default:
					got = '?'
				}
				if got != want {
					t.Errorf("%s as %s: %s %s → %d (%c), want %c: %s", o.name, role, method, path, r.status, got, want, r.body)
					continue
				}
				if got != 'a' {
					code := r.errCode(t)
					wantCode := map[byte]string{'f': api.CodeForbidden, 'n': api.CodeNotFound, 'u': api.CodeUnauthenticated}[got]
					if code != wantCode {
						t.Errorf("%s as %s: error code %q, want %q", o.name, role, code, wantCode)
					}
					if method != "GET" && auditCount(t, e) != before {
						t.Errorf("%s as %s: a refused request wrote an audit event", o.name, role)
					}
				}
			}
		}
		if cells < 60 {
			t.Fatalf("matrix has %d cells, want at least 60", cells)
		}
		t.Logf("authorization matrix: %d cells (%d operations × %d roles)", cells, len(matrixOps()), len(names))
	})
}

// auditCount returns the id of the newest audit event (0: none): a
// refused request must not move it.
func auditCount(t *testing.T, e *env) int64 {
	t.Helper()
	evs, _, err := e.st.QueryAudit(e.ctx, store.AuditFilter{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) == 0 {
		return 0
	}
	return evs[0].ID
}

func splitFields(s string) []string {
	var out []string
	cur := ""
	for _, c := range s + " " {
		if c == ' ' {
			if cur != "" {
				out = append(out, cur)
			}
			cur = ""
			continue
		}
		cur += string(c)
	}
	return out
}
