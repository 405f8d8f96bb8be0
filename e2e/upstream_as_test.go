package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
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
// for auth mode oauth_dynamic: mcpgw discovers it from the upstream's 401
// challenge and protected-resource metadata (RFC 9728), registers itself
// by DCR (RFC 7591), sends the user through /as/authorize (approved at
// once: the upstream user is always "upstream-user") and redeems the code
// with PKCE. It lives on the upstream's TLS server (issuer = upstream
// origin), so mcpgw reaches it with the test CA and the 127.0.0.1
// allowlist like any upstream.
//
// (provider/providertest has a richer AS with fault knobs, but it listens
// as https://localhost with its own in-process CA, which a separate mcpgw
// process and the data plane cannot be told to trust.)
type upstreamAS struct {
	issuer func() string

	mu         sync.Mutex
	clients    map[string][]string // client_id → redirect URIs
	codes      map[string]asGrant  // code → grant
	access     map[string]time.Time
	refresh    map[string]bool
	authorizes int // /as/authorize requests (upstream consents)
	refreshes  int
}

type asGrant struct {
	client, redirect, challenge string
}

func newUpstreamAS(issuer func() string) *upstreamAS {
	return &upstreamAS{issuer: issuer, clients: map[string][]string{}, codes: map[string]asGrant{},
		access: map[string]time.Time{}, refresh: map[string]bool{}}
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
		as.mu.Lock()
		as.clients[id] = uris
		as.mu.Unlock()
		md["client_id"] = id
		if m, _ := md["token_endpoint_auth_method"].(string); m == "client_secret_basic" || m == "client_secret_post" || m == "" {
			md["client_secret"] = "up-secret-" + randString()
		}
		writeJSON(w, http.StatusCreated, md)
	})
	mux.HandleFunc("GET /as/authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		as.mu.Lock()
		uris, ok := as.clients[q.Get("client_id")]
		as.authorizes++
		as.mu.Unlock()
		if !ok || !slices.Contains(uris, q.Get("redirect_uri")) || q.Get("code_challenge_method") != "S256" {
			http.Error(w, "bad authorization request", http.StatusBadRequest)
			return
		}
		code := "up-code-" + randString()
		as.mu.Lock()
		as.codes[code] = asGrant{client: q.Get("client_id"), redirect: q.Get("redirect_uri"), challenge: q.Get("code_challenge")}
		as.mu.Unlock()
		u, _ := url.Parse(q.Get("redirect_uri"))
		v := u.Query()
		v.Set("code", code)
		v.Set("state", q.Get("state"))
		u.RawQuery = v.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
	})
	mux.HandleFunc("POST /as/token", func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		as.mu.Lock()
		defer as.mu.Unlock()
		switch r.PostForm.Get("grant_type") {
		case "authorization_code":
			g, ok := as.codes[r.PostForm.Get("code")]
			delete(as.codes, r.PostForm.Get("code"))
			sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
			if !ok || g.redirect != r.PostForm.Get("redirect_uri") || base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
				return
			}
		case "refresh_token":
			if !as.refresh[r.PostForm.Get("refresh_token")] {
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
		as.access[at] = time.Now().Add(time.Hour)
		as.refresh[rt] = true
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, map[string]any{"access_token": at, "token_type": "Bearer", "expires_in": 3600, "refresh_token": rt})
	})
}

// verify is the protected MCP server's bearer verifier: only access
// tokens this AS issued pass.
func (as *upstreamAS) verify(_ context.Context, token string, _ *http.Request) (*auth.TokenInfo, error) {
	as.mu.Lock()
	defer as.mu.Unlock()
	exp, ok := as.access[token]
	if !ok {
		return nil, auth.ErrInvalidToken
	}
	return &auth.TokenInfo{UserID: "upstream-user", Expiration: exp}, nil
}

// issuedAccess reports whether token is an access token this AS issued.
func (as *upstreamAS) issuedAccess(token string) bool {
	as.mu.Lock()
	defer as.mu.Unlock()
	_, ok := as.access[token]
	return ok
}

func (as *upstreamAS) counts() (authorizes, refreshes int) {
	as.mu.Lock()
	defer as.mu.Unlock()
	return as.authorizes, as.refreshes
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
