package xds

import (
	"errors"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"mcpgw/domain"
)

// upstream is the parsed destination of one config's RemoteURL.
type upstream struct {
	TLS      bool
	Host     string // lower-case host name or IP literal, no brackets
	Port     uint32
	HostPort string // Host header value: host[:port] as in the URL
	BasePath string // path to rewrite the route to, never empty
}

// errBadUpstream is returned for remote URLs xds will not route to. The
// message never contains the URL (it may carry userinfo).
var errBadUpstream = errors.New("xds: unusable upstream URL")

// parseUpstream validates a config's RemoteURL. Only absolute http(s) URLs
// with a host and no userinfo, query or fragment are routable: Envoy's
// rewrite can replace a path but not add a query, and credentials in a URL
// would end up in logs. https is required unless the allowlist permits the
// host for plain http (checked later against the resolved addresses).
func parseUpstream(raw string) (upstream, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return upstream{}, errBadUpstream
	}
	var up upstream
	switch u.Scheme {
	case "https":
		up.TLS, up.Port = true, 443
	case "http":
		up.Port = 80
	default:
		return upstream{}, errBadUpstream
	}
	host := strings.ToLower(u.Hostname())
	if host == "" || strings.ContainsAny(host, "%/\\ ") {
		return upstream{}, errBadUpstream
	}
	if strings.Contains(host, ":") { // IPv6 literal
		if _, err := netip.ParseAddr(host); err != nil {
			return upstream{}, errBadUpstream
		}
	}
	if ps := u.Port(); ps != "" {
		p, err := strconv.ParseUint(ps, 10, 16)
		if err != nil || p == 0 {
			return upstream{}, errBadUpstream
		}
		up.Port = uint32(p)
	}
	up.Host = host
	up.HostPort = host
	if u.Port() != "" {
		up.HostPort = net.JoinHostPort(host, u.Port())
	} else if strings.Contains(host, ":") {
		up.HostPort = "[" + host + "]"
	}
	// EscapedPath keeps the URL's own percent-encoding; Envoy sends the
	// rewritten path as is.
	up.BasePath = u.EscapedPath()
	if up.BasePath == "" {
		up.BasePath = "/"
	}
	if strings.ContainsAny(up.BasePath, "\\") || strings.Contains(up.BasePath, "//") {
		return upstream{}, errBadUpstream
	}
	// Every spelling of a dot segment (encoded, mixed, double-encoded), not
	// just the literal ones: the API refuses them when a config is saved,
	// but rows saved before that rule, or written around the API, still
	// reach this builder (DESIGN §8: the rewrite must never climb above the
	// upstream base path). The route is left out: fail closed.
	if domain.HasDotSegment(up.BasePath) {
		return upstream{}, errBadUpstream
	}
	return up, nil
}

// hostIP reports whether the host is an IP literal.
func (u upstream) hostIP() (netip.Addr, bool) {
	a, err := netip.ParseAddr(u.Host)
	return a, err == nil
}
