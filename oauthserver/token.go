package oauthserver

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"mcpgw/domain"
	"mcpgw/domain/secrets"
	"mcpgw/store"
)

const maxTokenBody = 16 << 10

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope"`
}

func errGrant(reason string) *oauthError {
	return oerr(http.StatusBadRequest, ErrInvalidGrant, "the grant is invalid, expired, used or revoked").withReason(reason)
}

func errClient(reason string) *oauthError {
	return oerr(http.StatusUnauthorized, ErrInvalidClient, "client authentication failed").withReason(reason)
}

// readForm parses an application/x-www-form-urlencoded body (RFC 6749
// §3.2), capped, with no repeated parameters.
func readForm(w http.ResponseWriter, r *http.Request) *oauthError {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return oerr(http.StatusBadRequest, ErrInvalidRequest, "the body must be application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxTokenBody)
	if err := r.ParseForm(); err != nil {
		return oerr(http.StatusBadRequest, ErrInvalidRequest, "the body could not be parsed")
	}
	if len(r.URL.RawQuery) > 0 {
		// Credentials in the query string would end up in logs.
		return oerr(http.StatusBadRequest, ErrInvalidRequest, "parameters must be sent in the body")
	}
	if !singleParams(r.PostForm) {
		return oerr(http.StatusBadRequest, ErrInvalidRequest, "a parameter was repeated")
	}
	return nil
}

// authenticateClient enforces the client's registered
// token_endpoint_auth_method exactly (DESIGN §4): a secret presented the
// other way, a secret for a public client or none for a confidential one
// is invalid_client. client_secret_basic values are form-urlencoded
// (RFC 6749 §2.3.1).
func (s *Server) authenticateClient(r *http.Request) (*client, *oauthError) {
	ctx := r.Context()
	var method, id, secret string
	basicID, basicSecret, hasBasic := r.BasicAuth()
	if len(r.Header.Values("Authorization")) > 0 && !hasBasic {
		return nil, errClient("bad_authorization_header")
	}
	formID, formSecret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	switch {
	case hasBasic && formSecret != "":
		return nil, oerr(http.StatusBadRequest, ErrInvalidRequest, "use exactly one client authentication method")
	case hasBasic:
		var err1, err2 error
		id, err1 = url.QueryUnescape(basicID)
		secret, err2 = url.QueryUnescape(basicSecret)
		if err1 != nil || err2 != nil {
			return nil, errClient("bad_basic_encoding")
		}
		if formID != "" && formID != id {
			return nil, errClient("client_id_mismatch")
		}
		method = authBasic
	case formSecret != "":
		id, secret, method = formID, formSecret, authPost
	default:
		id, method = formID, authNone
	}
	if id == "" {
		return nil, errClient("no_client_id")
	}
	cl, oe := s.lookupClient(ctx, id)
	if oe != nil {
		if oe.Code == ErrTemporarilyUnavailable || oe.Code == ErrServerError {
			return nil, oe
		}
		return nil, errClient(oe.Reason)
	}
	if cl.TokenEndpointAuthMethod != method {
		return nil, errClient("auth_method_mismatch")
	}
	if method != authNone {
		if len(cl.SecretHash) == 0 || !secrets.Equal(secrets.Hash(secret), cl.SecretHash) {
			return nil, errClient("bad_secret")
		}
	}
	return cl, nil
}

// handleToken is the token endpoint (RFC 6749 §3.2, DESIGN §4).
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if oe := readForm(w, r); oe != nil {
		writeOAuthError(w, oe)
		return
	}
	cl, oe := s.authenticateClient(r)
	if oe != nil {
		s.log.InfoContext(ctx, "token: client authentication failed", "reason", oe.Reason)
		writeOAuthError(w, oe)
		return
	}
	var resp *tokenResponse
	switch gt := r.PostForm.Get("grant_type"); gt {
	case grantAuthorizationCode:
		resp, oe = s.exchangeCode(ctx, cl, r.PostForm)
	case grantRefreshToken:
		resp, oe = s.refresh(ctx, cl, r.PostForm)
	case "":
		oe = oerr(http.StatusBadRequest, ErrInvalidRequest, "grant_type is required")
	default:
		oe = oerr(http.StatusBadRequest, ErrUnsupportedGrantType, "unsupported grant_type")
	}
	if oe != nil {
		s.log.InfoContext(ctx, "token rejected", "client_id", cl.ID, "error", oe.Code, "reason", oe.Reason)
		writeOAuthError(w, oe)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// validVerifier: RFC 7636 §4.1, 43–128 unreserved characters.
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

func s256(verifier string) string {
	h := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// exchangeCode redeems an authorization code (RFC 6749 §4.1.3, RFC 7636
// §4.6, RFC 8707 §2.2). The code is consumed atomically first; a second
// redemption revokes every token issued from it (RFC 6749 §4.1.2,
// DESIGN §4).
func (s *Server) exchangeCode(ctx context.Context, cl *client, f url.Values) (*tokenResponse, *oauthError) {
	if !cl.allowsGrant(grantAuthorizationCode) {
		return nil, oerr(http.StatusBadRequest, ErrUnauthorizedClient, "the client may not use this grant")
	}
	code, redirectURI, verifier, resource := f.Get("code"), f.Get("redirect_uri"), f.Get("code_verifier"), f.Get("resource")
	if code == "" || redirectURI == "" || verifier == "" {
		return nil, oerr(http.StatusBadRequest, ErrInvalidRequest, "code, redirect_uri and code_verifier are required")
	}
	if resource == "" {
		return nil, oerr(http.StatusBadRequest, ErrInvalidTarget, "resource is required")
	}
	now := s.clock()
	ac, err := s.st.ConsumeAuthCode(ctx, secrets.Hash(code), now)
	switch {
	case errors.Is(err, store.ErrConsumed):
		n, rerr := s.st.RevokeFamily(ctx, ac.FamilyID, now)
		if rerr != nil {
			s.log.ErrorContext(ctx, "revoke family after code reuse", "err", rerr)
		}
		s.log.WarnContext(ctx, "authorization code reused; family revoked", "client_id", cl.ID, "revoked", n)
		s.audit(ctx, store.AuditEvent{Type: "oauth.code_reuse", Outcome: "denied", ActorUserID: ac.UserID, ClientID: cl.ID,
			OwnerScope: ac.OwnerScope, OwnerID: ac.OwnerID, ConfigID: ac.ConfigID, InstanceID: ac.InstanceID, Reason: "code_reuse"})
		return nil, errGrant("code_reuse")
	case errors.Is(err, store.ErrExpired):
		return nil, errGrant("code_expired")
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalid):
		return nil, errGrant("code_unknown")
	case err != nil:
		return nil, s.internal(ctx, "consume code", err)
	}
	if ac.ClientID != cl.ID {
		return nil, errGrant("code_other_client")
	}
	if ac.RedirectURI != redirectURI {
		return nil, errGrant("redirect_uri_mismatch")
	}
	if !validVerifier(verifier) || !secrets.Equal([]byte(s256(verifier)), []byte(ac.CodeChallenge)) {
		return nil, errGrant("pkce_mismatch")
	}
	if resource != ac.Resource {
		return nil, oerr(http.StatusBadRequest, ErrInvalidTarget, "resource does not match the authorization").withReason("resource_mismatch")
	}
	if !domain.HasScope(ac.Scopes, domain.ScopeMCPAccess) {
		return nil, errGrant("code_without_mcp_access")
	}
	ref := domain.RouteRef{Scope: ac.OwnerScope, OwnerID: ac.OwnerID, ConfigID: ac.ConfigID, Key: ac.RouteKey}
	if ref.URL(s.publicBase) != ac.Resource || ref.ExecutionContext() != ac.ExecutionContext {
		return nil, errGrant("code_binding")
	}
	// Any non-OK reason denies here, grant_missing included: the provider
	// flow ran before the code was issued (eligibility{} is no OAuth mode).
	if _, err := s.recheck(ctx, ref, ac.UserID, ac.InstanceID, ac.ConfigVersion, eligibility{}); err != nil {
		return nil, s.issueDenied(ctx, err, ac.UserID, cl.ID, ref)
	}
	resp, oe := s.tokens(ctx, cl, tokenFacts{
		Ref: ref, UserID: ac.UserID, ClientID: cl.ID, Scopes: ac.Scopes,
		InstanceID: ac.InstanceID, ConfigVersion: ac.ConfigVersion,
	}, ac.FamilyID, now, nil)
	if oe != nil {
		return nil, oe
	}
	s.m.tokens.WithLabelValues(grantAuthorizationCode).Inc()
	s.audit(ctx, store.AuditEvent{Type: "oauth.token", Outcome: "success", ActorUserID: ac.UserID, ClientID: cl.ID,
		OwnerScope: ref.Scope, OwnerID: ref.OwnerID, ConfigID: ref.ConfigID, InstanceID: ac.InstanceID,
		Metadata: map[string]string{"grant_type": grantAuthorizationCode}})
	return resp, nil
}

// issueDenied maps a failed re-resolution at the token endpoint to
// invalid_grant (a denial) or an infrastructure error.
func (s *Server) issueDenied(ctx context.Context, err error, userID, clientID string, ref domain.RouteRef) *oauthError {
	if !isDenial(err) {
		return s.internal(ctx, "token recheck", err)
	}
	reason := ineligibleReason(err)
	s.audit(ctx, store.AuditEvent{Type: "oauth.token", Outcome: "denied", ActorUserID: userID, ClientID: clientID,
		OwnerScope: ref.Scope, OwnerID: ref.OwnerID, ConfigID: ref.ConfigID, Reason: reason})
	return errGrant("ineligible:" + reason)
}

// tokens mints the access token and, for clients registered for the
// refresh_token grant, a refresh token of the family. rotateFrom, when set,
// is the hash of the refresh token being rotated: the new one is stored in
// the same atomic step that consumes it.
func (s *Server) tokens(ctx context.Context, cl *client, f tokenFacts, family string, now time.Time, rotateFrom []byte) (*tokenResponse, *oauthError) {
	at, ttl, err := s.mint(f, now)
	if err != nil {
		return nil, s.internal(ctx, "mint", err)
	}
	resp := &tokenResponse{AccessToken: at, TokenType: "Bearer", ExpiresIn: int64(ttl / time.Second), Scope: domain.JoinScope(f.Scopes)}
	if !cl.allowsGrant(grantRefreshToken) {
		return resp, nil
	}
	raw := secrets.NewToken(prefixRefresh)
	rt := store.RefreshToken{
		Hash:             secrets.Hash(raw),
		FamilyID:         family,
		ClientID:         cl.ID,
		UserID:           f.UserID,
		InstanceID:       f.InstanceID,
		ConfigID:         f.Ref.ConfigID,
		Resource:         f.Ref.URL(s.publicBase),
		Scopes:           f.Scopes,
		ExecutionContext: f.Ref.ExecutionContext(),
		ConfigVersion:    f.ConfigVersion,
		CreatedAt:        now,
		ExpiresAt:        now.Add(s.refreshTTL),
	}
	if rotateFrom != nil {
		old, err := s.st.RotateRefreshToken(ctx, rotateFrom, rt, now)
		switch {
		case errors.Is(err, store.ErrConsumed):
			// Lost a race with another use of the same token: theft.
			_, _ = s.st.RevokeFamily(ctx, old.FamilyID, now)
			return nil, errGrant("refresh_reuse_race")
		case errors.Is(err, store.ErrRevoked), errors.Is(err, store.ErrExpired), errors.Is(err, store.ErrNotFound):
			return nil, errGrant("refresh_unusable")
		case err != nil:
			return nil, s.internal(ctx, "rotate refresh token", err)
		}
	} else if err := s.st.CreateRefreshToken(ctx, rt); err != nil {
		return nil, s.internal(ctx, "create refresh token", err)
	}
	resp.RefreshToken = raw
	return resp, nil
}

// refresh rotates a refresh token (RFC 6749 §6, OAuth 2.1 §4.3.1,
// RFC 9700 §4.14.2). A token without mcp:access is rejected before any
// other work; reuse of a consumed token revokes the whole family.
func (s *Server) refresh(ctx context.Context, cl *client, f url.Values) (*tokenResponse, *oauthError) {
	raw := f.Get("refresh_token")
	if raw == "" {
		return nil, oerr(http.StatusBadRequest, ErrInvalidRequest, "refresh_token is required")
	}
	now := s.clock()
	hash := secrets.Hash(raw)
	rt, err := s.st.GetRefreshToken(ctx, hash)
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalid):
		return nil, errGrant("refresh_unknown")
	case err != nil:
		return nil, s.internal(ctx, "get refresh token", err)
	}
	if !domain.HasScope(rt.Scopes, domain.ScopeMCPAccess) {
		return nil, errGrant("refresh_without_mcp_access")
	}
	if rt.ClientID != cl.ID {
		return nil, errGrant("refresh_other_client")
	}
	if !cl.allowsGrant(grantRefreshToken) {
		return nil, oerr(http.StatusBadRequest, ErrUnauthorizedClient, "the client may not use this grant")
	}
	if rt.RevokedAt != nil {
		return nil, errGrant("refresh_revoked")
	}
	if rt.ConsumedAt != nil {
		n, rerr := s.st.RevokeFamily(ctx, rt.FamilyID, now)
		if rerr != nil {
			s.log.ErrorContext(ctx, "revoke family after refresh reuse", "err", rerr)
		}
		s.log.WarnContext(ctx, "refresh token reused; family revoked", "client_id", cl.ID, "user_id", rt.UserID, "revoked", n)
		s.audit(ctx, store.AuditEvent{Type: "oauth.refresh_reuse", Outcome: "denied", ActorUserID: rt.UserID, ClientID: cl.ID,
			ConfigID: rt.ConfigID, InstanceID: rt.InstanceID, Reason: "refresh_reuse"})
		return nil, errGrant("refresh_reuse")
	}
	if !now.Before(rt.ExpiresAt) {
		return nil, errGrant("refresh_expired")
	}
	scopes := rt.Scopes
	if sc := f.Get("scope"); sc != "" {
		req := domain.ParseScope(sc)
		for _, v := range req {
			if !domain.HasScope(rt.Scopes, v) {
				return nil, oerr(http.StatusBadRequest, ErrInvalidScope, "scope exceeds the original grant")
			}
		}
		if !domain.HasScope(req, domain.ScopeMCPAccess) {
			return nil, oerr(http.StatusBadRequest, ErrInvalidScope, "scope must include mcp:access")
		}
		scopes = req
	}
	if res := f.Get("resource"); res != "" && res != rt.Resource {
		return nil, oerr(http.StatusBadRequest, ErrInvalidTarget, "resource does not match the grant")
	}
	ref, err := domain.ParseResourceURL(s.publicBase, rt.Resource)
	if err != nil || ref.ExecutionContext() != rt.ExecutionContext || ref.ConfigID != rt.ConfigID {
		return nil, errGrant("refresh_binding")
	}
	// ResolveRuntime checks the route and that the config is still at the
	// version the user consented to, so no separate route lookup is needed.
	if _, err := s.recheck(ctx, ref, rt.UserID, rt.InstanceID, rt.ConfigVersion, eligibility{}); err != nil {
		if ineligibleReason(err) == string(store.ReasonVersionMismatch) {
			// The config changed materially since the user consented.
			_, _ = s.st.RevokeFamily(ctx, rt.FamilyID, now)
		}
		return nil, s.issueDenied(ctx, err, rt.UserID, cl.ID, ref)
	}
	resp, oe := s.tokens(ctx, cl, tokenFacts{
		Ref: ref, UserID: rt.UserID, ClientID: cl.ID, Scopes: scopes,
		InstanceID: rt.InstanceID, ConfigVersion: rt.ConfigVersion,
	}, rt.FamilyID, now, hash)
	if oe != nil {
		return nil, oe
	}
	s.m.tokens.WithLabelValues(grantRefreshToken).Inc()
	s.audit(ctx, store.AuditEvent{Type: "oauth.token", Outcome: "success", ActorUserID: rt.UserID, ClientID: cl.ID,
		OwnerScope: ref.Scope, OwnerID: ref.OwnerID, ConfigID: ref.ConfigID, InstanceID: rt.InstanceID,
		Metadata: map[string]string{"grant_type": grantRefreshToken}})
	return resp, nil
}

// handleRevoke is RFC 7009 for refresh tokens: the client authenticates as
// at the token endpoint; revoking a refresh token revokes its family
// (RFC 7009 §2.1). Unknown tokens, tokens of other clients and access
// tokens (self-contained JWTs that expire in minutes) get 200 and change
// nothing.
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if oe := readForm(w, r); oe != nil {
		writeOAuthError(w, oe)
		return
	}
	cl, oe := s.authenticateClient(r)
	if oe != nil {
		writeOAuthError(w, oe)
		return
	}
	tok := r.PostForm.Get("token")
	if tok == "" {
		writeOAuthError(w, oerr(http.StatusBadRequest, ErrInvalidRequest, "token is required"))
		return
	}
	if strings.HasPrefix(tok, prefixRefresh) {
		rt, err := s.st.GetRefreshToken(ctx, secrets.Hash(tok))
		switch {
		case err == nil && rt.ClientID == cl.ID:
			if _, err := s.st.RevokeFamily(ctx, rt.FamilyID, s.clock()); err != nil {
				writeOAuthError(w, s.internal(ctx, "revoke", err))
				return
			}
			s.audit(ctx, store.AuditEvent{Type: "oauth.revoke", Outcome: "success", ActorUserID: rt.UserID, ClientID: cl.ID,
				ConfigID: rt.ConfigID, InstanceID: rt.InstanceID})
		case err != nil && errors.Is(err, store.ErrUnavailable):
			writeOAuthError(w, s.internal(ctx, "revoke lookup", err))
			return
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}
