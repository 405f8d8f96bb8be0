package store

import (
	"context"
	"time"
)

// Store is the system of record. Every method validates its input first and
// returns an error matching ErrInvalid (an *InvalidError) before touching the
// database; an unreachable database yields an error matching ErrUnavailable.
// IDs are supplied by the caller (NewID), because encrypted columns bind
// their ciphertext to the row id as associated data.
//
// Methods that take an `ev *AuditEvent` write that event in the same
// transaction as the change (nil: no event). The store fills ev.Time when
// zero.
//
// Every method that changes configs, routes or assignments emits a Change on
// the change feed (Watch) in the same transaction.
type Store interface {
	UserStore
	OrgStore
	ConfigStore
	InstanceStore
	OAuthStore
	ProviderStore
	RuntimeStore
	AuditStore
	MaintenanceStore

	// Ping reports whether the database is reachable (ErrUnavailable if not).
	Ping(ctx context.Context) error
	// Close releases resources. The store is unusable afterwards.
	Close()
}

// UserStore holds users, API tokens and browser sessions.
type UserStore interface {
	// CreateUser inserts u. ErrConflict if the id, the email (among
	// non-deleted users) or the OIDC issuer+subject is taken.
	CreateUser(ctx context.Context, u User) (User, error)
	// GetUser returns a user by id (including deleted ones).
	GetUser(ctx context.Context, id string) (User, error)
	// GetUserByEmail returns the non-deleted user with that email.
	GetUserByEmail(ctx context.Context, email string) (User, error)
	// GetUserByOIDC returns the non-deleted user with that issuer+subject.
	GetUserByOIDC(ctx context.Context, issuer, subject string) (User, error)
	// ListUsers returns users ordered by email, excluding deleted ones unless
	// includeDeleted.
	ListUsers(ctx context.Context, includeDeleted bool) ([]User, error)
	// SetUserStatus moves a user to active, blocked or provisional.
	// ErrConflict for a deleted user (deletion is terminal); use
	// SoftDeleteUser to delete. Blocking takes effect at the next runtime
	// check; it removes nothing.
	SetUserStatus(ctx context.Context, id string, status UserStatus, ev *AuditEvent) (User, error)
	// SetSystemAdmin sets or clears the system-admin flag.
	SetSystemAdmin(ctx context.Context, id string, admin bool, ev *AuditEvent) (User, error)
	// SoftDeleteUser marks the user deleted and anonymizes email, display
	// name and OIDC identity, and in the same transaction removes the user's
	// instances (state removed) and their grants, pending provider state,
	// refresh tokens, sessions, API tokens, assignments and memberships
	// (DESIGN §7). Idempotent on an already deleted user.
	SoftDeleteUser(ctx context.Context, id string, ev *AuditEvent) error

	// CreateAPIToken stores a token (hash only). ErrConflict on duplicate
	// id or hash.
	CreateAPIToken(ctx context.Context, t APIToken) (APIToken, error)
	// GetAPITokenByHash returns the token with that hash: ErrNotFound if
	// unknown, ErrRevoked if revoked, ErrExpired if expired at now. It also
	// returns ErrNotFound when the owning user is deleted.
	GetAPITokenByHash(ctx context.Context, hash []byte, now time.Time) (APIToken, error)
	// ListAPITokens lists a user's tokens (revoked included), newest first.
	ListAPITokens(ctx context.Context, userID string) ([]APIToken, error)
	// RevokeAPIToken revokes one of userID's tokens. ErrNotFound when the
	// token does not belong to userID.
	RevokeAPIToken(ctx context.Context, userID, tokenID string, now time.Time) error

	// CreateSession stores a session (id hash only).
	CreateSession(ctx context.Context, s Session) error
	// GetSession returns the session: ErrNotFound, ErrRevoked or ErrExpired
	// as appropriate.
	GetSession(ctx context.Context, idHash []byte, now time.Time) (Session, error)
	// RevokeSession revokes a session; revoking an unknown one is not an error.
	RevokeSession(ctx context.Context, idHash []byte, now time.Time) error
}

// OrgStore holds orgs and memberships.
type OrgStore interface {
	// CreateOrg inserts an org and, in the same transaction, makes ownerID
	// its owner. ErrConflict on duplicate id or name.
	CreateOrg(ctx context.Context, o Org, ownerID string, ev *AuditEvent) (Org, error)
	GetOrg(ctx context.Context, id string) (Org, error)
	ListOrgs(ctx context.Context) ([]Org, error)
	// AddMember adds a membership. ErrConflict if it exists; ErrNotFound if
	// the org or user does not exist or the user is deleted.
	AddMember(ctx context.Context, m Member, ev *AuditEvent) (Member, error)
	// SetMemberRole changes a role. ErrConflict if it would leave the org
	// without an owner.
	SetMemberRole(ctx context.Context, orgID, userID string, role Role, ev *AuditEvent) (Member, error)
	// RemoveMember deletes the membership and, in the same transaction,
	// the user's assignments to the org's configs, the user's org instances
	// (state removed) with their grants, and the user's pending provider
	// state for the org's configs (DESIGN §7). ErrConflict if it would leave
	// the org without an owner.
	RemoveMember(ctx context.Context, orgID, userID string, ev *AuditEvent) error
	GetMember(ctx context.Context, orgID, userID string) (Member, error)
	// ListMembers lists an org's members ordered by user id.
	ListMembers(ctx context.Context, orgID string) ([]Member, error)
	// ListMemberships lists a user's memberships ordered by org id.
	ListMemberships(ctx context.Context, userID string) ([]Member, error)
}

// ConfigStore holds configs, routes and assignments.
type ConfigStore interface {
	// CreateConfig inserts c (Version 1, Status enabled unless set to
	// disabled) and its first active route with key routeKey, in one
	// transaction. Personal (user scope) configs must be single_user; the
	// owner must exist (user not deleted / org exists). ErrConflict on
	// duplicate id or route key.
	CreateConfig(ctx context.Context, c Config, routeID, routeKey string, ev *AuditEvent) (Config, Route, error)
	// GetConfig returns a config by id (including disabled and deleted).
	GetConfig(ctx context.Context, id string) (Config, error)
	// ListConfigs lists non-deleted configs of one owner, ordered by name
	// then id. Empty scope lists every non-deleted config.
	ListConfigs(ctx context.Context, scope OwnerScope, ownerID string) ([]Config, error)
	// UpdateConfig reads the config, calls update on a copy and writes the
	// result, all in one transaction (read-modify-write). update may change
	// Name, RemoteURL, AuthMode, SharingMode, PathPassthrough,
	// StaticHeaders, StaticHeaderNames, AuxHeaders, Provider and Registry;
	// changes to other fields are ignored. If MaterialChange(old, new), the
	// version advances by one and in the same transaction every grant of the
	// config is revoked (grant versions advance), non-terminal instances
	// move to needs_reauth when the new mode is an OAuth mode, pending
	// provider state and provider registrations of the config are deleted.
	// Changing an org config from multi_user to single_user is ErrConflict
	// while it has more than one assignee. ErrNotFound for deleted configs.
	// The returned bool reports whether the change was material.
	UpdateConfig(ctx context.Context, id string, update func(*Config) error, ev *AuditEvent) (Config, bool, error)
	// SetConfigStatus enables or disables a config (not delete). Disabling
	// keeps routes, instances and grants; the runtime denies immediately.
	SetConfigStatus(ctx context.Context, id string, status ConfigStatus, ev *AuditEvent) (Config, error)
	// DeleteConfig marks the config deleted and, in one transaction,
	// deactivates its route, removes every non-terminal instance (state
	// removed) with its grant, and deletes its assignments, pending provider
	// state and provider registrations. Idempotent.
	DeleteConfig(ctx context.Context, id string, ev *AuditEvent) error

	// RotateRoute deactivates the config's active route and inserts a new
	// active one (id routeID, key newKey) in one transaction. ErrNotFound for
	// a deleted config; ErrConflict if newKey was ever used.
	RotateRoute(ctx context.Context, configID, routeID, newKey string, ev *AuditEvent) (Route, error)
	// GetActiveRoute returns the config's active route.
	GetActiveRoute(ctx context.Context, configID string) (Route, error)
	// LookupRoute returns the enabled config and its active route when the
	// tuple names an active route exactly; ErrNotFound otherwise (never says
	// which part was wrong).
	LookupRoute(ctx context.Context, scope OwnerScope, ownerID, configID, routeKey string) (Config, Route, error)
	// ListRoutable returns every enabled config with its active route,
	// ordered by config id (xds full build).
	ListRoutable(ctx context.Context) ([]RoutableConfig, error)
	// GetRoutable returns one config's routable state; ErrNotFound if the
	// config is disabled, deleted or unknown (xds incremental build).
	GetRoutable(ctx context.Context, configID string) (RoutableConfig, error)

	// Assign gives userID the use of an org config. The user must be a
	// member of the org (ErrConflict otherwise). For a single_user config,
	// the previous assignee's assignment, non-terminal instance (state
	// removed) and grant are removed in the same transaction, so there is
	// never more than one assignee. Assigning the current assignee again is
	// a no-op. ErrConflict for personal configs.
	Assign(ctx context.Context, a Assignment, ev *AuditEvent) (Assignment, error)
	// Unassign removes the assignment and, in the same transaction, the
	// user's non-terminal instance of the config (removed) with its grant
	// and pending provider state. ErrNotFound if not assigned.
	Unassign(ctx context.Context, configID, userID string, ev *AuditEvent) error
	// ListAssignments lists a config's assignments ordered by user id.
	ListAssignments(ctx context.Context, configID string) ([]Assignment, error)
	// ListUsable returns the configs userID can use now (DESIGN §3): the
	// user is active; personal enabled configs it owns; enabled org configs
	// it is assigned to while a member. Ordered by config id.
	ListUsable(ctx context.Context, userID string) ([]UsableConfig, error)
}

// InstanceStore holds instances and provider grants.
type InstanceStore interface {
	// GetOrCreateInstance returns the one non-terminal instance of (scope,
	// ownerID, userID, configID), creating an active one with id newID when
	// none exists. Safe under concurrency: concurrent callers get the same
	// instance. It does not check eligibility. The bool reports creation.
	GetOrCreateInstance(ctx context.Context, scope OwnerScope, ownerID, userID, configID, newID string) (Instance, bool, error)
	GetInstance(ctx context.Context, id string) (Instance, error)
	// ListInstances lists instances filtered by user and/or config (empty:
	// no filter), newest first; terminal ones only when includeTerminal.
	ListInstances(ctx context.Context, userID, configID string, includeTerminal bool) ([]Instance, error)
	// EndInstance moves a non-terminal instance to a terminal state (revoked
	// or removed) and deletes its grant (grant version advances) and pending
	// provider state, in one transaction. ErrConflict if already terminal.
	EndInstance(ctx context.Context, id string, state InstanceState, ev *AuditEvent) (Instance, error)

	// PutGrant writes g as the instance's grant, replacing any previous
	// one. The grant version advances by one and is returned in the Grant;
	// g.Version is ignored. If expectVersion >= 0 the write happens only
	// when the instance's current grant version equals it (ErrStale
	// otherwise). The instance moves to active. ErrConflict if the instance
	// is terminal.
	PutGrant(ctx context.Context, g Grant, expectVersion int64, ev *AuditEvent) (Grant, error)
	// GetGrant returns the instance's current grant; ErrNotFound if none.
	GetGrant(ctx context.Context, instanceID string) (Grant, error)
	// RevokeGrant deletes the instance's grant; the grant version advances.
	// Revoking when there is no grant still advances the version.
	RevokeGrant(ctx context.Context, instanceID string, ev *AuditEvent) (int64, error)
	// MarkNeedsReauth moves an active instance to needs_reauth only if its
	// grant version still equals grantVersion, and deletes the grant (the
	// version advances). It reports whether it did so; a newer grant written
	// meanwhile is never clobbered (false, nil).
	MarkNeedsReauth(ctx context.Context, instanceID string, grantVersion int64, ev *AuditEvent) (bool, error)
	// LockGrant runs fn while holding an exclusive lock on the instance's
	// grant, shared by every replica (a row lock in Postgres). fn receives
	// the current grant (nil if none) and returns the grant to write, or nil
	// to write nothing. A written grant advances the version exactly as
	// PutGrant does. The lock is held for fn's duration only; fn must honour
	// ctx. Returns the grant current after fn (the written one, or the one
	// read). ErrConflict if the instance is terminal.
	LockGrant(ctx context.Context, instanceID string, fn func(current *Grant) (*Grant, error)) (*Grant, error)
}

// OAuthStore holds first-level OAuth artifacts. Every Consume* is one
// atomic conditional operation that also checks expiry: of N concurrent
// callers exactly one succeeds.
type OAuthStore interface {
	// CreateClient stores a client. ErrConflict on duplicate id.
	CreateClient(ctx context.Context, c OAuthClient) (OAuthClient, error)
	GetClient(ctx context.Context, id string) (OAuthClient, error)
	// UpdateClient replaces a client's metadata (RFC 7592 PUT); ID,
	// SecretHash (unless non-nil), RegistrationTokenHash (unless non-nil)
	// and CreatedAt are kept.
	UpdateClient(ctx context.Context, c OAuthClient) (OAuthClient, error)
	// DeleteClient deletes a client and revokes its refresh tokens.
	DeleteClient(ctx context.Context, id string) error

	CreateAuthRequest(ctx context.Context, r AuthRequest) error
	// GetAuthRequest returns a pending request; ErrExpired once past
	// ExpiresAt.
	GetAuthRequest(ctx context.Context, id string, now time.Time) (AuthRequest, error)
	// SetAuthRequestUser records who logged in for the request.
	SetAuthRequestUser(ctx context.Context, id, userID string) error
	DeleteAuthRequest(ctx context.Context, id string) error

	CreateConsentTicket(ctx context.Context, t ConsentTicket) error
	// ConsumeConsentTicket marks the ticket consumed and returns it.
	// ErrNotFound, ErrConsumed or ErrExpired otherwise.
	ConsumeConsentTicket(ctx context.Context, hash []byte, now time.Time) (ConsentTicket, error)

	CreateAuthCode(ctx context.Context, c AuthCode) error
	// ConsumeAuthCode marks the code consumed and returns it. A second use
	// returns the code with ErrConsumed so the caller can revoke its family;
	// ErrExpired (code returned too) or ErrNotFound otherwise.
	ConsumeAuthCode(ctx context.Context, hash []byte, now time.Time) (AuthCode, error)

	// CreateRefreshToken stores a refresh token (hash only).
	CreateRefreshToken(ctx context.Context, t RefreshToken) error
	// RotateRefreshToken consumes the token with oldHash and stores next in
	// the same transaction. On success it returns the consumed token. If the
	// token was already consumed it returns it with ErrConsumed (reuse: the
	// caller revokes the family); revoked → ErrRevoked; expired →
	// ErrExpired; unknown → ErrNotFound. next is stored only on success.
	RotateRefreshToken(ctx context.Context, oldHash []byte, next RefreshToken, now time.Time) (RefreshToken, error)
	// GetRefreshToken returns a token by hash regardless of state.
	GetRefreshToken(ctx context.Context, hash []byte) (RefreshToken, error)
	// RevokeRefreshToken revokes one token (RFC 7009); unknown is not an
	// error.
	RevokeRefreshToken(ctx context.Context, hash []byte, now time.Time) error
	// RevokeFamily revokes every token of a family and reports how many.
	RevokeFamily(ctx context.Context, familyID string, now time.Time) (int64, error)

	// HitRateLimit counts one hit for key in the fixed window containing now
	// and reports whether it is within limit; when it is not, retryAfter is
	// the time until the window ends. Atomic across replicas.
	HitRateLimit(ctx context.Context, key string, window time.Duration, limit int, now time.Time) (allowed bool, retryAfter time.Duration, err error)
}

// ProviderStore holds provider (second-level) OAuth state.
type ProviderStore interface {
	// CreatePendingState stores pending provider state (≤30 min).
	CreatePendingState(ctx context.Context, p PendingProviderState) error
	// ConsumePendingState marks it consumed and returns it; ErrNotFound,
	// ErrConsumed or ErrExpired otherwise.
	ConsumePendingState(ctx context.Context, stateHash []byte, now time.Time) (PendingProviderState, error)

	// PutProviderRegistration stores (or replaces) the registration for
	// (config, version). ErrStale if version is not the config's current
	// version.
	PutProviderRegistration(ctx context.Context, r ProviderRegistration) error
	// GetProviderRegistration returns the registration for (config, version).
	GetProviderRegistration(ctx context.Context, configID string, version int64) (ProviderRegistration, error)
}

// RuntimeStore is the per-request recheck used by extauthz.
type RuntimeStore interface {
	// ResolveRuntime proves, in one round trip to the database, the rules of
	// DESIGN §6 step 6. Its error is only for invalid input or an
	// unavailable database; a denial is a RuntimeState whose Reason names
	// the first failing rule in this order:
	//
	//   route_not_found      config unknown, or scope/owner differ from q
	//   config_deleted       config deleted
	//   route_key_mismatch   q.RouteKey is not the active route key
	//   config_disabled
	//   config_version_mismatch
	//   context_mismatch     q.ExecutionContext != ExecutionContext(scope, owner)
	//   user_not_found / user_deleted / user_blocked / user_provisional
	//   not_owner            personal config whose owner is not q.UserID
	//   not_member / not_assigned   (org configs)
	//   instance_not_found / instance_mismatch / instance_not_active
	//   grant_missing        OAuth auth mode without a grant
	//
	// On success it returns the runtime config (ciphertext headers) and, for
	// OAuth modes, the grant (ciphertext).
	ResolveRuntime(ctx context.Context, q RuntimeQuery) (RuntimeState, error)
}

// AuditStore holds audit events.
type AuditStore interface {
	// AppendAudit writes events (in one transaction).
	AppendAudit(ctx context.Context, events ...AuditEvent) error
	// QueryAudit returns events matching f, newest first, and the cursor for
	// the next page (0 when there is none).
	QueryAudit(ctx context.Context, f AuditFilter) ([]AuditEvent, int64, error)
}

// MaintenanceStore is the change feed and housekeeping.
type MaintenanceStore interface {
	// Watch delivers changes to configs, routes and assignments until ctx
	// ends (then the channel closes). A slow reader may get ChangeResync
	// instead of individual changes; after any gap in delivery (for example a
	// reconnect) a ChangeResync is sent.
	Watch(ctx context.Context) (<-chan Change, error)
	// Cleanup deletes expired or terminal OAuth artifacts (auth requests,
	// consent tickets, codes, refresh tokens, pending state, sessions past
	// expiry + grace), rate-limit windows ended before now, and audit events
	// older than auditBefore.
	Cleanup(ctx context.Context, now, auditBefore time.Time) (CleanupCounts, error)
	// TryLeader runs fn only if no other replica holds the named
	// maintenance lock; it reports whether fn ran.
	TryLeader(ctx context.Context, name string, fn func(ctx context.Context) error) (bool, error)
}
