// Package store is mcpgw's system of record: the domain types, the Store
// interface every server uses, and the sentinel errors shared by its two
// implementations (store/postgres and store/memory). The conformance suite in
// store/storetest runs the same cases against both.
//
// The store never sees plaintext secrets. Encrypted columns are opaque
// ciphertext produced by domain/secrets (with associated data that binds a
// ciphertext to its row and column), and one-time values (codes, refresh
// tokens, client secrets, registration tokens, API tokens, session ids,
// consent tickets, provider state) are stored only as SHA-256 hashes.
package store

import (
	"encoding/json"
	"time"
)

// OwnerScope is the route scope of a config's owner: "user" for a personal
// config (owner kind personal) and "org" for an organization config (owner
// kind organization). DESIGN §2.
type OwnerScope string

const (
	ScopeUser OwnerScope = "user"
	ScopeOrg  OwnerScope = "org"
)

// Valid reports whether s is a known scope.
func (s OwnerScope) Valid() bool { return s == ScopeUser || s == ScopeOrg }

// UserStatus is a user's lifecycle state. Only active users are eligible
// anywhere (DESIGN §3 rule 4).
type UserStatus string

const (
	UserActive      UserStatus = "active"
	UserBlocked     UserStatus = "blocked"
	UserProvisional UserStatus = "provisional"
	UserDeleted     UserStatus = "deleted"
)

func (s UserStatus) Valid() bool {
	switch s {
	case UserActive, UserBlocked, UserProvisional, UserDeleted:
		return true
	}
	return false
}

// Role is an org membership role. Owners and admins manage org configs but
// may use them only when assigned (DESIGN §3 rule 2).
type Role string

const (
	RoleOwner  Role = "owner"
	RoleAdmin  Role = "admin"
	RoleMember Role = "member"
)

func (r Role) Valid() bool { return r == RoleOwner || r == RoleAdmin || r == RoleMember }

// Manages reports whether the role may manage the org's configs.
func (r Role) Manages() bool { return r == RoleOwner || r == RoleAdmin }

// AuthMode says how upstream credentials are obtained.
type AuthMode string

const (
	AuthNone          AuthMode = "none"
	AuthStaticHeaders AuthMode = "static_headers"
	AuthOAuthDynamic  AuthMode = "oauth_dynamic"
	AuthOAuthStatic   AuthMode = "oauth_static"
)

func (m AuthMode) Valid() bool {
	switch m {
	case AuthNone, AuthStaticHeaders, AuthOAuthDynamic, AuthOAuthStatic:
		return true
	}
	return false
}

// IsOAuth reports whether the mode needs a provider grant per instance.
func (m AuthMode) IsOAuth() bool { return m == AuthOAuthDynamic || m == AuthOAuthStatic }

// SharingMode: personal configs are always single_user; org configs may be
// either (DESIGN §3 rule 3).
type SharingMode string

const (
	SingleUser SharingMode = "single_user"
	MultiUser  SharingMode = "multi_user"
)

func (m SharingMode) Valid() bool { return m == SingleUser || m == MultiUser }

// ConfigStatus: a disabled config keeps its route, instances and grants but
// every runtime check fails. Deleted is terminal.
type ConfigStatus string

const (
	ConfigEnabled  ConfigStatus = "enabled"
	ConfigDisabled ConfigStatus = "disabled"
	ConfigDeleted  ConfigStatus = "deleted"
)

func (s ConfigStatus) Valid() bool {
	return s == ConfigEnabled || s == ConfigDisabled || s == ConfigDeleted
}

// InstanceState: active and needs_reauth are non-terminal; revoked and
// removed are terminal and never reused (a new connection gets a new
// instance).
type InstanceState string

const (
	InstanceActive      InstanceState = "active"
	InstanceNeedsReauth InstanceState = "needs_reauth"
	InstanceRevoked     InstanceState = "revoked"
	InstanceRemoved     InstanceState = "removed"
)

func (s InstanceState) Valid() bool {
	switch s {
	case InstanceActive, InstanceNeedsReauth, InstanceRevoked, InstanceRemoved:
		return true
	}
	return false
}

// Terminal reports whether the state is final.
func (s InstanceState) Terminal() bool { return s == InstanceRevoked || s == InstanceRemoved }

// User is a person. Email is unique among non-deleted users (case-folded by
// the caller). OIDCIssuer+OIDCSubject, when set, are unique.
type User struct {
	ID          string
	Email       string
	DisplayName string
	Status      UserStatus
	SystemAdmin bool
	OIDCIssuer  string
	OIDCSubject string
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// Org is an organization.
type Org struct {
	ID        string
	Name      string
	CreatedAt time.Time
}

// Member is one user's membership of one org.
type Member struct {
	OrgID     string
	UserID    string
	Role      Role
	CreatedAt time.Time
}

// APIToken is a personal management API token; only its hash is stored.
type APIToken struct {
	ID         string
	UserID     string
	Name       string
	Hash       []byte
	CreatedAt  time.Time
	ExpiresAt  *time.Time // nil: never expires
	LastUsedAt *time.Time
	RevokedAt  *time.Time
}

// Session is a server-side browser session; only the hash of its id is
// stored. CSRFHash is the hash of the session's CSRF token.
type Session struct {
	IDHash    []byte
	UserID    string
	CSRFHash  []byte
	CreatedAt time.Time
	ExpiresAt time.Time
	RevokedAt *time.Time
}

// ProviderSettings are a config's upstream (second-level) OAuth settings.
// Every field is an operator override; empty means "discover".
// ClientCredentials is the ciphertext of the operator's provider client id
// and secret (oauth_static), nil when absent.
type ProviderSettings struct {
	Issuer                string   `json:"issuer,omitempty"`
	AuthorizationEndpoint string   `json:"authorization_endpoint,omitempty"`
	TokenEndpoint         string   `json:"token_endpoint,omitempty"`
	RegistrationEndpoint  string   `json:"registration_endpoint,omitempty"`
	Scopes                []string `json:"scopes,omitempty"`
	Resource              string   `json:"resource,omitempty"`
	ClientCredentials     []byte   `json:"client_credentials,omitempty"`
}

// Config is one remote MCP endpoint (DESIGN §2).
//
// StaticHeaders is the ciphertext of the secret static credential headers
// (a JSON object name→value, sealed by domain/secrets); StaticHeaderNames
// lists their canonical lower-case names in plaintext so the runtime can strip
// them from client requests without decrypting. AuxHeaders are non-secret.
// Registry is free-form, non-material metadata.
type Config struct {
	ID                string
	OwnerScope        OwnerScope
	OwnerID           string
	Name              string
	RemoteURL         string
	AuthMode          AuthMode
	SharingMode       SharingMode
	Status            ConfigStatus
	Version           int64
	PathPassthrough   bool
	StaticHeaders     []byte
	StaticHeaderNames []string
	AuxHeaders        map[string]string
	Provider          ProviderSettings
	Registry          json.RawMessage
	CreatedBy         string
	CreatedAt         time.Time
	UpdatedAt         time.Time
}

// MaterialChange reports whether moving from old to new is a material change
// (DESIGN §5): remote URL, auth mode, sharing mode, provider endpoints,
// scopes, resource or credentials. Static header rotation, auxiliary headers,
// name, path passthrough and registry metadata are not material.
func MaterialChange(old, new *Config) bool {
	if old.RemoteURL != new.RemoteURL || old.AuthMode != new.AuthMode || old.SharingMode != new.SharingMode {
		return true
	}
	a, b := old.Provider, new.Provider
	if a.Issuer != b.Issuer || a.AuthorizationEndpoint != b.AuthorizationEndpoint ||
		a.TokenEndpoint != b.TokenEndpoint || a.RegistrationEndpoint != b.RegistrationEndpoint ||
		a.Resource != b.Resource || string(a.ClientCredentials) != string(b.ClientCredentials) {
		return true
	}
	if len(a.Scopes) != len(b.Scopes) {
		return true
	}
	for i := range a.Scopes {
		if a.Scopes[i] != b.Scopes[i] {
			return true
		}
	}
	return false
}

// Route is one route key of a config. Exactly one route per config is
// active at a time; rotation deactivates the old one and inserts the new one
// in one transaction.
type Route struct {
	ID            string
	ConfigID      string
	OwnerScope    OwnerScope
	OwnerID       string
	Key           string
	Active        bool
	CreatedAt     time.Time
	DeactivatedAt *time.Time
}

// Assignment gives one user the use of one org config.
type Assignment struct {
	ConfigID  string
	UserID    string
	CreatedBy string
	CreatedAt time.Time
}

// Instance is the connection record of (owner scope, owner id, user,
// config). At most one non-terminal instance exists per tuple.
// GrantVersion is the instance's monotonic provider-grant version: it only
// moves forward (create, replace, revoke and delete all advance it).
type Instance struct {
	ID           string
	OwnerScope   OwnerScope
	OwnerID      string
	UserID       string
	ConfigID     string
	State        InstanceState
	GrantVersion int64
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// Grant is the provider (upstream OAuth) grant of one instance. AccessToken
// and RefreshToken are ciphertext. Version equals the instance's
// GrantVersion at the time the grant was written.
type Grant struct {
	InstanceID   string
	Version      int64
	AccessToken  []byte
	RefreshToken []byte // nil when the upstream issued none
	TokenType    string // always "Bearer"
	Scope        string
	ExpiresAt    *time.Time // nil: upstream gave no expiry
	UpdatedAt    time.Time
}

// ProviderRegistration is mcpgw's own client registration at a config's
// upstream authorization server (oauth_dynamic), cached per (config, config
// version) and dropped on a material change. Ciphertext holds the client id,
// secret and registration metadata.
type ProviderRegistration struct {
	ConfigID      string
	ConfigVersion int64
	Ciphertext    []byte
	CreatedAt     time.Time
}

// PendingProviderState is one in-flight provider authorization (DESIGN §5).
// StateHash is the hash of the opaque one-time state sent upstream;
// Ciphertext holds everything the callback needs. The plaintext columns are
// what cascades need to find it.
type PendingProviderState struct {
	StateHash     []byte
	UserID        string
	ConfigID      string
	ConfigVersion int64
	InstanceID    string
	Ciphertext    []byte
	CreatedAt     time.Time
	ExpiresAt     time.Time
	ConsumedAt    *time.Time
}

// OAuthClient is a first-level OAuth client registered with RFC 7591. ID
// looks like "dcr:<random>". SecretHash and RegistrationTokenHash are
// SHA-256 hashes; SecretHash is nil for public clients (auth method none).
type OAuthClient struct {
	ID                      string
	SecretHash              []byte
	RegistrationTokenHash   []byte
	RedirectURIs            []string
	GrantTypes              []string
	ResponseTypes           []string
	TokenEndpointAuthMethod string
	Scope                   string // space-separated, as registered
	ClientName              string
	ClientURI               string
	LogoURI                 string
	ApplicationType         string
	Metadata                json.RawMessage // the full registered metadata as stored (no secrets)
	CreatedAt               time.Time
	UpdatedAt               time.Time
}

// AuthRequest is a pending first-level authorization request (≤30 min),
// created once the authorize parameters validated and referenced by an
// opaque ID through login and consent. UserID is set once the user logged in.
type AuthRequest struct {
	ID            string
	ClientID      string
	RedirectURI   string
	Resource      string
	Scopes        []string
	State         string
	CodeChallenge string
	ConfigID      string
	RouteKey      string
	OwnerScope    OwnerScope
	OwnerID       string
	UserID        string
	CreatedAt     time.Time
	ExpiresAt     time.Time
}

// ConsentTicket binds one consent decision (≤5 min, one use) to the user,
// client, redirect URI, resource, scopes, state, PKCE challenge and
// execution context of one AuthRequest.
type ConsentTicket struct {
	Hash             []byte
	AuthRequestID    string
	UserID           string
	ClientID         string
	RedirectURI      string
	Resource         string
	Scopes           []string
	State            string
	CodeChallenge    string
	ExecutionContext string
	CreatedAt        time.Time
	ExpiresAt        time.Time
	ConsumedAt       *time.Time
}

// AuthCode is a first-level authorization code (≤10 min, one use).
// FamilyID names the token family that every refresh token issued from this
// code belongs to, so code reuse can revoke them (DESIGN §4).
type AuthCode struct {
	Hash             []byte
	FamilyID         string
	ClientID         string
	RedirectURI      string
	Resource         string
	Scopes           []string
	CodeChallenge    string
	ConfigID         string
	RouteKey         string
	OwnerScope       OwnerScope
	OwnerID          string
	ExecutionContext string
	UserID           string
	InstanceID       string
	ConfigVersion    int64
	CreatedAt        time.Time
	ExpiresAt        time.Time
	ConsumedAt       *time.Time
}

// RefreshToken is a first-level refresh token. Every use rotates it; all
// tokens descended from one code share FamilyID.
type RefreshToken struct {
	Hash             []byte
	FamilyID         string
	ClientID         string
	UserID           string
	InstanceID       string
	ConfigID         string
	Resource         string
	Scopes           []string
	ExecutionContext string
	// ConfigVersion is the config version the user consented to; a refresh
	// after the config's version moved on (a material change) must fail.
	ConfigVersion int64
	CreatedAt     time.Time
	ExpiresAt     time.Time
	ConsumedAt    *time.Time
	RevokedAt     *time.Time
}

// AuditEvent is one audit row. Metadata must never hold secrets, tokens,
// codes or raw provider payloads.
type AuditEvent struct {
	ID          int64
	Time        time.Time
	Type        string // e.g. "config.create", "route.rotate", "runtime.usage"
	Outcome     string // "success", "failure", "denied", ...
	ActorUserID string
	OwnerScope  OwnerScope
	OwnerID     string
	ConfigID    string
	RouteID     string
	InstanceID  string
	UserID      string // the subject user, when different from the actor
	ClientID    string
	Reason      string
	Metadata    map[string]string
}

// AuditFilter selects audit events. Zero fields do not filter. Results are
// newest first; Before is an exclusive cursor on ID (0: from the newest).
type AuditFilter struct {
	OwnerScope OwnerScope
	OwnerID    string
	ConfigID   string
	UserID     string // matches ActorUserID or UserID
	Type       string
	Since      time.Time
	Until      time.Time
	Before     int64
	Limit      int // default 100, max 1000
}

// ChangeKind says what changed, for the xds change feed.
type ChangeKind string

const (
	ChangeConfig     ChangeKind = "config"
	ChangeRoute      ChangeKind = "route"
	ChangeAssignment ChangeKind = "assignment"
	// ChangeResync means changes may have been missed (for example the
	// listen connection was re-established): rebuild everything.
	ChangeResync ChangeKind = "resync"
)

// Change is one change-feed notification.
type Change struct {
	Kind     ChangeKind
	ConfigID string
}

// RoutableConfig is what xds needs for one enabled config with an active
// route.
type RoutableConfig struct {
	Config Config
	Route  Route
}

// UsableConfig is one config the user can use now, with its active route.
type UsableConfig struct {
	Config   Config
	Route    Route
	Instance *Instance // the user's non-terminal instance, nil if none yet
}

// CleanupCounts reports what a cleanup pass deleted.
type CleanupCounts struct {
	AuthRequests   int64
	ConsentTickets int64
	AuthCodes      int64
	RefreshTokens  int64
	PendingStates  int64
	Sessions       int64
	RateLimits     int64
	AuditEvents    int64
}
