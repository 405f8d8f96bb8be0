package envoystandin

import (
	"errors"
	"strings"
)

var errBadPath = errors.New("invalid request path")

// splitPathQuery splits an origin-form :path into the path and the query
// (including the leading '?'). Envoy matches and normalizes the path part
// only; the query string is carried along untouched.
func splitPathQuery(p string) (path, query string) {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		return p[:i], p[i:]
	}
	return p, ""
}

// hasEscapedSlash reports %2F, %2f, %5C or %5c in the path.
//
// Envoy docs: HttpConnectionManager.path_with_escaped_slashes_action —
// "Action to take when request URL path contains escaped slash sequences
// (%2F, %2f, %5C and %5c)." REJECT_REQUEST answers 400. The check runs before
// normalize_path, on the path without the query.
func hasEscapedSlash(path string) bool {
	for i := 0; i+2 < len(path); i++ {
		if path[i] != '%' {
			continue
		}
		h := strings.ToUpper(path[i+1 : i+3])
		if h == "2F" || h == "5C" {
			return true
		}
	}
	return false
}

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func isUnreserved(c byte) bool {
	return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// mustEscape lists the bytes a canonical path carries percent-encoded: the
// characters Envoy's URL path canonicalizer (its Chromium url_canon_path
// table) escapes — controls, space, DEL, non-ASCII, and " # < > ? ^ ` { | }.
func mustEscape(c byte) bool {
	return c <= 0x20 || c >= 0x7f || strings.IndexByte("\"#<>?^`{|}", c) >= 0
}

// canonicalPath is Envoy's normalize_path transformation.
//
// Envoy docs: HttpConnectionManager.normalize_path — "Should paths be
// normalized according to RFC 3986 before any processing of requests by HTTP
// filters or routing? This affects the upstream :path header as well. ...
// Paths that fail this check ... will receive a 400." and
// PathTransformation.Operation.NormalizePathRFC3986 — "This applies
// percent-encoded normalization and path segment normalization. Fails on
// characters disallowed in URLs (e.g. NULLs)."
//
// Concretely, as Envoy's canonicalizer (a snapshot of Chromium's
// url_canon_path) does: percent-encodings of unreserved characters are
// decoded (RFC 3986 §6.2.2.2), so %2E is a dot; other valid encodings are
// copied exactly, hex case included; backslashes become slashes; characters
// that may not appear in a path are percent-encoded; NUL, raw or encoded,
// fails; "." and ".." segments are removed (§5.2.4); and an invalid "%"
// whose following characters become a valid escape once decoded ("%%32%65")
// is itself escaped as "%25", so the result never decodes further.
func canonicalPath(path string) (string, error) {
	if path == "" || path[0] != '/' {
		return "", errBadPath
	}
	// Envoy strips path parameters from dot segments first ("..;x" is
	// "..") so they still collapse (runtime
	// envoy.reloadable_features.strip_dotdot_segments_with_parameters).
	if strings.Contains(path, ".;") {
		segs := strings.Split(path, "/")
		for i, sg := range segs {
			switch {
			case strings.HasPrefix(sg, "..;"):
				segs[i] = ".."
			case strings.HasPrefix(sg, ".;"):
				segs[i] = "."
			}
		}
		path = strings.Join(segs, "/")
	}
	const hexd = "0123456789ABCDEF"
	out := make([]byte, 0, len(path)+8)
	lastInvalid := -10 // output index of the last '%' that began no valid escape
	for i := 0; i < len(path); i++ {
		c := path[i]
		switch {
		case c == 0:
			return "", errBadPath
		case c == '%' && i+2 < len(path) && isHex(path[i+1]) && isHex(path[i+2]):
			d := unhex(path[i+1])<<4 | unhex(path[i+2])
			switch {
			case d == 0:
				return "", errBadPath
			case isUnreserved(d):
				out = append(out, d)
				if lastInvalid >= len(out)-3 {
					out = fixNestedEscape(out, lastInvalid, path, i+3)
				}
			default:
				out = append(out, path[i:i+3]...)
			}
			i += 2
		case c == '%':
			lastInvalid = len(out)
			out = append(out, '%')
		case c == '\\':
			out = append(out, '/')
		case mustEscape(c):
			out = append(out, '%', hexd[c>>4], hexd[c&15])
		default:
			out = append(out, c)
		}
	}
	return removeDotSegments(string(out)), nil
}

// fixNestedEscape is Chromium's CheckForNestedEscapes: out ends with a
// just-decoded character within two characters of an invalid '%' at
// out[pct]; if that '%' now starts a valid escape, it becomes "%25".
func fixNestedEscape(out []byte, pct int, in string, next int) []byte {
	last := out[len(out)-1]
	if pct == len(out)-2 {
		// "%c": the escape would be completed by the next input byte.
		if next < len(in) && in[next] < 0x80 && isHex(last) && isHex(in[next]) {
			return append(out[:pct+1], '2', '5', last)
		}
		return out
	}
	// "%Xc"
	if isHex(out[pct+1]) && isHex(last) {
		x := out[pct+1]
		return append(out[:pct+1], '2', '5', x, last)
	}
	return out
}

// removeDotSegments is RFC 3986 §5.2.4 for an absolute path: "." segments
// vanish, ".." removes the previous segment and never climbs above the root.
func removeDotSegments(p string) string {
	segs := strings.Split(p[1:], "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	return "/" + strings.Join(out, "/")
}

// mergeSlashes is Envoy's merge_slashes.
//
// Envoy docs: HttpConnectionManager.merge_slashes — "Determines if adjacent
// slashes in the path are merged into one before any processing of requests
// by HTTP filters or routing. This affects the upstream :path header as well.
// Without setting this option, incoming requests with path //dir///file will
// not match against route with prefix match set to /dir."
// Envoy applies it after normalize_path.
func mergeSlashes(p string) string {
	if !strings.Contains(p, "//") {
		return p
	}
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && i > 0 && p[i-1] == '/' {
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// routeMatches reports whether a route's path matcher accepts path (without
// query).
//
// Envoy docs: RouteMatch — prefix: "the route is a prefix rule meaning that
// the prefix must match the beginning of the :path header"; path: "the
// route is an exact path rule meaning that the path must exactly match the
// :path header once the query string is removed"; path_separated_prefix:
// "the prefix must match the beginning of the :path header ... and the next
// character after the prefix must be / or the end of the path (the query is
// stripped first)"; case_sensitive defaults to true.
func (r *route) matches(path string) bool {
	v, p := r.value, path
	if !r.caseSens {
		v, p = strings.ToLower(v), strings.ToLower(p)
	}
	switch r.kind {
	case matchPath:
		return p == v
	case matchPrefix:
		return strings.HasPrefix(p, v)
	case matchPathSeparatedPrefix:
		return p == v || strings.HasPrefix(p, v+"/")
	}
	return false
}

// selectVirtualHost picks the virtual host for :authority.
//
// Envoy docs: VirtualHost.domains — "Domain search order: 1. Exact domain
// names: www.foo.com. 2. Suffix domain wildcards: *.foo.com or *-bar.foo.com.
// 3. Prefix domain wildcards: foo.* or foo-*. 4. Special wildcard * matching
// any domain." Longest wildcard wins; matching is case-insensitive; the
// port is part of the host unless RouteConfiguration
// ignore_port_in_host_matching is set (the stand-in refuses that field).
func (rt *routeTable) selectVirtualHost(host string) *virtualHost {
	return rt.findHost(strings.ToLower(host))
}

func (rt *routeTable) findHost(host string) *virtualHost {
	var bestSuffix, bestPrefix, star *virtualHost
	bestSuffixLen, bestPrefixLen := -1, -1
	for _, vh := range rt.vhosts {
		for _, d := range vh.domains {
			switch {
			case d == "*":
				star = vh
			case strings.HasPrefix(d, "*"):
				if s := d[1:]; len(host) > len(s) && strings.HasSuffix(host, s) && len(s) > bestSuffixLen {
					bestSuffix, bestSuffixLen = vh, len(s)
				}
			case strings.HasSuffix(d, "*"):
				if p := d[:len(d)-1]; len(host) > len(p) && strings.HasPrefix(host, p) && len(p) > bestPrefixLen {
					bestPrefix, bestPrefixLen = vh, len(p)
				}
			case d == host:
				return vh
			}
		}
	}
	switch {
	case bestSuffix != nil:
		return bestSuffix
	case bestPrefix != nil:
		return bestPrefix
	}
	return star
}

// match finds the first route of the selected virtual host matching path.
// Envoy docs: VirtualHost.routes — "The list of routes that will be matched,
// in order, for incoming requests. The first route that matches will be
// used."
func (rt *routeTable) match(host, path string) (*virtualHost, *route) {
	vh := rt.selectVirtualHost(host)
	if vh == nil {
		return nil, nil
	}
	for _, r := range vh.routes {
		if r.matches(path) {
			return vh, r
		}
	}
	return vh, nil
}

// rewritePath applies the route's path rewrite to the normalized path
// (without query); the query string is re-attached unchanged by the caller.
//
// Envoy docs: RouteAction.prefix_rewrite — "Indicates that during
// forwarding, the matched prefix (or path) should be swapped with this
// value." RouteAction.regex_rewrite — "the path portion of the URL (not the
// query string) is rewritten ... all matches are replaced with the
// substitution".
func (r *route) rewritePath(path string) string {
	a := r.action
	switch {
	case a.hasPrefixRewrite:
		n := len(r.value)
		if n > len(path) {
			n = len(path)
		}
		return a.prefixRewrite + path[n:]
	case a.regex != nil:
		return a.regex.ReplaceAllString(path, a.regexSubst)
	}
	return path
}
