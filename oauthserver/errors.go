package oauthserver

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
)

// OAuth error codes. RFC 6749 §4.1.2.1 and §5.2 define the authorization and
// token endpoint codes, RFC 7591 §3.2.2 the registration codes, RFC 8707 §2
// invalid_target, RFC 6750 §3.1 the resource (userinfo) codes and RFC 7009
// §2.2.1 unsupported_token_type.
const (
	ErrInvalidRequest          = "invalid_request"
	ErrInvalidClient           = "invalid_client"
	ErrInvalidGrant            = "invalid_grant"
	ErrUnauthorizedClient      = "unauthorized_client"
	ErrUnsupportedGrantType    = "unsupported_grant_type"
	ErrInvalidScope            = "invalid_scope"
	ErrAccessDenied            = "access_denied"
	ErrUnsupportedResponseType = "unsupported_response_type"
	ErrServerError             = "server_error"
	ErrTemporarilyUnavailable  = "temporarily_unavailable"
	ErrInvalidTarget           = "invalid_target"
	ErrInvalidClientMetadata   = "invalid_client_metadata"
	ErrInvalidRedirectURI      = "invalid_redirect_uri"
	ErrInvalidToken            = "invalid_token"
	ErrInsufficientScope       = "insufficient_scope"
	ErrUnsupportedTokenType    = "unsupported_token_type"
	// ErrRateLimited is not an RFC code: it labels 429 answers of the
	// registration endpoint in metrics and bodies.
	ErrRateLimited = "rate_limited"
	// ErrRequestTooLarge labels 413 answers (registration body cap).
	ErrRequestTooLarge = "request_too_large"
	// ErrNotFound labels 404 answers (unknown route metadata, unknown client
	// at the RFC 7592 endpoint).
	ErrNotFound = "not_found"
)

// oauthError is an OAuth error answer: the status, the RFC code and a fixed,
// human-readable description. Descriptions are constants chosen by this
// package; they never echo request values, so no secret can leak through
// them (DESIGN §9).
type oauthError struct {
	Status      int
	Code        string
	Description string
	// RetryAfter, when positive, is sent as Retry-After seconds (429).
	RetryAfter int
	// Reason is an internal label for logs, audit and metrics; never sent.
	Reason string
}

func (e *oauthError) Error() string { return e.Code + ": " + e.Description }

func oerr(status int, code, desc string) *oauthError {
	return &oauthError{Status: status, Code: code, Description: desc}
}

// withReason returns a copy of e carrying an internal reason label.
func (e *oauthError) withReason(reason string) *oauthError {
	c := *e
	c.Reason = reason
	return &c
}

// writeOAuthError is the one function that writes OAuth error bodies
// (RFC 6749 §5.2 JSON: error, error_description). Every JSON error of this
// package goes through it so bodies are uniform and cache-proof.
func writeOAuthError(w http.ResponseWriter, e *oauthError) {
	setOutcome(w, e.Code)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	switch e.Code {
	case ErrInvalidClient:
		// RFC 6749 §5.2: 401 with a challenge for the scheme the client
		// tried; we always offer Basic.
		if e.Status == http.StatusUnauthorized {
			h.Set("WWW-Authenticate", `Basic realm="mcpgw"`)
		}
	case ErrInvalidToken, ErrInsufficientScope:
		// RFC 6750 §3.
		v := `Bearer error="` + e.Code + `"`
		if e.Code == ErrInsufficientScope {
			v += `, scope="profile"`
		}
		h.Set("WWW-Authenticate", v)
	}
	w.WriteHeader(e.Status)
	body := map[string]string{"error": e.Code}
	if e.Description != "" {
		body["error_description"] = e.Description
	}
	_ = json.NewEncoder(w).Encode(body)
}

// redirectError sends an authorization error to a trusted redirect URI
// (RFC 6749 §4.1.2.1) with state and iss (RFC 9207 §2).
func (s *Server) redirectError(w http.ResponseWriter, r *http.Request, redirectURI, state string, e *oauthError) {
	setOutcome(w, e.Code)
	q := url.Values{}
	q.Set("error", e.Code)
	if e.Description != "" {
		q.Set("error_description", e.Description)
	}
	if state != "" {
		q.Set("state", state)
	}
	q.Set("iss", s.issuer)
	redirectWithQuery(w, r, redirectURI, q)
}

// redirectWithQuery appends q to target's query and answers 302. target is
// always a redirect URI that matched a registered one exactly.
func redirectWithQuery(w http.ResponseWriter, r *http.Request, target string, q url.Values) {
	u, err := url.Parse(target)
	if err != nil {
		// Registered redirect URIs were parsed at registration; unreachable.
		http.Error(w, "bad redirect", http.StatusInternalServerError)
		return
	}
	existing := u.Query()
	for k, vs := range q {
		existing[k] = vs
	}
	u.RawQuery = existing.Encode()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
