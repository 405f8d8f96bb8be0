package provider

import "errors"

// Reasons are the stable, secret-free names of every way an upstream
// interaction can fail. They appear in audit rows, logs and metric labels
// (DESIGN §9: never a token, code or raw provider payload), and operators
// grep for them (README "Provider OAuth").
const (
	ReasonAddressNotPublic   = "address_not_public" // resolved to a non-public address (SSRF policy)
	ReasonSchemeNotAllowed   = "scheme_not_allowed" // not https and not on the dev allowlist
	ReasonBadURL             = "bad_url"            // malformed URL in config or metadata
	ReasonRedirect           = "redirect"           // upstream answered 3xx; never followed
	ReasonTooLarge           = "response_too_large" // body over the cap, refused before parsing
	ReasonTimeout            = "timeout"            // upstream too slow
	ReasonUnreachable        = "unreachable"        // DNS/connect/TLS failure
	ReasonStatus4xx          = "upstream_4xx"       // upstream refused
	ReasonStatus5xx          = "upstream_5xx"       // upstream failed
	ReasonBadResponse        = "bad_response"       // not JSON / wrong content type / schema
	ReasonTokenType          = "token_type_not_bearer"
	ReasonIssuerMismatch     = "issuer_mismatch"   // RFC 8414 §3.3
	ReasonResourceMismatch   = "resource_mismatch" // RFC 9728 §3.3
	ReasonNoAS               = "no_authorization_server"
	ReasonNoPKCE             = "pkce_s256_unsupported"
	ReasonNoRegistration     = "no_registration_method"
	ReasonNoCredentials      = "client_credentials_unusable"
	ReasonStateUnknown       = "state_unknown"
	ReasonStateConsumed      = "state_consumed"
	ReasonStateExpired       = "state_expired"
	ReasonStateUndecryptable = "state_undecryptable"
	ReasonStateMismatch      = "state_mismatch" // plaintext columns disagree with the sealed payload
	ReasonWrongUser          = "wrong_user"     // callback in another user's browser
	ReasonConfigChanged      = "config_changed" // material change since the flow started
	ReasonIssMismatch        = "iss_mismatch"   // RFC 9207 mix-up defence
	ReasonUpstreamDenied     = "upstream_access_denied"
	ReasonUpstreamError      = "upstream_error"
	ReasonMissingCode        = "missing_code"
	ReasonNoGrant            = "no_grant"
	ReasonNoRefreshToken     = "no_refresh_token"
	ReasonRefreshRefused     = "refresh_refused"
	ReasonStore              = "store_error"
	ReasonIneligible         = "ineligible"
)

// Error is an upstream failure. Its message names the operation and a
// Reason, never a payload, token, URL query or secret, so it is safe to
// log and to put in audit rows.
type Error struct {
	Op     string // "probe", "resource_metadata", "as_metadata", "register", "token", "refresh"
	Reason string
	// Transient: retrying later may succeed (5xx, timeouts, network), so a
	// refresh failure of this kind keeps the grant (DESIGN §6 step 7).
	Transient bool
	// OAuthError is the upstream's RFC 6749 §5.2 error code when it is one
	// of the registered values (anything else is dropped: it is provider
	// payload).
	OAuthError string
	err        error
}

func (e *Error) Error() string {
	s := "provider: " + e.Op + ": " + e.Reason
	if e.OAuthError != "" {
		s += " (" + e.OAuthError + ")"
	}
	return s
}

// Unwrap exposes sentinel causes (e.g. context errors) but never a
// payload-bearing error: those are not kept.
func (e *Error) Unwrap() error { return e.err }

func upErr(op, reason string, transient bool) *Error {
	return &Error{Op: op, Reason: reason, Transient: transient}
}

// reasonOf returns the Reason of err, or fallback.
func reasonOf(err error, fallback string) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return fallback
}

// knownOAuthErrors are the RFC 6749 §4.1.2.1/§5.2 and RFC 7591 codes; an
// upstream "error" outside this set is replaced by "other".
var knownOAuthErrors = map[string]bool{
	"invalid_request": true, "invalid_client": true, "invalid_grant": true,
	"unauthorized_client": true, "unsupported_grant_type": true, "invalid_scope": true,
	"access_denied": true, "unsupported_response_type": true, "server_error": true,
	"temporarily_unavailable": true, "invalid_target": true,
	"invalid_redirect_uri": true, "invalid_client_metadata": true,
}

func sanitizeOAuthError(code string) string {
	if code == "" {
		return ""
	}
	if knownOAuthErrors[code] {
		return code
	}
	return "other"
}
