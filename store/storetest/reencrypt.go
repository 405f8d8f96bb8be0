package storetest

import (
	"bytes"
	"errors"
	"testing"

	"mcpgw/store"
)

// RunReencrypt is the conformance suite of store.ReencryptStore (the key
// rotation job's view of the encrypted columns, DESIGN §9). Each
// implementation's tests call it next to Run.
func RunReencrypt(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Helper()
	rs := func(t *testing.T) (*h, store.ReencryptStore) {
		x := open(t, newStore)
		r, ok := x.s.(store.ReencryptStore)
		if !ok {
			t.Fatalf("%T does not implement store.ReencryptStore", x.s)
		}
		return x, r
	}

	t.Run("Invalid", func(t *testing.T) {
		x, r := rs(t)
		id := store.NewID()
		cases := []struct {
			name string
			err  error
		}{
			{"unknown column", r.ReplaceCiphertext(x.ctx, "users.email", id, []byte("a"), []byte("b"))},
			{"bad row id", r.ReplaceCiphertext(x.ctx, store.ColConfigStaticHeaders, "nope", []byte("a"), []byte("b"))},
			{"bad registration row id", r.ReplaceCiphertext(x.ctx, store.ColProviderRegistration, id, []byte("a"), []byte("b"))},
			{"registration version 0", r.ReplaceCiphertext(x.ctx, store.ColProviderRegistration, id+"/0", []byte("a"), []byte("b"))},
			{"empty prev", r.ReplaceCiphertext(x.ctx, store.ColGrantAccessToken, id, nil, []byte("b"))},
			{"empty next", r.ReplaceCiphertext(x.ctx, store.ColGrantAccessToken, id, []byte("a"), nil)},
			{"oversize next", r.ReplaceCiphertext(x.ctx, store.ColGrantAccessToken, id, []byte("a"), make([]byte, store.MaxCiphertextLen+1))},
		}
		for _, lim := range []int{0, -1, store.MaxCiphertextPage + 1} {
			_, err := r.ListCiphertexts(x.ctx, store.ColConfigStaticHeaders, "", lim)
			cases = append(cases, struct {
				name string
				err  error
			}{"limit", err})
		}
		_, err := r.ListCiphertexts(x.ctx, "configs.name", "", 10)
		cases = append(cases, struct {
			name string
			err  error
		}{"list unknown column", err})
		_, err = r.ListCiphertexts(x.ctx, store.ColGrantAccessToken, "not-a-uuid", 10)
		cases = append(cases, struct {
			name string
			err  error
		}{"list bad after", err})
		for _, c := range cases {
			if !errors.Is(c.err, store.ErrInvalid) {
				t.Errorf("%s: err = %v, want ErrInvalid", c.name, c.err)
			}
		}
	})

	t.Run("ConfigColumns", func(t *testing.T) {
		x, r := rs(t)
		u := x.user()
		var static, creds []store.Config
		for range 3 {
			c, _ := x.personal(u.ID, store.AuthStaticHeaders)
			static = append(static, c)
			c2, _ := x.personal(u.ID, store.AuthOAuthStatic)
			creds = append(creds, c2)
		}
		x.personal(u.ID, store.AuthNone) // no ciphertext: never listed

		for _, tc := range []struct {
			col  store.EncryptedColumn
			cfgs []store.Config
			get  func(store.Config) []byte
		}{
			{store.ColConfigStaticHeaders, static, func(c store.Config) []byte { return c.StaticHeaders }},
			{store.ColConfigProviderClientCredentials, creds, func(c store.Config) []byte { return c.Provider.ClientCredentials }},
		} {
			rows := listAll(t, x, r, tc.col, 2)
			if len(rows) != len(tc.cfgs) {
				t.Fatalf("%s: listed %d rows, want %d", tc.col, len(rows), len(tc.cfgs))
			}
			for _, c := range tc.cfgs {
				if v, ok := rows[c.ID]; !ok || !bytes.Equal(v, tc.get(c)) {
					t.Fatalf("%s: config %s missing or wrong", tc.col, c.ID)
				}
			}

			c := tc.cfgs[0]
			old := tc.get(c)
			next := append([]byte("reencrypted-"), old...)
			if err := r.ReplaceCiphertext(x.ctx, tc.col, c.ID, old, next); err != nil {
				t.Fatalf("%s: replace: %v", tc.col, err)
			}
			got := x.getConfig(c.ID)
			if !bytes.Equal(tc.get(got), next) {
				t.Fatalf("%s: value not replaced", tc.col)
			}
			if got.Version != c.Version {
				t.Fatalf("%s: version moved %d -> %d: re-encryption is not a material change", tc.col, c.Version, got.Version)
			}
			if err := r.ReplaceCiphertext(x.ctx, tc.col, c.ID, old, []byte("again")); !errors.Is(err, store.ErrStale) {
				t.Fatalf("%s: replace with a stale prev: %v", tc.col, err)
			}
			if !bytes.Equal(tc.get(x.getConfig(c.ID)), next) {
				t.Fatalf("%s: stale replace changed the value", tc.col)
			}
			if err := r.ReplaceCiphertext(x.ctx, tc.col, store.NewID(), old, next); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("%s: unknown row: %v", tc.col, err)
			}
		}
		// A config without the value: not found.
		none, _ := x.personal(u.ID, store.AuthNone)
		if err := r.ReplaceCiphertext(x.ctx, store.ColConfigStaticHeaders, none.ID, []byte("a"), []byte("b")); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("config without static headers: %v", err)
		}
	})

	t.Run("GrantColumns", func(t *testing.T) {
		x, r := rs(t)
		u := x.user()
		c, _ := x.personal(u.ID, store.AuthOAuthDynamic)
		in := x.instance(c, u.ID)
		g := x.grant(in.ID, "re")
		ver := x.getInstance(in.ID).GrantVersion

		for _, tc := range []struct {
			col store.EncryptedColumn
			old []byte
			get func(store.Grant) []byte
		}{
			{store.ColGrantAccessToken, g.AccessToken, func(g store.Grant) []byte { return g.AccessToken }},
			{store.ColGrantRefreshToken, g.RefreshToken, func(g store.Grant) []byte { return g.RefreshToken }},
		} {
			rows := listAll(t, x, r, tc.col, 1)
			if len(rows) != 1 || !bytes.Equal(rows[in.ID], tc.old) {
				t.Fatalf("%s: rows %v", tc.col, rows)
			}
			next := []byte("reencrypted-" + string(tc.col))
			if err := r.ReplaceCiphertext(x.ctx, tc.col, in.ID, tc.old, next); err != nil {
				t.Fatalf("%s: %v", tc.col, err)
			}
			got, err := x.s.GetGrant(x.ctx, in.ID)
			if err != nil || !bytes.Equal(tc.get(got), next) {
				t.Fatalf("%s: grant after replace: %v", tc.col, err)
			}
			if err := r.ReplaceCiphertext(x.ctx, tc.col, in.ID, tc.old, next); !errors.Is(err, store.ErrStale) {
				t.Fatalf("%s: stale: %v", tc.col, err)
			}
		}
		if v := x.getInstance(in.ID).GrantVersion; v != ver {
			t.Fatalf("grant version moved %d -> %d", ver, v)
		}

		// A grant without a refresh token is not listed for that column.
		u2 := x.user()
		c2, _ := x.personal(u2.ID, store.AuthOAuthDynamic)
		in2 := x.instance(c2, u2.ID)
		ng := newGrant(in2.ID, "norefresh")
		ng.RefreshToken = nil
		if _, err := x.s.PutGrant(x.ctx, ng, -1, nil); err != nil {
			t.Fatal(err)
		}
		if rows := listAll(t, x, r, store.ColGrantRefreshToken, 10); len(rows) != 1 {
			t.Fatalf("refresh rows: %d", len(rows))
		}
		if err := r.ReplaceCiphertext(x.ctx, store.ColGrantRefreshToken, in2.ID, []byte("a"), []byte("b")); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("absent refresh token: %v", err)
		}

		// An ended instance has no grant: gone from the list, replace fails.
		if _, err := x.s.EndInstance(x.ctx, in.ID, store.InstanceRevoked, nil); err != nil {
			t.Fatal(err)
		}
		if rows := listAll(t, x, r, store.ColGrantAccessToken, 10); len(rows) != 1 || rows[in2.ID] == nil {
			t.Fatalf("after EndInstance: %v", rows)
		}
		if err := r.ReplaceCiphertext(x.ctx, store.ColGrantAccessToken, in.ID, []byte("a"), []byte("b")); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("ended instance: %v", err)
		}
	})

	t.Run("ProviderRegistrations", func(t *testing.T) {
		x, r := rs(t)
		u := x.user()
		var ids []string
		for i := range 3 {
			c, _ := x.personal(u.ID, store.AuthOAuthDynamic)
			reg := store.ProviderRegistration{ConfigID: c.ID, ConfigVersion: c.Version, Ciphertext: []byte{'r', byte('0' + i)}, CreatedAt: t0}
			if err := x.s.PutProviderRegistration(x.ctx, reg); err != nil {
				t.Fatalf("PutProviderRegistration: %v", err)
			}
			ids = append(ids, store.RegistrationRowID(c.ID, c.Version))
		}
		rows := listAll(t, x, r, store.ColProviderRegistration, 2)
		if len(rows) != 3 {
			t.Fatalf("rows: %d", len(rows))
		}
		cid, ver, _ := store.ParseRegistrationRowID(ids[1])
		old := rows[ids[1]]
		if err := r.ReplaceCiphertext(x.ctx, store.ColProviderRegistration, ids[1], old, []byte("new")); err != nil {
			t.Fatal(err)
		}
		got, err := x.s.GetProviderRegistration(x.ctx, cid, ver)
		if err != nil || string(got.Ciphertext) != "new" {
			t.Fatalf("after replace: %q %v", got.Ciphertext, err)
		}
		if err := r.ReplaceCiphertext(x.ctx, store.ColProviderRegistration, ids[1], old, []byte("x")); !errors.Is(err, store.ErrStale) {
			t.Fatalf("stale: %v", err)
		}
		if err := r.ReplaceCiphertext(x.ctx, store.ColProviderRegistration, cid+"/99", old, []byte("x")); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown version: %v", err)
		}
	})
}

// listAll pages through col with the given page size and returns row id →
// value, failing on a duplicate or out-of-order row.
func listAll(t *testing.T, x *h, r store.ReencryptStore, col store.EncryptedColumn, page int) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	after := ""
	for {
		rows, err := r.ListCiphertexts(x.ctx, col, after, page)
		if err != nil {
			t.Fatalf("ListCiphertexts(%s): %v", col, err)
		}
		for _, row := range rows {
			if _, dup := out[row.RowID]; dup {
				t.Fatalf("%s: row %s listed twice", col, row.RowID)
			}
			out[row.RowID] = row.Value
		}
		if len(rows) < page {
			return out
		}
		after = rows[len(rows)-1].RowID
	}
}
