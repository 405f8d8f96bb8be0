// Package domain holds what more than one mcpgw server needs: route paths and
// canonical resource URLs, gateway JWT claims, scopes and execution contexts.
// Subpackages hold the public-address policy (domain/addrpolicy), the secret
// key ring and one-time-token hashing (domain/secrets) and upstream header
// rules (domain/headers).
package domain

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/url"
	"strings"

	"mcpgw/store"
)

// RoutePrefix is the path prefix of every connect route.
const RoutePrefix = "/mcp-connect/"

// RouteKeyBytes is the route key's randomness: 24 bytes = 192 bits, encoded
// as 32 base64url characters (DESIGN §2 asks for at least 128 bits).
const RouteKeyBytes = 24

// NewRouteKey returns a fresh random route key (base64url, no padding).
func NewRouteKey() string {
	b := make([]byte, RouteKeyBytes)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// ValidRouteKey reports whether k looks like a route key we issue: base64url
// without padding, at least 22 characters (128 bits) and at most 64.
func ValidRouteKey(k string) bool {
	if len(k) < 22 || len(k) > 64 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// RouteRef names one route: the tuple in the route path.
type RouteRef struct {
	Scope    store.OwnerScope
	OwnerID  string
	ConfigID string
	Key      string
}

// Path returns the route path, e.g. /mcp-connect/user/{user}/{config}/{key}.
func (r RouteRef) Path() string {
	return RoutePrefix + string(r.Scope) + "/" + r.OwnerID + "/" + r.ConfigID + "/" + r.Key
}

// URL returns the canonical resource URL: publicBase (no trailing slash) +
// Path(). It is the OAuth resource and the JWT aud.
func (r RouteRef) URL(publicBase string) string {
	return strings.TrimRight(publicBase, "/") + r.Path()
}

// MCPID returns the JWT mcp_id claim: {owner_scope}:{owner_id}:{config_id}:{route_key}.
func (r RouteRef) MCPID() string {
	return string(r.Scope) + ":" + r.OwnerID + ":" + r.ConfigID + ":" + r.Key
}

// ExecutionContext returns "personal" or "org:{owner_id}".
func (r RouteRef) ExecutionContext() string { return store.ExecutionContext(r.Scope, r.OwnerID) }

// ErrNotRoute is returned when a path or URL is not a well-formed route.
var ErrNotRoute = errors.New("not a connect route")

// ParseRoutePath parses a route root path (exactly the five segments, no
// trailing slash) and returns its tuple; rest is any remainder after the
// route root ("" for the root itself, otherwise starting with "/"). It does
// not decode percent-escapes: a route path is plain ASCII.
func ParseRoutePath(p string) (ref RouteRef, rest string, err error) {
	if !strings.HasPrefix(p, RoutePrefix) {
		return RouteRef{}, "", ErrNotRoute
	}
	// Cut rather than SplitN: this runs on every Check, and every result
	// (rest included) is a substring of p, so nothing is allocated.
	s := p[len(RoutePrefix):]
	var scope string
	var ok1, ok2, ok3 bool
	scope, s, ok1 = strings.Cut(s, "/")
	ref.OwnerID, s, ok2 = strings.Cut(s, "/")
	ref.ConfigID, s, ok3 = strings.Cut(s, "/")
	if !ok1 || !ok2 || !ok3 {
		return RouteRef{}, "", ErrNotRoute
	}
	ref.Scope = store.OwnerScope(scope)
	ref.Key, _, _ = strings.Cut(s, "/")
	rest = s[len(ref.Key):] // "" or "/..."
	if !ref.Scope.Valid() || !store.ValidID(ref.OwnerID) || !store.ValidID(ref.ConfigID) || !ValidRouteKey(ref.Key) {
		return RouteRef{}, "", ErrNotRoute
	}
	return ref, rest, nil
}

// ParseResourceURL parses a canonical resource URL against publicBase and
// returns its route. The URL must be exactly publicBase + route root path: no
// query, fragment, userinfo, trailing slash or descendant path.
func ParseResourceURL(publicBase, resource string) (RouteRef, error) {
	base := strings.TrimRight(publicBase, "/")
	if !strings.HasPrefix(resource, base+RoutePrefix) {
		return RouteRef{}, ErrNotRoute
	}
	u, err := url.Parse(resource)
	if err != nil || u.RawQuery != "" || u.Fragment != "" || u.User != nil || u.RawPath != "" {
		return RouteRef{}, ErrNotRoute
	}
	ref, rest, err := ParseRoutePath(resource[len(base):])
	if err != nil || rest != "" {
		return RouteRef{}, ErrNotRoute
	}
	return ref, nil
}

func storeScope(s string) store.OwnerScope { return store.OwnerScope(s) }

// maxPathDecodes is how many rounds of percent-decoding HasDotSegment looks
// through. Nobody encodes a real path that many times over.
const maxPathDecodes = 4

// HasDotSegment reports whether the escaped URL path p holds a dot segment
// ("." or "..", RFC 3986 §3.3 and §5.2.4) in any spelling that a server on
// the way may turn into one: literal; percent-encoded dots in either case,
// whole or mixed ("%2e%2e", ".%2E", "%2e.", "%2E"); next to an encoded
// slash or backslash ("..%2f", "%5c.."); with path parameters ("..;x",
// which Tomcat and Envoy read as ".."); or encoded again ("%252e%252e").
// Every round of decoding is checked, and a path that still decodes to
// something new after maxPathDecodes rounds counts as one: fail closed.
//
// A remote URL's path becomes Envoy's rewrite target (DESIGN §8), so a dot
// segment in it could reach past the upstream base path.
func HasDotSegment(p string) bool {
	for range maxPathDecodes + 1 {
		if hasPlainDotSegment(p) {
			return true
		}
		d := decodePercent(p)
		if d == p {
			return false
		}
		p = d
	}
	return true
}

// hasPlainDotSegment splits p at '/' and '\\' (which many servers treat as
// a separator) and looks for "." or ".." before any ";" parameters.
func hasPlainDotSegment(p string) bool {
	for _, seg := range strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == '\\' }) {
		seg, _, _ = strings.Cut(seg, ";")
		if seg == "." || seg == ".." {
			return true
		}
		if dotLike(seg) {
			return true
		}
	}
	return false
}

// dotAliases are byte sequences some servers have read as '.': overlong
// UTF-8 encodings of it, and the fullwidth and one-dot-leader characters
// that Unicode normalization (NFKC) folds into it.
var dotAliases = strings.NewReplacer("\xc0\xae", ".", "\xe0\x80\xae", ".", "\uff0e", ".", "\u2024", ".")

// dotLike reports a segment that is not literally "." or ".." but that a
// server may still resolve as one: after folding dot aliases it is only
// dots and spaces (Windows and IIS drop trailing dots and spaces, so
// "..%20" and "..." are ".."), or it carries a control byte (a NUL can
// truncate "..%00x" to ".."). None of these is a sensible name in an
// upstream path, so all are refused.
func dotLike(seg string) bool {
	for i := 0; i < len(seg); i++ {
		if seg[i] < 0x20 || seg[i] == 0x7f {
			return true
		}
	}
	seg = dotAliases.Replace(seg)
	if !strings.Contains(seg, ".") {
		return false
	}
	return strings.Trim(seg, ". ") == ""
}

// decodePercent decodes every valid %XX escape of p once and leaves a '%'
// that starts no valid escape as it is (a literal percent cannot become a
// dot or a separator).
func decodePercent(p string) string {
	if strings.IndexByte(p, '%') < 0 {
		return p
	}
	out := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) && fromHex(p[i+1]) >= 0 && fromHex(p[i+2]) >= 0 {
			out = append(out, byte(fromHex(p[i+1])<<4|fromHex(p[i+2])))
			i += 2
			continue
		}
		out = append(out, p[i])
	}
	return string(out)
}

func fromHex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
