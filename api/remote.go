package api

import (
	"context"
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"mcpgw/domain"
	"mcpgw/domain/addrpolicy"
	"mcpgw/store"
)

// resolveTimeout bounds the DNS lookups of one remote URL check.
const resolveTimeout = 5 * time.Second

// checkRemoteURL applies the upstream destination policy (DESIGN §6) when
// a config is saved: an absolute https URL without userinfo, query or
// fragment, whose host is a DNS name or a canonical IP literal and whose A
// and AAAA answers are all public. Plain http, localhost and non-public
// addresses pass only through the explicit dev/test allowlist. xds checks
// the addresses again at every re-resolution; this check makes a bad URL
// a clear 400 instead of a config that silently never routes.
//
// Messages may name the host (the caller typed it) but never an address it
// resolved to, and never userinfo.
func (h *Handler) checkRemoteURL(ctx context.Context, raw string) error {
	if raw == "" {
		return badRequest("remote_url is required")
	}
	if len(raw) > store.MaxURLLen {
		return badRequest("remote_url is longer than %d characters", store.MaxURLLen)
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] <= ' ' || raw[i] >= 0x7f {
			return badRequest("remote_url contains whitespace, control or non-ASCII characters")
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || !u.IsAbs() {
		return badRequest("remote_url must be an absolute https URL")
	}
	if u.User != nil {
		return badRequest("remote_url must not contain userinfo: put credentials in static headers")
	}
	if u.RawQuery != "" || u.ForceQuery {
		return badRequest("remote_url must not contain a query")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return badRequest("remote_url must not contain a fragment")
	}
	// The path becomes Envoy's rewrite target (xds): dot segments, empty
	// segments and backslashes could move it somewhere else upstream.
	if p := u.EscapedPath(); strings.Contains(p, "//") || strings.Contains(p, "\\") {
		return badRequest("remote_url path must not contain empty segments or backslashes")
	}
	if domain.HasDotSegment(u.EscapedPath()) {
		return badRequest("remote_url path must not contain dot segments, plain or percent-encoded")
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "https" && scheme != "http" {
		return badRequest("remote_url must use https")
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return badRequest("remote_url has no host")
	}
	if strings.ContainsAny(host, "%\\ ") {
		return badRequest("remote_url has a malformed host")
	}
	allow := h.o.Allowlist
	if lit, ok := addrpolicy.ParseHostLiteral(host); ok {
		// Legacy spellings (2130706433, 0177.0.0.1, 0x7f.1, 127.1) are
		// refused outright, even when they would name a public address:
		// parsers disagree about them, and disagreement is where SSRF
		// bypasses live.
		if canon, err := netip.ParseAddr(strings.Trim(host, "[]")); err != nil || canon != lit {
			return badRequest("remote_url host is an IP address in a non-standard (decimal, octal or hex) form")
		}
	}
	if (host == "localhost" || strings.HasSuffix(host, ".localhost") || strings.HasSuffix(host, ".localhost.")) && !allow.AllowsHost(host) {
		return badRequest("remote_url must not point at localhost")
	}
	if p := u.Port(); p != "" {
		if n, ok := parsePort(p); !ok || n == 0 {
			return badRequest("remote_url has an invalid port")
		}
	}
	rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	addrs, err := addrpolicy.ResolvePublic(rctx, h.o.Resolver, host, allow)
	if err != nil {
		var np *addrpolicy.NotPublicError
		switch {
		case errors.As(err, &np):
			return badRequest("remote_url host %q resolves to a non-public address (%s)", host, np.Reason)
		case errors.Is(err, addrpolicy.ErrResolve):
			return badRequest("remote_url host %q could not be resolved to a valid address", host)
		}
		return badRequest("remote_url host %q could not be checked", host)
	}
	if scheme == "http" {
		ok := !allow.Empty() && allow.AllowsHost(host)
		if !ok && !allow.Empty() {
			ok = true
			for _, a := range addrs {
				if !allow.AllowsAddr(a) {
					ok = false
				}
			}
		}
		if !ok {
			return badRequest("remote_url must use https")
		}
	}
	return nil
}

func parsePort(s string) (int, bool) {
	if len(s) > 5 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, n <= 65535
}

// checkProviderURL checks an operator-supplied provider endpoint: https
// (http only with a dev/test allowlist), no userinfo or fragment. The
// provider client fetches it through the same SSRF-safe dialer at use.
func (h *Handler) checkProviderURL(field, raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return badRequest("provider.%s must be an absolute https URL", field)
	}
	if u.User != nil || u.Fragment != "" {
		return badRequest("provider.%s must not contain userinfo or a fragment", field)
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && !h.o.Allowlist.Empty()) {
		return badRequest("provider.%s must use https", field)
	}
	return nil
}
