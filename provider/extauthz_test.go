package provider_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpgw/domain/signing"
	"mcpgw/extauthz"
	"mcpgw/internal/testsupport"
	"mcpgw/provider/providertest"
	"mcpgw/store"
)

// bearerTransport adds a fixed Authorization header, as Envoy does with
// the header extauthz decided on.
type bearerTransport struct {
	header string
	base   http.RoundTripper
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", b.header)
	return b.base.RoundTrip(r)
}

// callWhoami calls the upstream MCP server's whoami tool with a real
// go-sdk MCP client carrying authorization.
func callWhoami(t *testing.T, e *env, authorization string) string {
	t.Helper()
	hc := providertest.Client(t)
	hc.Transport = bearerTransport{header: authorization, base: hc.Transport}
	c := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: e.mcp.URL, HTTPClient: hc}, nil)
	if err != nil {
		t.Fatalf("connect upstream MCP: %v", err)
	}
	defer cs.Close()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"})
	if err != nil || res.IsError || len(res.Content) == 0 {
		t.Fatalf("whoami: %v %+v", err, res)
	}
	return res.Content[0].(*mcp.TextContent).Text
}

// TestThroughExtauthz: the provider as extauthz.Credentials. A gateway
// token from the first-level flow is allowed with the user's upstream
// bearer injected; once the upstream token expires the next Check
// refreshes it (one upstream call) and injects the new one, which a real
// MCP client presents successfully upstream; a refused refresh becomes a
// 401 and needs_reauth (DESIGN §6 step 7).
func TestThroughExtauthz(t *testing.T) {
	testsupport.Backends(t, func(t *testing.T, newStore func(t *testing.T) store.Store) {
		e := authorized(t, newStore(t), envConfig{})
		// authorized() consumed verifier1's code; run one more first-level
		// authorization (no provider round trip now: the grant exists).
		b := e.browser(nil)
		b.login("alice@example.com", alicePassword)
		code := e.authorizeOK(b, verifier2)
		e.plant(code)
		if n := len(e.as.AuthorizeRequests()); n != 1 {
			t.Fatalf("a usable grant must not re-run the provider flow (%d upstream authorizations)", n)
		}
		st, out := e.exchange(code, verifier2)
		if st != http.StatusOK {
			t.Fatalf("exchange: %d %v", st, out)
		}
		jwt := out["access_token"].(string)
		az, err := extauthz.New(extauthz.Options{
			Store: e.st, Keys: extauthz.StaticKeys(&signing.Set{Current: sigKey}), Issuer: e.base,
			PublicBaseURL: e.base, KeyRing: e.kr, Credentials: e.prov,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer az.Close()
		req := extauthz.Request{
			Method: "POST", Scheme: "https", Host: "gw", Path: e.route.Path(),
			Headers: map[string]string{"authorization": "Bearer " + jwt},
			ContextExtensions: map[string]string{"config_id": e.route.ConfigID, "route_key": e.route.Key,
				"owner_scope": string(e.route.Scope), "owner_id": e.route.OwnerID},
		}
		injected := func() string {
			t.Helper()
			d, err := az.Decide(context.Background(), req)
			if err != nil || !d.Allow {
				t.Fatalf("decide: %v %+v", err, d)
			}
			for _, h := range d.Headers {
				if h.Name == "authorization" {
					return h.Value
				}
			}
			t.Fatal("no authorization injected")
			return ""
		}
		first := injected()
		if !strings.HasPrefix(first, "Bearer upstream-at-") {
			t.Fatal("injected header is not the upstream bearer")
		}
		if who := callWhoami(t, e, first); !strings.Contains(who, "subject=upstream-user") {
			t.Fatalf("whoami: %q", who)
		}

		e.clock.Advance(2 * time.Hour) // upstream token expired (provider clock)
		second := injected()
		if second == first || e.as.RefreshRequests.Load() != 1 {
			t.Fatalf("expected one refresh and a new token (refreshes %d)", e.as.RefreshRequests.Load())
		}
		if who := callWhoami(t, e, second); !strings.Contains(who, "subject=upstream-user") {
			t.Fatalf("whoami after refresh: %q", who)
		}

		e.clock.Advance(2 * time.Hour)
		e.as.SetFault(providertest.Fault{RefreshStatus: 400})
		d, err := az.Decide(context.Background(), req)
		if err != nil || d.Allow || d.Status != http.StatusUnauthorized {
			t.Fatalf("refused refresh: %v %+v", err, d)
		}
		if in, _ := e.instance(); in.State != store.InstanceNeedsReauth {
			t.Fatalf("instance %s", in.State)
		}
		// Re-authorizing runs the provider flow again and repairs the
		// instance.
		e.as.SetFault(providertest.Fault{})
		e.plant(e.authorizeOK(b, verifier1))
		if n := len(e.as.AuthorizeRequests()); n != 2 {
			t.Fatalf("re-authorization did not re-run the provider flow (%d)", n)
		}
		if in, _ := e.instance(); in.State != store.InstanceActive {
			t.Fatalf("instance %s after re-authorization", in.State)
		}
	})
}
