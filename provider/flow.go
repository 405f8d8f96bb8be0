package provider

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strings"

	"mcpgw/domain/secrets"
	"mcpgw/oauthserver"
	"mcpgw/store"
)

const (
	statePrefix    = "mcpgw_ps_"
	verifierPrefix = "mcpgw_pv_"
	maxStateParam  = 256
)

// pendingPayload is everything the callback needs (DESIGN §5), sealed into
// PendingProviderState.Ciphertext with pendingAAD. It holds the PKCE
// verifier and the upstream client secret: it is never logged.
type pendingPayload struct {
	V             int                           `json:"v"`
	FirstLevel    oauthserver.FirstLevelRequest `json:"first_level"`
	ConfigID      string                        `json:"config_id"`
	ConfigVersion int64                         `json:"config_version"`
	RemoteURL     string                        `json:"remote_url"`
	AuthMode      store.AuthMode                `json:"auth_mode"`
	InstanceID    string                        `json:"instance_id"`
	UserID        string                        `json:"user_id"`
	Context       string                        `json:"execution_context"`
	Client        upstreamClient                `json:"client"`
	Issuer        string                        `json:"issuer"`
	ISSParameter  bool                          `json:"iss_parameter"`
	TokenEndpoint string                        `json:"token_endpoint"`
	RedirectURI   string                        `json:"redirect_uri"`
	Scopes        []string                      `json:"scopes,omitempty"`
	Resource      string                        `json:"resource,omitempty"`
	Verifier      string                        `json:"verifier"`
}

// pendingAAD binds the sealed payload to its row: the hex SHA-256 of the
// opaque state ("pending_provider_states", "payload", hex(state hash)).
// A ciphertext copied to another state's row fails to open.
func pendingAAD(stateHash []byte) []byte {
	return secrets.AAD("pending_provider_states", "payload", hex.EncodeToString(stateHash))
}

// Start implements oauthserver.ProviderFlow: it prepares the upstream
// authorization (discovery, client, PKCE S256, opaque one-time state with
// encrypted pending state) and redirects the browser to the upstream
// authorization endpoint. An error is returned without writing anything,
// so the oauthserver answers the client with temporarily_unavailable.
func (p *Provider) Start(ctx context.Context, w http.ResponseWriter, r *http.Request, fl oauthserver.FirstLevelRequest) error {
	cfg, err := p.st.GetConfig(ctx, fl.Route.ConfigID)
	if err != nil {
		return fmt.Errorf("provider: start: get config: %w", err)
	}
	fail := func(reason string, err error) error {
		p.m.flows.WithLabelValues(reason).Inc()
		p.auditFlow(ctx, fl, "failure", reason, nil)
		p.log.WarnContext(ctx, "provider authorization could not start", "config_id", cfg.ID, "instance_id", fl.InstanceID, "reason", reason)
		return err
	}
	if cfg.Status != store.ConfigEnabled || cfg.Version != fl.ConfigVersion || !cfg.AuthMode.IsOAuth() {
		return fail(ReasonConfigChanged, fmt.Errorf("provider: start: config changed"))
	}
	md, err := p.Discover(ctx, cfg)
	if err != nil {
		return fail(reasonOf(err, "discovery_error"), err)
	}
	c, err := p.clientFor(ctx, cfg, md)
	if err != nil {
		return fail(reasonOf(err, "client_error"), err)
	}
	au, err := p.f.checkURL(md.AuthorizationEndpoint)
	if err != nil {
		return fail(reasonOf(err, ReasonBadURL), err)
	}
	state := secrets.NewToken(statePrefix)
	verifier := secrets.NewToken(verifierPrefix)
	hash := secrets.Hash(state)
	payload := pendingPayload{
		V: 1, FirstLevel: fl, ConfigID: cfg.ID, ConfigVersion: cfg.Version, RemoteURL: cfg.RemoteURL,
		AuthMode: cfg.AuthMode, InstanceID: fl.InstanceID, UserID: fl.UserID, Context: fl.Route.ExecutionContext(),
		Client: c, Issuer: md.Issuer, ISSParameter: md.ISSParameter, TokenEndpoint: md.TokenEndpoint,
		RedirectURI: p.callbackURL, Scopes: md.Scopes, Resource: md.Resource, Verifier: verifier,
	}
	pt, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("provider: start: encode state: %w", err)
	}
	ct, err := p.kr.Seal(pt, pendingAAD(hash))
	clear(pt)
	if err != nil {
		return fmt.Errorf("provider: start: seal state: %w", err)
	}
	now := p.now().UTC()
	if err := p.st.CreatePendingState(ctx, store.PendingProviderState{
		StateHash: hash, UserID: fl.UserID, ConfigID: cfg.ID, ConfigVersion: cfg.Version,
		InstanceID: fl.InstanceID, Ciphertext: ct, CreatedAt: now, ExpiresAt: now.Add(p.pendingTTL),
	}); err != nil {
		return fmt.Errorf("provider: start: store state: %w", err)
	}
	q := au.Query()
	q.Set("response_type", "code")
	q.Set("client_id", c.ID)
	q.Set("redirect_uri", p.callbackURL)
	q.Set("state", state)
	q.Set("code_challenge", s256(verifier))
	q.Set("code_challenge_method", "S256")
	if md.Resource != "" {
		q.Set("resource", md.Resource) // RFC 8707
	}
	if len(md.Scopes) > 0 {
		q.Set("scope", strings.Join(md.Scopes, " "))
	}
	au.RawQuery = q.Encode()
	p.m.flows.WithLabelValues("started").Inc()
	p.auditFlow(ctx, fl, "started", "", map[string]string{"upstream_host": au.Hostname(), "client_via": c.Via})
	p.log.InfoContext(ctx, "provider authorization started", "config_id", cfg.ID, "instance_id", fl.InstanceID, "upstream_host", au.Hostname())
	p.interstitial(w, au)
	return nil
}

// interstitial sends the browser on to the upstream authorization
// endpoint with a page (meta refresh plus a link) rather than a 302: Start
// answers the consent form's POST, and browsers enforce the consent page's
// CSP form-action (self and the client's redirect URI only) on every
// redirect that follows a form submission, so a 302 to the upstream would
// be blocked. A meta refresh is a new navigation of our own page. The page
// also tells the user where they are going.
func (p *Provider) interstitial(w http.ResponseWriter, target *url.URL) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(http.StatusOK)
	u := html.EscapeString(target.String())
	host := html.EscapeString(target.Host)
	_, _ = io.WriteString(w, `<!doctype html><html><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">`+
		`<meta http-equiv="refresh" content="0; url=`+u+`"><title>Continue to `+host+`</title></head>`+
		`<body><p>This connection needs your authorization at <strong>`+host+`</strong>.</p>`+
		`<p><a id="continue" href="`+u+`">Continue to `+host+`</a></p></body></html>`)
}

func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// handleCallback is GET /oauth/provider/callback (DESIGN §5). The pending
// state is consumed first, atomically, whatever the outcome, so a state
// is usable once. Before the state is known the browser gets a plain
// error page (no trusted redirect exists); after it, failures go to the
// first-level client's redirect URI as access_denied or server_error.
func (p *Provider) handleCallback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" || len(state) > maxStateParam || len(q["state"]) != 1 {
		p.page(w, http.StatusBadRequest, "The upstream authorization response is incomplete.")
		p.m.flows.WithLabelValues(ReasonStateUnknown).Inc()
		return
	}
	hash := secrets.Hash(state)
	ps, err := p.st.ConsumePendingState(ctx, hash, p.now().UTC())
	if err != nil {
		reason := ReasonStateUnknown
		switch {
		case errors.Is(err, store.ErrConsumed):
			reason = ReasonStateConsumed
		case errors.Is(err, store.ErrExpired):
			reason = ReasonStateExpired
		case errors.Is(err, store.ErrUnavailable):
			p.log.ErrorContext(ctx, "provider callback: store unavailable", "err", err)
			p.page(w, http.StatusServiceUnavailable, "The service is temporarily unavailable. Start again from your application.")
			return
		}
		p.m.flows.WithLabelValues(reason).Inc()
		p.log.InfoContext(ctx, "provider callback rejected", "reason", reason)
		p.audit(ctx, store.AuditEvent{Type: "provider.authorize", Outcome: "failure", Reason: reason})
		p.page(w, http.StatusBadRequest, "This authorization link was already used or has expired. Start again from your application.")
		return
	}
	pt, err := p.kr.Open(ps.Ciphertext, pendingAAD(hash))
	var pl pendingPayload
	if err == nil {
		err = json.Unmarshal(pt, &pl)
		clear(pt)
	}
	if err != nil || pl.V != 1 || pl.UserID != ps.UserID || pl.ConfigID != ps.ConfigID ||
		pl.ConfigVersion != ps.ConfigVersion || pl.InstanceID != ps.InstanceID ||
		pl.FirstLevel.UserID != pl.UserID || pl.FirstLevel.Route.ConfigID != pl.ConfigID ||
		pl.FirstLevel.InstanceID != pl.InstanceID || pl.FirstLevel.Route.ExecutionContext() != pl.Context {
		reason := ReasonStateMismatch
		if err != nil {
			reason = ReasonStateUndecryptable
		}
		p.m.flows.WithLabelValues(reason).Inc()
		p.log.WarnContext(ctx, "provider callback rejected", "reason", reason, "config_id", ps.ConfigID)
		p.audit(ctx, store.AuditEvent{Type: "provider.authorize", Outcome: "failure", Reason: reason, ConfigID: ps.ConfigID, ActorUserID: ps.UserID})
		p.page(w, http.StatusBadRequest, "This authorization link cannot be used. Start again from your application.")
		return
	}
	fl := p.firstLevel()
	if fl == nil {
		p.page(w, http.StatusServiceUnavailable, "The service is temporarily unavailable.")
		return
	}
	// Redirects to the first-level client from here on are trusted: the
	// redirect URI was validated at authorize and sealed in the state.
	fail := func(code, reason, desc string) {
		p.m.flows.WithLabelValues(reason).Inc()
		p.auditFlow(ctx, pl.FirstLevel, "failure", reason, nil)
		p.log.InfoContext(ctx, "provider authorization failed", "config_id", pl.ConfigID, "instance_id", pl.InstanceID, "reason", reason)
		target := fl.ErrorRedirect(pl.FirstLevel, code, desc)
		if target == "" {
			p.page(w, http.StatusBadRequest, "The authorization failed.")
			return
		}
		http.Redirect(w, r, target, http.StatusFound)
	}
	// The callback must come back in the browser of the user who started
	// it: a state leaked to (or planted on) another user binds nothing.
	pr, err := fl.Authenticate(r)
	if err != nil || pr.Via != "session" || pr.User.ID != pl.UserID {
		fail(oauthserver.ErrAccessDenied, ReasonWrongUser, "the upstream authorization was completed by another account")
		return
	}
	cfg, err := p.st.GetConfig(ctx, pl.ConfigID)
	if err != nil || cfg.Status != store.ConfigEnabled || cfg.Version != pl.ConfigVersion || cfg.RemoteURL != pl.RemoteURL || cfg.AuthMode != pl.AuthMode {
		fail(oauthserver.ErrAccessDenied, ReasonConfigChanged, "the connection changed during authorization")
		return
	}
	if pl.ISSParameter || q.Has("iss") {
		// RFC 9207 §2.4: a present iss must match; an AS that advertises
		// the parameter must send it.
		if q.Get("iss") == "" || strings.TrimRight(q.Get("iss"), "/") != strings.TrimRight(pl.Issuer, "/") {
			fail(oauthserver.ErrAccessDenied, ReasonIssMismatch, "the upstream authorization response came from an unexpected server")
			return
		}
	}
	if e := q.Get("error"); e != "" {
		code, reason := oauthserver.ErrServerError, ReasonUpstreamError
		if e == "access_denied" {
			code, reason = oauthserver.ErrAccessDenied, ReasonUpstreamDenied
		}
		fail(code, reason, "the upstream authorization was not granted")
		return
	}
	code := q.Get("code")
	if code == "" || len(code) > maxTokenLen || len(q["code"]) != 1 {
		fail(oauthserver.ErrServerError, ReasonMissingCode, "the upstream authorization response is incomplete")
		return
	}
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {pl.RedirectURI},
		"code_verifier": {pl.Verifier},
	}
	if pl.Resource != "" {
		form.Set("resource", pl.Resource)
	}
	xctx, cancel := context.WithTimeout(ctx, 2*p.timeout)
	ts, err := p.tokenRequest(xctx, "token", pl.TokenEndpoint, pl.Client, form)
	cancel()
	if err != nil {
		p.m.upstream.WithLabelValues("token", reasonOf(err, "error")).Inc()
		fail(oauthserver.ErrServerError, reasonOf(err, ReasonBadResponse), "the upstream token exchange failed")
		return
	}
	p.m.upstream.WithLabelValues("token", "ok").Inc()
	g, err := p.sealGrant(pl.InstanceID, ts, nil)
	if err != nil {
		fail(oauthserver.ErrServerError, ReasonStore, "internal error")
		return
	}
	ev := &store.AuditEvent{
		Type: "provider.grant", Outcome: "success", Reason: "authorized", ActorUserID: pl.UserID,
		OwnerScope: pl.FirstLevel.Route.Scope, OwnerID: pl.FirstLevel.Route.OwnerID, ConfigID: pl.ConfigID,
		InstanceID: pl.InstanceID, ClientID: pl.FirstLevel.ClientID,
	}
	written, err := p.st.PutGrant(ctx, g, -1, ev)
	if err != nil {
		p.log.ErrorContext(ctx, "provider callback: store grant failed", "config_id", pl.ConfigID, "instance_id", pl.InstanceID, "err", err)
		fail(oauthserver.ErrServerError, ReasonStore, "the upstream authorization could not be saved")
		return
	}
	target, err := fl.IssueCode(ctx, pl.FirstLevel)
	if err != nil {
		fail(oauthserver.ErrAccessDenied, ReasonIneligible, "the connection is no longer available")
		return
	}
	p.m.flows.WithLabelValues("success").Inc()
	p.auditFlow(ctx, pl.FirstLevel, "success", "", map[string]string{"grant_version": fmt.Sprint(written.Version), "client_via": pl.Client.Via})
	p.log.InfoContext(ctx, "provider authorization succeeded", "config_id", pl.ConfigID, "instance_id", pl.InstanceID, "grant_version", written.Version)
	http.Redirect(w, r, target, http.StatusFound)
}

// sealGrant encrypts a token set into a grant for instanceID. A refresh
// that returns no new refresh token keeps keepRefresh (RFC 6749 §6: the
// client keeps using the old one).
func (p *Provider) sealGrant(instanceID string, ts *tokenSet, keepRefresh []byte) (store.Grant, error) {
	at, err := p.kr.Seal([]byte(ts.AccessToken), secrets.AAD("grants", "access_token", instanceID))
	if err != nil {
		return store.Grant{}, err
	}
	g := store.Grant{InstanceID: instanceID, AccessToken: at, TokenType: "Bearer", Scope: ts.Scope, ExpiresAt: ts.ExpiresAt, UpdatedAt: p.now().UTC()}
	switch {
	case ts.RefreshToken != "":
		rt, err := p.kr.Seal([]byte(ts.RefreshToken), secrets.AAD("grants", "refresh_token", instanceID))
		if err != nil {
			return store.Grant{}, err
		}
		g.RefreshToken = rt
	case keepRefresh != nil:
		g.RefreshToken = keepRefresh
	}
	return g, nil
}

func (p *Provider) auditFlow(ctx context.Context, fl oauthserver.FirstLevelRequest, outcome, reason string, md map[string]string) {
	p.audit(ctx, store.AuditEvent{
		Type: "provider.authorize", Outcome: outcome, Reason: reason, ActorUserID: fl.UserID,
		OwnerScope: fl.Route.Scope, OwnerID: fl.Route.OwnerID, ConfigID: fl.Route.ConfigID,
		InstanceID: fl.InstanceID, ClientID: fl.ClientID, Metadata: md,
	})
}

var pageTmpl = template.Must(template.New("p").Parse(`<!doctype html><html><head><meta charset="utf-8"><title>Authorization</title></head><body><p>{{.}}</p></body></html>`))

// page writes a small static error page (no remote assets, no framing).
func (p *Provider) page(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = pageTmpl.Execute(w, msg)
}
