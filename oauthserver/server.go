// Package oauthserver is mcpgw's first-level OAuth 2.1 authorization server
// for MCP clients (DESIGN §4, §7): RFC 8414 and RFC 9728 metadata, Client ID
// Metadata Documents and RFC 7591/7592 dynamic registration, browser login
// (static users or an upstream OIDC provider) with server-side sessions, the
// consent page, authorization codes with PKCE, refresh-token rotation, the
// gateway JWT and its JWKS, userinfo, revocation and derived connect tokens.
//
// A *Server is an http.Handler. The management API is mounted onto it with
// Mount and shares its authentication through Authenticate.
package oauthserver

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"mcpgw/domain/addrpolicy"
	"mcpgw/domain/signing"
	"mcpgw/store"
)

// Default lifetimes (DESIGN §4, §7).
const (
	DefaultAccessTokenTTL  = 15 * time.Minute
	DefaultRefreshTokenTTL = 30 * 24 * time.Hour
	DefaultCodeTTL         = 10 * time.Minute
	DefaultSessionTTL      = 12 * time.Hour
	// AuthRequestTTL bounds pending authorization requests (DESIGN §4: ≤30 min).
	AuthRequestTTL = 30 * time.Minute
	// ConsentTTL bounds a consent decision (DESIGN §4: ≤5 min).
	ConsentTTL = 5 * time.Minute
	// maxCodeTTL and maxConsentTTL are the contract's ceilings; options
	// beyond them are rejected by New.
	maxCodeTTL = 10 * time.Minute
)

// Client IP sources for the registration rate limit (DESIGN §4): only a
// trusted source, never a raw X-Forwarded-For.
const (
	ClientIPPeer  = "peer"  // the TCP peer address
	ClientIPEnvoy = "envoy" // Envoy's x-envoy-external-address
)

// StaticUser is a login for dev and tests: an email and a bcrypt hash
// (DESIGN §7). The user row is created active on first login when missing.
type StaticUser struct {
	Email       string
	BcryptHash  string
	DisplayName string
}

// OIDCOptions configure login through an upstream OpenID Connect provider
// (coreos/go-oidc + x/oauth2). Users are matched by issuer+subject; a new
// user is created provisional unless ProvisionActive (DESIGN §7, §3 rule 4).
type OIDCOptions struct {
	Issuer       string
	ClientID     string
	ClientSecret string
	// RedirectURL defaults to {issuer}/login/oidc/callback.
	RedirectURL string
	// Scopes default to openid email profile.
	Scopes          []string
	ProvisionActive bool
	// HTTPClient talks to the provider (discovery, token, JWKS); nil: a
	// client with a 10 s timeout.
	HTTPClient *http.Client
}

// CIMDOptions configure fetching Client ID Metadata Documents. The zero
// value is the production policy: public addresses only, system roots, 5 s
// timeout, 64 KiB cap, 5 min cache.
type CIMDOptions struct {
	// Allow is the dev/test address allowlist (addrpolicy); zero: none.
	Allow addrpolicy.Allowlist
	// Resolver resolves document hosts; nil: net.DefaultResolver.
	Resolver addrpolicy.Resolver
	// RootCAs verifies document servers; nil: system roots.
	RootCAs  *x509.CertPool
	Timeout  time.Duration
	MaxBytes int64
	CacheTTL time.Duration
}

// Options configure a Server. Store, Issuer and Keys are required.
type Options struct {
	Store store.Store
	// Issuer is the AS issuer identifier (RFC 8414 §2): https (or http on a
	// loopback host for dev/tests), no query or fragment, no trailing slash.
	Issuer string
	// PublicBaseURL is the base of canonical route URLs (DESIGN §2); empty:
	// the issuer.
	PublicBaseURL string
	// Keys sign gateway JWTs (Current) and are published in JWKS (Current +
	// Previous). Rotate at runtime with SetKeys.
	Keys signing.Set
	// Logger receives structured logs; nil: slog.Default(). Nothing secret
	// is ever logged.
	Logger *slog.Logger
	// Registry receives the metrics; nil: metrics are not registered.
	Registry prometheus.Registerer
	// Now is the clock; nil: time.Now.
	Now func() time.Time

	StaticUsers []StaticUser
	OIDC        *OIDCOptions

	// ClientIPSource is ClientIPPeer (default) or ClientIPEnvoy.
	ClientIPSource string
	// RegistrationsPerMinute is the per-IP registration limit; 0: 10.
	RegistrationsPerMinute int

	AccessTokenTTL  time.Duration
	RefreshTokenTTL time.Duration
	CodeTTL         time.Duration
	SessionTTL      time.Duration
	// AuthRequestTTL and ConsentTTL default to (and may not exceed) 30 and
	// 5 minutes (DESIGN §4).
	AuthRequestTTL time.Duration
	ConsentTTL     time.Duration

	CIMD CIMDOptions

	// Provider runs the provider (second-level) flow for OAuth-mode configs
	// without a usable grant (DESIGN §5). nil: such authorizations answer
	// temporarily_unavailable.
	Provider ProviderFlow
}

// Server is the authorization server. Create it with New.
type Server struct {
	st         store.Store
	issuer     string
	publicBase string
	keys       atomic.Pointer[signing.Set]
	log        *slog.Logger
	now        func() time.Time
	mux        *http.ServeMux
	m          *metrics

	staticUsers map[string]StaticUser
	oidc        *oidcLogin
	provider    ProviderFlow

	clientIPSource string
	regPerMinute   int

	accessTTL, refreshTTL, codeTTL, sessionTTL time.Duration
	authRequestTTL, consentTTL                 time.Duration

	cimd *cimdFetcher

	mountMu sync.Mutex
	mounted map[string]bool
}

// New validates opts and returns a ready Server.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("oauthserver: Store is required")
	}
	issuer, err := validateIssuer(opts.Issuer)
	if err != nil {
		return nil, err
	}
	base := strings.TrimRight(opts.PublicBaseURL, "/")
	if base == "" {
		base = issuer
	} else if _, err := validateIssuer(base); err != nil {
		return nil, fmt.Errorf("oauthserver: public base URL: %w", err)
	}
	if opts.Keys.Current.Private == nil || opts.Keys.Current.ID == "" {
		return nil, errors.New("oauthserver: a current signing key is required")
	}
	s := &Server{
		st:             opts.Store,
		issuer:         issuer,
		publicBase:     base,
		log:            opts.Logger,
		now:            opts.Now,
		mux:            http.NewServeMux(),
		provider:       opts.Provider,
		clientIPSource: opts.ClientIPSource,
		regPerMinute:   opts.RegistrationsPerMinute,
		accessTTL:      opts.AccessTokenTTL,
		refreshTTL:     opts.RefreshTokenTTL,
		codeTTL:        opts.CodeTTL,
		sessionTTL:     opts.SessionTTL,
		authRequestTTL: opts.AuthRequestTTL,
		consentTTL:     opts.ConsentTTL,
		staticUsers:    map[string]StaticUser{},
		mounted:        map[string]bool{},
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "oauthserver")
	if s.now == nil {
		s.now = time.Now
	}
	switch s.clientIPSource {
	case "":
		s.clientIPSource = ClientIPPeer
	case ClientIPPeer, ClientIPEnvoy:
	default:
		return nil, fmt.Errorf("oauthserver: client IP source %q is not %q or %q", s.clientIPSource, ClientIPPeer, ClientIPEnvoy)
	}
	if s.regPerMinute <= 0 {
		s.regPerMinute = 10
	}
	if s.accessTTL <= 0 {
		s.accessTTL = DefaultAccessTokenTTL
	}
	if s.refreshTTL <= 0 {
		s.refreshTTL = DefaultRefreshTokenTTL
	}
	if s.codeTTL <= 0 {
		s.codeTTL = DefaultCodeTTL
	}
	if s.codeTTL > maxCodeTTL {
		return nil, fmt.Errorf("oauthserver: code lifetime %s exceeds %s (DESIGN §4)", s.codeTTL, maxCodeTTL)
	}
	if s.sessionTTL <= 0 {
		s.sessionTTL = DefaultSessionTTL
	}
	if s.authRequestTTL <= 0 {
		s.authRequestTTL = AuthRequestTTL
	}
	if s.consentTTL <= 0 {
		s.consentTTL = ConsentTTL
	}
	if s.accessTTL > DefaultAccessTokenTTL || s.authRequestTTL > AuthRequestTTL || s.consentTTL > ConsentTTL {
		return nil, errors.New("oauthserver: access token ≤ 15m, auth request ≤ 30m and consent ≤ 5m lifetimes are ceilings (DESIGN §2, §4)")
	}
	for _, u := range opts.StaticUsers {
		email := normalizeEmail(u.Email)
		if email == "" || !strings.Contains(email, "@") {
			return nil, errors.New("oauthserver: static user with an invalid email")
		}
		if !strings.HasPrefix(u.BcryptHash, "$2") {
			return nil, fmt.Errorf("oauthserver: static user %s: password must be a bcrypt hash", email)
		}
		u.Email = email
		s.staticUsers[email] = u
	}
	if opts.OIDC != nil {
		s.oidc, err = newOIDCLogin(*opts.OIDC, issuer)
		if err != nil {
			return nil, err
		}
	}
	if len(s.staticUsers) == 0 && s.oidc == nil {
		s.log.Warn("no login method configured: browser authorization cannot complete")
	}
	s.cimd = newCIMDFetcher(opts.CIMD, s.now)
	keys := opts.Keys
	s.keys.Store(&keys)
	s.m = newMetrics(opts.Registry)
	s.routes()
	return s, nil
}

// validateIssuer enforces RFC 8414 §2: https scheme (http only for a
// loopback host, for dev and tests), no query, fragment or userinfo.
func validateIssuer(raw string) (string, error) {
	iss := strings.TrimRight(raw, "/")
	u, err := url.Parse(iss)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("oauthserver: issuer %q must be an absolute URL without query, fragment or userinfo", raw)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopbackHost(u.Hostname()) {
			return "", fmt.Errorf("oauthserver: issuer %q must use https (http only on loopback)", raw)
		}
	default:
		return "", fmt.Errorf("oauthserver: issuer %q must use https", raw)
	}
	return iss, nil
}

// SetKeys replaces the signing keys. New tokens are signed with
// set.Current at once; JWKS publishes set.Current and set.Previous, so
// tokens signed by a previous key keep verifying (rotation without
// downtime, DESIGN §4).
func (s *Server) SetKeys(set signing.Set) error {
	if set.Current.Private == nil || set.Current.ID == "" {
		return errors.New("oauthserver: a current signing key is required")
	}
	s.keys.Store(&set)
	return nil
}

// Keys returns the active signing key set.
func (s *Server) Keys() signing.Set { return *s.keys.Load() }

// Issuer returns the issuer identifier.
func (s *Server) Issuer() string { return s.issuer }

// Mount registers h for a ServeMux pattern (e.g. "/api/v1/configs/") on the
// server, for the management API. Patterns owned by the AS cannot be
// replaced; a duplicate pattern is an error.
func (s *Server) Mount(pattern string, h http.Handler) error {
	s.mountMu.Lock()
	defer s.mountMu.Unlock()
	if s.mounted[pattern] {
		return fmt.Errorf("oauthserver: pattern %q already mounted", pattern)
	}
	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("oauthserver: cannot mount %q: %v", pattern, r)
			}
		}()
		s.mux.Handle(pattern, h)
	}()
	if err == nil {
		s.mounted[pattern] = true
	}
	return err
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}

func (s *Server) routes() {
	m := s.mux
	handle := func(pattern, endpoint string, h http.HandlerFunc) {
		m.Handle(pattern, s.instrument(endpoint, h))
		s.mounted[pattern] = true
	}
	// Endpoints that browser-based MCP clients (e.g. the MCP Inspector)
	// call cross-origin get CORS without credentials: they authenticate
	// with bearer tokens or client credentials, never cookies, so a
	// wildcard origin grants nothing (the Fetch standard never sends
	// cookies with "*").
	corsHandle := func(method, path, endpoint string, h http.HandlerFunc) {
		handle(method+" "+path, endpoint, cors(h))
		if !s.mounted["OPTIONS "+path] {
			handle("OPTIONS "+path, "preflight", cors(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusNoContent)
			}))
		}
	}
	corsHandle("GET", "/.well-known/oauth-authorization-server", "as_metadata", s.handleASMetadata)
	corsHandle("GET", "/.well-known/openid-configuration", "as_metadata", s.handleASMetadata)
	if p := issuerPath(s.issuer); p != "" {
		handle("GET /.well-known/oauth-authorization-server"+p, "as_metadata", s.handleASMetadata)
		handle("GET /.well-known/openid-configuration"+p, "as_metadata", s.handleASMetadata)
		handle("GET "+p+"/.well-known/openid-configuration", "as_metadata", s.handleASMetadata)
	}
	corsHandle("GET", "/.well-known/oauth-protected-resource", "prm", s.handleGenericPRM)
	corsHandle("GET", "/.well-known/oauth-protected-resource/mcp-connect/", "prm", s.handleRoutePRM)
	corsHandle("GET", "/oauth/jwks.json", "jwks", s.handleJWKS)
	corsHandle("POST", "/oauth/register", "register", s.handleRegister)
	handle("GET /oauth/register/{client_id...}", "register_manage", s.handleRegistrationGet)
	handle("PUT /oauth/register/{client_id...}", "register_manage", s.handleRegistrationPut)
	handle("DELETE /oauth/register/{client_id...}", "register_manage", s.handleRegistrationDelete)
	handle("GET /oauth/authorize", "authorize", s.handleAuthorize)
	handle("GET /oauth/consent", "consent", s.handleConsentPage)
	handle("POST /oauth/consent", "consent", s.handleConsentDecision)
	corsHandle("POST", "/oauth/token", "token", s.handleToken)
	corsHandle("POST", "/oauth/revoke", "revoke", s.handleRevoke)
	corsHandle("GET", "/oauth/userinfo", "userinfo", s.handleUserinfo)
	handle("POST /oauth/userinfo", "userinfo", s.handleUserinfo)
	handle("GET /login", "login", s.handleLoginPage)
	handle("POST /login", "login", s.handleLoginPost)
	handle("GET /login/oidc", "login", s.handleOIDCStart)
	handle("GET /login/oidc/callback", "login", s.handleOIDCCallback)
	handle("POST /logout", "logout", s.handleLogout)
	handle("POST /api/v1/connect-tokens", "connect_token", s.handleConnectToken)
	handle("GET /health", "health", s.handleHealth)
}

// healthTimeout bounds one /health answer: a database that drops packets
// instead of refusing connections gets a 503, not a check that hangs until
// the checker gives up.
const healthTimeout = 2 * time.Second

// handleHealth reports whether the store is reachable (Envoy and load
// balancer health checks). The body is the seed's smoke-check contract
// (issue 8 scenario 1): {"status":"ok","service":"mcpgw"}.
//
// One ping is enough, also right after a database outage: the store skips
// pooled connections that died in the outage instead of failing a ping on
// each (store/postgres/conncheck.go), so the answer follows the database
// with no lag. While the database is down the ping fails (a refused
// connection fails fast; the deadline ends a hanging one): 503, fail closed.
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
	defer cancel()
	if err := s.st.Ping(ctx); err != nil {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"status":"ok","service":"mcpgw"}` + "\n"))
}

func issuerPath(iss string) string {
	u, err := url.Parse(iss)
	if err != nil {
		return ""
	}
	return strings.TrimRight(u.EscapedPath(), "/")
}

// endpoint returns the absolute URL of one of our paths. Endpoints live at
// the issuer's origin: an issuer with a path (RFC 8414 §3.1) only changes
// where the metadata is found, not where the server listens.
func (s *Server) endpoint(p string) string { return issuerOrigin(s.issuer) + p }

func issuerOrigin(iss string) string {
	u, err := url.Parse(iss)
	if err != nil {
		return iss
	}
	return u.Scheme + "://" + u.Host
}

// ctxNow is the request time; one read per request keeps a flow consistent.
func (s *Server) clock() time.Time { return s.now().UTC() }

// storeUnavailable maps an infrastructure error to an OAuth answer; the
// detail goes to the log only (fail closed).
func (s *Server) internal(ctx context.Context, what string, err error) *oauthError {
	if errors.Is(err, store.ErrUnavailable) {
		s.log.ErrorContext(ctx, "store unavailable", "op", what, "err", err)
		return oerr(http.StatusServiceUnavailable, ErrTemporarilyUnavailable, "the service is temporarily unavailable").withReason("store_unavailable")
	}
	s.log.ErrorContext(ctx, "internal error", "op", what, "err", err)
	return oerr(http.StatusInternalServerError, ErrServerError, "internal error").withReason("internal")
}

// cors adds credential-less CORS headers (see routes).
func cors(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Access-Control-Allow-Origin", "*")
		hd.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
		hd.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, MCP-Protocol-Version")
		hd.Set("Access-Control-Max-Age", "600")
		h(w, r)
	}
}
