package oauthserver

import (
	"encoding/json"
	"errors"
	"io"
	"math"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"mcpgw/domain/secrets"
	"mcpgw/store"
)

// Token prefixes. They make a leaked value recognisable (secret scanners)
// and let the API tell token kinds apart; the random part is 256 bits.
const (
	prefixClientID          = "dcr:"
	prefixClientSecret      = "mgwcs_"
	prefixRegistrationToken = "mgwrt_"
	prefixCode              = "mgwac_"
	prefixRefresh           = "mgwrf_"
	prefixSession           = "mgwss_"
	prefixConsent           = "mgwct_"
	// PrefixAPIToken is the prefix of personal management API tokens.
	PrefixAPIToken = "mgw_"
)

// registrationResponse is RFC 7591 §3.2.1 plus RFC 7592 §3.
type registrationResponse struct {
	ClientID                string `json:"client_id"`
	ClientSecret            string `json:"client_secret,omitempty"`
	ClientIDIssuedAt        int64  `json:"client_id_issued_at"`
	ClientSecretExpiresAt   *int64 `json:"client_secret_expires_at,omitempty"`
	RegistrationAccessToken string `json:"registration_access_token,omitempty"`
	RegistrationClientURI   string `json:"registration_client_uri"`
	storedMetadata
}

// clientIP returns the rate-limit identity of the caller from the
// configured trusted source only (DESIGN §4): Envoy's
// x-envoy-external-address, or the socket peer. A client-supplied
// X-Forwarded-For is never read.
func (s *Server) clientIP(r *http.Request) string {
	if s.clientIPSource == ClientIPEnvoy {
		if v := strings.TrimSpace(r.Header.Get("X-Envoy-External-Address")); v != "" {
			if a, err := netip.ParseAddr(v); err == nil {
				return a.Unmap().String()
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap().String()
	}
	return "unknown"
}

// handleRegister is RFC 7591 dynamic registration (DESIGN §4):
// unauthenticated, rate limited per trusted client IP, body capped.
func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	now := s.clock()
	ok, retry, err := s.st.HitRateLimit(ctx, "oauth_register:"+s.clientIP(r), time.Minute, s.regPerMinute, now)
	if err != nil {
		writeOAuthError(w, s.internal(ctx, "registration rate limit", err))
		return
	}
	if !ok {
		e := oerr(http.StatusTooManyRequests, ErrRateLimited, "too many registrations; retry later")
		e.RetryAfter = int(math.Ceil(retry.Seconds()))
		if e.RetryAfter < 1 {
			e.RetryAfter = 1
		}
		s.log.InfoContext(ctx, "registration rate limited")
		writeOAuthError(w, e)
		return
	}
	md, e := s.readMetadata(w, r)
	if e != nil {
		writeOAuthError(w, e)
		return
	}
	if md.ClientID != "" || md.ClientSecret != "" {
		writeOAuthError(w, errMetadata("client_id and client_secret are assigned by the server"))
		return
	}
	norm, e := md.normalize(false)
	if e != nil {
		writeOAuthError(w, e)
		return
	}
	id := secrets.NewToken(prefixClientID)
	oc := metadataToClient(id, norm)
	var secret string
	if norm.TokenEndpointAuthMethod != authNone {
		secret = secrets.NewToken(prefixClientSecret)
		oc.SecretHash = secrets.Hash(secret)
	}
	regToken := secrets.NewToken(prefixRegistrationToken)
	oc.RegistrationTokenHash = secrets.Hash(regToken)
	oc.CreatedAt, oc.UpdatedAt = now, now
	created, err := s.st.CreateClient(ctx, oc)
	if err != nil {
		if errors.Is(err, store.ErrInvalid) {
			writeOAuthError(w, errMetadata("client metadata rejected"))
			return
		}
		writeOAuthError(w, s.internal(ctx, "create client", err))
		return
	}
	s.log.InfoContext(ctx, "client registered", "client_id", id, "auth_method", norm.TokenEndpointAuthMethod, "application_type", norm.ApplicationType)
	s.audit(ctx, store.AuditEvent{Type: "oauth.client.register", Outcome: "success", ClientID: id})
	resp := registrationResponse{
		ClientID:                id,
		ClientSecret:            secret,
		ClientIDIssuedAt:        created.CreatedAt.Unix(),
		RegistrationAccessToken: regToken,
		RegistrationClientURI:   s.endpoint("/oauth/register/" + id),
		storedMetadata:          norm,
	}
	if secret != "" {
		zero := int64(0) // never expires (RFC 7591 §3.2.1)
		resp.ClientSecretExpiresAt = &zero
	}
	writeJSON(w, http.StatusCreated, resp)
}

// readMetadata reads a JSON client metadata body capped at 64 KiB: beyond
// the cap the answer is 413 (DESIGN §4).
func (s *Server) readMetadata(w http.ResponseWriter, r *http.Request) (*clientMetadata, *oauthError) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil, errMetadata("the body must be application/json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRegistrationBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, oerr(http.StatusRequestEntityTooLarge, ErrRequestTooLarge, "the registration body is too large")
		}
		return nil, errMetadata("cannot read the body")
	}
	var md clientMetadata
	if err := json.Unmarshal(body, &md); err != nil {
		return nil, errMetadata("the body is not valid client metadata JSON")
	}
	return &md, nil
}

// registrationClient authenticates an RFC 7592 request: the bearer
// registration access token must match the client's stored hash. Unknown
// clients and wrong tokens get the same 401 (RFC 7592 §2: no existence
// oracle).
func (s *Server) registrationClient(w http.ResponseWriter, r *http.Request) (*store.OAuthClient, bool) {
	ctx := r.Context()
	id := r.PathValue("client_id")
	tok, ok := bearerToken(r)
	deny := func() {
		writeOAuthError(w, oerr(http.StatusUnauthorized, ErrInvalidToken, "invalid registration access token"))
	}
	if !ok || !strings.HasPrefix(id, prefixClientID) {
		deny()
		return nil, false
	}
	c, err := s.st.GetClient(ctx, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
			deny()
			return nil, false
		}
		writeOAuthError(w, s.internal(ctx, "get client", err))
		return nil, false
	}
	if len(c.RegistrationTokenHash) == 0 || !secrets.Equal(secrets.Hash(tok), c.RegistrationTokenHash) {
		deny()
		return nil, false
	}
	return &c, true
}

func (s *Server) handleRegistrationGet(w http.ResponseWriter, r *http.Request) {
	c, ok := s.registrationClient(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, registrationResponse{
		ClientID:              c.ID,
		ClientIDIssuedAt:      c.CreatedAt.Unix(),
		RegistrationClientURI: s.endpoint("/oauth/register/" + c.ID),
		storedMetadata:        clientToMetadata(*c),
	})
}

// handleRegistrationPut replaces the client's metadata (RFC 7592 §2.2).
// The auth method cannot change (a public client cannot become
// confidential without a new secret, and the reverse would leave a dead
// secret); secrets and the registration token are kept.
func (s *Server) handleRegistrationPut(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	c, ok := s.registrationClient(w, r)
	if !ok {
		return
	}
	md, e := s.readMetadata(w, r)
	if e != nil {
		writeOAuthError(w, e)
		return
	}
	if md.ClientID != c.ID {
		writeOAuthError(w, oerr(http.StatusBadRequest, ErrInvalidRequest, "client_id must match the registration"))
		return
	}
	if md.ClientSecret != "" && (len(c.SecretHash) == 0 || !secrets.Equal(secrets.Hash(md.ClientSecret), c.SecretHash)) {
		writeOAuthError(w, oerr(http.StatusBadRequest, ErrInvalidRequest, "client_secret does not match"))
		return
	}
	if md.TokenEndpointAuthMethod == "" {
		md.TokenEndpointAuthMethod = c.TokenEndpointAuthMethod
	}
	norm, e := md.normalize(false)
	if e != nil {
		writeOAuthError(w, e)
		return
	}
	if norm.TokenEndpointAuthMethod != c.TokenEndpointAuthMethod {
		writeOAuthError(w, errMetadata("token_endpoint_auth_method cannot change"))
		return
	}
	upd := metadataToClient(c.ID, norm)
	upd.UpdatedAt = s.clock()
	updated, err := s.st.UpdateClient(ctx, upd)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			writeOAuthError(w, oerr(http.StatusUnauthorized, ErrInvalidToken, "invalid registration access token"))
			return
		}
		writeOAuthError(w, s.internal(ctx, "update client", err))
		return
	}
	s.audit(ctx, store.AuditEvent{Type: "oauth.client.update", Outcome: "success", ClientID: c.ID})
	writeJSON(w, http.StatusOK, registrationResponse{
		ClientID:              updated.ID,
		ClientIDIssuedAt:      updated.CreatedAt.Unix(),
		RegistrationClientURI: s.endpoint("/oauth/register/" + updated.ID),
		storedMetadata:        clientToMetadata(updated),
	})
}

// handleRegistrationDelete deletes the client and revokes its refresh
// tokens (RFC 7592 §2.3).
func (s *Server) handleRegistrationDelete(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	c, ok := s.registrationClient(w, r)
	if !ok {
		return
	}
	if err := s.st.DeleteClient(ctx, c.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		writeOAuthError(w, s.internal(ctx, "delete client", err))
		return
	}
	s.audit(ctx, store.AuditEvent{Type: "oauth.client.delete", Outcome: "success", ClientID: c.ID})
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// bearerToken returns the single Bearer credential of the request
// (RFC 6750 §2.1).
func bearerToken(r *http.Request) (string, bool) {
	vals := r.Header.Values("Authorization")
	if len(vals) != 1 {
		return "", false
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}
