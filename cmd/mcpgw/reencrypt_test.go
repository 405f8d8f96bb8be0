package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"mcpgw/domain"
	"mcpgw/domain/secrets"
	"mcpgw/store"
	"mcpgw/store/postgres"
	"mcpgw/store/postgres/pgtest"
)

// TestReencrypt seals values with an old key, rotates the ring, and runs
// `mcpgw reencrypt` against a real Postgres database: values move to the
// new key with the same plaintext, a dry run changes nothing, a second run
// finds nothing to do, and a value no key opens is reported (by row, not
// content), left untouched, and makes the command fail.
func TestReencrypt(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	st, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	k1, _ := secrets.NewKey("k1")
	k2, _ := secrets.NewKey("k2")
	oldRing, _ := secrets.NewKeyRing(k1)
	newSpec := secrets.EncodeKey(k2) + "," + secrets.EncodeKey(k1)
	newRing, _ := secrets.ParseKeyRing(newSpec)

	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	u, err := st.CreateUser(ctx, store.User{ID: store.NewID(), Email: "r@example.test", DisplayName: "R", Status: store.UserActive, CreatedAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	const planted = "PLANTED-static-header-secret"
	mkConfig := func(mode store.AuthMode, seal func(id string) []byte) store.Config {
		id := store.NewID()
		c := store.Config{ID: id, OwnerScope: store.ScopeUser, OwnerID: u.ID, Name: "c-" + id[:6], RemoteURL: "https://mcp.example.com/mcp",
			AuthMode: mode, SharingMode: store.SingleUser, Status: store.ConfigEnabled, CreatedAt: t0, UpdatedAt: t0}
		if mode == store.AuthStaticHeaders {
			c.StaticHeaders = seal(id)
			c.StaticHeaderNames = []string{"authorization"}
		}
		got, _, err := st.CreateConfig(ctx, c, store.NewID(), domain.NewRouteKey(), nil)
		if err != nil {
			t.Fatalf("CreateConfig: %v", err)
		}
		return got
	}
	sealFor := func(r *secrets.KeyRing, col store.EncryptedColumn) func(string) []byte {
		return func(id string) []byte {
			ct, err := r.Seal([]byte(`{"authorization":"Bearer `+planted+`"}`), secrets.AAD(col.Table(), col.Column(), id))
			if err != nil {
				t.Fatal(err)
			}
			return ct
		}
	}
	oldCfg := mkConfig(store.AuthStaticHeaders, sealFor(oldRing, store.ColConfigStaticHeaders))
	curCfg := mkConfig(store.AuthStaticHeaders, sealFor(newRing, store.ColConfigStaticHeaders))

	oc := mkConfig(store.AuthOAuthDynamic, nil)
	in, _, err := st.GetOrCreateInstance(ctx, store.ScopeUser, u.ID, u.ID, oc.ID, store.NewID())
	if err != nil {
		t.Fatal(err)
	}
	at, _ := oldRing.Seal([]byte("upstream-access"), secrets.AAD("grants", "access_token", in.ID))
	if _, err := st.PutGrant(ctx, store.Grant{InstanceID: in.ID, AccessToken: at, TokenType: "Bearer", UpdatedAt: t0}, -1, nil); err != nil {
		t.Fatal(err)
	}

	env := []string{"MCPGW_DATABASE_URL=" + dsn, "MCPGW_ENCRYPTION_KEYS=" + newSpec}

	// Dry run: counts, changes nothing.
	code, out, errs := runCmd(t, env, "reencrypt", "--dry-run")
	if code != exitOK || !strings.Contains(out, "configs.static_headers") || !strings.Contains(out, "1 to rewrite, 1 current") {
		t.Fatalf("dry run: %d\n%s\n%s", code, out, errs)
	}
	if c, _ := st.GetConfig(ctx, oldCfg.ID); string(c.StaticHeaders) != string(oldCfg.StaticHeaders) {
		t.Fatal("dry run changed a value")
	}

	code, out, errs = runCmd(t, env, "reencrypt", "--batch", "1")
	if code != exitOK {
		t.Fatalf("reencrypt: %d\n%s\n%s", code, out, errs)
	}
	for _, s := range []string{out, errs} {
		if strings.Contains(s, planted) || strings.Contains(s, strings.TrimPrefix(secrets.EncodeKey(k2), "k2:")) {
			t.Fatal("output leaks a secret")
		}
	}
	c, _ := st.GetConfig(ctx, oldCfg.ID)
	if id, _ := secrets.KeyID(c.StaticHeaders); id != "k2" {
		t.Fatalf("static headers still sealed by %q", id)
	}
	pt, err := newRing.Open(c.StaticHeaders, secrets.AAD("configs", "static_headers", c.ID))
	if err != nil || !strings.Contains(string(pt), planted) {
		t.Fatalf("re-encrypted value does not open to the same plaintext: %v", err)
	}
	if c.Version != oldCfg.Version {
		t.Fatal("config version moved")
	}
	if c2, _ := st.GetConfig(ctx, curCfg.ID); string(c2.StaticHeaders) != string(curCfg.StaticHeaders) {
		t.Fatal("a current value was rewritten")
	}
	g, _ := st.GetGrant(ctx, in.ID)
	if id, _ := secrets.KeyID(g.AccessToken); id != "k2" {
		t.Fatalf("grant still sealed by %q", id)
	}

	// Second run: nothing to do.
	code, out, _ = runCmd(t, env, "reencrypt")
	if code != exitOK || strings.Contains(out, "1 rewritten") {
		t.Fatalf("second run:\n%s", out)
	}

	// A value sealed for another row opens with no key: reported, untouched.
	bad := mkConfig(store.AuthStaticHeaders, func(string) []byte {
		return sealFor(oldRing, store.ColConfigStaticHeaders)(store.NewID())
	})
	code, out, errs = runCmd(t, env, "reencrypt")
	if code != exitError || !strings.Contains(errs, bad.ID) || !strings.Contains(out, "1 undecryptable") {
		t.Fatalf("undecryptable: %d\n%s\n%s", code, out, errs)
	}
	if c, _ := st.GetConfig(ctx, bad.ID); string(c.StaticHeaders) != string(bad.StaticHeaders) {
		t.Fatal("undecryptable value was changed")
	}

	// Usage errors.
	if code, _, _ := runCmd(t, []string{"MCPGW_ENCRYPTION_KEYS=" + newSpec}, "reencrypt"); code != exitUsage {
		t.Fatal("missing database accepted")
	}
	if code, _, errs := runCmd(t, []string{"MCPGW_DATABASE_URL=" + dsn, "MCPGW_ENCRYPTION_KEYS=k1:short"}, "reencrypt"); code != exitUsage || strings.Contains(errs, "short") && !strings.Contains(errs, "encryption_keys") {
		t.Fatalf("bad ring: %d %s", code, errs)
	}
}
