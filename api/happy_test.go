package api_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"mcpgw/api"
	"mcpgw/store"
)

// TestEveryEndpointHappyPath walks every endpoint once with a caller that
// is allowed, on the memory store and on Postgres.
func TestEveryEndpointHappyPath(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		admin := e.user("admin@example.com", true)

		// Users.
		var u api.UserView
		e.must(http.StatusCreated, admin.token, "POST", "/api/v1/users", map[string]any{"email": "Alice@Example.com", "display_name": "Alice"}).decode(t, &u)
		if u.Email != "alice@example.com" || u.Status != "active" || u.SystemAdmin {
			t.Fatalf("created user = %+v", u)
		}
		var users struct{ Users []api.UserView }
		e.must(http.StatusOK, admin.token, "GET", "/api/v1/users", nil).decode(t, &users)
		if len(users.Users) != 2 {
			t.Fatalf("users = %+v", users)
		}
		e.must(http.StatusOK, admin.token, "GET", "/api/v1/users/"+u.ID, nil)

		// Alice gets a token through bootstrap-style issuance, then mints
		// and revokes one through the API.
		alice := principal{user: store.User{ID: u.ID}}
		tok, err := api.IssueAPIToken(e.ctx, e.st, u.ID, "cli", 0, t0)
		if err != nil {
			t.Fatal(err)
		}
		alice.token = tok.Token
		var me api.MeView
		e.must(http.StatusOK, alice.token, "GET", "/api/v1/me", nil).decode(t, &me)
		if me.User.ID != u.ID || me.Via != "api_token" {
			t.Fatalf("me = %+v", me)
		}
		var nt api.CreatedTokenView
		e.must(http.StatusCreated, alice.token, "POST", "/api/v1/users/"+u.ID+"/tokens", map[string]any{"name": "laptop", "expires_in_seconds": 3600}).decode(t, &nt)
		if !strings.HasPrefix(nt.Token, "mgw_") || nt.ExpiresAt == nil {
			t.Fatalf("token = %+v", nt)
		}
		e.must(http.StatusOK, nt.Token, "GET", "/api/v1/me", nil)
		var toks struct{ Tokens []api.TokenView }
		e.must(http.StatusOK, alice.token, "GET", "/api/v1/users/"+u.ID+"/tokens", nil).decode(t, &toks)
		if len(toks.Tokens) != 2 || strings.Contains(string(e.do(alice.token, "GET", "/api/v1/users/"+u.ID+"/tokens", nil).body), nt.Token) {
			t.Fatalf("tokens = %+v", toks)
		}
		var self api.UserView
		e.must(http.StatusOK, alice.token, "GET", "/api/v1/users/me", nil).decode(t, &self)
		if self.ID != u.ID {
			t.Fatalf("users/me = %+v", self)
		}
		e.must(http.StatusOK, alice.token, "GET", "/api/v1/users/me/tokens", nil)
		e.must(http.StatusNoContent, alice.token, "DELETE", "/api/v1/users/"+u.ID+"/tokens/"+nt.ID, nil)
		e.must(http.StatusUnauthorized, nt.Token, "GET", "/api/v1/me", nil)

		// Orgs and members.
		var org api.OrgView
		e.must(http.StatusCreated, alice.token, "POST", "/api/v1/orgs", map[string]any{"name": "Acme"}).decode(t, &org)
		if org.Role != "owner" {
			t.Fatalf("org = %+v", org)
		}
		bob := e.user("bob@example.com", false)
		carol := e.user("carol@example.com", false)
		e.must(http.StatusCreated, alice.token, "POST", "/api/v1/orgs/"+org.ID+"/members", map[string]any{"user_id": bob.user.ID, "role": "member"})
		e.must(http.StatusCreated, alice.token, "POST", "/api/v1/orgs/"+org.ID+"/members", map[string]any{"user_id": carol.user.ID, "role": "member"})
		var m api.MemberView
		e.must(http.StatusOK, alice.token, "PATCH", "/api/v1/orgs/"+org.ID+"/members/"+carol.user.ID, map[string]any{"role": "admin"}).decode(t, &m)
		if m.Role != "admin" {
			t.Fatalf("member = %+v", m)
		}
		var members struct{ Members []api.MemberView }
		e.must(http.StatusOK, carol.token, "GET", "/api/v1/orgs/"+org.ID+"/members", nil).decode(t, &members)
		if len(members.Members) != 3 {
			t.Fatalf("members = %+v", members)
		}
		var orgs struct{ Orgs []api.OrgView }
		e.must(http.StatusOK, bob.token, "GET", "/api/v1/orgs", nil).decode(t, &orgs)
		if len(orgs.Orgs) != 1 || orgs.Orgs[0].Role != "member" {
			t.Fatalf("orgs = %+v", orgs)
		}
		e.must(http.StatusOK, bob.token, "GET", "/api/v1/orgs/"+org.ID, nil)

		// Configs.
		cfg := e.createConfig(carol.token, orgConfigBody(org.ID, "tools", store.MultiUser, store.AuthStaticHeaders))
		if cfg.Version != 1 || cfg.Status != "enabled" || !strings.HasPrefix(cfg.ConnectURL, publicBase+"/mcp-connect/org/"+org.ID+"/"+cfg.ID+"/") ||
			len(cfg.StaticHeaderNames) != 1 || cfg.StaticHeaderNames[0] != "authorization" {
			t.Fatalf("config = %+v", cfg)
		}
		personal := e.createConfig(bob.token, map[string]any{"name": "mine", "remote_url": "https://other.example.com/", "auth_mode": "none"})
		if personal.OwnerScope != "user" || personal.OwnerID != bob.user.ID || personal.SharingMode != "single_user" {
			t.Fatalf("personal = %+v", personal)
		}
		e.must(http.StatusOK, carol.token, "GET", "/api/v1/configs/"+cfg.ID, nil)
		var list struct{ Configs []api.ConfigView }
		e.must(http.StatusOK, carol.token, "GET", "/api/v1/configs?owner_scope=org&owner_id="+org.ID, nil).decode(t, &list)
		if len(list.Configs) != 1 {
			t.Fatalf("list = %+v", list)
		}
		e.must(http.StatusOK, bob.token, "GET", "/api/v1/configs", nil).decode(t, &list)
		if len(list.Configs) != 1 || list.Configs[0].ID != personal.ID {
			t.Fatalf("bob's configs = %+v", list)
		}
		var up api.UpdateResult
		e.must(http.StatusOK, carol.token, "PATCH", "/api/v1/configs/"+cfg.ID, map[string]any{"name": "tools v2", "aux_headers": map[string]string{"X-Tenant": "acme"}}).decode(t, &up)
		if up.Material || up.Config.Version != 1 || up.Config.Name != "tools v2" || up.Config.AuxHeaders["x-tenant"] != "acme" {
			t.Fatalf("non-material update = %+v", up)
		}
		e.must(http.StatusOK, carol.token, "PATCH", "/api/v1/configs/"+cfg.ID, map[string]any{"remote_url": "https://other.example.com/mcp"}).decode(t, &up)
		if !up.Material || up.Config.Version != 2 {
			t.Fatalf("material update = %+v", up)
		}
		var cv api.ConfigView
		e.must(http.StatusOK, carol.token, "POST", "/api/v1/configs/"+cfg.ID+"/disable", nil).decode(t, &cv)
		if cv.Status != "disabled" {
			t.Fatalf("disabled = %+v", cv)
		}
		e.must(http.StatusOK, carol.token, "POST", "/api/v1/configs/"+cfg.ID+"/enable", nil).decode(t, &cv)
		if cv.Status != "enabled" {
			t.Fatalf("enabled = %+v", cv)
		}
		var rot api.RotateResult
		e.must(http.StatusOK, carol.token, "POST", "/api/v1/configs/"+cfg.ID+"/rotate-route", nil).decode(t, &rot)
		if rot.ConnectURL == cfg.ConnectURL || !strings.HasPrefix(rot.ConnectURL, publicBase) {
			t.Fatalf("rotate = %+v", rot)
		}

		// Assignments, available, instances.
		var as api.AssignmentView
		e.must(http.StatusCreated, carol.token, "POST", "/api/v1/configs/"+cfg.ID+"/assignments", map[string]any{"user_id": bob.user.ID}).decode(t, &as)
		var asl struct{ Assignments []api.AssignmentView }
		e.must(http.StatusOK, carol.token, "GET", "/api/v1/configs/"+cfg.ID+"/assignments", nil).decode(t, &asl)
		if len(asl.Assignments) != 1 || asl.Assignments[0].UserID != bob.user.ID {
			t.Fatalf("assignments = %+v", asl)
		}
		var av struct{ Available []api.AvailableView }
		e.must(http.StatusOK, bob.token, "GET", "/api/v1/available", nil).decode(t, &av)
		if len(av.Available) != 2 {
			t.Fatalf("available = %+v", av)
		}
		for _, a := range av.Available {
			if a.ConfigID == cfg.ID && (a.ConnectURL != rot.ConnectURL || a.ExecutionContext != "org:"+org.ID || a.NeedsAuthorization) {
				t.Fatalf("available org config = %+v", a)
			}
		}
		e.must(http.StatusOK, carol.token, "GET", "/api/v1/available", nil).decode(t, &av)
		if len(av.Available) != 0 {
			t.Fatalf("an unassigned org admin may not use org configs: %+v", av)
		}
		cfgNow := api.ConfigView{ID: cfg.ID, OwnerScope: "org", OwnerID: org.ID}
		inst := e.instanceWithGrant(cfgNow, bob.user.ID)
		var insts struct{ Instances []api.InstanceView }
		e.must(http.StatusOK, bob.token, "GET", "/api/v1/instances", nil).decode(t, &insts)
		if len(insts.Instances) != 1 || insts.Instances[0].ID != inst.ID {
			t.Fatalf("instances = %+v", insts)
		}
		e.must(http.StatusOK, carol.token, "GET", "/api/v1/orgs/"+org.ID+"/instances", nil).decode(t, &insts)
		if len(insts.Instances) != 1 {
			t.Fatalf("org instances = %+v", insts)
		}
		var iv api.InstanceView
		e.must(http.StatusOK, bob.token, "DELETE", "/api/v1/instances/"+inst.ID, nil).decode(t, &iv)
		if iv.State != "revoked" || e.hasGrant(inst.ID) {
			t.Fatalf("revoked instance = %+v", iv)
		}

		// Audit.
		var page api.AuditPage
		e.must(http.StatusOK, carol.token, "GET", "/api/v1/audit?org_id="+org.ID+"&limit=3", nil).decode(t, &page)
		if len(page.Events) != 3 || page.NextBefore == 0 {
			t.Fatalf("audit page = %+v", page)
		}
		var page2 api.AuditPage
		e.must(http.StatusOK, carol.token, "GET", "/api/v1/audit?org_id="+org.ID+"&limit=1000&before="+itoa(page.NextBefore), nil).decode(t, &page2)
		for _, ev := range append(page.Events, page2.Events...) {
			if ev.OwnerID != org.ID {
				t.Fatalf("foreign event in org audit: %+v", ev)
			}
		}
		e.must(http.StatusOK, admin.token, "GET", "/api/v1/audit?type=config.update&config_id="+cfg.ID, nil).decode(t, &page)
		if len(page.Events) != 2 || page.Events[0].Metadata["material"] != "true" || page.Events[1].Metadata["material"] != "false" {
			t.Fatalf("config.update events = %+v", page.Events)
		}

		// Teardown endpoints.
		e.must(http.StatusNoContent, carol.token, "DELETE", "/api/v1/configs/"+cfg.ID+"/assignments/"+bob.user.ID, nil)
		e.must(http.StatusNoContent, alice.token, "DELETE", "/api/v1/orgs/"+org.ID+"/members/"+carol.user.ID, nil)
		e.must(http.StatusNoContent, alice.token, "DELETE", "/api/v1/configs/"+cfg.ID, nil)
		e.must(http.StatusNotFound, alice.token, "GET", "/api/v1/configs/"+cfg.ID, nil)
		e.must(http.StatusOK, admin.token, "POST", "/api/v1/users/"+bob.user.ID+"/block", nil).decode(t, &u)
		if u.Status != "blocked" {
			t.Fatalf("blocked = %+v", u)
		}
		e.must(http.StatusUnauthorized, bob.token, "GET", "/api/v1/me", nil)
		e.must(http.StatusOK, admin.token, "POST", "/api/v1/users/"+bob.user.ID+"/unblock", nil)
		e.must(http.StatusOK, bob.token, "GET", "/api/v1/me", nil)
		e.must(http.StatusNoContent, admin.token, "DELETE", "/api/v1/users/"+bob.user.ID, nil)
		e.must(http.StatusUnauthorized, bob.token, "GET", "/api/v1/me", nil)
		e.must(http.StatusOK, admin.token, "GET", "/api/v1/users/"+bob.user.ID, nil).decode(t, &u)
		if u.Status != "deleted" || strings.Contains(u.Email, "bob") {
			t.Fatalf("deleted user not anonymized: %+v", u)
		}
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
