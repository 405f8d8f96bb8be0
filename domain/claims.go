package domain

import (
	"github.com/golang-jwt/jwt/v5"
)

// GatewayTokenLifetime is the lifetime of a gateway JWT (DESIGN §2).
const GatewayTokenLifetimeSeconds = 15 * 60

// Claims are the gateway JWT claims (DESIGN §4). oauthserver mints them,
// extauthz verifies them. Registered claims (iss, sub, aud, exp, iat, jti)
// come from jwt.RegisteredClaims; aud is the canonical route URL.
type Claims struct {
	jwt.RegisteredClaims
	Scope            string `json:"scope"`
	ClientID         string `json:"client_id"`
	MCPID            string `json:"mcp_id"`
	OwnerScope       string `json:"owner_scope"`
	OwnerID          string `json:"owner_id"`
	ConfigID         string `json:"config_id"`
	RouteKey         string `json:"route_key"`
	InstanceID       string `json:"instance_id"`
	ExecutionContext string `json:"execution_context"`
	ConfigVersion    int64  `json:"config_version"`
}

// Route returns the route the claims name.
func (c *Claims) Route() RouteRef {
	return RouteRef{Scope: storeScope(c.OwnerScope), OwnerID: c.OwnerID, ConfigID: c.ConfigID, Key: c.RouteKey}
}

// Consistent reports whether the claims' mcp_id, owner tuple, route key and
// execution context agree with each other and with ref (DESIGN §6 step 4).
func (c *Claims) Consistent(ref RouteRef) bool {
	r := c.Route()
	return r == ref && c.MCPID == ref.MCPID() && c.ExecutionContext == ref.ExecutionContext()
}
