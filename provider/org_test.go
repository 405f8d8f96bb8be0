package provider_test

import (
	"context"
	"testing"

	"mcpgw/domain"
	"mcpgw/internal/testsupport"
	"mcpgw/store"
)

// TestOrgMultiUser: in an org multi_user config every assignee runs their
// own upstream authorization and gets their own grant, bound (by AAD) to
// their own instance (DESIGN §3 rule 3, §5).
func TestOrgMultiUser(t *testing.T) {
	testsupport.Backends(t, func(t *testing.T, newStore func(t *testing.T) store.Store) {
		e := newEnv(t, newStore(t), envConfig{})
		ctx := context.Background()
		now := e.clock.Now()
		org, err := e.st.CreateOrg(ctx, store.Org{ID: store.NewID(), Name: "acme", CreatedAt: now}, e.alice.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.st.AddMember(ctx, store.Member{OrgID: org.ID, UserID: e.bob.ID, Role: store.RoleMember, CreatedAt: now}, nil); err != nil {
			t.Fatal(err)
		}
		cfg, r, err := e.st.CreateConfig(ctx, store.Config{
			ID: store.NewID(), OwnerScope: store.ScopeOrg, OwnerID: org.ID, Name: "Team files", RemoteURL: e.mcp.URL,
			AuthMode: store.AuthOAuthDynamic, SharingMode: store.MultiUser, CreatedBy: e.alice.ID, CreatedAt: now, UpdatedAt: now,
		}, store.NewID(), domain.NewRouteKey(), nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range []store.User{e.alice, e.bob} {
			if _, err := e.st.Assign(ctx, store.Assignment{ConfigID: cfg.ID, UserID: u.ID, CreatedBy: e.alice.ID, CreatedAt: now}, nil); err != nil {
				t.Fatal(err)
			}
		}
		e.cfg = cfg
		e.route = domain.RouteRef{Scope: r.OwnerScope, OwnerID: r.OwnerID, ConfigID: r.ConfigID, Key: r.Key}

		tokens := map[string]string{}
		for _, who := range []struct {
			user     store.User
			email    string
			password string
		}{{e.alice, "alice@example.com", alicePassword}, {e.bob, "bob@example.com", bobPassword}} {
			b := e.browser(nil)
			b.login(who.email, who.password)
			e.plant(e.authorizeOK(b, verifier1))
			ins, err := e.st.ListInstances(ctx, who.user.ID, cfg.ID, false)
			if err != nil || len(ins) != 1 {
				t.Fatalf("%s instances: %v %d", who.email, err, len(ins))
			}
			g, err := e.st.GetGrant(ctx, ins[0].ID)
			if err != nil {
				t.Fatalf("%s grant: %v", who.email, err)
			}
			tokens[who.user.ID] = e.open(g.AccessToken, "access_token", ins[0].ID)
		}
		if len(e.as.AuthorizeRequests()) != 2 || tokens[e.alice.ID] == tokens[e.bob.ID] {
			t.Fatal("assignees must each authorize upstream and get their own token")
		}
	})
}
