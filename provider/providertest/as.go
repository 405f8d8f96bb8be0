package providertest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ASOptions configure a test authorization server. The zero value is a
// server with dynamic registration (RFC 7591), PKCE S256, refresh-token
// rotation and one-hour access tokens.
type ASOptions struct {
	// CIMD advertises client_id_metadata_document_supported and accepts
	// client ids that are URLs of Client ID Metadata Documents (fetched
	// over http or https; the test AS trusts its caller).
	CIMD bool
	// NoDCR hides the registration endpoint.
	NoDCR bool
	// StaticClients are pre-registered confidential clients (id → secret),
	// as an operator would create for oauth_static. Their redirect URIs
	// are bound on first use.
	StaticClients map[string]string
	// AccessTTL is the access-token lifetime (expires_in); default 1 h.
	AccessTTL time.Duration
	// NoRefreshToken: issue no refresh tokens.
	NoRefreshToken bool
	// ISSParameter advertises and sends RFC 9207 iss.
	ISSParameter bool
	// OIDCOnly serves only /.well-known/openid-configuration (the fallback
	// in the MCP discovery order).
	OIDCOnly bool
	// NoS256 advertises no code_challenge_methods_supported.
	NoS256 bool
	// Subject is the upstream user every authorization is approved as;
	// default "upstream-user".
	Subject string
}

// Fault is a set of knobs that make the server misbehave. Set them at any
// time with AS.SetFault; the zero Fault is good behaviour.
type Fault struct {
	// RefreshStatus answers refresh_token grants with this status and an
	// OAuth error body (e.g. 400 invalid_grant, 500 server_error).
	RefreshStatus int
	// TokenStatus does the same for authorization_code grants.
	TokenStatus int
	// Delay makes the token endpoint wait this long (or until the client
	// goes away) before answering: slow responses and timeouts.
	Delay time.Duration
	// TokenType replaces token_type in successful token responses ("mac").
	TokenType string
	// Oversized pads successful token responses to OversizeBytes.
	Oversized bool
	// MetadataRedirect answers every metadata request with a 302 to
	// RedirectTarget (default: the same path on https://localhost:1).
	MetadataRedirect bool
	RedirectTarget   string
	// EndpointBase replaces the origin of the endpoints in the AS
	// metadata (e.g. "https://127.0.0.1:443", "https://169.254.169.254").
	EndpointBase string
	// DenyAuthorize answers authorization requests with error=access_denied.
	DenyAuthorize bool
	// OversizedMetadata pads metadata documents to OversizeBytes.
	OversizedMetadata bool
}

// OversizeBytes is the size of padded (oversized) responses: well past
// the provider's 64 KiB cap.
const OversizeBytes = 256 << 10

// AuthorizeRequest is what one authorization request carried.
type AuthorizeRequest struct {
	ClientID    string
	Scope       string
	HasScope    bool
	Resource    string
	HasResource bool
	Method      string
}

// TokenRequest is what one token request carried (no secrets).
type TokenRequest struct {
	GrantType string
	ClientID  string
	Resource  string
	AuthVia   string // "basic", "post", "none"
}

// AS is a running test authorization server.
type AS struct {
	// URL is the issuer: https://localhost:port.
	URL string
	t   testing.TB
	opt ASOptions

	// Counters of requests that reached the server.
	RefreshRequests  atomic.Int64
	CodeRequests     atomic.Int64
	Registrations    atomic.Int64
	MetadataRequests atomic.Int64
	CIMDFetches      atomic.Int64

	mu        sync.Mutex
	fault     Fault
	clients   map[string]*asClient
	codes     map[string]*asCode
	access    map[string]Token
	refresh   map[string]*asRefresh
	authzLog  []AuthorizeRequest
	tokenLog  []TokenRequest
	issuedAll []string
}

type asClient struct {
	secret       string
	authMethod   string
	redirectURIs []string
}

type asCode struct {
	clientID, redirectURI, challenge, scope, resource string
	used                                              bool
}

type asRefresh struct {
	clientID, scope, resource string
	used                      bool
}

// Token is an access token the server issued.
type Token struct {
	Subject  string
	ClientID string
	Scope    string
	Resource string
	Expires  time.Time
}

// NewAS starts a test authorization server; it stops when t ends.
func NewAS(t testing.TB, opt ASOptions) *AS {
	t.Helper()
	if opt.AccessTTL <= 0 {
		opt.AccessTTL = time.Hour
	}
	if opt.Subject == "" {
		opt.Subject = "upstream-user"
	}
	as := &AS{t: t, opt: opt, clients: map[string]*asClient{}, codes: map[string]*asCode{},
		access: map[string]Token{}, refresh: map[string]*asRefresh{}}
	for id, secret := range opt.StaticClients {
		as.clients[id] = &asClient{secret: secret, authMethod: "client_secret_basic"}
	}
	mux := http.NewServeMux()
	if !opt.OIDCOnly {
		mux.HandleFunc("GET /.well-known/oauth-authorization-server", as.handleMetadata)
	}
	mux.HandleFunc("GET /.well-known/openid-configuration", as.handleMetadata)
	mux.HandleFunc("GET /authorize", as.handleAuthorize)
	mux.HandleFunc("POST /token", as.handleToken)
	if !opt.NoDCR {
		mux.HandleFunc("POST /register", as.handleRegister)
	}
	startTLS(t, func(base string) http.Handler { as.URL = base; return mux })
	return as
}

// SetFault replaces the fault knobs.
func (as *AS) SetFault(f Fault) {
	as.mu.Lock()
	as.fault = f
	as.mu.Unlock()
}

func (as *AS) faults() Fault {
	as.mu.Lock()
	defer as.mu.Unlock()
	return as.fault
}

// AuthorizeRequests returns the authorization requests seen so far.
func (as *AS) AuthorizeRequests() []AuthorizeRequest {
	as.mu.Lock()
	defer as.mu.Unlock()
	return slices.Clone(as.authzLog)
}

// TokenRequests returns the token requests seen so far.
func (as *AS) TokenRequests() []TokenRequest {
	as.mu.Lock()
	defer as.mu.Unlock()
	return slices.Clone(as.tokenLog)
}

// Issued returns every access and refresh token issued so far (so tests
// can plant them as secrets and search for leaks).
func (as *AS) Issued() []string {
	as.mu.Lock()
	defer as.mu.Unlock()
	return slices.Clone(as.issuedAll)
}

// Verify reports the access token's record if the server issued it and it
// has not expired at now.
func (as *AS) Verify(token string, now time.Time) (Token, bool) {
	as.mu.Lock()
	defer as.mu.Unlock()
	tk, ok := as.access[token]
	if !ok || !now.Before(tk.Expires) {
		return Token{}, false
	}
	return tk, true
}

// ExpireAll makes every issued access token expired (the upstream side of
// "the grant expired").
func (as *AS) ExpireAll() {
	as.mu.Lock()
	defer as.mu.Unlock()
	for k, v := range as.access {
		v.Expires = time.Time{}
		as.access[k] = v
	}
}

func randToken(prefix string) string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func oauthErr(w http.ResponseWriter, status int, code string) {
	writeJSON(w, status, map[string]string{"error": code})
}

func (as *AS) handleMetadata(w http.ResponseWriter, r *http.Request) {
	as.MetadataRequests.Add(1)
	f := as.faults()
	if f.MetadataRedirect {
		target := f.RedirectTarget
		if target == "" {
			target = "https://localhost:1" + r.URL.Path
		}
		http.Redirect(w, r, target, http.StatusFound)
		return
	}
	base := as.URL
	if f.EndpointBase != "" {
		base = f.EndpointBase
	}
	md := map[string]any{
		"issuer":                                as.URL,
		"authorization_endpoint":                base + "/authorize",
		"token_endpoint":                        base + "/token",
		"response_types_supported":              []string{"code"},
		"grant_types_supported":                 []string{"authorization_code", "refresh_token"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post", "none"},
		"scopes_supported":                      []string{"files:read", "files:write", "admin:everything"},
	}
	if !as.opt.NoS256 {
		md["code_challenge_methods_supported"] = []string{"S256"}
	}
	if !as.opt.NoDCR {
		md["registration_endpoint"] = base + "/register"
	}
	if as.opt.CIMD {
		md["client_id_metadata_document_supported"] = true
	}
	if as.opt.ISSParameter {
		md["authorization_response_iss_parameter_supported"] = true
	}
	if f.OversizedMetadata {
		md["padding"] = strings.Repeat("x", OversizeBytes)
	}
	writeJSON(w, http.StatusOK, md)
}

func (as *AS) handleRegister(w http.ResponseWriter, r *http.Request) {
	as.Registrations.Add(1)
	var md struct {
		RedirectURIs []string `json:"redirect_uris"`
		AuthMethod   string   `json:"token_endpoint_auth_method"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&md); err != nil || len(md.RedirectURIs) == 0 {
		oauthErr(w, http.StatusBadRequest, "invalid_client_metadata")
		return
	}
	if md.AuthMethod == "" {
		md.AuthMethod = "client_secret_basic"
	}
	c := &asClient{authMethod: md.AuthMethod, redirectURIs: md.RedirectURIs}
	id := randToken("dcr-")
	out := map[string]any{"client_id": id, "redirect_uris": md.RedirectURIs, "token_endpoint_auth_method": md.AuthMethod}
	if md.AuthMethod != "none" {
		c.secret = randToken("dcr-secret-")
		out["client_secret"] = c.secret
	}
	as.mu.Lock()
	as.clients[id] = c
	as.issuedAll = append(as.issuedAll, c.secret)
	as.mu.Unlock()
	writeJSON(w, http.StatusCreated, out)
}

// client returns the client for id, fetching a Client ID Metadata
// Document when id is a URL and CIMD is on.
func (as *AS) client(id string) *asClient {
	as.mu.Lock()
	c := as.clients[id]
	as.mu.Unlock()
	if c != nil || !as.opt.CIMD || !(strings.HasPrefix(id, "https://") || strings.HasPrefix(id, "http://")) {
		return c
	}
	as.CIMDFetches.Add(1)
	hc := Client(as.t)
	resp, err := hc.Get(id)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var doc struct {
		ClientID     string   `json:"client_id"`
		RedirectURIs []string `json:"redirect_uris"`
		AuthMethod   string   `json:"token_endpoint_auth_method"`
	}
	if resp.StatusCode != 200 || json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 64<<10)).Decode(&doc) != nil || doc.ClientID != id || doc.AuthMethod != "none" {
		return nil
	}
	c = &asClient{authMethod: "none", redirectURIs: doc.RedirectURIs}
	as.mu.Lock()
	as.clients[id] = c
	as.mu.Unlock()
	return c
}

func (as *AS) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	c := as.client(q.Get("client_id"))
	if c == nil {
		http.Error(w, "unknown client", http.StatusBadRequest)
		return
	}
	redirect := q.Get("redirect_uri")
	as.mu.Lock()
	if len(c.redirectURIs) == 0 && c.secret != "" { // static client: bind on first use
		c.redirectURIs = []string{redirect}
	}
	okRedirect := slices.Contains(c.redirectURIs, redirect)
	as.authzLog = append(as.authzLog, AuthorizeRequest{
		ClientID: q.Get("client_id"), Scope: q.Get("scope"), HasScope: q.Has("scope"),
		Resource: q.Get("resource"), HasResource: q.Has("resource"), Method: q.Get("code_challenge_method"),
	})
	as.mu.Unlock()
	if !okRedirect {
		http.Error(w, "redirect_uri not registered", http.StatusBadRequest)
		return
	}
	u, _ := url.Parse(redirect)
	out := u.Query()
	out.Set("state", q.Get("state"))
	if as.opt.ISSParameter {
		out.Set("iss", as.URL)
	}
	switch {
	case as.faults().DenyAuthorize:
		out.Set("error", "access_denied")
	case q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43:
		out.Set("error", "invalid_request")
	default:
		code := randToken("code-")
		as.mu.Lock()
		as.codes[code] = &asCode{clientID: q.Get("client_id"), redirectURI: redirect, challenge: q.Get("code_challenge"),
			scope: q.Get("scope"), resource: q.Get("resource")}
		as.issuedAll = append(as.issuedAll, code)
		as.mu.Unlock()
		out.Set("code", code)
	}
	u.RawQuery = out.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// authenticate applies the client's registered token endpoint auth method
// exactly.
func (as *AS) authenticate(r *http.Request) (string, string, bool) {
	if user, pass, ok := r.BasicAuth(); ok {
		id, _ := url.QueryUnescape(user)
		secret, _ := url.QueryUnescape(pass)
		c := as.client(id)
		return id, "basic", c != nil && c.authMethod == "client_secret_basic" && c.secret != "" && c.secret == secret
	}
	id := r.PostForm.Get("client_id")
	c := as.client(id)
	if c == nil {
		return id, "", false
	}
	if s := r.PostForm.Get("client_secret"); s != "" {
		return id, "post", c.authMethod == "client_secret_post" && c.secret == s
	}
	return id, "none", c.authMethod == "none"
}

func (as *AS) handleToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthErr(w, http.StatusBadRequest, "invalid_request")
		return
	}
	grant := r.PostForm.Get("grant_type")
	switch grant {
	case "refresh_token":
		as.RefreshRequests.Add(1)
	case "authorization_code":
		as.CodeRequests.Add(1)
	}
	f := as.faults()
	if f.Delay > 0 {
		select {
		case <-time.After(f.Delay):
		case <-r.Context().Done():
			return
		}
	}
	id, via, ok := as.authenticate(r)
	as.mu.Lock()
	as.tokenLog = append(as.tokenLog, TokenRequest{GrantType: grant, ClientID: id, Resource: r.PostForm.Get("resource"), AuthVia: via})
	as.mu.Unlock()
	if grant == "refresh_token" && f.RefreshStatus != 0 {
		oauthErr(w, f.RefreshStatus, map[bool]string{true: "invalid_grant", false: "server_error"}[f.RefreshStatus < 500])
		return
	}
	if grant == "authorization_code" && f.TokenStatus != 0 {
		oauthErr(w, f.TokenStatus, map[bool]string{true: "invalid_grant", false: "server_error"}[f.TokenStatus < 500])
		return
	}
	if !ok {
		oauthErr(w, http.StatusUnauthorized, "invalid_client")
		return
	}
	var scope, resource string
	as.mu.Lock()
	switch grant {
	case "authorization_code":
		c := as.codes[r.PostForm.Get("code")]
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		if c == nil || c.used || c.clientID != id || c.redirectURI != r.PostForm.Get("redirect_uri") ||
			base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge {
			as.mu.Unlock()
			oauthErr(w, http.StatusBadRequest, "invalid_grant")
			return
		}
		c.used = true
		scope, resource = c.scope, c.resource
	case "refresh_token":
		rt := as.refresh[r.PostForm.Get("refresh_token")]
		if rt == nil || rt.used || rt.clientID != id {
			as.mu.Unlock()
			oauthErr(w, http.StatusBadRequest, "invalid_grant")
			return
		}
		rt.used = true // rotation: every refresh token is single use
		scope, resource = rt.scope, rt.resource
	default:
		as.mu.Unlock()
		oauthErr(w, http.StatusBadRequest, "unsupported_grant_type")
		return
	}
	at := randToken("upstream-at-")
	as.access[at] = Token{Subject: as.opt.Subject, ClientID: id, Scope: scope, Resource: resource, Expires: time.Now().Add(as.opt.AccessTTL)}
	out := map[string]any{"access_token": at, "token_type": "Bearer", "expires_in": int(as.opt.AccessTTL / time.Second)}
	as.issuedAll = append(as.issuedAll, at)
	if !as.opt.NoRefreshToken {
		rt := randToken("upstream-rt-")
		as.refresh[rt] = &asRefresh{clientID: id, scope: scope, resource: resource}
		as.issuedAll = append(as.issuedAll, rt)
		out["refresh_token"] = rt
	}
	as.mu.Unlock()
	if scope != "" {
		out["scope"] = scope
	}
	if f.TokenType != "" {
		out["token_type"] = f.TokenType
	}
	if f.Oversized {
		out["padding"] = strings.Repeat("x", OversizeBytes)
	}
	writeJSON(w, http.StatusOK, out)
}
