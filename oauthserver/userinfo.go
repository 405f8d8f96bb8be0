package oauthserver

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"mcpgw/domain"
	"mcpgw/store"
)

// handleUserinfo returns the user's claims for a gateway token carrying
// profile (DESIGN §4); mcp:access alone gets 403 insufficient_scope
// (RFC 6750 §3.1).
func (s *Server) handleUserinfo(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	raw, ok := bearerToken(r)
	if !ok {
		writeOAuthError(w, oerr(http.StatusUnauthorized, ErrInvalidToken, "a bearer token is required"))
		return
	}
	c, err := s.parseGatewayToken(raw, s.clock())
	if err != nil {
		writeOAuthError(w, oerr(http.StatusUnauthorized, ErrInvalidToken, "the token is invalid or expired"))
		return
	}
	if !domain.HasScope(domain.ParseScope(c.Scope), domain.ScopeProfile) {
		writeOAuthError(w, oerr(http.StatusForbidden, ErrInsufficientScope, "the token lacks the profile scope"))
		return
	}
	u, err := s.st.GetUser(ctx, c.Subject)
	if err != nil {
		if errors.Is(err, store.ErrUnavailable) {
			writeOAuthError(w, s.internal(ctx, "userinfo user", err))
			return
		}
		writeOAuthError(w, oerr(http.StatusUnauthorized, ErrInvalidToken, "the token is invalid or expired"))
		return
	}
	if u.Status != store.UserActive {
		writeOAuthError(w, oerr(http.StatusUnauthorized, ErrInvalidToken, "the token is invalid or expired"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"sub": u.ID, "email": u.Email, "name": u.DisplayName})
}

// connectTokenRequest names the connection by its canonical resource URL
// or by config id (its active route).
type connectTokenRequest struct {
	Resource string `json:"resource"`
	ConfigID string `json:"config_id"`
}

// ConnectTokenClientID is the client_id claim of derived connect tokens.
const ConnectTokenClientID = "mcpgw:connect-token"

// handleConnectToken mints a derived connect token (DESIGN §2, §7): the
// same gateway JWT contract for a user authenticated to the management API,
// with eligibility checked exactly as at the token endpoint and the
// instance created lazily; no refresh token.
func (s *Server) handleConnectToken(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p, err := s.Authenticate(r)
	if err != nil {
		switch {
		case errors.Is(err, ErrCSRF):
			writeOAuthError(w, oerr(http.StatusForbidden, ErrInvalidRequest, "missing or invalid CSRF token"))
		case errors.Is(err, ErrUnauthenticated):
			writeOAuthError(w, oerr(http.StatusUnauthorized, ErrInvalidToken, "authentication required"))
		default:
			writeOAuthError(w, s.internal(ctx, "authenticate", err))
		}
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 16<<10))
	if err != nil {
		writeOAuthError(w, oerr(http.StatusRequestEntityTooLarge, ErrRequestTooLarge, "the body is too large"))
		return
	}
	var req connectTokenRequest
	if err := json.Unmarshal(body, &req); err != nil || (req.Resource == "") == (req.ConfigID == "") {
		writeOAuthError(w, oerr(http.StatusBadRequest, ErrInvalidRequest, "send exactly one of resource or config_id"))
		return
	}
	var ref domain.RouteRef
	notFound := oerr(http.StatusNotFound, ErrInvalidTarget, "no such connection")
	if req.Resource != "" {
		ref, err = domain.ParseResourceURL(s.publicBase, req.Resource)
		if err != nil {
			writeOAuthError(w, notFound)
			return
		}
	} else {
		rt, err := s.st.GetActiveRoute(ctx, req.ConfigID)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
				writeOAuthError(w, notFound)
				return
			}
			writeOAuthError(w, s.internal(ctx, "active route", err))
			return
		}
		ref = domain.RouteRef{Scope: rt.OwnerScope, OwnerID: rt.OwnerID, ConfigID: rt.ConfigID, Key: rt.Key}
	}
	el, err := s.resolveForIssue(ctx, ref, p.User.ID, true)
	if err != nil {
		if !isDenial(err) {
			writeOAuthError(w, s.internal(ctx, "connect token eligibility", err))
			return
		}
		reason := ineligibleReason(err)
		s.audit(ctx, store.AuditEvent{Type: "oauth.connect_token", Outcome: "denied", ActorUserID: p.User.ID,
			OwnerScope: ref.Scope, OwnerID: ref.OwnerID, ConfigID: ref.ConfigID, Reason: reason})
		if errors.Is(err, errRouteGone) {
			writeOAuthError(w, notFound)
			return
		}
		// Same answer whatever the reason: no detail about owners (§10).
		writeOAuthError(w, oerr(http.StatusForbidden, ErrAccessDenied, "you cannot use this connection"))
		return
	}
	if el.NeedsProvider {
		writeOAuthError(w, oerr(http.StatusConflict, ErrAccessDenied, "connect this connection through the OAuth flow first: it needs an upstream authorization").withReason("grant_missing"))
		return
	}
	now := s.clock()
	at, ttl, err := s.mint(tokenFacts{
		Ref: ref, UserID: p.User.ID, ClientID: ConnectTokenClientID, Scopes: []string{domain.ScopeMCPAccess},
		InstanceID: el.Instance.ID, ConfigVersion: el.Config.Version,
	}, now)
	if err != nil {
		writeOAuthError(w, s.internal(ctx, "mint", err))
		return
	}
	s.m.tokens.WithLabelValues("connect_token").Inc()
	s.audit(ctx, store.AuditEvent{Type: "oauth.connect_token", Outcome: "success", ActorUserID: p.User.ID,
		OwnerScope: ref.Scope, OwnerID: ref.OwnerID, ConfigID: ref.ConfigID, InstanceID: el.Instance.ID,
		Metadata: map[string]string{"via": p.Via}})
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": at,
		"token_type":   "Bearer",
		"expires_in":   int64(ttl.Seconds()),
		"scope":        domain.ScopeMCPAccess,
		"resource":     ref.URL(s.publicBase),
	})
}
