package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"golang.org/x/oauth2"
)

// clientRedirect is the MCP client's registered redirect URI. Nothing
// listens there: the automated browser stops at the redirect and hands
// code, state and iss to the client, as a desktop client's loopback
// listener would.
const clientRedirect = "http://127.0.0.1:7777/callback"

var metaRefresh = regexp.MustCompile(`<meta http-equiv="refresh" content="0; url=([^"]+)"`)

var hiddenField = regexp.MustCompile(`name="(csrf|req|ticket)" value="([^"]*)"`)

func formFields(body string) map[string]string {
	out := map[string]string{}
	for _, m := range hiddenField.FindAllStringSubmatch(body, -1) {
		out[m[1]] = m[2]
	}
	return out
}

// browser is a cookie-keeping HTTP client that follows redirects (within
// the gateway, and to an upstream authorization server and back during the
// provider flow) but stops at the MCP client's redirect URI. It trusts the
// test CA, as a user's browser trusts the upstream's real certificate.
func (e *env) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	cb, _ := url.Parse(clientRedirect)
	return &http.Client{Jar: jar, Timeout: convergence,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.ca.pool}},
		CheckRedirect: func(r *http.Request, via []*http.Request) error {
			if r.URL.Host == cb.Host || len(via) > 10 {
				return http.ErrUseLastResponse
			}
			return nil
		}}
}

// consentResult is what the automated user saw and got.
type consentResult struct {
	consentPage string
	location    *url.URL
}

// authorizeInBrowser opens an authorization URL, logs in as email, checks
// the consent page and answers it with decision ("allow" or "deny").
func (e *env) authorizeInBrowser(ctx context.Context, authURL, email, decision string) (*consentResult, error) {
	b := e.browser()
	resp, err := b.Get(authURL)
	if err != nil {
		return nil, err
	}
	body := readAll(resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `action="/login"`) {
		return nil, fmt.Errorf("expected the login page, got %s: %.300s", resp.Status, body)
	}
	f := formFields(body)
	resp, err = b.PostForm(e.base+"/login", url.Values{"csrf": {f["csrf"]}, "req": {f["req"]},
		"email": {email}, "password": {alicePassword}})
	if err != nil {
		return nil, err
	}
	body = readAll(resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `action="/oauth/consent"`) {
		return nil, fmt.Errorf("expected the consent page, got %s: %.300s", resp.Status, body)
	}
	for k, v := range map[string]string{"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"} {
		if got := resp.Header.Get(k); got != v {
			return nil, fmt.Errorf("consent page %s = %q, want %q (through the data plane)", k, got, v)
		}
	}
	res := &consentResult{consentPage: body}
	f = formFields(body)
	resp, err = b.PostForm(e.base+"/oauth/consent", url.Values{"csrf": {f["csrf"]}, "req": {f["req"]},
		"ticket": {f["ticket"]}, "decision": {decision}})
	if err != nil {
		return nil, err
	}
	body = readAll(resp)
	// The provider flow (OAuth modes) continues at the upstream's
	// authorization server through a meta refresh page (a 302 to a third
	// party would be blocked by the consent page's CSP form-action); a
	// browser follows it, and so does this one.
	if m := metaRefresh.FindStringSubmatch(body); resp.StatusCode == http.StatusOK && m != nil {
		if resp, err = b.Get(html.UnescapeString(m[1])); err != nil {
			return nil, err
		}
		body = readAll(resp)
	}
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		return nil, fmt.Errorf("consent answer: expected a redirect to the client, got %s at %s: %.400s", resp.Status, resp.Request.URL.Redacted(), body)
	}
	res.location, err = url.Parse(resp.Header.Get("Location"))
	return res, err
}

// fetcher plays the user for the Go SDK's authorization-code handler.
func (e *env) fetcher(t *testing.T, consents *int) auth.AuthorizationCodeFetcher {
	return func(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
		r, err := e.authorizeInBrowser(ctx, args.URL, aliceEmail, "allow")
		if err != nil {
			return nil, err
		}
		*consents++
		q := r.location.Query()
		if q.Get("code") == "" {
			return nil, errors.New("no code in the redirect: " + r.location.String())
		}
		if q.Get("iss") == "" || q.Get("state") == "" {
			return nil, errors.New("redirect lacks iss or state: " + r.location.String())
		}
		e.plant(q.Get("code"))
		return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
	}
}

func readAll(resp *http.Response) string {
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// plantingTransport adds a cookie and unknown headers to every request of
// the MCP client: the gateway must strip them (DESIGN §6 step 8).
type plantingTransport struct{ base http.RoundTripper }

const (
	plantedCookie  = "session=client-cookie-must-not-reach-upstream"
	plantedUnknown = "client-unknown-header-must-not-reach-upstream"
)

func (p plantingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.Contains(r.URL.Path, "/mcp-connect/") {
		r = r.Clone(r.Context())
		r.Header.Set("Cookie", plantedCookie)
		r.Header.Set("X-Client-Unknown", plantedUnknown)
		r.Header.Set("X-Api-Key", plantedUnknown)
	}
	return p.base.RoundTrip(r)
}

// sdkSession connects the Go MCP SDK client with its OAuth handler to a
// route through the data plane, authorizing once. The client registers by
// DCR, or, when cimdURL is set, names itself with that Client ID Metadata
// Document.
func (e *env) sdkSession(t *testing.T, ctx context.Context, s seeded, cimdURL string) (*mcp.ClientSession, auth.OAuthHandler, *atomic.Int32) {
	t.Helper()
	var consents int
	cfg := &auth.AuthorizationCodeHandlerConfig{
		AuthorizationCodeFetcher: e.fetcher(t, &consents),
		Client:                   &http.Client{Timeout: convergence},
	}
	if cimdURL != "" {
		cfg.ClientIDMetadataDocumentConfig = &auth.ClientIDMetadataDocumentConfig{URL: cimdURL}
		cfg.RedirectURL = clientRedirect
	} else {
		cfg.DynamicClientRegistrationConfig = &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			RedirectURIs:            []string{clientRedirect},
			TokenEndpointAuthMethod: "none",
			GrantTypes:              []string{"authorization_code", "refresh_token"},
			ResponseTypes:           []string{"code"},
			Scope:                   "mcp:access",
			ClientName:              "Go SDK e2e client",
		}}
	}
	h, err := auth.NewAuthorizationCodeHandler(cfg)
	if err != nil {
		t.Fatalf("NewAuthorizationCodeHandler: %v", err)
	}
	tr := &mcp.StreamableClientTransport{Endpoint: s.url(e.base), OAuthHandler: h, DisableStandaloneSSE: true,
		HTTPClient: &http.Client{Transport: plantingTransport{http.DefaultTransport}}}
	progress := new(atomic.Int32)
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e-go-client", Version: "1.0.0"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) { progress.Add(1) },
	})
	sess, err := client.Connect(ctx, tr, nil)
	if err != nil {
		t.Fatalf("connect through the data plane: %v", err)
	}
	t.Cleanup(func() { sess.Close() })
	if consents != 1 {
		t.Errorf("consents = %d, want exactly one authorization", consents)
	}
	return sess, h, progress
}

// tokens are a gateway access token and its refresh token.
type tokens struct {
	Access  string `json:"access_token"`
	Refresh string `json:"refresh_token"`
}

// authorize runs the whole first-level flow by hand — DCR, PKCE,
// authorize, login, consent (allow), code → token — for one route, as
// alice. It is the lightweight client the scenarios use where the SDK's
// session is not the point.
func (e *env) authorize(t *testing.T, s seeded) tokens {
	t.Helper()
	return e.authorizeAs(t, s, aliceEmail)
}

// authorizeAs is authorize for the user who logs in as email.
func (e *env) authorizeAs(t *testing.T, s seeded, email string) tokens {
	t.Helper()
	ctx := context.Background()
	reg, _ := json.Marshal(map[string]any{"redirect_uris": []string{clientRedirect}, "token_endpoint_auth_method": "none",
		"grant_types": []string{"authorization_code", "refresh_token"}, "response_types": []string{"code"}, "scope": "mcp:access",
		"client_name": "e2e hand-written client"})
	resp, err := http.Post(e.base+"/oauth/register", "application/json", bytes.NewReader(reg))
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(resp)
	var client struct {
		ClientID string `json:"client_id"`
	}
	if resp.StatusCode != http.StatusCreated || json.Unmarshal([]byte(body), &client) != nil {
		t.Fatalf("register: %s %s", resp.Status, body)
	}
	verifier := oauth2.GenerateVerifier()
	q := url.Values{"response_type": {"code"}, "client_id": {client.ClientID}, "redirect_uri": {clientRedirect},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"},
		"scope": {"mcp:access"}, "resource": {s.url(e.base)}, "state": {"st-" + s.ref.ConfigID[:8]}}
	r, err := e.authorizeInBrowser(ctx, e.base+"/oauth/authorize?"+q.Encode(), email, "allow")
	if err != nil {
		t.Fatalf("authorize: %v", err)
	}
	code := r.location.Query().Get("code")
	e.plant(code, verifier)
	resp, err = http.PostForm(e.base+"/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {clientRedirect}, "client_id": {client.ClientID}, "code_verifier": {verifier}, "resource": {s.url(e.base)}})
	if err != nil {
		t.Fatal(err)
	}
	body = readAll(resp)
	var tok tokens
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &tok) != nil || tok.Access == "" {
		t.Fatalf("token: %s", resp.Status)
	}
	e.plant(tok.Access, tok.Refresh)
	return tok
}

// mcpInit sends an MCP initialize request with a bearer token (and extra
// headers) to url and returns the HTTP status.
func mcpInit(t testing.TB, url, token string, hdr map[string]string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	readAll(resp)
	return resp.StatusCode
}

// serveCIMD serves a Client ID Metadata Document over TLS signed by the
// test CA (mcpgw trusts it through SSL_CERT_FILE; 127.0.0.1 is on the dev
// allowlist) and returns its URL, which is the client_id.
func (e *env) serveCIMD(t *testing.T) string {
	t.Helper()
	var docURL string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"client_id": docURL, "client_name": "Go SDK e2e CIMD client", "redirect_uris": []string{clientRedirect},
			"grant_types": []string{"authorization_code", "refresh_token"}, "response_types": []string{"code"},
			"token_endpoint_auth_method": "none",
		})
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{e.ca.leaf(t, []net.IP{net.IPv4(127, 0, 0, 1)})}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	docURL = srv.URL + "/oauth/client.json"
	return docURL
}
