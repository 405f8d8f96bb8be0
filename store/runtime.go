package store

import "time"

// RuntimeQuery is everything the runtime recheck (DESIGN §6 step 6) proves
// against the database: the route facts Envoy passed in context_extensions
// and the facts a verified gateway JWT carries.
type RuntimeQuery struct {
	// From the route (Envoy context_extensions, consistent with the path).
	ConfigID   string
	RouteKey   string
	OwnerScope OwnerScope
	OwnerID    string
	// From the verified token.
	UserID           string
	InstanceID       string
	ConfigVersion    int64
	ExecutionContext string // "personal" or "org:{org_id}"
}

// Reason is why a runtime recheck denied. It becomes an audit/metric label
// and a log field, never client-visible detail.
type Reason string

const (
	ReasonOK                Reason = ""
	ReasonRouteNotFound     Reason = "route_not_found"    // no such config, or owner tuple differs
	ReasonRouteKeyMismatch  Reason = "route_key_mismatch" // rotated
	ReasonConfigDisabled    Reason = "config_disabled"
	ReasonConfigDeleted     Reason = "config_deleted"
	ReasonVersionMismatch   Reason = "config_version_mismatch"
	ReasonContextMismatch   Reason = "context_mismatch"
	ReasonUserNotFound      Reason = "user_not_found"
	ReasonUserBlocked       Reason = "user_blocked"
	ReasonUserProvisional   Reason = "user_provisional"
	ReasonUserDeleted       Reason = "user_deleted"
	ReasonNotOwner          Reason = "not_owner" // personal config of someone else
	ReasonNotMember         Reason = "not_member"
	ReasonNotAssigned       Reason = "not_assigned"
	ReasonInstanceNotFound  Reason = "instance_not_found"
	ReasonInstanceMismatch  Reason = "instance_mismatch" // belongs to another user/config/owner
	ReasonInstanceNotActive Reason = "instance_not_active"
	ReasonGrantMissing      Reason = "grant_missing"
)

// RuntimeConfig is the part of a config the runtime needs to build the
// upstream request.
type RuntimeConfig struct {
	ID                string
	AuthMode          AuthMode
	Version           int64
	PathPassthrough   bool
	RemoteURL         string
	StaticHeaders     []byte // ciphertext
	StaticHeaderNames []string
	AuxHeaders        map[string]string
}

// RuntimeState is the answer of ResolveRuntime. Reason is ReasonOK when every
// rule held; otherwise the first failing rule, in the order listed on
// Store.ResolveRuntime.
type RuntimeState struct {
	Reason       Reason
	Config       RuntimeConfig
	InstanceID   string
	GrantVersion int64
	// Grant is set for OAuth auth modes when the instance has a grant.
	Grant *Grant
	// Checked is the database time at which the facts were read.
	Checked time.Time
}

// OK reports whether the recheck passed.
func (s RuntimeState) OK() bool { return s.Reason == ReasonOK }

// ExecutionContext returns the execution context string for an owner:
// "personal" for user scope, "org:{org_id}" for org scope.
func ExecutionContext(scope OwnerScope, ownerID string) string {
	if scope == ScopeOrg {
		return "org:" + ownerID
	}
	return "personal"
}
