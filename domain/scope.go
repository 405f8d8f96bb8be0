package domain

import (
	"slices"
	"strings"
)

// Scopes of the first-level authorization server (DESIGN §4). Nothing else
// is ever granted.
const (
	ScopeMCPAccess = "mcp:access" // use of one exact route
	ScopeProfile   = "profile"    // userinfo claims
)

// SupportedScopes is what the AS metadata advertises.
var SupportedScopes = []string{ScopeMCPAccess, ScopeProfile}

// ParseScope splits a space-separated scope string (RFC 6749 §3.3),
// dropping empty entries and duplicates, keeping order.
func ParseScope(s string) []string {
	var out []string
	for _, f := range strings.Fields(s) {
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// KnownScopes reports whether every scope is one we support.
func KnownScopes(scopes []string) bool {
	for _, s := range scopes {
		if !slices.Contains(SupportedScopes, s) {
			return false
		}
	}
	return true
}

// HasScope reports whether scopes contains want.
func HasScope(scopes []string, want string) bool { return slices.Contains(scopes, want) }

// JoinScope is the inverse of ParseScope.
func JoinScope(scopes []string) string { return strings.Join(scopes, " ") }
