package store

import (
	"encoding/json"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// Input validation shared by every Store implementation. The Store contract
// says each method rejects bad input with an *InvalidError before touching
// the database; both store/memory and store/postgres call these functions
// first so that the same input is rejected the same way everywhere, with the
// same stable field name and reason.
//
// Reasons never echo the rejected value: a rejected value may be a secret
// (a hash, a ciphertext, a mistyped token), and error strings end up in logs
// (DESIGN §9).
//
// Zero values that have a documented default are accepted here and the
// implementation applies the default (User.Status "" = active, Config.Status
// "" = enabled, Grant.TokenType "" = Bearer).

// Size caps. They bound what one row can hold so that an unauthenticated
// caller (dynamic registration, authorize) cannot make the store keep
// arbitrarily large values.
const (
	MaxNameLen        = 200      // display names, org names, config names, token names
	MaxEmailLen       = 320      // RFC 3696 errata: 64 + 1 + 255
	MaxURLLen         = 2048     // remote URLs, redirect URIs, resources, endpoints
	MaxHeaders        = 50       // entries in a header map or header name list
	MaxHeaderNameLen  = 256      // one header name
	MaxHeaderValueLen = 8 << 10  // one auxiliary header value
	MaxCiphertextLen  = 64 << 10 // one encrypted column
	MaxScopes         = 20       // entries in a scope list
	MaxScopeLen       = 200      // one scope token
	MaxScopeStringLen = 4096     // a space-separated scope string
	MaxMetadataLen    = 16 << 10 // JSON metadata, registry metadata, audit metadata
	MaxStateLen       = 2048     // the client's OAuth state parameter
	MaxShortTextLen   = 200      // types, outcomes, reasons, subjects, small enums
	MaxOpaqueIDLen    = 128      // opaque ids (auth request ids, family ids)
	MaxClientIDLen    = 2048     // "namespace:name"; a CIMD client id is an https URL
	MaxListLen        = 20       // redirect URIs, grant types, response types
	MaxRateLimitKey   = 512      // a rate-limit key
	MaxRateWindow     = 24 * time.Hour
	MaxLockNameLen    = 100 // a TryLeader lock name
	HashLen           = 32  // SHA-256 (DESIGN §9)
	CodeChallengeLen  = 43  // base64url(SHA-256) without padding (RFC 7636 §4.2)
	minRouteKeyLen    = 22  // 128 bits in base64url (DESIGN §2)
	maxRouteKeyLen    = 64
)

// ValidateID checks a required UUID row id.
func ValidateID(field, id string) error {
	if id == "" {
		return Invalid(field, "required")
	}
	if !ValidID(id) {
		return Invalid(field, "not a canonical UUID")
	}
	return nil
}

// ValidateOptionalID checks a UUID row id that may be empty.
func ValidateOptionalID(field, id string) error {
	if id == "" {
		return nil
	}
	return ValidateID(field, id)
}

// ValidateHash checks a required SHA-256 hash (exactly 32 bytes).
func ValidateHash(field string, h []byte) error {
	if len(h) == 0 {
		return Invalid(field, "required")
	}
	if len(h) != HashLen {
		return Invalid(field, "must be 32 bytes")
	}
	return nil
}

// validateOptionalHash checks a hash that may be nil.
func validateOptionalHash(field string, h []byte) error {
	if h == nil {
		return nil
	}
	return ValidateHash(field, h)
}

// ValidateOpaqueID checks an opaque identifier chosen by the caller (an
// auth request id, a token family id): 1–128 characters of base64url or a
// UUID.
func ValidateOpaqueID(field, s string) error {
	if s == "" {
		return Invalid(field, "required")
	}
	if len(s) > MaxOpaqueIDLen {
		return Invalid(field, "too long")
	}
	for i := 0; i < len(s); i++ {
		if !isBase64URL(s[i]) {
			return Invalid(field, "must be base64url characters")
		}
	}
	return nil
}

// ValidateClientID checks a first-level OAuth client id: "namespace:name"
// (DESIGN §4, e.g. "dcr:<random>"), where namespace is 1–32 lower-case
// letters, digits, '-' or '_' starting with a letter and name is non-empty
// printable ASCII without spaces. A Client ID Metadata Document URL
// ("https://...") has the same shape.
func ValidateClientID(id string) error {
	const field = "client_id"
	if id == "" {
		return Invalid(field, "required")
	}
	if len(id) > MaxClientIDLen {
		return Invalid(field, "too long")
	}
	ns, name, ok := strings.Cut(id, ":")
	if !ok || ns == "" || name == "" {
		return Invalid(field, "must look like namespace:name")
	}
	if len(ns) > 32 || !(ns[0] >= 'a' && ns[0] <= 'z') {
		return Invalid(field, "bad namespace")
	}
	for i := 0; i < len(ns); i++ {
		c := ns[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return Invalid(field, "bad namespace")
		}
	}
	for i := 0; i < len(name); i++ {
		if name[i] <= 0x20 || name[i] >= 0x7f {
			return Invalid(field, "name must be printable ASCII without spaces")
		}
	}
	return nil
}

// ValidateRouteKey checks a route key: base64url without padding, 22–64
// characters (≥128 bits, DESIGN §2).
func ValidateRouteKey(field, k string) error {
	if k == "" {
		return Invalid(field, "required")
	}
	if len(k) < minRouteKeyLen || len(k) > maxRouteKeyLen {
		return Invalid(field, "must be 22 to 64 characters")
	}
	for i := 0; i < len(k); i++ {
		if !isBase64URL(k[i]) {
			return Invalid(field, "must be base64url characters")
		}
	}
	return nil
}

// ValidateEmail checks an email address: required, ≤320 bytes, one '@' with
// something on both sides, no spaces or control characters. Deliverability
// is not the store's business.
func ValidateEmail(field, email string) error {
	if email == "" {
		return Invalid(field, "required")
	}
	if len(email) > MaxEmailLen {
		return Invalid(field, "too long")
	}
	if !utf8.ValidString(email) {
		return Invalid(field, "not UTF-8")
	}
	for _, r := range email {
		if r <= 0x20 || r == 0x7f {
			return Invalid(field, "contains spaces or control characters")
		}
	}
	at := strings.LastIndexByte(email, '@')
	if at <= 0 || at == len(email)-1 {
		return Invalid(field, "must be local@domain")
	}
	return nil
}

// ValidateExecutionContext checks "personal" or "org:{org_id}".
func ValidateExecutionContext(field, ctx string) error {
	if ctx == "" {
		return Invalid(field, "required")
	}
	if ctx == "personal" {
		return nil
	}
	if id, ok := strings.CutPrefix(ctx, "org:"); ok && ValidID(id) {
		return nil
	}
	return Invalid(field, `must be "personal" or "org:{org_id}"`)
}

// ValidateUserStatusChange checks the target of SetUserStatus: active,
// blocked or provisional (deletion goes through SoftDeleteUser).
func ValidateUserStatusChange(s UserStatus) error {
	switch s {
	case UserActive, UserBlocked, UserProvisional:
		return nil
	case UserDeleted:
		return Invalid("status", "use SoftDeleteUser to delete a user")
	}
	return Invalid("status", "unknown user status")
}

// ValidateConfigStatusChange checks the target of SetConfigStatus: enabled
// or disabled (deletion goes through DeleteConfig).
func ValidateConfigStatusChange(s ConfigStatus) error {
	switch s {
	case ConfigEnabled, ConfigDisabled:
		return nil
	case ConfigDeleted:
		return Invalid("status", "use DeleteConfig to delete a config")
	}
	return Invalid("status", "unknown config status")
}

// ValidateEndState checks the target of EndInstance: revoked or removed.
func ValidateEndState(s InstanceState) error {
	if s == InstanceRevoked || s == InstanceRemoved {
		return nil
	}
	return Invalid("state", "must be revoked or removed")
}

// ValidateExpectVersion checks PutGrant's expectVersion: -1 (no
// precondition) or a version ≥ 0.
func ValidateExpectVersion(v int64) error {
	if v < -1 {
		return Invalid("expect_version", "must be -1 or a version >= 0")
	}
	return nil
}

// ValidateGrantVersion checks a grant version used as a precondition.
func ValidateGrantVersion(v int64) error {
	if v < 0 {
		return Invalid("grant_version", "must be >= 0")
	}
	return nil
}

// ValidateConfigVersion checks a config version (versions start at 1).
func ValidateConfigVersion(field string, v int64) error {
	if v < 1 {
		return Invalid(field, "must be >= 1")
	}
	return nil
}

// ValidateTime checks that a required time (a "now", an expiry) is set.
func ValidateTime(field string, t time.Time) error {
	if t.IsZero() {
		return Invalid(field, "required")
	}
	return nil
}

// ValidateRateLimit checks HitRateLimit's arguments.
func ValidateRateLimit(key string, window time.Duration, limit int, now time.Time) error {
	if key == "" {
		return Invalid("key", "required")
	}
	if len(key) > MaxRateLimitKey {
		return Invalid("key", "too long")
	}
	if !utf8.ValidString(key) {
		return Invalid("key", "not UTF-8")
	}
	if window <= 0 || window > MaxRateWindow {
		return Invalid("window", "must be positive and at most 24h")
	}
	if limit < 1 {
		return Invalid("limit", "must be >= 1")
	}
	return ValidateTime("now", now)
}

// ValidateLockName checks a TryLeader lock name.
func ValidateLockName(name string) error {
	if name == "" {
		return Invalid("name", "required")
	}
	if len(name) > MaxLockNameLen {
		return Invalid("name", "too long")
	}
	return validText("name", name, MaxLockNameLen)
}

// ValidateOIDCIdentity checks an OIDC issuer and subject used for lookup.
func ValidateOIDCIdentity(issuer, subject string) error {
	if issuer == "" {
		return Invalid("oidc_issuer", "required")
	}
	if err := validText("oidc_issuer", issuer, MaxURLLen); err != nil {
		return err
	}
	if subject == "" {
		return Invalid("oidc_subject", "required")
	}
	return validText("oidc_subject", subject, 255)
}

// Validate checks a user as given to CreateUser. Status "" means active;
// a new user cannot be created deleted.
func (u User) Validate() error {
	if err := ValidateID("user.id", u.ID); err != nil {
		return err
	}
	if err := ValidateEmail("user.email", u.Email); err != nil {
		return err
	}
	if err := validText("user.display_name", u.DisplayName, MaxNameLen); err != nil {
		return err
	}
	if u.Status != "" && !u.Status.Valid() {
		return Invalid("user.status", "unknown user status")
	}
	if u.Status == UserDeleted {
		return Invalid("user.status", "a new user cannot be deleted")
	}
	if (u.OIDCIssuer == "") != (u.OIDCSubject == "") {
		return Invalid("user.oidc", "issuer and subject go together")
	}
	if u.OIDCIssuer != "" {
		if err := ValidateOIDCIdentity(u.OIDCIssuer, u.OIDCSubject); err != nil {
			return err
		}
	}
	return nil
}

// Validate checks an org.
func (o Org) Validate() error {
	if err := ValidateID("org.id", o.ID); err != nil {
		return err
	}
	return validRequiredText("org.name", o.Name, MaxNameLen)
}

// Validate checks a membership.
func (m Member) Validate() error {
	if err := ValidateID("member.org_id", m.OrgID); err != nil {
		return err
	}
	if err := ValidateID("member.user_id", m.UserID); err != nil {
		return err
	}
	if !m.Role.Valid() {
		return Invalid("member.role", "unknown role")
	}
	return nil
}

// ValidateRole checks a role.
func ValidateRole(r Role) error {
	if !r.Valid() {
		return Invalid("role", "unknown role")
	}
	return nil
}

// Validate checks an API token as given to CreateAPIToken.
func (t APIToken) Validate() error {
	if err := ValidateID("api_token.id", t.ID); err != nil {
		return err
	}
	if err := ValidateID("api_token.user_id", t.UserID); err != nil {
		return err
	}
	if err := validText("api_token.name", t.Name, MaxNameLen); err != nil {
		return err
	}
	return ValidateHash("api_token.hash", t.Hash)
}

// Validate checks a session as given to CreateSession.
func (s Session) Validate() error {
	if err := ValidateHash("session.id_hash", s.IDHash); err != nil {
		return err
	}
	if err := ValidateID("session.user_id", s.UserID); err != nil {
		return err
	}
	if err := validateOptionalHash("session.csrf_hash", s.CSRFHash); err != nil {
		return err
	}
	return ValidateTime("session.expires_at", s.ExpiresAt)
}

// Validate checks a config as given to CreateConfig, or as produced by the
// update function of UpdateConfig (the implementation restores the fields
// update may not change before calling it). Status "" means enabled.
//
// Rules: personal (user scope) configs are single_user (DESIGN §3 rule 3);
// static_headers mode needs static headers; oauth_static needs provider
// client credentials; static header names are lower-case header tokens,
// listed once, and an auxiliary header may not reuse one of them (the
// runtime strips static names from client requests, DESIGN §6 step 8).
// Header policy beyond syntax (hop-by-hop, credential-looking names) is the
// caller's job (domain/headers) and is checked again at runtime.
func (c Config) Validate() error {
	if err := ValidateID("config.id", c.ID); err != nil {
		return err
	}
	if !c.OwnerScope.Valid() {
		return Invalid("config.owner_scope", "unknown owner scope")
	}
	if err := ValidateID("config.owner_id", c.OwnerID); err != nil {
		return err
	}
	if err := validRequiredText("config.name", c.Name, MaxNameLen); err != nil {
		return err
	}
	if err := validateHTTPURL("config.remote_url", c.RemoteURL, true); err != nil {
		return err
	}
	if !c.AuthMode.Valid() {
		return Invalid("config.auth_mode", "unknown auth mode")
	}
	if !c.SharingMode.Valid() {
		return Invalid("config.sharing_mode", "unknown sharing mode")
	}
	if c.OwnerScope == ScopeUser && c.SharingMode != SingleUser {
		return Invalid("config.sharing_mode", "personal configs must be single_user")
	}
	switch c.Status {
	case "", ConfigEnabled, ConfigDisabled:
	case ConfigDeleted:
		return Invalid("config.status", "use DeleteConfig to delete a config")
	default:
		return Invalid("config.status", "unknown config status")
	}
	if len(c.StaticHeaders) > MaxCiphertextLen {
		return Invalid("config.static_headers", "too large")
	}
	if (len(c.StaticHeaders) == 0) != (len(c.StaticHeaderNames) == 0) {
		return Invalid("config.static_headers", "ciphertext and header names go together")
	}
	if c.AuthMode == AuthStaticHeaders && len(c.StaticHeaders) == 0 {
		return Invalid("config.static_headers", "required for auth mode static_headers")
	}
	if len(c.StaticHeaderNames) > MaxHeaders {
		return Invalid("config.static_header_names", "too many")
	}
	static := make(map[string]bool, len(c.StaticHeaderNames))
	for _, n := range c.StaticHeaderNames {
		if err := validHeaderName("config.static_header_names", n); err != nil {
			return err
		}
		if n != strings.ToLower(n) {
			return Invalid("config.static_header_names", "must be lower case")
		}
		if static[n] {
			return Invalid("config.static_header_names", "duplicate name")
		}
		static[n] = true
	}
	if len(c.AuxHeaders) > MaxHeaders {
		return Invalid("config.aux_headers", "too many")
	}
	for n, v := range c.AuxHeaders {
		if err := validHeaderName("config.aux_headers", n); err != nil {
			return err
		}
		if static[strings.ToLower(n)] {
			return Invalid("config.aux_headers", "name is also a static header")
		}
		if err := validHeaderValue("config.aux_headers", v); err != nil {
			return err
		}
	}
	if err := c.Provider.validate(); err != nil {
		return err
	}
	if c.AuthMode == AuthOAuthStatic && len(c.Provider.ClientCredentials) == 0 {
		return Invalid("config.provider.client_credentials", "required for auth mode oauth_static")
	}
	if err := validateJSON("config.registry", c.Registry); err != nil {
		return err
	}
	return ValidateOptionalID("config.created_by", c.CreatedBy)
}

func (p ProviderSettings) validate() error {
	if err := validText("config.provider.issuer", p.Issuer, MaxURLLen); err != nil {
		return err
	}
	for _, u := range []struct{ field, v string }{
		{"config.provider.authorization_endpoint", p.AuthorizationEndpoint},
		{"config.provider.token_endpoint", p.TokenEndpoint},
		{"config.provider.registration_endpoint", p.RegistrationEndpoint},
		{"config.provider.resource", p.Resource},
	} {
		if err := validateHTTPURL(u.field, u.v, false); err != nil {
			return err
		}
	}
	if err := ValidateScopes("config.provider.scopes", p.Scopes); err != nil {
		return err
	}
	if len(p.ClientCredentials) > MaxCiphertextLen {
		return Invalid("config.provider.client_credentials", "too large")
	}
	return nil
}

// Validate checks an assignment.
func (a Assignment) Validate() error {
	if err := ValidateID("assignment.config_id", a.ConfigID); err != nil {
		return err
	}
	if err := ValidateID("assignment.user_id", a.UserID); err != nil {
		return err
	}
	return ValidateOptionalID("assignment.created_by", a.CreatedBy)
}

// ValidateInstanceKey checks the tuple of GetOrCreateInstance.
func ValidateInstanceKey(scope OwnerScope, ownerID, userID, configID, newID string) error {
	if !scope.Valid() {
		return Invalid("instance.owner_scope", "unknown owner scope")
	}
	if err := ValidateID("instance.owner_id", ownerID); err != nil {
		return err
	}
	if err := ValidateID("instance.user_id", userID); err != nil {
		return err
	}
	if err := ValidateID("instance.config_id", configID); err != nil {
		return err
	}
	return ValidateID("instance.id", newID)
}

// Validate checks a grant as given to PutGrant (Version is ignored there).
// TokenType "" means Bearer; nothing else is accepted (DESIGN §5).
func (g Grant) Validate() error {
	if err := ValidateID("grant.instance_id", g.InstanceID); err != nil {
		return err
	}
	if len(g.AccessToken) == 0 {
		return Invalid("grant.access_token", "required")
	}
	if len(g.AccessToken) > MaxCiphertextLen {
		return Invalid("grant.access_token", "too large")
	}
	if len(g.RefreshToken) > MaxCiphertextLen {
		return Invalid("grant.refresh_token", "too large")
	}
	if g.TokenType != "" && !strings.EqualFold(g.TokenType, "Bearer") {
		return Invalid("grant.token_type", "only Bearer is accepted")
	}
	return validText("grant.scope", g.Scope, MaxScopeStringLen)
}

// Validate checks a provider registration.
func (r ProviderRegistration) Validate() error {
	if err := ValidateID("provider_registration.config_id", r.ConfigID); err != nil {
		return err
	}
	if err := ValidateConfigVersion("provider_registration.config_version", r.ConfigVersion); err != nil {
		return err
	}
	return validCiphertext("provider_registration.ciphertext", r.Ciphertext)
}

// Validate checks pending provider state as given to CreatePendingState.
// InstanceID may be empty when no instance exists yet.
func (p PendingProviderState) Validate() error {
	if err := ValidateHash("pending_state.state_hash", p.StateHash); err != nil {
		return err
	}
	if err := ValidateID("pending_state.user_id", p.UserID); err != nil {
		return err
	}
	if err := ValidateID("pending_state.config_id", p.ConfigID); err != nil {
		return err
	}
	if err := ValidateConfigVersion("pending_state.config_version", p.ConfigVersion); err != nil {
		return err
	}
	if err := ValidateOptionalID("pending_state.instance_id", p.InstanceID); err != nil {
		return err
	}
	if err := validCiphertext("pending_state.ciphertext", p.Ciphertext); err != nil {
		return err
	}
	return ValidateTime("pending_state.expires_at", p.ExpiresAt)
}

// Token endpoint authentication methods we implement (DESIGN §4).
const (
	AuthMethodNone              = "none"
	AuthMethodClientSecretBasic = "client_secret_basic"
	AuthMethodClientSecretPost  = "client_secret_post"
)

// ValidateUpdate checks an OAuth client's metadata as given to UpdateClient,
// where a nil SecretHash or RegistrationTokenHash means "keep the stored
// one". Validate adds the rules that need the complete client.
func (c OAuthClient) ValidateUpdate() error {
	if err := ValidateClientID(c.ID); err != nil {
		return err
	}
	if err := validateOptionalHash("client.secret_hash", c.SecretHash); err != nil {
		return err
	}
	if err := validateOptionalHash("client.registration_token_hash", c.RegistrationTokenHash); err != nil {
		return err
	}
	if len(c.RedirectURIs) == 0 {
		return Invalid("client.redirect_uris", "at least one is required")
	}
	if len(c.RedirectURIs) > MaxListLen {
		return Invalid("client.redirect_uris", "too many")
	}
	for _, u := range c.RedirectURIs {
		if err := ValidateRedirectURI("client.redirect_uris", u); err != nil {
			return err
		}
	}
	for _, l := range []struct {
		field string
		v     []string
	}{{"client.grant_types", c.GrantTypes}, {"client.response_types", c.ResponseTypes}} {
		if len(l.v) > MaxListLen {
			return Invalid(l.field, "too many")
		}
		for _, s := range l.v {
			if err := validRequiredText(l.field, s, MaxShortTextLen); err != nil {
				return err
			}
		}
	}
	switch c.TokenEndpointAuthMethod {
	case AuthMethodNone, AuthMethodClientSecretBasic, AuthMethodClientSecretPost:
	default:
		return Invalid("client.token_endpoint_auth_method", "unsupported method")
	}
	if c.TokenEndpointAuthMethod == AuthMethodNone && c.SecretHash != nil {
		return Invalid("client.secret_hash", "a public client has no secret")
	}
	if err := ValidateScopes("client.scope", strings.Fields(c.Scope)); err != nil {
		return err
	}
	if len(c.Scope) > MaxScopeStringLen {
		return Invalid("client.scope", "too long")
	}
	if err := validText("client.client_name", c.ClientName, MaxNameLen); err != nil {
		return err
	}
	if err := validText("client.client_uri", c.ClientURI, MaxURLLen); err != nil {
		return err
	}
	if err := validText("client.logo_uri", c.LogoURI, MaxURLLen); err != nil {
		return err
	}
	if err := validText("client.application_type", c.ApplicationType, MaxShortTextLen); err != nil {
		return err
	}
	return validateJSON("client.metadata", c.Metadata)
}

// Validate checks a complete OAuth client as given to CreateClient: on top
// of ValidateUpdate, a confidential client (client_secret_basic/post) must
// have a secret hash.
func (c OAuthClient) Validate() error {
	if err := c.ValidateUpdate(); err != nil {
		return err
	}
	if c.TokenEndpointAuthMethod != AuthMethodNone && c.SecretHash == nil {
		return Invalid("client.secret_hash", "required for a confidential client")
	}
	return nil
}

// ValidateRedirectURI checks a stored redirect URI structurally: absolute,
// ≤2048, no fragment (RFC 6749 §3.1.2). Which schemes and hosts are allowed
// is the registration endpoint's decision.
func ValidateRedirectURI(field, s string) error {
	if s == "" {
		return Invalid(field, "required")
	}
	if len(s) > MaxURLLen {
		return Invalid(field, "too long")
	}
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() || u.Fragment != "" || strings.Contains(s, "#") {
		return Invalid(field, "must be an absolute URI without fragment")
	}
	return validText(field, s, MaxURLLen)
}

// ValidateScopes checks a scope list: ≤20 entries, each a non-empty RFC 6749
// §3.3 scope-token of ≤200 characters. Which scopes mean something is the
// caller's decision.
func ValidateScopes(field string, scopes []string) error {
	if len(scopes) > MaxScopes {
		return Invalid(field, "too many scopes")
	}
	for _, s := range scopes {
		if s == "" {
			return Invalid(field, "empty scope")
		}
		if len(s) > MaxScopeLen {
			return Invalid(field, "scope too long")
		}
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
				return Invalid(field, "scope has characters outside RFC 6749 §3.3")
			}
		}
	}
	return nil
}

// validateOAuthBinding checks the fields an auth request, consent ticket,
// code or refresh token bind to.
func validateOAuthBinding(prefix, clientID, resource string, scopes []string) error {
	if err := ValidateClientID(clientID); err != nil {
		return err
	}
	if err := validateHTTPURL(prefix+".resource", resource, true); err != nil {
		return err
	}
	return ValidateScopes(prefix+".scopes", scopes)
}

func validateCodeChallenge(field, s string) error {
	if len(s) != CodeChallengeLen {
		return Invalid(field, "must be a 43-character S256 challenge")
	}
	for i := 0; i < len(s); i++ {
		if !isBase64URL(s[i]) {
			return Invalid(field, "must be base64url characters")
		}
	}
	return nil
}

// Validate checks an auth request as given to CreateAuthRequest. UserID is
// empty until the user logs in.
func (r AuthRequest) Validate() error {
	if err := ValidateOpaqueID("auth_request.id", r.ID); err != nil {
		return err
	}
	if err := validateOAuthBinding("auth_request", r.ClientID, r.Resource, r.Scopes); err != nil {
		return err
	}
	if err := ValidateRedirectURI("auth_request.redirect_uri", r.RedirectURI); err != nil {
		return err
	}
	if err := validText("auth_request.state", r.State, MaxStateLen); err != nil {
		return err
	}
	if err := validateCodeChallenge("auth_request.code_challenge", r.CodeChallenge); err != nil {
		return err
	}
	if err := ValidateID("auth_request.config_id", r.ConfigID); err != nil {
		return err
	}
	if err := ValidateRouteKey("auth_request.route_key", r.RouteKey); err != nil {
		return err
	}
	if !r.OwnerScope.Valid() {
		return Invalid("auth_request.owner_scope", "unknown owner scope")
	}
	if err := ValidateID("auth_request.owner_id", r.OwnerID); err != nil {
		return err
	}
	if err := ValidateOptionalID("auth_request.user_id", r.UserID); err != nil {
		return err
	}
	return ValidateTime("auth_request.expires_at", r.ExpiresAt)
}

// Validate checks a consent ticket as given to CreateConsentTicket.
func (t ConsentTicket) Validate() error {
	if err := ValidateHash("consent_ticket.hash", t.Hash); err != nil {
		return err
	}
	if err := ValidateOpaqueID("consent_ticket.auth_request_id", t.AuthRequestID); err != nil {
		return err
	}
	if err := ValidateID("consent_ticket.user_id", t.UserID); err != nil {
		return err
	}
	if err := validateOAuthBinding("consent_ticket", t.ClientID, t.Resource, t.Scopes); err != nil {
		return err
	}
	if err := ValidateRedirectURI("consent_ticket.redirect_uri", t.RedirectURI); err != nil {
		return err
	}
	if err := validText("consent_ticket.state", t.State, MaxStateLen); err != nil {
		return err
	}
	if err := validateCodeChallenge("consent_ticket.code_challenge", t.CodeChallenge); err != nil {
		return err
	}
	if err := ValidateExecutionContext("consent_ticket.execution_context", t.ExecutionContext); err != nil {
		return err
	}
	return ValidateTime("consent_ticket.expires_at", t.ExpiresAt)
}

// Validate checks an authorization code as given to CreateAuthCode.
func (c AuthCode) Validate() error {
	if err := ValidateHash("auth_code.hash", c.Hash); err != nil {
		return err
	}
	if err := ValidateOpaqueID("auth_code.family_id", c.FamilyID); err != nil {
		return err
	}
	if err := validateOAuthBinding("auth_code", c.ClientID, c.Resource, c.Scopes); err != nil {
		return err
	}
	if err := ValidateRedirectURI("auth_code.redirect_uri", c.RedirectURI); err != nil {
		return err
	}
	if err := validateCodeChallenge("auth_code.code_challenge", c.CodeChallenge); err != nil {
		return err
	}
	if err := ValidateID("auth_code.config_id", c.ConfigID); err != nil {
		return err
	}
	if err := ValidateRouteKey("auth_code.route_key", c.RouteKey); err != nil {
		return err
	}
	if !c.OwnerScope.Valid() {
		return Invalid("auth_code.owner_scope", "unknown owner scope")
	}
	if err := ValidateID("auth_code.owner_id", c.OwnerID); err != nil {
		return err
	}
	if err := ValidateExecutionContext("auth_code.execution_context", c.ExecutionContext); err != nil {
		return err
	}
	if err := ValidateID("auth_code.user_id", c.UserID); err != nil {
		return err
	}
	if err := ValidateID("auth_code.instance_id", c.InstanceID); err != nil {
		return err
	}
	if err := ValidateConfigVersion("auth_code.config_version", c.ConfigVersion); err != nil {
		return err
	}
	return ValidateTime("auth_code.expires_at", c.ExpiresAt)
}

// Validate checks a refresh token as given to CreateRefreshToken or as the
// next token of RotateRefreshToken.
func (t RefreshToken) Validate() error {
	if err := ValidateHash("refresh_token.hash", t.Hash); err != nil {
		return err
	}
	if err := ValidateOpaqueID("refresh_token.family_id", t.FamilyID); err != nil {
		return err
	}
	if err := validateOAuthBinding("refresh_token", t.ClientID, t.Resource, t.Scopes); err != nil {
		return err
	}
	if err := ValidateID("refresh_token.user_id", t.UserID); err != nil {
		return err
	}
	if err := ValidateID("refresh_token.instance_id", t.InstanceID); err != nil {
		return err
	}
	if err := ValidateID("refresh_token.config_id", t.ConfigID); err != nil {
		return err
	}
	if err := ValidateExecutionContext("refresh_token.execution_context", t.ExecutionContext); err != nil {
		return err
	}
	if t.ConfigVersion < 1 {
		return Invalid("refresh_token.config_version", "must be at least 1")
	}
	return ValidateTime("refresh_token.expires_at", t.ExpiresAt)
}

// Validate checks an audit event. Ids are optional (system actions have no
// actor); metadata is capped at 16 KiB (keys plus values) and 50 entries.
func (e AuditEvent) Validate() error {
	if err := validRequiredText("audit.type", e.Type, MaxShortTextLen); err != nil {
		return err
	}
	if err := validText("audit.outcome", e.Outcome, MaxShortTextLen); err != nil {
		return err
	}
	if e.OwnerScope != "" && !e.OwnerScope.Valid() {
		return Invalid("audit.owner_scope", "unknown owner scope")
	}
	for _, id := range []struct{ field, v string }{
		{"audit.actor_user_id", e.ActorUserID},
		{"audit.owner_id", e.OwnerID},
		{"audit.config_id", e.ConfigID},
		{"audit.route_id", e.RouteID},
		{"audit.instance_id", e.InstanceID},
		{"audit.user_id", e.UserID},
	} {
		if err := ValidateOptionalID(id.field, id.v); err != nil {
			return err
		}
	}
	// The client id of a denial may be whatever an unauthenticated caller
	// sent; it is recorded (bounded, without control characters) rather
	// than losing the audit event.
	if err := validText("audit.client_id", e.ClientID, MaxClientIDLen); err != nil {
		return err
	}
	if err := validText("audit.reason", e.Reason, MaxShortTextLen); err != nil {
		return err
	}
	if len(e.Metadata) > MaxHeaders {
		return Invalid("audit.metadata", "too many entries")
	}
	size := 0
	for k, v := range e.Metadata {
		if k == "" {
			return Invalid("audit.metadata", "empty key")
		}
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return Invalid("audit.metadata", "not UTF-8")
		}
		size += len(k) + len(v)
	}
	if size > MaxMetadataLen {
		return Invalid("audit.metadata", "too large")
	}
	return nil
}

// Validate checks an audit filter. Limit 0 means the default (100).
func (f AuditFilter) Validate() error {
	if f.OwnerScope != "" && !f.OwnerScope.Valid() {
		return Invalid("filter.owner_scope", "unknown owner scope")
	}
	for _, id := range []struct{ field, v string }{
		{"filter.owner_id", f.OwnerID},
		{"filter.config_id", f.ConfigID},
		{"filter.user_id", f.UserID},
	} {
		if err := ValidateOptionalID(id.field, id.v); err != nil {
			return err
		}
	}
	if err := validText("filter.type", f.Type, MaxShortTextLen); err != nil {
		return err
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && f.Until.Before(f.Since) {
		return Invalid("filter.until", "before since")
	}
	if f.Before < 0 {
		return Invalid("filter.before", "must be >= 0")
	}
	if f.Limit < 0 || f.Limit > 1000 {
		return Invalid("filter.limit", "must be 0 to 1000")
	}
	return nil
}

// Validate checks a runtime query: every field is required, since the
// runtime proves all of them (DESIGN §6 step 6).
func (q RuntimeQuery) Validate() error {
	if err := ValidateID("runtime.config_id", q.ConfigID); err != nil {
		return err
	}
	if err := ValidateRouteKey("runtime.route_key", q.RouteKey); err != nil {
		return err
	}
	if !q.OwnerScope.Valid() {
		return Invalid("runtime.owner_scope", "unknown owner scope")
	}
	if err := ValidateID("runtime.owner_id", q.OwnerID); err != nil {
		return err
	}
	if err := ValidateID("runtime.user_id", q.UserID); err != nil {
		return err
	}
	if err := ValidateID("runtime.instance_id", q.InstanceID); err != nil {
		return err
	}
	if err := ValidateConfigVersion("runtime.config_version", q.ConfigVersion); err != nil {
		return err
	}
	if q.ExecutionContext == "" {
		return Invalid("runtime.execution_context", "required")
	}
	// A well-formed but different context is a denial (context_mismatch),
	// not an input error, so only the size is checked here.
	return validText("runtime.execution_context", q.ExecutionContext, MaxShortTextLen)
}

// --- helpers ---

func isBase64URL(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// validText checks an optional free-text value: ≤max bytes, valid UTF-8,
// no control characters (which could forge log lines or headers).
func validText(field, s string, max int) error {
	if len(s) > max {
		return Invalid(field, "too long")
	}
	if !utf8.ValidString(s) {
		return Invalid(field, "not UTF-8")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return Invalid(field, "contains control characters")
		}
	}
	return nil
}

func validRequiredText(field, s string, max int) error {
	if strings.TrimSpace(s) == "" {
		return Invalid(field, "required")
	}
	return validText(field, s, max)
}

func validCiphertext(field string, b []byte) error {
	if len(b) == 0 {
		return Invalid(field, "required")
	}
	if len(b) > MaxCiphertextLen {
		return Invalid(field, "too large")
	}
	return nil
}

// validateHTTPURL checks an absolute http(s) URL with a host, no userinfo
// and no fragment. Whether plain http is allowed is policy (DESIGN §6 dev
// allowlist) and decided by the caller.
func validateHTTPURL(field, s string, required bool) error {
	if s == "" {
		if required {
			return Invalid(field, "required")
		}
		return nil
	}
	if len(s) > MaxURLLen {
		return Invalid(field, "too long")
	}
	if err := validText(field, s, MaxURLLen); err != nil {
		return err
	}
	u, err := url.Parse(s)
	if err != nil {
		return Invalid(field, "not a URL")
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return Invalid(field, "must be an http(s) URL")
	}
	if u.Host == "" || u.Hostname() == "" {
		return Invalid(field, "missing host")
	}
	if u.User != nil {
		return Invalid(field, "must not contain userinfo")
	}
	if u.Fragment != "" || strings.Contains(s, "#") {
		return Invalid(field, "must not contain a fragment")
	}
	return nil
}

func validHeaderName(field, n string) error {
	if n == "" {
		return Invalid(field, "empty header name")
	}
	if len(n) > MaxHeaderNameLen {
		return Invalid(field, "header name too long")
	}
	for i := 0; i < len(n); i++ {
		if !isTokenChar(n[i]) {
			return Invalid(field, "header name is not an RFC 9110 token")
		}
	}
	return nil
}

func validHeaderValue(field, v string) error {
	if len(v) > MaxHeaderValueLen {
		return Invalid(field, "header value too long")
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\r' || c == '\n' || c == 0 || (c < 0x20 && c != '\t') || c == 0x7f {
			return Invalid(field, "header value has control characters")
		}
	}
	return nil
}

// isTokenChar reports whether c is an RFC 9110 §5.6.2 tchar.
func isTokenChar(c byte) bool {
	if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func validateJSON(field string, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if len(b) > MaxMetadataLen {
		return Invalid(field, "too large")
	}
	if !json.Valid(b) {
		return Invalid(field, "not valid JSON")
	}
	return nil
}
