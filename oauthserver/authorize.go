package oauthserver

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"

	"mcpgw/domain"
	"mcpgw/domain/secrets"
	"mcpgw/store"
)

// validChallenge: an S256 challenge is the base64url SHA-256 of the
// verifier, exactly 43 characters (RFC 7636 §4.2).
func validChallenge(c string) bool {
	if len(c) != 43 {
		return false
	}
	return validReq(c)
}

// singleParams rejects repeated parameters (RFC 6749 §3.1: parameters
// MUST NOT be included more than once).
func singleParams(v url.Values) bool {
	for _, vs := range v {
		if len(vs) > 1 {
			return false
		}
	}
	return true
}

// handleAuthorize validates an authorization request (DESIGN §4, RFC 6749
// §4.1.1, RFC 7636, RFC 8707) and parks it as an AuthRequest for login and
// consent. Errors before the client and redirect URI are trusted are
// shown as a 400 page; later ones go back to the redirect URI with state
// and iss.
func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	if !singleParams(q) {
		s.errorPage(w, http.StatusBadRequest, ErrInvalidRequest, "A parameter was repeated.")
		return
	}
	clientID := q.Get("client_id")
	if clientID == "" {
		s.errorPage(w, http.StatusBadRequest, ErrInvalidRequest, "The request has no client_id.")
		return
	}
	cl, oe := s.lookupClient(ctx, clientID)
	if oe != nil {
		if oe.Code == ErrTemporarilyUnavailable || oe.Code == ErrServerError {
			s.errorPage(w, oe.Status, oe.Code, "The service is temporarily unavailable.")
			return
		}
		s.log.InfoContext(ctx, "authorize: client rejected", "reason", oe.Reason)
		s.errorPage(w, http.StatusBadRequest, ErrInvalidClient, "The application is unknown or its metadata could not be used.")
		return
	}
	redirectURI := q.Get("redirect_uri")
	if redirectURI == "" {
		s.errorPage(w, http.StatusBadRequest, ErrInvalidRequest, "The request has no redirect_uri.")
		return
	}
	// Exact string match against a registered URI (RFC 9700 §2.1,
	// DESIGN §4). No loopback port relaxation: exact is stricter.
	if !slices.Contains(cl.RedirectURIs, redirectURI) {
		s.errorPage(w, http.StatusBadRequest, ErrInvalidRedirectURI, "The redirect_uri is not registered for this application.")
		return
	}
	// From here on the redirect URI is trusted.
	state := q.Get("state")
	fail := func(code, desc, reason string) {
		s.log.InfoContext(ctx, "authorize rejected", "client_id", cl.ID, "error", code, "reason", reason)
		s.redirectError(w, r, redirectURI, state, oerr(http.StatusFound, code, desc))
	}
	switch rt := q.Get("response_type"); rt {
	case respCode:
	case "":
		fail(ErrInvalidRequest, "response_type is required", "no_response_type")
		return
	default:
		fail(ErrUnsupportedResponseType, "only response_type=code is supported", "response_type")
		return
	}
	// A client whose registration never declared mcp:access (legacy,
	// profile-only) must re-register (DESIGN §4).
	clientScopes := domain.ParseScope(cl.Scope)
	if !domain.HasScope(clientScopes, domain.ScopeMCPAccess) {
		fail(ErrUnauthorizedClient, "the client is not registered for mcp:access; register again", "client_without_mcp_access")
		return
	}
	if !cl.allowsGrant(grantAuthorizationCode) {
		fail(ErrUnauthorizedClient, "the client is not registered for the authorization code grant", "client_grant")
		return
	}
	scopes := domain.ParseScope(q.Get("scope"))
	switch {
	case len(scopes) == 0:
		fail(ErrInvalidScope, "scope is required and must include mcp:access", "no_scope")
		return
	case !domain.KnownScopes(scopes):
		fail(ErrInvalidScope, "unknown scope", "unknown_scope")
		return
	case !domain.HasScope(scopes, domain.ScopeMCPAccess):
		fail(ErrInvalidScope, "scope must include mcp:access", "no_mcp_access")
		return
	}
	for _, sc := range scopes {
		if !domain.HasScope(clientScopes, sc) {
			fail(ErrInvalidScope, "scope exceeds the client's registration", "scope_not_registered")
			return
		}
	}
	challenge := q.Get("code_challenge")
	if challenge == "" {
		fail(ErrInvalidRequest, "code_challenge is required (PKCE S256)", "no_pkce")
		return
	}
	if q.Get("code_challenge_method") != pkceS256 {
		fail(ErrInvalidRequest, "code_challenge_method must be S256", "pkce_method")
		return
	}
	if !validChallenge(challenge) {
		fail(ErrInvalidRequest, "code_challenge is malformed", "pkce_format")
		return
	}
	resource := q.Get("resource")
	if resource == "" {
		fail(ErrInvalidTarget, "resource is required", "no_resource")
		return
	}
	ref, err := domain.ParseResourceURL(s.publicBase, resource)
	if err != nil || ref.URL(s.publicBase) != resource {
		fail(ErrInvalidTarget, "resource is not a connection URL of this gateway", "resource_malformed")
		return
	}
	if _, _, err := s.st.LookupRoute(ctx, ref.Scope, ref.OwnerID, ref.ConfigID, ref.Key); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			fail(ErrInvalidTarget, "resource is not a connection URL of this gateway", "route_not_found")
			return
		}
		oe := s.internal(ctx, "authorize lookup route", err)
		s.redirectError(w, r, redirectURI, state, oe)
		return
	}
	if len(state) > 1024 || !printable(state) {
		fail(ErrInvalidRequest, "state is too long or malformed", "state")
		return
	}
	now := s.clock()
	ar := store.AuthRequest{
		ID:            secrets.NewToken(""),
		ClientID:      cl.ID,
		RedirectURI:   redirectURI,
		Resource:      resource,
		Scopes:        scopes,
		State:         state,
		CodeChallenge: challenge,
		ConfigID:      ref.ConfigID,
		RouteKey:      ref.Key,
		OwnerScope:    ref.Scope,
		OwnerID:       ref.OwnerID,
		CreatedAt:     now,
		ExpiresAt:     now.Add(s.authRequestTTL),
	}
	if err := s.st.CreateAuthRequest(ctx, ar); err != nil {
		s.redirectError(w, r, redirectURI, state, s.internal(ctx, "create auth request", err))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if _, err := s.session(r); err != nil {
		http.Redirect(w, r, "/login?req="+url.QueryEscape(ar.ID), http.StatusFound)
		return
	}
	http.Redirect(w, r, "/oauth/consent?req="+url.QueryEscape(ar.ID), http.StatusFound)
}

// loadAuthRequest loads the pending request named by req for the session
// user, binding it to that user on first sight.
func (s *Server) loadAuthRequest(w http.ResponseWriter, r *http.Request, req string, si *sessionInfo) (*store.AuthRequest, bool) {
	ctx := r.Context()
	if req == "" || !validReq(req) {
		s.errorPage(w, http.StatusBadRequest, ErrInvalidRequest, "The authorization request is missing or malformed.")
		return nil, false
	}
	ar, err := s.st.GetAuthRequest(ctx, req, s.clock())
	if err != nil {
		if errors.Is(err, store.ErrUnavailable) {
			s.errorPage(w, http.StatusServiceUnavailable, ErrTemporarilyUnavailable, "The service is temporarily unavailable.")
			return nil, false
		}
		s.errorPage(w, http.StatusBadRequest, ErrInvalidRequest, "The authorization request is unknown or expired. Start again from the application.")
		return nil, false
	}
	if ar.UserID != "" && ar.UserID != si.user.ID {
		s.errorPage(w, http.StatusForbidden, ErrAccessDenied, "This authorization request belongs to another account.")
		return nil, false
	}
	return &ar, true
}

func (s *Server) routeOf(ar *store.AuthRequest) domain.RouteRef {
	return domain.RouteRef{Scope: ar.OwnerScope, OwnerID: ar.OwnerID, ConfigID: ar.ConfigID, Key: ar.RouteKey}
}

// handleConsentPage shows what is being granted (DESIGN §4) after checking
// eligibility, and issues a one-use consent ticket bound server side to
// every parameter of the request.
func (s *Server) handleConsentPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	req := r.URL.Query().Get("req")
	si, err := s.session(r)
	if err != nil {
		if errors.Is(err, ErrUnauthenticated) && validReq(req) {
			http.Redirect(w, r, "/login?req="+url.QueryEscape(req), http.StatusFound)
			return
		}
		s.errorPage(w, http.StatusServiceUnavailable, ErrTemporarilyUnavailable, "The service is temporarily unavailable.")
		return
	}
	ar, ok := s.loadAuthRequest(w, r, req, si)
	if !ok {
		return
	}
	if ar.UserID == "" {
		if err := s.st.SetAuthRequestUser(ctx, ar.ID, si.user.ID); err != nil {
			s.errorPage(w, http.StatusServiceUnavailable, ErrTemporarilyUnavailable, "The service is temporarily unavailable.")
			return
		}
		ar.UserID = si.user.ID
	}
	ref := s.routeOf(ar)
	cfg, err := s.precheck(ctx, ref, si.user.ID)
	if err != nil {
		s.denyAuthRequest(w, r, ar, si.user.ID, err)
		return
	}
	cl, oe := s.lookupClient(ctx, ar.ClientID)
	if oe != nil {
		s.errorPage(w, http.StatusBadRequest, ErrInvalidClient, "The application is no longer registered.")
		return
	}
	now := s.clock()
	ticket := secrets.NewToken(prefixConsent)
	t := store.ConsentTicket{
		Hash:             secrets.Hash(ticket),
		AuthRequestID:    ar.ID,
		UserID:           si.user.ID,
		ClientID:         ar.ClientID,
		RedirectURI:      ar.RedirectURI,
		Resource:         ar.Resource,
		Scopes:           ar.Scopes,
		State:            ar.State,
		CodeChallenge:    ar.CodeChallenge,
		ExecutionContext: ref.ExecutionContext(),
		CreatedAt:        now,
		ExpiresAt:        now.Add(s.consentTTL),
	}
	if err := s.st.CreateConsentTicket(ctx, t); err != nil {
		s.log.ErrorContext(ctx, "create consent ticket", "err", err)
		s.errorPage(w, http.StatusServiceUnavailable, ErrTemporarilyUnavailable, "The service is temporarily unavailable.")
		return
	}
	s.renderPage(w, http.StatusOK, "consent", pageData{
		Title:          "Allow access",
		ClientName:     cl.ClientName,
		ClientID:       cl.ID,
		RedirectURI:    ar.RedirectURI,
		ConnectionName: cfg.Name,
		UpstreamHost:   upstreamHost(cfg.RemoteURL),
		OwnerContext:   s.ownerContext(ctx, ref),
		Account:        accountLabel(si.user),
		AccessWords:    accessWords(ar.Scopes, cfg.Name),
		CSRF:           csrfFor(si.raw),
		Req:            ar.ID,
		Ticket:         ticket,
	}, ar.RedirectURI)
}

func upstreamHost(remote string) string {
	u, err := url.Parse(remote)
	if err != nil {
		return "(unknown)"
	}
	return u.Host
}

func accountLabel(u store.User) string {
	if u.DisplayName != "" {
		return u.DisplayName + " <" + u.Email + ">"
	}
	return u.Email
}

func (s *Server) ownerContext(ctx context.Context, ref domain.RouteRef) string {
	if ref.Scope == store.ScopeOrg {
		if o, err := s.st.GetOrg(ctx, ref.OwnerID); err == nil {
			return "Organization " + o.Name
		}
		return "An organization"
	}
	return "Personal (your own connection)"
}

func accessWords(scopes []string, conn string) string {
	w := "use the MCP connection \u201c" + conn + "\u201d as you, through mcpgw, for as long as you stay eligible. It never sees the upstream credentials."
	if domain.HasScope(scopes, domain.ScopeProfile) {
		w += " It can also read your name and email address."
	}
	return "The application can " + w
}

// denyAuthRequest ends a pending request the user may not complete and
// tells the client access_denied (or invalid_target for a route that went
// away).
func (s *Server) denyAuthRequest(w http.ResponseWriter, r *http.Request, ar *store.AuthRequest, userID string, err error) {
	ctx := r.Context()
	if !isDenial(err) {
		oe := s.internal(ctx, "authorize eligibility", err)
		s.redirectError(w, r, ar.RedirectURI, ar.State, oe)
		return
	}
	_ = s.st.DeleteAuthRequest(ctx, ar.ID)
	reason := ineligibleReason(err)
	s.log.InfoContext(ctx, "authorization denied", "client_id", ar.ClientID, "user_id", userID, "reason", reason)
	s.audit(ctx, store.AuditEvent{
		Type: "oauth.authorize", Outcome: "denied", ActorUserID: userID, ClientID: ar.ClientID,
		OwnerScope: ar.OwnerScope, OwnerID: ar.OwnerID, ConfigID: ar.ConfigID, Reason: reason,
	})
	code, desc := ErrAccessDenied, "you cannot use this connection"
	if errors.Is(err, errRouteGone) {
		code, desc = ErrInvalidTarget, "resource is not a connection URL of this gateway"
	}
	s.redirectError(w, r, ar.RedirectURI, ar.State, oerr(http.StatusFound, code, desc))
}

// handleConsentDecision acts on Allow/Deny. The form must carry the
// session's CSRF token and an unused consent ticket whose bindings match
// the pending request and the session user; anything else does nothing.
func (s *Server) handleConsentDecision(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil || !singleParams(r.PostForm) {
		s.errorPage(w, http.StatusBadRequest, ErrInvalidRequest, "The consent form could not be read.")
		return
	}
	si, err := s.session(r)
	if err != nil {
		s.errorPage(w, http.StatusForbidden, ErrAccessDenied, "You are not signed in.")
		return
	}
	if !si.checkCSRF(r.PostForm.Get("csrf")) {
		s.log.InfoContext(ctx, "consent rejected", "reason", "csrf")
		s.errorPage(w, http.StatusForbidden, ErrInvalidRequest, "The consent was not submitted from this site.")
		return
	}
	decision := r.PostForm.Get("decision")
	if decision != "allow" && decision != "deny" {
		s.errorPage(w, http.StatusBadRequest, ErrInvalidRequest, "No decision was made.")
		return
	}
	ticket := r.PostForm.Get("ticket")
	if ticket == "" {
		s.errorPage(w, http.StatusBadRequest, ErrInvalidRequest, "The consent form is incomplete.")
		return
	}
	t, err := s.st.ConsumeConsentTicket(ctx, secrets.Hash(ticket), s.clock())
	if err != nil {
		if errors.Is(err, store.ErrUnavailable) {
			s.errorPage(w, http.StatusServiceUnavailable, ErrTemporarilyUnavailable, "The service is temporarily unavailable.")
			return
		}
		s.log.InfoContext(ctx, "consent rejected", "reason", "ticket_unusable")
		s.errorPage(w, http.StatusBadRequest, ErrInvalidRequest, "This consent was already used or has expired. Start again from the application.")
		return
	}
	if t.UserID != si.user.ID || t.AuthRequestID != r.PostForm.Get("req") {
		s.log.InfoContext(ctx, "consent rejected", "reason", "ticket_binding")
		s.errorPage(w, http.StatusForbidden, ErrAccessDenied, "This consent belongs to another request or account.")
		return
	}
	ar, ok := s.loadAuthRequest(w, r, t.AuthRequestID, si)
	if !ok {
		return
	}
	ref := s.routeOf(ar)
	if ar.UserID != t.UserID || ar.ClientID != t.ClientID || ar.RedirectURI != t.RedirectURI ||
		ar.Resource != t.Resource || !slices.Equal(ar.Scopes, t.Scopes) || ar.State != t.State ||
		ar.CodeChallenge != t.CodeChallenge || ref.ExecutionContext() != t.ExecutionContext {
		s.log.InfoContext(ctx, "consent rejected", "reason", "ticket_mismatch")
		s.errorPage(w, http.StatusForbidden, ErrAccessDenied, "This consent does not match the request.")
		return
	}
	// The pending request is single use whatever the decision.
	if err := s.st.DeleteAuthRequest(ctx, ar.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.redirectError(w, r, ar.RedirectURI, ar.State, s.internal(ctx, "delete auth request", err))
		return
	}
	if decision == "deny" {
		s.log.InfoContext(ctx, "consent denied", "client_id", ar.ClientID, "user_id", si.user.ID)
		s.audit(ctx, store.AuditEvent{
			Type: "oauth.authorize", Outcome: "denied", ActorUserID: si.user.ID, ClientID: ar.ClientID,
			OwnerScope: ar.OwnerScope, OwnerID: ar.OwnerID, ConfigID: ar.ConfigID, Reason: "user_denied",
		})
		s.redirectError(w, r, ar.RedirectURI, ar.State, oerr(http.StatusFound, ErrAccessDenied, "the user denied access"))
		return
	}
	el, err := s.resolveForIssue(ctx, ref, si.user.ID, true)
	if err != nil {
		s.denyAuthRequest(w, r, ar, si.user.ID, err)
		return
	}
	pending := FirstLevelRequest{
		ClientID: ar.ClientID, RedirectURI: ar.RedirectURI, Resource: ar.Resource, Scopes: ar.Scopes,
		State: ar.State, CodeChallenge: ar.CodeChallenge, UserID: si.user.ID,
		Route: ref, ConfigVersion: el.Config.Version, InstanceID: el.Instance.ID,
	}
	if el.NeedsProvider {
		s.startProvider(w, r, pending)
		return
	}
	target, err := s.issueCode(ctx, pending, el)
	if err != nil {
		s.redirectError(w, r, ar.RedirectURI, ar.State, s.internal(ctx, "issue code", err))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, target, http.StatusFound)
}
