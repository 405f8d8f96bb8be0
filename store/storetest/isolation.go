package storetest

import (
	"encoding/json"
	"testing"

	"mcpgw/domain"
	"mcpgw/store"
)

// testIsolation proves that values passed in and handed out are copies: a
// caller that mutates a slice, map or byte buffer after a call cannot change
// what the store holds (an in-process store that shared them would let one
// request rewrite another's credentials).
func testIsolation(t *testing.T, newStore NewStore) {
	x := open(t, newStore)
	u := x.user()

	t.Run("ConfigInput", func(t *testing.T) {
		x := x.sub(t)
		c := newConfig(store.ScopeUser, u.ID, store.AuthStaticHeaders, store.SingleUser)
		c.Provider.Scopes = []string{"read"}
		want := c
		want.StaticHeaders = append([]byte(nil), c.StaticHeaders...)
		want.StaticHeaderNames = append([]string(nil), c.StaticHeaderNames...)
		want.AuxHeaders = map[string]string{}
		for k, v := range c.AuxHeaders {
			want.AuxHeaders[k] = v
		}
		want.Provider.Scopes = []string{"read"}
		want.Registry = append(json.RawMessage(nil), c.Registry...)
		_, _, err := x.s.CreateConfig(x.ctx, c, store.NewID(), domain.NewRouteKey(), nil)
		wantErr(t, "CreateConfig", err, nil)
		c.StaticHeaders[0] ^= 0xff
		c.StaticHeaderNames[0] = "cookie"
		c.AuxHeaders["x-injected"] = "1"
		c.Provider.Scopes[0] = "admin"
		c.Registry[1] = ' '
		checkConfig(t, x.getConfig(c.ID), want)
	})

	t.Run("ConfigOutput", func(t *testing.T) {
		x := x.sub(t)
		c, _ := x.personal(u.ID, store.AuthOAuthStatic)
		got := x.getConfig(c.ID)
		got.AuxHeaders["x-injected"] = "1"
		got.Provider.Scopes[0] = "admin"
		got.Provider.ClientCredentials[0] ^= 0xff
		checkConfig(t, x.getConfig(c.ID), c)
		list, err := x.s.ListConfigs(x.ctx, store.ScopeUser, u.ID)
		wantErr(t, "ListConfigs", err, nil)
		for i := range list {
			for k := range list[i].AuxHeaders {
				list[i].AuxHeaders[k] = "changed"
			}
		}
		checkConfig(t, x.getConfig(c.ID), c)
	})

	t.Run("UpdateFuncReferences", func(t *testing.T) {
		x := x.sub(t)
		c, _ := x.personal(u.ID, store.AuthOAuthDynamic)
		aux := map[string]string{"x-region": "eu"}
		scopes := []string{"read", "write"}
		_, _, err := x.s.UpdateConfig(x.ctx, c.ID, func(cc *store.Config) error {
			cc.AuxHeaders = aux
			cc.Provider.Scopes = scopes
			return nil
		}, nil)
		wantErr(t, "UpdateConfig", err, nil)
		// The caller keeps and later reuses what it handed to update.
		aux["x-late"] = "1"
		scopes[0] = "admin"
		got := x.getConfig(c.ID)
		if got.AuxHeaders["x-late"] != "" || !sameStrings(got.Provider.Scopes, []string{"read", "write"}) {
			t.Fatalf("config changed through references kept by the caller: aux %v scopes %v", got.AuxHeaders, got.Provider.Scopes)
		}
	})

	t.Run("GrantInputAndOutput", func(t *testing.T) {
		x := x.sub(t)
		c, _ := x.personal(u.ID, store.AuthOAuthDynamic)
		in := x.instance(c, u.ID)
		g := newGrant(in.ID, "iso")
		want := newGrant(in.ID, "iso")
		_, err := x.s.PutGrant(x.ctx, g, -1, nil)
		wantErr(t, "PutGrant", err, nil)
		g.AccessToken[0] ^= 0xff
		*g.ExpiresAt = g.ExpiresAt.Add(1)
		got, err := x.s.GetGrant(x.ctx, in.ID)
		wantErr(t, "GetGrant", err, nil)
		checkGrant(t, got, want)
		got.AccessToken[0] ^= 0xff
		_, err = x.s.LockGrant(x.ctx, in.ID, func(cur *store.Grant) (*store.Grant, error) {
			cur.AccessToken[0] ^= 0xff // mutating the read copy writes nothing
			return nil, nil
		})
		wantErr(t, "LockGrant", err, nil)
		again, _ := x.s.GetGrant(x.ctx, in.ID)
		checkGrant(t, again, want)
	})

	t.Run("RuntimeOutput", func(t *testing.T) {
		x := x.sub(t)
		c, r := x.personal(u.ID, store.AuthStaticHeaders)
		in := x.instance(c, u.ID)
		q := store.RuntimeQuery{ConfigID: c.ID, RouteKey: r.Key, OwnerScope: c.OwnerScope, OwnerID: c.OwnerID, UserID: u.ID,
			InstanceID: in.ID, ConfigVersion: c.Version, ExecutionContext: "personal"}
		rs, err := x.s.ResolveRuntime(x.ctx, q)
		wantErr(t, "ResolveRuntime", err, nil)
		if !rs.OK() {
			t.Fatalf("reason %q", rs.Reason)
		}
		rs.Config.StaticHeaders[0] ^= 0xff
		rs.Config.StaticHeaderNames[0] = "x"
		rs.Config.AuxHeaders["x-injected"] = "1"
		again, err := x.s.ResolveRuntime(x.ctx, q)
		wantErr(t, "ResolveRuntime", err, nil)
		if !sameBytes(again.Config.StaticHeaders, c.StaticHeaders) || !sameStrings(again.Config.StaticHeaderNames, c.StaticHeaderNames) ||
			!sameMap(again.Config.AuxHeaders, c.AuxHeaders) {
			t.Fatalf("runtime config changed by mutating a previous answer: %+v", again.Config)
		}
	})

	t.Run("OneTimeValues", func(t *testing.T) {
		x := x.sub(t)
		w := x.oauthWorld()
		code := w.authCode("iso", at(600e9))
		wantHash := append([]byte(nil), code.Hash...)
		wantErr(t, "CreateAuthCode", x.s.CreateAuthCode(x.ctx, code), nil)
		code.Hash[0] ^= 0xff
		code.Scopes[0] = "admin"
		got, err := x.s.ConsumeAuthCode(x.ctx, wantHash, t0)
		wantErr(t, "ConsumeAuthCode(original hash)", err, nil)
		if got.Scopes[0] != "mcp:access" {
			t.Fatalf("stored code scopes changed by the caller: %v", got.Scopes)
		}
	})
}
