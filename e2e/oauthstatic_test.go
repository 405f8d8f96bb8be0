package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpgw/api"
	"mcpgw/provider"
	"mcpgw/store"
)

// Scenario 9: auth mode oauth_static (DESIGN §5). The upstream's operator
// registered mcpgw at the upstream's authorization server out of band; the
// config holds that client (id + secret, sealed). Each user still
// authorizes at the upstream once and gets a grant of their own, which
// extauthz injects; the client's gateway token never reaches the upstream,
// and a revoked grant stops the very next request.
func TestOAuthStatic(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	const clientID = "mcpgw-operator-client"
	clientSecret := "operator-client-secret-" + randString()
	// The operator registered exactly mcpgw's provider callback.
	e.upstream.as.addClient(clientID, clientSecret, "client_secret_basic", e.base+provider.CallbackPath)

	// An org multi_user config assigned to alice and bob: one instance and
	// one upstream grant per user.
	org := e.seedOrg("acme")
	if _, err := e.st.AddMember(ctx, store.Member{OrgID: org.ID, UserID: e.bob.ID, Role: store.RoleMember}, nil); err != nil {
		t.Fatalf("add bob to the org: %v", err)
	}
	s := e.seedConfig(configSpec{name: "static oauth", mode: store.AuthOAuthStatic, remote: e.upstream.url + "/protected/mcp", org: &org,
		providerClient: &provider.StaticCredentials{ClientID: clientID, ClientSecret: clientSecret}})
	if _, err := e.st.Assign(ctx, store.Assignment{ConfigID: s.cfg.ID, UserID: e.bob.ID, CreatedBy: e.alice.ID}, nil); err != nil {
		t.Fatalf("assign bob: %v", err)
	}
	e.waitRoute(s)
	registrationsBefore := e.upstream.as.registrations()
	authorizations := func() int { n, _ := e.upstream.as.counts(); return n }
	authorizationsBefore := authorizations()

	sctx, cancel := context.WithTimeout(ctx, 4*convergence)
	defer cancel()

	// Alice: the Go SDK client with its OAuth handler. Her one consent at
	// the gateway runs the provider flow at the upstream with the
	// operator's client.
	sess, h, _ := e.sdkSession(t, sctx, s, "")
	aliceGot, err := callEcho(sctx, sess)
	if err != nil {
		t.Fatalf("alice tools/call echo_headers: %v", err)
	}
	ts, err := h.TokenSource(sctx)
	if err != nil {
		t.Fatal(err)
	}
	aliceTok, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	e.plant(aliceTok.AccessToken, aliceTok.RefreshToken)
	aliceUp := upstreamBearer(t, aliceGot)
	e.plant(aliceUp)
	if got := e.upstream.as.issuedTo(aliceUp); got != clientID {
		t.Errorf("alice's upstream credential was issued to client %q, want the operator's %q", got, clientID)
	}
	checkUpstreamHeaders(t, aliceGot, aliceTok.AccessToken, "Bearer "+aliceUp)
	if n := authorizations() - authorizationsBefore; n != 1 {
		t.Errorf("upstream authorizations after alice = %d, want 1", n)
	}
	// The code was redeemed with the operator's secret, the way the
	// operator registered it (the AS refuses anything else), and mcpgw
	// never registered a client of its own.
	if got, want := e.upstream.as.tokenRequests(clientID), map[string]int{"client_secret_basic": 1}; !maps.Equal(got, want) {
		t.Errorf("token requests of the operator's client = %v, want %v", got, want)
	}
	if n := e.upstream.as.registrations() - registrationsBefore; n != 0 {
		t.Errorf("oauth_static registered %d clients at the upstream by DCR, want 0", n)
	}
	for _, hdr := range e.upstream.allHeaders() {
		if strings.Contains(strings.Join(hdr.Values("Authorization"), ","), aliceTok.AccessToken) {
			t.Errorf("alice's gateway token reached the upstream")
		}
	}

	// Bob: his own consent, his own upstream authorization and credential.
	bobTok := e.authorizeAs(t, s, bobEmail)
	if n := authorizations() - authorizationsBefore; n != 2 {
		t.Errorf("upstream authorizations after bob = %d, want 2 (one per user)", n)
	}
	bobGot, err := echoWithToken(sctx, s.url(e.base), bobTok.Access)
	if err != nil {
		t.Fatalf("bob tools/call echo_headers: %v", err)
	}
	bobUp := upstreamBearer(t, bobGot)
	e.plant(bobUp)
	if got := e.upstream.as.issuedTo(bobUp); got != clientID {
		t.Errorf("bob's upstream credential was issued to client %q, want %q", got, clientID)
	}
	if bobUp == aliceUp {
		t.Errorf("alice and bob share one upstream credential; oauth_static grants are per user")
	}
	checkUpstreamHeaders(t, bobGot, bobTok.Access, "Bearer "+bobUp)

	t.Run("revoking the grant denies the next request", func(t *testing.T) {
		inst := fmt.Sprint(jwtClaims(t, aliceTok.AccessToken)["instance_id"])
		seen := len(e.upstream.allHeaders())
		if _, err := e.st.RevokeGrant(ctx, inst, nil); err != nil {
			t.Fatalf("revoke alice's grant: %v", err)
		}
		// The gateway token is still valid (15 minutes); the fresh
		// recheck finds no grant.
		if _, err := callEcho(sctx, sess); err == nil {
			t.Errorf("alice's SDK session still calls tools after her grant was revoked")
		}
		if code := mcpInit(t, s.url(e.base), aliceTok.AccessToken, nil); code != http.StatusForbidden {
			t.Errorf("alice after grant revocation = %d, want 403", code)
		}
		if n := len(e.upstream.allHeaders()) - seen; n != 0 {
			t.Errorf("the upstream received %d requests for a revoked grant, want 0", n)
		}
		// Bob's grant is his own: untouched.
		got, err := echoWithToken(sctx, s.url(e.base), bobTok.Access)
		if err != nil {
			t.Fatalf("bob after alice's revocation: %v", err)
		}
		checkUpstreamHeaders(t, got, bobTok.Access, "Bearer "+bobUp)

		// Alice authorizes again: the provider flow runs again and the
		// upstream gets a new credential.
		before := authorizations()
		tok := e.authorize(t, s)
		if n := authorizations() - before; n != 1 {
			t.Errorf("upstream authorizations for alice's new grant = %d, want 1", n)
		}
		got, err = echoWithToken(sctx, s.url(e.base), tok.Access)
		if err != nil {
			t.Fatalf("alice after re-authorization: %v", err)
		}
		up := upstreamBearer(t, got)
		e.plant(up)
		if up == aliceUp || e.upstream.as.issuedTo(up) != clientID {
			t.Errorf("alice's new upstream credential: same as the revoked one %v, issued to %q", up == aliceUp, e.upstream.as.issuedTo(up))
		}
		checkUpstreamHeaders(t, got, tok.Access, "Bearer "+up)
	})

	t.Run("the user revokes the instance through the management API", func(t *testing.T) {
		inst := fmt.Sprint(jwtClaims(t, bobTok.Access)["instance_id"])
		apiTok, err := api.IssueAPIToken(ctx, e.st, e.bob.ID, "e2e", time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		e.plant(apiTok.Token)
		code, _, body := get(t, "DELETE", e.base+"/api/v1/instances/"+inst, map[string]string{"Authorization": "Bearer " + apiTok.Token})
		var view struct {
			State string `json:"state"`
		}
		if code != http.StatusOK || json.Unmarshal([]byte(body), &view) != nil || view.State != string(store.InstanceRevoked) {
			t.Fatalf("DELETE /api/v1/instances/{bob's} = %d %q", code, body)
		}
		seen := len(e.upstream.allHeaders())
		if code := mcpInit(t, s.url(e.base), bobTok.Access, nil); code != http.StatusForbidden {
			t.Errorf("bob after revoking his instance = %d, want 403", code)
		}
		if n := len(e.upstream.allHeaders()) - seen; n != 0 {
			t.Errorf("the upstream received %d requests for a revoked instance, want 0", n)
		}
	})
}

// callEcho calls the upstream's echo_headers tool on an open session and
// returns the headers the upstream received for that call.
func callEcho(ctx context.Context, sess *mcp.ClientSession) (map[string][]string, error) {
	res, err := sess.CallTool(ctx, &mcp.CallToolParams{Name: "echo_headers"})
	if err != nil {
		return nil, err
	}
	if res.IsError || len(res.Content) != 1 {
		return nil, fmt.Errorf("echo_headers: error result %v", res.IsError)
	}
	tc, ok := res.Content[0].(*mcp.TextContent)
	if !ok {
		return nil, fmt.Errorf("echo_headers: content %T", res.Content[0])
	}
	var got map[string][]string
	if err := json.Unmarshal([]byte(tc.Text), &got); err != nil {
		return nil, fmt.Errorf("echo_headers result: %w", err)
	}
	return got, nil
}

// echoWithToken connects the Go SDK client to a route with a gateway token
// already in hand (no OAuth handler), calls echo_headers once and returns
// what the upstream received. The client's requests carry the planted
// cookie and unknown headers too.
func echoWithToken(ctx context.Context, routeURL, token string) (map[string][]string, error) {
	tr := &mcp.StreamableClientTransport{Endpoint: routeURL, DisableStandaloneSSE: true,
		HTTPClient: &http.Client{Transport: bearerTransport{token: token, base: plantingTransport{http.DefaultTransport}}}}
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e-go-client", Version: "1.0.0"}, nil)
	sess, err := client.Connect(ctx, tr, nil)
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	return callEcho(ctx, sess)
}

// bearerTransport sends a fixed gateway token on every request.
type bearerTransport struct {
	token string
	base  http.RoundTripper
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// upstreamBearer returns the one bearer token the upstream received.
func upstreamBearer(t *testing.T, got map[string][]string) string {
	t.Helper()
	if len(got["authorization"]) != 1 {
		t.Fatalf("upstream received %d Authorization values, want exactly 1", len(got["authorization"]))
	}
	tok, ok := strings.CutPrefix(got["authorization"][0], "Bearer ")
	if !ok || tok == "" {
		t.Fatalf("upstream Authorization is not a bearer token: %q", redact(got["authorization"][0]))
	}
	return tok
}
