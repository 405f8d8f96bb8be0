// Package headers holds the upstream header rules shared by extauthz (which
// enforces them on every request, DESIGN §6 step 8) and the management API
// (which validates static and auxiliary headers when a config is saved): what
// a valid header name and value are, which names are hop-by-hop or reserved
// for the transport, which look like credentials, and which client headers
// may reach the upstream at all.
//
// Every name handled here is the lower-case form; HTTP field names are
// case-insensitive (RFC 9110 §5.1) and Envoy hands ext_authz lower-case names.
package headers

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Limits on configured headers. They bound what one config can make Envoy
// add to every upstream request.
const (
	MaxHeaders     = 50
	MaxNameLength  = 128
	MaxValueLength = 8192
)

// Authorization is the one header whose ownership is exclusive: exactly one
// source (the static headers, or the provider grant) may set it (DESIGN §6
// step 8).
const Authorization = "authorization"

// ErrInvalid is matched (errors.Is) by every validation error of this
// package. Messages name the offending header name only when the name itself
// is valid, and never contain a value.
var ErrInvalid = errors.New("headers: invalid")

// Error describes one rejected header. Name is empty when the name itself
// was malformed (it is never echoed then, since it could be anything).
type Error struct {
	Kind   string // "static" or "auxiliary"
	Name   string
	Reason string
}

func (e *Error) Error() string {
	if e.Name == "" {
		return fmt.Sprintf("headers: invalid %s header: %s", e.Kind, e.Reason)
	}
	return fmt.Sprintf("headers: invalid %s header %q: %s", e.Kind, e.Name, e.Reason)
}

// Is makes every *Error match ErrInvalid.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// ValidName reports whether name is a lower-case RFC 9110 §5.1 field name (a
// token) of reasonable length. Upper case is rejected rather than folded so
// that the stored form is canonical.
func ValidName(name string) bool {
	if name == "" || len(name) > MaxNameLength {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !isTokenChar(name[i]) || ('A' <= name[i] && name[i] <= 'Z') {
			return false
		}
	}
	return true
}

// isTokenChar: tchar of RFC 9110 §5.6.2.
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// ValidValue reports whether v is a field value we are willing to inject
// (RFC 9110 §5.5): visible ASCII, spaces and tabs inside, no leading or
// trailing whitespace, no CR, LF, NUL or other control characters, and no
// obs-text (bytes ≥ 0x80), which intermediaries treat inconsistently.
func ValidValue(v string) bool {
	if len(v) > MaxValueLength {
		return false
	}
	if v != "" && (v[0] == ' ' || v[0] == '\t' || v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\t' {
			continue
		}
		if c < 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

// hopByHop are the connection-specific fields of RFC 9110 §7.6.1 plus the
// legacy ones proxies still honour. A proxy consumes them; injecting one
// would either be dropped or change the connection's framing.
var hopByHop = map[string]bool{
	"connection":          true,
	"keep-alive":          true,
	"proxy-connection":    true,
	"proxy-authenticate":  true,
	"proxy-authorization": true,
	"te":                  true,
	"trailer":             true,
	"transfer-encoding":   true,
	"upgrade":             true,
	"http2-settings":      true,
}

// IsHopByHop reports whether name is a hop-by-hop header.
func IsHopByHop(name string) bool { return hopByHop[name] }

// reserved are names a config may never set: the transport's own fields
// (framing, host, routing and tracing headers Envoy owns), and the headers of
// the MCP Streamable HTTP transport that belong to the client's session.
var reserved = map[string]bool{
	"host":                 true,
	"content-length":       true,
	"content-type":         true,
	"content-encoding":     true,
	"accept":               true,
	"accept-encoding":      true,
	"expect":               true,
	"origin":               true,
	"forwarded":            true,
	"via":                  true,
	"x-request-id":         true,
	"mcp-session-id":       true,
	"mcp-protocol-version": true,
	"mcp-method":           true,
	"mcp-name":             true,
	"last-event-id":        true,
	"user-agent":           true,
}

// reservedPrefixes: Envoy's internal headers and the forwarding family.
var reservedPrefixes = []string{"x-envoy-", "x-forwarded-", "mcp-"}

// IsReserved reports whether name may never be set by a config: pseudo
// headers, hop-by-hop headers, transport and MCP session headers, Envoy
// internal headers.
func IsReserved(name string) bool {
	if strings.HasPrefix(name, ":") || hopByHop[name] || reserved[name] {
		return true
	}
	for _, p := range reservedPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// alwaysStrip are client headers removed from every upstream request
// whatever the allowlist says (DESIGN §6 step 8): they carry the client's
// credentials for mcpgw or for some other site, never for the upstream.
var alwaysStrip = []string{"authorization", "cookie", "proxy-authorization", "x-api-key"}

// AlwaysStrip returns the fixed names that are always removed, sorted. The
// prefixed families x-auth-* and x-token-* are matched by IsAlwaysStripped.
func AlwaysStrip() []string { return append([]string(nil), alwaysStrip...) }

// IsAlwaysStripped reports whether a client header named name must be
// removed regardless of the allowlist.
func IsAlwaysStripped(name string) bool {
	switch name {
	case "authorization", "cookie", "proxy-authorization", "x-api-key":
		return true
	}
	return strings.HasPrefix(name, "x-auth-") || strings.HasPrefix(name, "x-token-")
}

// credentialWords mark a header name as credential-like. Auxiliary headers
// are non-secret and stored in plaintext, so a name that looks like it
// carries a secret is refused: it belongs in the encrypted static headers.
var credentialWords = []string{
	"auth", "token", "secret", "password", "passwd", "key", "cookie",
	"session", "credential", "signature", "bearer", "jwt", "cert",
}

// LooksLikeCredential reports whether name looks like it carries a secret.
func LooksLikeCredential(name string) bool {
	if IsAlwaysStripped(name) || name == "set-cookie" {
		return true
	}
	for _, w := range credentialWords {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// clientAllowed is the deny-by-default allowlist of client headers that may
// reach the upstream (DESIGN §6 step 8): the MCP Streamable HTTP transport
// headers (MCP 2026-07-28 adds mcp-method and mcp-name), content
// negotiation, the body's own metadata (content-type, content-encoding:
// the body streams through unchanged, so stripping its encoding would
// corrupt it), and the client's user agent. Everything else is removed.
// ClientAllowed is the same set as a switch (kept equal by a test).
var clientAllowed = map[string]bool{
	"accept":               true,
	"accept-encoding":      true,
	"content-encoding":     true,
	"content-type":         true,
	"last-event-id":        true,
	"mcp-method":           true,
	"mcp-name":             true,
	"mcp-protocol-version": true,
	"mcp-session-id":       true,
	"user-agent":           true,
}

// transport are headers Envoy needs to frame and route the request; they are
// never listed for removal. Envoy ignores removal of pseudo headers and Host
// anyway (ext_authz OkHttpResponse.headers_to_remove), and removing
// content-length or transfer-encoding would corrupt the streamed body.
// x-request-id is Envoy's own correlation id (it regenerates it at the edge).
// A switch rather than a map: this runs for every header of every request.
func IsTransport(name string) bool {
	if len(name) > 0 && name[0] == ':' {
		return true
	}
	switch name {
	case "host", "content-length", "transfer-encoding", "te", "x-request-id":
		return true
	}
	return false
}

// ClientAllowed reports whether a client header may be forwarded upstream.
func ClientAllowed(name string) bool {
	switch name {
	case "accept", "accept-encoding", "content-encoding", "content-type", "last-event-id", "mcp-method",
		"mcp-name", "mcp-protocol-version", "mcp-session-id", "user-agent":
		return true
	}
	return false
}

// ClientAllowlist returns the allowlist, sorted (for documentation and
// tests).
func ClientAllowlist() []string {
	out := make([]string, 0, len(clientAllowed))
	for k := range clientAllowed {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ValidateStatic checks a config's secret static headers (name → value):
// valid names and values, not reserved or hop-by-hop. Authorization is
// allowed here (it is the usual static credential); Proxy-Authorization is
// hop-by-hop and is not. Errors never contain a value.
func ValidateStatic(h map[string]string) error {
	if len(h) > MaxHeaders {
		return &Error{Kind: "static", Reason: fmt.Sprintf("more than %d headers", MaxHeaders)}
	}
	for _, name := range sortedKeys(h) {
		if err := checkCommon("static", name, h[name]); err != nil {
			return err
		}
	}
	return nil
}

// ValidateAux checks a config's non-secret auxiliary headers: the rules of
// ValidateStatic, plus the name must not look like a credential (it would
// be stored and shown in plaintext) and so never authorization.
func ValidateAux(h map[string]string) error {
	if len(h) > MaxHeaders {
		return &Error{Kind: "auxiliary", Reason: fmt.Sprintf("more than %d headers", MaxHeaders)}
	}
	for _, name := range sortedKeys(h) {
		if err := checkCommon("auxiliary", name, h[name]); err != nil {
			return err
		}
		if LooksLikeCredential(name) {
			return &Error{Kind: "auxiliary", Name: name, Reason: "looks like a credential; use a static header"}
		}
	}
	return nil
}

// ValidateNames checks the plaintext list of static header names kept next
// to the ciphertext (store.Config.StaticHeaderNames).
func ValidateNames(names []string) error {
	if len(names) > MaxHeaders {
		return &Error{Kind: "static", Reason: fmt.Sprintf("more than %d headers", MaxHeaders)}
	}
	for _, name := range names {
		if !ValidName(name) {
			return &Error{Kind: "static", Reason: "name is not a lower-case HTTP token"}
		}
		if IsReserved(name) {
			return &Error{Kind: "static", Name: name, Reason: "reserved or hop-by-hop"}
		}
	}
	return nil
}

// ValidateSources checks that the sources of upstream headers do not
// collide: a static or auxiliary header may not set a name the other sets,
// and when the provider grant owns authorization (providerAuth, the OAuth
// auth modes) neither may set authorization (DESIGN §6 step 8: exactly one
// source owns upstream Authorization).
func ValidateSources(providerAuth bool, staticNames []string, aux map[string]string) error {
	seen := make(map[string]bool, len(staticNames))
	for _, n := range staticNames {
		if providerAuth && n == Authorization {
			return &Error{Kind: "static", Name: n, Reason: "authorization is owned by the provider grant in OAuth modes"}
		}
		seen[n] = true
	}
	for _, n := range sortedKeys(aux) {
		if n == Authorization {
			return &Error{Kind: "auxiliary", Name: n, Reason: "authorization may only come from one credential source"}
		}
		if seen[n] {
			return &Error{Kind: "auxiliary", Name: n, Reason: "also set by a static header"}
		}
	}
	return nil
}

func checkCommon(kind, name, value string) error {
	if !ValidName(name) {
		return &Error{Kind: kind, Reason: "name is not a lower-case HTTP token"}
	}
	if IsReserved(name) {
		return &Error{Kind: kind, Name: name, Reason: "reserved or hop-by-hop"}
	}
	if !ValidValue(value) {
		return &Error{Kind: kind, Name: name, Reason: "value has control characters, non-ASCII or surrounding whitespace"}
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
