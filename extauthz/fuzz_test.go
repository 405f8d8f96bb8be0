package extauthz

import (
	"context"
	"strings"
	"testing"

	"mcpgw/domain/headers"
	"mcpgw/store"
)

// FuzzDecide feeds arbitrary paths, Authorization values, an Origin and an
// extra header into the decision core (the recheck always passes) and
// checks the invariants that must hold whatever the input: no panic, no
// error, an allow only for the one valid token on the route root (or a
// valid descendant: path_passthrough is on), and an allow never forwards a
// credential-like or non-allowlisted client header.
func FuzzDecide(f *testing.F) {
	fs := &fakeStore{}
	e := newEnv(f, fs, nil)
	r := newRoute(store.ScopeUser)
	st := okState(r, store.AuthNone)
	st.Config.PathPassthrough = true
	fs.state = st
	good := mint(f, e.key, r.claims(e.clock.Now()))
	root := r.ref.Path()

	f.Add(root, "Bearer "+good, "", "x-custom", "v")
	f.Add(root+"/tools/list?x=1", "Bearer "+good, testOrigin, "cookie", "c")
	f.Add(root+"/../x", "Bearer "+good, "", "", "")
	f.Add(root, "Bearer "+good+",Bearer "+good, "", "", "")
	f.Add(root+"?access_token="+good, "", "", "", "")
	f.Add(root, "bearer "+good, "https://evil.example", "x-auth-user", "u")
	f.Add("/mcp-connect/", "Basic Zm9v", "null", "authorization", "x")
	f.Fuzz(func(t *testing.T, path, authz, origin, extraName, extraValue string) {
		h := map[string]string{":path": path, "content-type": "application/json"}
		if authz != "" {
			h["authorization"] = authz
		}
		if origin != "" {
			h["origin"] = origin
		}
		if extraName != "" {
			h[extraName] = extraValue
		}
		req := Request{Method: "POST", Path: path, Headers: h, ContextExtensions: map[string]string{
			"config_id": r.ref.ConfigID, "route_key": r.ref.Key, "owner_scope": string(r.ref.Scope), "owner_id": r.ref.OwnerID,
		}}
		d, err := e.srv.Decide(context.Background(), req)
		if err != nil {
			t.Fatalf("Decide error: %v", err)
		}
		if !d.Allow {
			if d.Status < 400 || d.Status > 599 || d.Body == "" {
				t.Fatalf("bad denial %+v", d)
			}
			return
		}
		tok, _, ok := bearer(authz)
		if !ok || tok != good {
			t.Fatalf("allowed with Authorization %q", authz)
		}
		p, _, _ := strings.Cut(path, "?")
		if p != root && !(strings.HasPrefix(p, root+"/") && validDescendant(p[len(root):])) {
			t.Fatalf("allowed path %q", path)
		}
		removed := map[string]bool{}
		for _, n := range d.RemoveHeaders {
			removed[n] = true
		}
		for n := range h {
			n = asciiLower(n) // Envoy matches header names case-insensitively
			if headers.IsTransport(n) {
				continue
			}
			if (headers.IsAlwaysStripped(n) || !headers.ClientAllowed(n)) && !removed[n] {
				t.Fatalf("client header %q forwarded; removed %v", n, d.RemoveHeaders)
			}
		}
	})
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
