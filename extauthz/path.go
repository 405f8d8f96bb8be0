package extauthz

import (
	"errors"
	"net/url"
	"strings"

	"mcpgw/domain"
)

// MaxPathLength bounds the request path (query excluded) we are willing to
// look at; Envoy's own default limit on headers is 60 KiB, routes are ~150
// bytes, and nothing legitimate needs more than this.
const MaxPathLength = 4096

// Errors of path validation (DESIGN §6 step 1). They are internal labels;
// the client only ever sees a generic 404.
var (
	errNotRoute       = errors.New("not a connect route")
	errBadDescendant  = errors.New("descendant path not allowed")
	errRouteMismatch  = errors.New("path does not match route context")
	errMissingContext = errors.New("route context missing")
)

// requestPath is a validated connect-route request path.
type requestPath struct {
	Route domain.RouteRef
	// Root is the route root path (Route.Path(), sliced from the request).
	Root string
	// Rest is the validated descendant after the route root: "" for the
	// root itself, otherwise "/seg/seg...". Only allowed when the config has
	// path_passthrough (checked once the config is loaded).
	Rest string
}

// parsePath splits Envoy's :path (which includes the query) and validates
// the path part: a well-formed route root, optionally followed by a
// descendant that passes validDescendant. The query is checked in step 3
// (queryHasAccessToken).
func parsePath(full string) (requestPath, error) {
	p, _, _ := strings.Cut(full, "?")
	if len(p) > MaxPathLength {
		return requestPath{}, errNotRoute
	}
	if strings.IndexByte(p, '#') >= 0 {
		return requestPath{}, errNotRoute
	}
	ref, rest, err := domain.ParseRoutePath(p)
	if err != nil {
		return requestPath{}, errNotRoute
	}
	if rest != "" && !validDescendant(rest) {
		return requestPath{}, errBadDescendant
	}
	return requestPath{Route: ref, Root: p[:len(p)-len(rest)], Rest: rest}, nil
}

// validDescendant reports whether rest ("/a/b") is safe to append to the
// upstream base path: every segment non-empty (no "//", no trailing slash),
// made only of RFC 3986 pchar bytes minus ';' (path parameters, "..;/"
// tricks) and '\', no dot segments and no segment ending in '.' (Windows and
// some servers strip trailing dots, turning "..." or ".. ." into ".."), and
// percent-escapes only for bytes that are harmless after decoding: never an
// encoded dot, slash, backslash, percent (double encoding such as %252e),
// control character or ';'. Envoy normalizes paths before ext_authz; this is
// the second, independent line.
func validDescendant(rest string) bool {
	if rest == "" || rest[0] != '/' {
		return false
	}
	for _, seg := range strings.Split(rest[1:], "/") {
		if seg == "" || seg[len(seg)-1] == '.' {
			return false
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			switch {
			case c == '%':
				if i+2 >= len(seg) || !isHex(seg[i+1]) || !isHex(seg[i+2]) {
					return false
				}
				d := unhex(seg[i+1])<<4 | unhex(seg[i+2])
				if d < 0x20 || d == 0x7f || d == '.' || d == '/' || d == '\\' || d == '%' || d == ';' || d == '?' || d == '#' {
					return false
				}
				i += 2
			case isPchar(c):
			default:
				return false
			}
		}
	}
	return true
}

// isPchar: RFC 3986 §3.3 pchar without pct-encoded (handled separately) and
// without ';' (sub-delim we refuse, see validDescendant).
func isPchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,=:@", c) >= 0
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// queryHasAccessToken reports whether any query parameter is named
// access_token (compared after decoding, case-insensitively, so
// "Access%5FToken" counts too).
func queryHasAccessToken(q string) bool {
	for q != "" {
		var kv string
		kv, q, _ = strings.Cut(q, "&")
		k, _, _ := strings.Cut(kv, "=")
		if k == "" {
			continue
		}
		if strings.IndexByte(k, '%') >= 0 || strings.IndexByte(k, '+') >= 0 {
			if dk, err := url.QueryUnescape(k); err == nil {
				k = dk
			} else {
				// An undecodable name cannot be trusted to be harmless.
				return true
			}
		}
		if strings.EqualFold(strings.TrimSpace(k), "access_token") {
			return true
		}
	}
	return false
}

// routeFromContext reads the route tuple xds put in the per-route
// context_extensions (DESIGN §6) and checks it names exactly the route in
// the path: Envoy matched this request to that route, so a disagreement
// means a stale or forged route and is treated as an unknown route.
func routeFromContext(ext map[string]string, fromPath domain.RouteRef) error {
	if ext == nil {
		return errMissingContext
	}
	cid, key, scope, owner := ext["config_id"], ext["route_key"], ext["owner_scope"], ext["owner_id"]
	if cid == "" || key == "" || scope == "" || owner == "" {
		return errMissingContext
	}
	if cid != fromPath.ConfigID || key != fromPath.Key || scope != string(fromPath.Scope) || owner != fromPath.OwnerID {
		return errRouteMismatch
	}
	return nil
}
