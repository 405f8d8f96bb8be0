package oauthserver

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/oauth2"

	"mcpgw/domain/secrets"
	"mcpgw/store"
)

const (
	loginCSRFTTL   = 30 * time.Minute
	oidcStateTTL   = 10 * time.Minute
	loginPerMinute = 20
)

// dummyHash equalizes the time of a login for an unknown email with that
// of a known one (no user enumeration by timing).
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("mcpgw-timing-equalizer"), bcrypt.DefaultCost)

func normalizeEmail(e string) string { return strings.ToLower(strings.TrimSpace(e)) }

// validReq accepts an auth request id (opaque base64url) or nothing.
func validReq(req string) bool {
	if len(req) > 128 {
		return false
	}
	for i := 0; i < len(req); i++ {
		c := req[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// afterLogin sends the browser on: to the consent step of the pending
// authorization request, or to a signed-in page.
func (s *Server) afterLogin(w http.ResponseWriter, r *http.Request, req string, u store.User) {
	if req != "" {
		http.Redirect(w, r, "/oauth/consent?req="+url.QueryEscape(req), http.StatusSeeOther)
		return
	}
	s.renderPage(w, http.StatusOK, "signedin", pageData{Title: "Signed in", Email: u.Email}, "")
}

func (s *Server) handleLoginPage(w http.ResponseWriter, r *http.Request) {
	req := r.URL.Query().Get("req")
	if !validReq(req) {
		s.errorPage(w, http.StatusBadRequest, ErrInvalidRequest, "The sign-in link is malformed.")
		return
	}
	if req != "" {
		if _, err := s.session(r); err == nil {
			// Already signed in: straight on to consent.
			http.Redirect(w, r, "/oauth/consent?req="+url.QueryEscape(req), http.StatusSeeOther)
			return
		}
	}
	if len(s.staticUsers) == 0 && s.oidc != nil {
		http.Redirect(w, r, "/login/oidc?req="+url.QueryEscape(req), http.StatusSeeOther)
		return
	}
	s.renderLogin(w, http.StatusOK, req, false)
}

func (s *Server) renderLogin(w http.ResponseWriter, status int, req string, failed bool) {
	// Login CSRF (RFC 6749 §10.12 applies to login too): a double-submit
	// token in a __Host- cookie and the form.
	tok := secrets.NewToken("")
	setCookie(w, loginCSRFCookie, tok, loginCSRFTTL)
	s.renderPage(w, status, "login", pageData{
		Title:   "Sign in",
		Static:  len(s.staticUsers) > 0,
		OIDC:    s.oidc != nil,
		OIDCURL: "/login/oidc?req=" + url.QueryEscape(req),
		CSRF:    tok,
		Req:     req,
		Failed:  failed,
	}, "")
}

// handleLoginPost checks a static user's password (bcrypt).
func (s *Server) handleLoginPost(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, http.StatusBadRequest, ErrInvalidRequest, "The sign-in form could not be read.")
		return
	}
	c, err := r.Cookie(loginCSRFCookie)
	if err != nil || c.Value == "" || !secrets.Equal([]byte(c.Value), []byte(r.PostForm.Get("csrf"))) {
		s.errorPage(w, http.StatusForbidden, ErrInvalidRequest, "The sign-in form expired or was not submitted from this site. Please try again.")
		return
	}
	req := r.PostForm.Get("req")
	if !validReq(req) {
		s.errorPage(w, http.StatusBadRequest, ErrInvalidRequest, "The sign-in link is malformed.")
		return
	}
	if len(s.staticUsers) == 0 {
		s.errorPage(w, http.StatusNotFound, ErrInvalidRequest, "Password sign-in is not enabled.")
		return
	}
	ok, retry, err := s.st.HitRateLimit(ctx, "login:"+s.clientIP(r), time.Minute, loginPerMinute, s.clock())
	if err != nil {
		s.errorPage(w, http.StatusServiceUnavailable, ErrTemporarilyUnavailable, "The service is temporarily unavailable.")
		return
	}
	if !ok {
		w.Header().Set("Retry-After", fmt.Sprint(int(retry.Seconds())+1))
		s.errorPage(w, http.StatusTooManyRequests, ErrRateLimited, "Too many sign-in attempts. Wait a minute and try again.")
		return
	}
	email := normalizeEmail(r.PostForm.Get("email"))
	su, known := s.staticUsers[email]
	hash := dummyHash
	if known {
		hash = []byte(su.BcryptHash)
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(r.PostForm.Get("password"))) != nil || !known {
		s.log.InfoContext(ctx, "login failed", "method", "static")
		s.audit(ctx, store.AuditEvent{Type: "login", Outcome: "failure", Reason: "bad_credentials"})
		s.renderLogin(w, http.StatusUnauthorized, req, true)
		return
	}
	u, err := s.st.GetUserByEmail(ctx, email)
	if errors.Is(err, store.ErrNotFound) {
		now := s.clock()
		u, err = s.st.CreateUser(ctx, store.User{
			ID: store.NewID(), Email: email, DisplayName: su.DisplayName,
			Status: store.UserActive, CreatedAt: now, UpdatedAt: now,
		})
	}
	if err != nil {
		s.log.ErrorContext(ctx, "login user lookup", "err", err)
		s.errorPage(w, http.StatusServiceUnavailable, ErrTemporarilyUnavailable, "The service is temporarily unavailable.")
		return
	}
	if err := s.newSession(w, r, u); err != nil {
		s.log.ErrorContext(ctx, "create session", "err", err)
		s.errorPage(w, http.StatusServiceUnavailable, ErrTemporarilyUnavailable, "The service is temporarily unavailable.")
		return
	}
	setCookie(w, loginCSRFCookie, "", 0)
	s.log.InfoContext(ctx, "login", "method", "static", "user_id", u.ID)
	s.audit(ctx, store.AuditEvent{Type: "login", Outcome: "success", ActorUserID: u.ID, Metadata: map[string]string{"method": "static"}})
	s.afterLogin(w, r, req, u)
}

// handleLogout revokes the session (POST with the session's CSRF token).
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	_ = r.ParseForm()
	si, err := s.session(r)
	if err != nil {
		s.errorPage(w, http.StatusUnauthorized, ErrInvalidRequest, "You are not signed in.")
		return
	}
	csrf := r.PostForm.Get("csrf")
	if csrf == "" {
		csrf = r.Header.Get(CSRFHeader)
	}
	if !si.checkCSRF(csrf) {
		s.errorPage(w, http.StatusForbidden, ErrInvalidRequest, "The request was not submitted from this site.")
		return
	}
	if err := s.st.RevokeSession(r.Context(), si.sess.IDHash, s.clock()); err != nil {
		s.errorPage(w, http.StatusServiceUnavailable, ErrTemporarilyUnavailable, "The service is temporarily unavailable.")
		return
	}
	setCookie(w, sessionCookie, "", 0)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// oidcLogin is browser login through an upstream OpenID Connect provider.
// Discovery is lazy (first use) so the AS starts while the provider is
// down; a failed discovery is retried on the next login.
type oidcLogin struct {
	opts OIDCOptions
	hc   *http.Client

	mu       sync.Mutex
	provider *oidc.Provider
}

func newOIDCLogin(o OIDCOptions, issuer string) (*oidcLogin, error) {
	if o.Issuer == "" || o.ClientID == "" {
		return nil, errors.New("oauthserver: OIDC login needs an issuer and a client id")
	}
	if o.RedirectURL == "" {
		o.RedirectURL = issuerOrigin(issuer) + "/login/oidc/callback"
	}
	if len(o.Scopes) == 0 {
		o.Scopes = []string{oidc.ScopeOpenID, "email", "profile"}
	}
	hc := o.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	return &oidcLogin{opts: o, hc: hc}, nil
}

func (l *oidcLogin) ctx(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, l.hc)
}

func (l *oidcLogin) get(ctx context.Context) (*oidc.Provider, *oauth2.Config, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.provider == nil {
		p, err := oidc.NewProvider(l.ctx(ctx), l.opts.Issuer)
		if err != nil {
			return nil, nil, fmt.Errorf("oidc discovery: %w", err)
		}
		l.provider = p
	}
	return l.provider, &oauth2.Config{
		ClientID:     l.opts.ClientID,
		ClientSecret: l.opts.ClientSecret,
		Endpoint:     l.provider.Endpoint(),
		RedirectURL:  l.opts.RedirectURL,
		Scopes:       l.opts.Scopes,
	}, nil
}

func nonceFor(state string) string {
	h := sha256.Sum256([]byte("mcpgw oidc nonce v1:" + state))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// handleOIDCStart redirects to the provider with state, nonce and PKCE.
// state, the PKCE verifier and the pending request id live in a __Host-
// cookie (HttpOnly, Secure, SameSite=Lax), so the callback is bound to the
// browser that started it and no server state is needed.
func (s *Server) handleOIDCStart(w http.ResponseWriter, r *http.Request) {
	if s.oidc == nil {
		s.errorPage(w, http.StatusNotFound, ErrInvalidRequest, "Single sign-on is not enabled.")
		return
	}
	req := r.URL.Query().Get("req")
	if !validReq(req) {
		s.errorPage(w, http.StatusBadRequest, ErrInvalidRequest, "The sign-in link is malformed.")
		return
	}
	_, cfg, err := s.oidc.get(r.Context())
	if err != nil {
		s.log.ErrorContext(r.Context(), "oidc discovery failed", "err", err)
		s.errorPage(w, http.StatusServiceUnavailable, ErrTemporarilyUnavailable, "The identity provider is unavailable.")
		return
	}
	state := secrets.NewToken("")
	verifier := oauth2.GenerateVerifier()
	setCookie(w, oidcCookie, state+"."+verifier+"."+req, oidcStateTTL)
	u := cfg.AuthCodeURL(state, oidc.Nonce(nonceFor(state)), oauth2.S256ChallengeOption(verifier))
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u, http.StatusFound)
}

func (s *Server) handleOIDCCallback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if s.oidc == nil {
		s.errorPage(w, http.StatusNotFound, ErrInvalidRequest, "Single sign-on is not enabled.")
		return
	}
	c, err := r.Cookie(oidcCookie)
	setCookie(w, oidcCookie, "", 0) // one use
	fail := func(status int, reason, msg string) {
		s.log.InfoContext(ctx, "login failed", "method", "oidc", "reason", reason)
		s.audit(ctx, store.AuditEvent{Type: "login", Outcome: "failure", Reason: reason, Metadata: map[string]string{"method": "oidc"}})
		s.errorPage(w, status, ErrAccessDenied, msg)
	}
	if err != nil {
		fail(http.StatusBadRequest, "oidc_no_state", "The sign-in expired. Please start again.")
		return
	}
	parts := strings.SplitN(c.Value, ".", 3)
	q := r.URL.Query()
	if len(parts) != 3 || parts[0] == "" || !secrets.Equal([]byte(parts[0]), []byte(q.Get("state"))) {
		fail(http.StatusBadRequest, "oidc_state_mismatch", "The sign-in could not be verified. Please start again.")
		return
	}
	state, verifier, req := parts[0], parts[1], parts[2]
	if q.Get("error") != "" || q.Get("code") == "" {
		fail(http.StatusForbidden, "oidc_error", "The identity provider did not sign you in.")
		return
	}
	p, cfg, err := s.oidc.get(ctx)
	if err != nil {
		s.errorPage(w, http.StatusServiceUnavailable, ErrTemporarilyUnavailable, "The identity provider is unavailable.")
		return
	}
	tok, err := cfg.Exchange(s.oidc.ctx(ctx), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		fail(http.StatusBadGateway, "oidc_exchange_failed", "The identity provider did not sign you in.")
		return
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		fail(http.StatusBadGateway, "oidc_no_id_token", "The identity provider did not sign you in.")
		return
	}
	verifierCfg := &oidc.Config{ClientID: s.oidc.opts.ClientID, Now: s.now, SupportedSigningAlgs: []string{oidc.RS256, oidc.ES256, oidc.PS256}}
	idt, err := p.VerifierContext(s.oidc.ctx(ctx), verifierCfg).Verify(s.oidc.ctx(ctx), rawID)
	if err != nil {
		fail(http.StatusForbidden, "oidc_id_token_invalid", "The identity provider's answer could not be verified.")
		return
	}
	if !secrets.Equal([]byte(idt.Nonce), []byte(nonceFor(state))) {
		fail(http.StatusForbidden, "oidc_nonce_mismatch", "The identity provider's answer could not be verified.")
		return
	}
	var claims struct {
		Email         string `json:"email"`
		EmailVerified *bool  `json:"email_verified"`
		Name          string `json:"name"`
	}
	_ = idt.Claims(&claims)
	u, err := s.st.GetUserByOIDC(ctx, idt.Issuer, idt.Subject)
	if errors.Is(err, store.ErrNotFound) {
		status := store.UserProvisional
		if s.oidc.opts.ProvisionActive {
			status = store.UserActive
		}
		email := normalizeEmail(claims.Email)
		if email == "" || (claims.EmailVerified != nil && !*claims.EmailVerified) {
			fail(http.StatusForbidden, "oidc_no_verified_email", "Your identity provider account has no verified email address.")
			return
		}
		now := s.clock()
		u, err = s.st.CreateUser(ctx, store.User{
			ID: store.NewID(), Email: email, DisplayName: claims.Name, Status: status,
			OIDCIssuer: idt.Issuer, OIDCSubject: idt.Subject, CreatedAt: now, UpdatedAt: now,
		})
		if errors.Is(err, store.ErrConflict) {
			// The email belongs to another account; never link silently.
			fail(http.StatusConflict, "oidc_email_conflict", "An account with this email already exists. Ask an administrator to link it.")
			return
		}
		if err == nil {
			s.log.InfoContext(ctx, "user provisioned", "user_id", u.ID, "status", string(status))
			s.audit(ctx, store.AuditEvent{Type: "user.provision", Outcome: "success", ActorUserID: u.ID, Metadata: map[string]string{"status": string(status)}})
		}
	}
	if err != nil {
		s.log.ErrorContext(ctx, "oidc user lookup", "err", err)
		s.errorPage(w, http.StatusServiceUnavailable, ErrTemporarilyUnavailable, "The service is temporarily unavailable.")
		return
	}
	if err := s.newSession(w, r, u); err != nil {
		s.log.ErrorContext(ctx, "create session", "err", err)
		s.errorPage(w, http.StatusServiceUnavailable, ErrTemporarilyUnavailable, "The service is temporarily unavailable.")
		return
	}
	s.log.InfoContext(ctx, "login", "method", "oidc", "user_id", u.ID)
	s.audit(ctx, store.AuditEvent{Type: "login", Outcome: "success", ActorUserID: u.ID, Metadata: map[string]string{"method": "oidc"}})
	s.afterLogin(w, r, req, u)
}
