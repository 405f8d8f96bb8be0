package extauthz

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"mcpgw/domain"
	"mcpgw/domain/headers"
	"mcpgw/store"
)

// Request is what Decide needs from one HTTP request, free of Envoy types.
// Header names are lower case (Envoy sends them so); repeated headers are
// joined with "," as Envoy does in CheckRequest.attributes.request.http.headers.
type Request struct {
	ID     string // Envoy's x-request-id, for logs
	Method string
	Scheme string
	Host   string
	// Path is Envoy's :path: the normalized path and the raw query.
	Path    string
	Headers map[string]string
	// ContextExtensions are the per-route ext_authz context_extensions set
	// by xds: config_id, route_key, owner_scope, owner_id (DESIGN §6).
	ContextExtensions map[string]string
}

// Decision is the outcome of one Check, as a value (Authorino's AuthResult).
// Slices are sorted by name so the Envoy response is deterministic.
type Decision struct {
	Allow bool
	// Status is the HTTP status of a denial (200 on allow).
	Status int
	// Headers are set on the upstream request (allow only), each with
	// OVERWRITE_IF_EXISTS_OR_ADD.
	Headers []headers.Header
	// RemoveHeaders are removed from the upstream request (allow only).
	RemoveHeaders []string
	// ResponseHeaders go to the client: on a denial with the denial (e.g.
	// WWW-Authenticate), on allow added to the upstream's response.
	ResponseHeaders []headers.Header
	// Body of a denial: generic, never naming owners or eligibility rules.
	Body string
	// Reason is an internal label for metrics and logs, never sent.
	Reason string
}

// Reason labels of decisions made before the database recheck. Recheck
// denials use the store.Reason values.
const (
	ReasonAllowed             = "allowed"
	ReasonNotRoute            = "path_not_route"
	ReasonBadDescendant       = "path_bad_descendant"
	ReasonRouteContext        = "route_context_mismatch"
	ReasonOrigin              = "origin_not_allowed"
	ReasonNoToken             = "token_missing"
	ReasonTokenInQuery        = "token_in_query"
	ReasonBadAuthorization    = "authorization_malformed"
	ReasonTokenInvalid        = "token_invalid"
	ReasonTokenExpired        = "token_expired"
	ReasonTokenNotYetValid    = "token_not_yet_valid"
	ReasonTokenUnknownKey     = "token_unknown_kid"
	ReasonTokenIssuer         = "token_wrong_issuer"
	ReasonTokenAudience       = "token_wrong_audience"
	ReasonTokenClaims         = "token_claims_mismatch"
	ReasonInsufficientScope   = "insufficient_scope"
	ReasonPassthroughOff      = "path_passthrough_disabled"
	ReasonReauth              = "provider_reauth_required"
	ReasonProviderTransient   = "provider_transient"
	ReasonCredentialError     = "credential_error"
	ReasonHeaderConflict      = "header_conflict"
	ReasonInfrastructure      = "store_unavailable"
	ReasonRecheckInvalidQuery = "recheck_invalid_query"
	ReasonPreflight           = "cors_preflight"
)

// Generic bodies: the status says what the client can do; nothing more.
const (
	bodyUnauthorized = `{"error":"unauthorized"}`
	bodyForbidden    = `{"error":"forbidden"}`
	bodyNotFound     = `{"error":"not_found"}`
	bodyBadRequest   = `{"error":"invalid_request"}`
	bodyUnavailable  = `{"error":"temporarily_unavailable"}`
)

// PRMPath is the RFC 9728 §3.1 well-known prefix; the protected resource
// metadata of a route lives at {public base}{PRMPath}{route path}.
const PRMPath = "/.well-known/oauth-protected-resource"

// Decide runs the nine steps of DESIGN §6 in order and stops at the first
// failure. A denial is a Decision; the error is only for infrastructure
// failure (it matches store.ErrUnavailable) so Check can answer gRPC
// Unavailable and Envoy's fail-closed setting applies.
func (s *Server) Decide(ctx context.Context, r Request) (Decision, error) {
	// The Origin is normalized and matched once, here: step 2 enforces the
	// result, and CORS below uses it.
	var allowedOrigin string
	if o, ok := r.Headers["origin"]; ok {
		allowedOrigin = s.allowedOrigin(o)
	}
	d, err := s.decide(ctx, r, allowedOrigin)
	// A browser client on an allowed origin must be able to read every
	// answer, denials and challenges included (CORS); any other origin,
	// even one refused before step 2, gets no CORS headers.
	if allowedOrigin != "" && err == nil {
		d.ResponseHeaders = withCORS(d.ResponseHeaders, allowedOrigin)
	}
	return d, err
}

// decide runs the steps. allowedOrigin is the request's Origin normalized
// when it is on the allowed list, else "".
func (s *Server) decide(ctx context.Context, r Request, allowedOrigin string) (Decision, error) {
	// 1. Path: a route root, or a validated descendant (allowed only with
	// path_passthrough, known after step 6), naming the route Envoy matched.
	rp, err := parsePath(r.Path)
	if err != nil {
		if errors.Is(err, errBadDescendant) {
			return deny(http.StatusNotFound, ReasonBadDescendant, bodyNotFound), nil
		}
		return deny(http.StatusNotFound, ReasonNotRoute, bodyNotFound), nil
	}
	if err := routeFromContext(r.ContextExtensions, rp.Route); err != nil {
		return deny(http.StatusNotFound, ReasonRouteContext, bodyNotFound), nil
	}

	// 2. Origin: absent is fine (non-browser clients); present must match
	// exactly, before anything is loaded (MCP transport: DNS rebinding).
	if _, ok := r.Headers["origin"]; ok {
		if allowedOrigin == "" {
			return deny(http.StatusForbidden, ReasonOrigin, bodyForbidden), nil
		}
		// A CORS preflight never carries credentials (Fetch standard,
		// CORS-preflight request): answer it here, for an allowed origin
		// only, without touching the token or the database.
		if r.Method == http.MethodOptions && r.Headers["access-control-request-method"] != "" {
			return Decision{Status: http.StatusNoContent, Reason: ReasonPreflight, ResponseHeaders: preflightHeaders}, nil
		}
	}

	// 3. Bearer: exactly one Authorization: Bearer value; never a token in
	// the query (RFC 6750 §2.3 is not supported: URLs get logged).
	if _, q, ok := strings.Cut(r.Path, "?"); ok && queryHasAccessToken(q) {
		return s.challenge(http.StatusBadRequest, ReasonTokenInQuery, rp.Route, "invalid_request", bodyBadRequest), nil
	}
	raw, presented, ok := bearer(r.Headers["authorization"])
	if !ok {
		if presented {
			return s.challenge(http.StatusUnauthorized, ReasonBadAuthorization, rp.Route, "invalid_token", bodyUnauthorized), nil
		}
		return s.challenge(http.StatusUnauthorized, ReasonNoToken, rp.Route, "", bodyUnauthorized), nil
	}

	// 4. Verify the JWT against this route.
	claims, err := s.verifier.verify(ctx, raw, rp.Route, s.opts.PublicBaseURL, rp.Root)
	if err != nil {
		return s.challenge(http.StatusUnauthorized, tokenReason(err), rp.Route, "invalid_token", bodyUnauthorized), nil
	}

	// 5. Scope, before any database access.
	if !hasScope(claims.Scope, domain.ScopeMCPAccess) {
		return s.challenge(http.StatusForbidden, ReasonInsufficientScope, rp.Route, "insufficient_scope", bodyForbidden), nil
	}

	// 6. Fresh recheck: one round trip.
	u := usage{ownerScope: rp.Route.Scope, ownerID: rp.Route.OwnerID, configID: rp.Route.ConfigID,
		instanceID: claims.InstanceID, userID: claims.Subject, clientID: claims.ClientID}
	t0 := time.Now()
	st, err := s.resolve(ctx, store.RuntimeQuery{
		ConfigID: rp.Route.ConfigID, RouteKey: rp.Route.Key, OwnerScope: rp.Route.Scope, OwnerID: rp.Route.OwnerID,
		UserID: claims.Subject, InstanceID: claims.InstanceID, ConfigVersion: claims.ConfigVersion,
		ExecutionContext: claims.ExecutionContext,
	})
	s.m.recheck.Observe(time.Since(t0).Seconds())
	if err != nil {
		if errors.Is(err, store.ErrInvalid) {
			return s.denyAudited(u, http.StatusForbidden, ReasonRecheckInvalidQuery, bodyForbidden), nil
		}
		return Decision{Reason: ReasonInfrastructure}, fmt.Errorf("extauthz: recheck: %w", asUnavailable(err))
	}
	if !st.OK() {
		status, body := http.StatusForbidden, bodyForbidden
		switch st.Reason {
		case store.ReasonRouteNotFound, store.ReasonRouteKeyMismatch, store.ReasonConfigDeleted:
			// DESIGN §10: unknown, rotated or deleted route → 404.
			status, body = http.StatusNotFound, bodyNotFound
		}
		return s.denyAudited(u, status, string(st.Reason), body), nil
	}
	if st.InstanceID != claims.InstanceID {
		return s.denyAudited(u, http.StatusForbidden, string(store.ReasonInstanceMismatch), bodyForbidden), nil
	}
	if rp.Rest != "" && !st.Config.PathPassthrough {
		return s.denyAudited(u, http.StatusNotFound, ReasonPassthroughOff, bodyNotFound), nil
	}

	// 7. Credentials, and 8. header policy.
	set, reason, status, err := s.upstreamHeaders(ctx, st)
	if err != nil {
		return Decision{Reason: ReasonInfrastructure}, err
	}
	if reason != "" {
		if status == http.StatusUnauthorized {
			d := s.challenge(status, reason, rp.Route, "invalid_token", bodyUnauthorized)
			u.outcome, u.reason = "denied", reason
			s.audit.record(u)
			return d, nil
		}
		body := bodyForbidden
		if status == http.StatusServiceUnavailable {
			body = bodyUnavailable
		}
		return s.denyAudited(u, status, reason, body), nil
	}

	// 9. Usage audit, asynchronously.
	u.outcome, u.reason = "allowed", ""
	s.audit.record(u)
	return Decision{
		Allow:         true,
		Status:        http.StatusOK,
		Headers:       set,
		RemoveHeaders: headers.Removals(r.Headers, st.Config.StaticHeaderNames, set),
		Reason:        ReasonAllowed,
	}, nil
}

// upstreamHeaders builds the headers to inject (sorted by name): the
// credential of the config's auth mode (static headers, or the provider
// bearer) plus auxiliary headers, after checking that exactly one source
// owns Authorization. A non-empty reason is a denial with status; err is
// an infrastructure failure.
func (s *Server) upstreamHeaders(ctx context.Context, st store.RuntimeState) (set []headers.Header, reason string, status int, err error) {
	cfg := st.Config
	if err := headers.ValidateAux(cfg.AuxHeaders); err != nil {
		return nil, ReasonHeaderConflict, http.StatusForbidden, nil
	}
	if err := headers.ValidateSources(cfg.AuthMode.IsOAuth(), cfg.StaticHeaderNames, cfg.AuxHeaders); err != nil {
		return nil, ReasonHeaderConflict, http.StatusForbidden, nil
	}
	n := len(cfg.AuxHeaders) + 1
	switch {
	case cfg.AuthMode == store.AuthStaticHeaders:
		static, err := s.staticHeaders(cfg)
		if err != nil {
			s.log.Error("extauthz: static headers unusable", "config_id", cfg.ID, "err", err)
			if errors.Is(err, errHeaderConflict) {
				return nil, ReasonHeaderConflict, http.StatusForbidden, nil
			}
			return nil, ReasonCredentialError, http.StatusServiceUnavailable, nil
		}
		set = make([]headers.Header, 0, n+len(static))
		set = append(set, static...)
	case cfg.AuthMode.IsOAuth():
		tok, err := s.providerToken(ctx, st)
		if err != nil {
			switch {
			case errors.Is(err, store.ErrUnavailable):
				s.m.refresh.WithLabelValues("unavailable").Inc()
				return nil, "", 0, fmt.Errorf("extauthz: credentials: %w", err)
			case errors.Is(err, ErrReauthRequired):
				s.m.refresh.WithLabelValues("reauth").Inc()
				return nil, ReasonReauth, http.StatusUnauthorized, nil
			case errors.Is(err, ErrCredentialsTransient):
				s.m.refresh.WithLabelValues("transient").Inc()
				return nil, ReasonProviderTransient, http.StatusServiceUnavailable, nil
			default:
				s.m.refresh.WithLabelValues("error").Inc()
				// The error text is not logged: it comes from the provider
				// code and could carry upstream payload.
				s.log.Error("extauthz: provider credential unusable", "config_id", cfg.ID, "instance_id", st.InstanceID, "err_type", fmt.Sprintf("%T", err))
				return nil, ReasonCredentialError, http.StatusForbidden, nil
			}
		}
		set = make([]headers.Header, 0, n)
		set = append(set, headers.Header{Name: headers.Authorization, Value: "Bearer " + tok})
	case cfg.AuthMode == store.AuthNone:
		set = make([]headers.Header, 0, n)
	default:
		// A mode this build does not know (the schema's CHECK should make
		// it impossible): fail closed rather than forward without the
		// credential the config may require.
		s.log.Error("extauthz: unknown auth mode", "config_id", cfg.ID, "auth_mode", string(cfg.AuthMode))
		return nil, ReasonCredentialError, http.StatusForbidden, nil
	}
	for k, v := range cfg.AuxHeaders {
		set = append(set, headers.Header{Name: k, Value: v})
	}
	// Sort for a deterministic response. ValidateSources refused a static
	// and an auxiliary header with the same name, but it reads the
	// plaintext static_header_names column, not the decrypted headers about
	// to be injected; if the two ever disagree, one name would get two
	// values and the last one Envoy applies would win. Every upstream
	// header has exactly one source (DESIGN §6 step 8), so a repeated name
	// is a conflict here too.
	slices.SortFunc(set, byName)
	for i := 1; i < len(set); i++ {
		if set[i].Name == set[i-1].Name {
			s.log.Error("extauthz: upstream header set by two sources", "config_id", cfg.ID, "header", set[i].Name)
			return nil, ReasonHeaderConflict, http.StatusForbidden, nil
		}
	}
	return set, "", 0, nil
}

func (s *Server) providerToken(ctx context.Context, st store.RuntimeState) (string, error) {
	if s.opts.Credentials != nil {
		tok, err := s.opts.Credentials.EnsureFresh(ctx, st)
		if err != nil {
			return "", err
		}
		if tok == "" || !headers.ValidValue("Bearer "+tok) {
			return "", errUndecryptable
		}
		s.m.refresh.WithLabelValues("ok").Inc()
		return tok, nil
	}
	return storedGrantToken(s.opts.KeyRing, st, s.opts.Now(), s.opts.CredentialSkew)
}

// bearer extracts the token of an Authorization header (RFC 6750 §2.1,
// scheme case-insensitive per RFC 9110 §11.1). presented reports whether a
// Bearer credential was offered at all (for error="invalid_token"). A value
// with a comma is two headers joined by Envoy: more than one is refused.
func bearer(v string) (token string, presented, ok bool) {
	if v == "" {
		return "", false, false
	}
	if len(v) < 7 || !strings.EqualFold(v[:7], "bearer ") {
		// Another scheme (Basic, a raw API key...): no bearer token.
		return "", strings.Contains(strings.ToLower(v), "bearer"), false
	}
	t := v[7:]
	if t == "" || len(t) > 16<<10 {
		return "", true, false
	}
	for i := 0; i < len(t); i++ {
		if !b64token[t[i]] {
			return "", true, false
		}
	}
	return t, true, true
}

// b64token marks the bytes of RFC 6750 §2.1 b64token:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
var b64token = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~+/=", byte(c)) >= 0
	}
	return t
}()

func hasScope(scope, want string) bool {
	for scope != "" {
		var f string
		f, scope, _ = strings.Cut(scope, " ")
		if f == want {
			return true
		}
	}
	return false
}

func tokenReason(err error) string {
	switch {
	case errors.Is(err, errTokenExpired):
		return ReasonTokenExpired
	case errors.Is(err, errTokenNotYet):
		return ReasonTokenNotYetValid
	case errors.Is(err, errTokenKey):
		return ReasonTokenUnknownKey
	case errors.Is(err, errTokenIssuer):
		return ReasonTokenIssuer
	case errors.Is(err, errTokenAudience):
		return ReasonTokenAudience
	case errors.Is(err, errTokenClaims):
		return ReasonTokenClaims
	default:
		return ReasonTokenInvalid
	}
}

// asUnavailable makes sure an infrastructure error matches
// store.ErrUnavailable even if the store returned something unexpected:
// anything that is not a decision fails closed as unavailable.
func asUnavailable(err error) error {
	if errors.Is(err, store.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
}

// preflightHeaders answer a CORS preflight from an allowed origin: the
// methods and request headers of the MCP Streamable HTTP transport
// (withCORS adds the origin itself).
var preflightHeaders = []headers.Header{
	{Name: "access-control-allow-headers", Value: "accept, authorization, content-type, last-event-id, mcp-method, mcp-name, mcp-protocol-version, mcp-session-id"},
	{Name: "access-control-allow-methods", Value: "DELETE, GET, OPTIONS, POST"},
	{Name: "access-control-max-age", Value: "600"},
	{Name: "cache-control", Value: "no-store"},
}

// withCORS adds the CORS response headers for an allowed origin (the exact
// value the browser sent) and keeps the list sorted: the client may read
// the MCP session id and the WWW-Authenticate challenge. Credentials mode
// is not enabled: the bearer token travels in Authorization, never in
// cookies.
func withCORS(hs []headers.Header, origin string) []headers.Header {
	out := make([]headers.Header, 0, len(hs)+3)
	out = append(out, hs...)
	out = append(out,
		headers.Header{Name: "access-control-allow-origin", Value: origin},
		headers.Header{Name: "access-control-expose-headers", Value: "mcp-session-id, www-authenticate"},
		headers.Header{Name: "vary", Value: "origin"},
	)
	slices.SortFunc(out, byName)
	return out
}

var denyHeaders = []headers.Header{
	{Name: "cache-control", Value: "no-store"},
	{Name: "content-type", Value: "application/json"},
}

func deny(status int, reason, body string) Decision {
	return Decision{Status: status, Reason: reason, Body: body, ResponseHeaders: denyHeaders}
}

func (s *Server) denyAudited(u usage, status int, reason, body string) Decision {
	u.outcome, u.reason = "denied", reason
	s.audit.record(u)
	return deny(status, reason, body)
}

// challenge is a denial with an RFC 6750 §3 WWW-Authenticate challenge whose
// resource_metadata names the route's RFC 9728 metadata (DESIGN §10, MCP
// authorization). errCode is "" when no token was presented.
func (s *Server) challenge(status int, reason string, route domain.RouteRef, errCode, body string) Decision {
	v := `Bearer resource_metadata="` + s.prmBase + route.Path() + `", scope="` + domain.ScopeMCPAccess + `"`
	if errCode != "" {
		v += `, error="` + errCode + `"`
	}
	return Decision{Status: status, Reason: reason, Body: body, ResponseHeaders: []headers.Header{
		{Name: "cache-control", Value: "no-store"},
		{Name: "content-type", Value: "application/json"},
		{Name: "www-authenticate", Value: v},
	}}
}

// allowedOrigin returns o normalized (lower-case scheme and host, default
// port dropped: the browser's own serialization) when it exactly matches a
// configured origin, normalized the same way, else "". "null" and anything
// that is not a bare origin never match.
func (s *Server) allowedOrigin(o string) string {
	if n, ok := normalizeOrigin(o); ok && s.origins[n] {
		return n
	}
	return ""
}

func normalizeOrigin(o string) (string, bool) {
	if o == "" || o == "null" || len(o) > 2048 {
		return "", false
	}
	u, err := url.Parse(o)
	if err != nil || u.User != nil || u.Host == "" || u.Opaque != "" || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") || strings.HasSuffix(o, "/") {
		return "", false
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "https" && scheme != "http" {
		return "", false
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		return scheme + "://" + host + ":" + port, true
	}
	return scheme + "://" + host, true
}

// byName orders headers by name (slices.SortFunc: no allocation, unlike
// sort.Slice).
func byName(a, b headers.Header) int { return strings.Compare(a.Name, b.Name) }
