package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
)

// upstreamAS is the remote MCP server's own OAuth authorization server,
// for the OAuth auth modes: mcpgw discovers it from the upstream's 401
// challenge and protected-resource metadata (RFC 9728), registers itself
// by DCR (RFC 7591; oauth_dynamic) or uses a client the operator
// pre-registered (addClient; oauth_static), sends the user through
// /as/authorize (approved at once: the upstream user is always
// "upstream-user") and redeems the code with PKCE. The token endpoint
// authenticates the client exactly as registered and binds codes and
// refresh tokens to it. It lives on the upstream's TLS server (issuer =
// upstream origin), so mcpgw reaches it with the test CA and the 127.0.0.1
// allowlist like any upstream.
//
// (provider/providertest has a richer AS with fault knobs, but it listens
// as https://localhost with its own in-process CA, which a separate mcpgw
// process and the data plane cannot be told to trust.)
type upstreamAS struct {
	issuer func() string

	mu         sync.Mutex
	clients    map[string]asClient // client_id → registration
	codes      map[string]asGrant  // code → grant
	access     map[string]asToken  // access token → what it was issued for
	refresh    map[string]string   // live refresh token → client_id
	authorizes int                 // /as/authorize requests (upstream consents)
	refreshes  int
	registers  int                       // successful /as/register requests
	tokenAuth  map[string]map[string]int // client_id → token endpoint auth method → successful token requests
	// minted is every secret value this AS handed out (client secrets,
	// codes, access and refresh tokens): none may appear in mcpgw's
	// output (env.checkNoLeaks).
	minted []string
}

// asClient is one client of the AS: registered by DCR, or pre-registered
// by the upstream's operator (oauth_static, addClient).
type asClient struct {
	redirects []string
	secret    string
	// method is the token endpoint auth method the client must use
	// (RFC 7591 §2; client_secret_basic when the registration named none).
	method string
}

type asGrant struct {
	client, redirect, challenge string
}

// asToken is an issued access token: the client it was issued to and its
// expiry.
type asToken struct {
	client string
	exp    time.Time
}

func newUpstreamAS(issuer func() string) *upstreamAS {
	return &upstreamAS{issuer: issuer, clients: map[string]asClient{}, codes: map[string]asGrant{},
		access: map[string]asToken{}, refresh: map[string]string{}, tokenAuth: map[string]map[string]int{}}
}

// addClient pre-registers a confidential client, as an upstream's operator
// does out of band for auth mode oauth_static: its id, secret, the one
// token endpoint auth method it must use, and its redirect URIs.
func (as *upstreamAS) addClient(id, secret, method string, redirects ...string) {
	as.mu.Lock()
	defer as.mu.Unlock()
	as.clients[id] = asClient{redirects: redirects, secret: secret, method: method}
	as.minted = append(as.minted, secret)
}

// mintedSecrets returns every secret value the AS handed out so far.
func (as *upstreamAS) mintedSecrets() []string {
	as.mu.Lock()
	defer as.mu.Unlock()
	return slices.Clone(as.minted)
}

// authenticateClient authenticates the client of a token request exactly
// as it registered (RFC 6749 §2.3.1: credentials form-encoded inside
// Basic; a secret sent the other way is refused). Called with as.mu held.
func (as *upstreamAS) authenticateClient(r *http.Request) (id, method string, ok bool) {
	if u, p, basic := r.BasicAuth(); basic {
		var err1, err2 error
		id, err1 = url.QueryUnescape(u)
		secret, err2 := url.QueryUnescape(p)
		c, known := as.clients[id]
		if err1 != nil || err2 != nil || !known || r.PostForm.Has("client_secret") ||
			c.method != "client_secret_basic" || c.secret == "" || subtle.ConstantTimeCompare([]byte(secret), []byte(c.secret)) != 1 {
			return "", "", false
		}
		return id, c.method, true
	}
	id = r.PostForm.Get("client_id")
	c, known := as.clients[id]
	if !known {
		return "", "", false
	}
	switch c.method {
	case "none":
		return id, c.method, !r.PostForm.Has("client_secret")
	case "client_secret_post":
		secret := r.PostForm.Get("client_secret")
		return id, c.method, c.secret != "" && subtle.ConstantTimeCompare([]byte(secret), []byte(c.secret)) == 1
	}
	return "", "", false
}

func randString() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (as *upstreamAS) mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		iss := as.issuer()
		writeJSON(w, http.StatusOK, map[string]any{
			"issuer": iss, "authorization_endpoint": iss + "/as/authorize", "token_endpoint": iss + "/as/token",
			"registration_endpoint": iss + "/as/register", "response_types_supported": []string{"code"},
			"grant_types_supported":                 []string{"authorization_code", "refresh_token"},
			"code_challenge_methods_supported":      []string{"S256"},
			"token_endpoint_auth_methods_supported": []string{"none", "client_secret_basic", "client_secret_post"},
		})
	})
	mux.HandleFunc("POST /as/register", func(w http.ResponseWriter, r *http.Request) {
		var md map[string]any
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&md); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_client_metadata"})
			return
		}
		var uris []string
		if l, ok := md["redirect_uris"].([]any); ok {
			for _, u := range l {
				if s, ok := u.(string); ok {
					uris = append(uris, s)
				}
			}
		}
		id := "up-" + randString()
		c := asClient{redirects: uris, method: "client_secret_basic"}
		switch m, _ := md["token_endpoint_auth_method"].(string); m {
		case "none":
			c.method = m
		case "client_secret_basic", "client_secret_post", "":
			if m != "" {
				c.method = m
			}
			c.secret = "up-secret-" + randString()
			md["client_secret"] = c.secret
		default:
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_client_metadata"})
			return
		}
		as.mu.Lock()
		as.clients[id] = c
		as.registers++
		as.minted = append(as.minted, c.secret)
		as.mu.Unlock()
		md["client_id"] = id
		writeJSON(w, http.StatusCreated, md)
	})
	mux.HandleFunc("GET /as/authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		as.mu.Lock()
		c, ok := as.clients[q.Get("client_id")]
		as.authorizes++
		as.mu.Unlock()
		if !ok || !slices.Contains(c.redirects, q.Get("redirect_uri")) || q.Get("code_challenge_method") != "S256" {
			http.Error(w, "bad authorization request", http.StatusBadRequest)
			return
		}
		code := "up-code-" + randString()
		as.mu.Lock()
		as.codes[code] = asGrant{client: q.Get("client_id"), redirect: q.Get("redirect_uri"), challenge: q.Get("code_challenge")}
		as.minted = append(as.minted, code)
		as.mu.Unlock()
		u, _ := url.Parse(q.Get("redirect_uri"))
		v := u.Query()
		v.Set("code", code)
		v.Set("state", q.Get("state"))
		u.RawQuery = v.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
	})
	mux.HandleFunc("POST /as/token", func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
			return
		}
		as.mu.Lock()
		defer as.mu.Unlock()
		client, method, ok := as.authenticateClient(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="upstream"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
			return
		}
		switch r.PostForm.Get("grant_type") {
		case "authorization_code":
			g, ok := as.codes[r.PostForm.Get("code")]
			delete(as.codes, r.PostForm.Get("code"))
			sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
			if !ok || g.client != client || g.redirect != r.PostForm.Get("redirect_uri") || base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
				return
			}
		case "refresh_token":
			if owner, ok := as.refresh[r.PostForm.Get("refresh_token")]; !ok || owner != client {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
				return
			}
			delete(as.refresh, r.PostForm.Get("refresh_token"))
			as.refreshes++
		default:
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
			return
		}
		at, rt := "up-access-"+randString(), "up-refresh-"+randString()
		as.access[at] = asToken{client: client, exp: time.Now().Add(time.Hour)}
		as.refresh[rt] = client
		as.minted = append(as.minted, at, rt)
		if as.tokenAuth[client] == nil {
			as.tokenAuth[client] = map[string]int{}
		}
		as.tokenAuth[client][method]++
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, map[string]any{"access_token": at, "token_type": "Bearer", "expires_in": 3600, "refresh_token": rt})
	})
}

// verify is the protected MCP server's bearer verifier: only access
// tokens this AS issued pass.
func (as *upstreamAS) verify(_ context.Context, token string, _ *http.Request) (*auth.TokenInfo, error) {
	as.mu.Lock()
	defer as.mu.Unlock()
	at, ok := as.access[token]
	if !ok {
		return nil, auth.ErrInvalidToken
	}
	return &auth.TokenInfo{UserID: "upstream-user", Expiration: at.exp}, nil
}

// issuedAccess reports whether token is an access token this AS issued.
func (as *upstreamAS) issuedAccess(token string) bool {
	as.mu.Lock()
	defer as.mu.Unlock()
	_, ok := as.access[token]
	return ok
}

// issuedTo returns the client an access token was issued to ("" when
// this AS never issued it).
func (as *upstreamAS) issuedTo(token string) string {
	as.mu.Lock()
	defer as.mu.Unlock()
	return as.access[token].client
}

func (as *upstreamAS) counts() (authorizes, refreshes int) {
	as.mu.Lock()
	defer as.mu.Unlock()
	return as.authorizes, as.refreshes
}

// registrations is the number of clients registered by DCR.
func (as *upstreamAS) registrations() int {
	as.mu.Lock()
	defer as.mu.Unlock()
	return as.registers
}

// tokenRequests returns, for one client, how many token requests succeeded
// with each token endpoint auth method.
func (as *upstreamAS) tokenRequests(client string) map[string]int {
	as.mu.Lock()
	defer as.mu.Unlock()
	out := map[string]int{}
	for k, v := range as.tokenAuth[client] {
		out[k] = v
	}
	return out
}

// mountProtectedMCP serves the OAuth-protected MCP endpoint /protected/mcp
// (the same tools as /base/mcp) with its RFC 9728 metadata.
func (as *upstreamAS) mountProtectedMCP(mux *http.ServeMux) {
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return newMCPServer() }, nil)
	mux.Handle("/protected/mcp", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth.RequireBearerToken(as.verify, &auth.RequireBearerTokenOptions{
			ResourceMetadataURL: as.issuer() + "/.well-known/oauth-protected-resource/protected/mcp",
		})(h).ServeHTTP(w, r)
	}))
	mux.Handle("GET /.well-known/oauth-protected-resource/protected/mcp", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth.ProtectedResourceMetadataHandler(&oauthex.ProtectedResourceMetadata{
			Resource: as.issuer() + "/protected/mcp", AuthorizationServers: []string{as.issuer()},
		}).ServeHTTP(w, r)
	}))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
