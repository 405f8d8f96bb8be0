package oauthserver

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"mcpgw/domain"
	"mcpgw/store"
)

// Registration limits. They keep stored metadata within the store's caps
// and keep the consent page readable.
const (
	maxRegistrationBody = 64 << 10
	maxRedirectURIs     = 20
	maxURILen           = 2048
	maxClientNameLen    = 200
)

// clientMetadata is the client metadata we read (RFC 7591 §2, OpenID
// Connect Registration §2 for application_type). Unknown members are
// ignored, as RFC 7591 §2 requires.
type clientMetadata struct {
	ClientID                string   `json:"client_id,omitempty"`
	ClientSecret            string   `json:"client_secret,omitempty"`
	RedirectURIs            []string `json:"redirect_uris"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method,omitempty"`
	GrantTypes              []string `json:"grant_types,omitempty"`
	ResponseTypes           []string `json:"response_types,omitempty"`
	ClientName              string   `json:"client_name,omitempty"`
	ClientURI               string   `json:"client_uri,omitempty"`
	LogoURI                 string   `json:"logo_uri,omitempty"`
	Scope                   string   `json:"scope,omitempty"`
	ApplicationType         string   `json:"application_type,omitempty"`
	SoftwareID              string   `json:"software_id,omitempty"`
	SoftwareVersion         string   `json:"software_version,omitempty"`
}

// storedMetadata is the normalized, secret-free metadata we keep and echo.
type storedMetadata struct {
	RedirectURIs            []string `json:"redirect_uris"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	ClientName              string   `json:"client_name,omitempty"`
	ClientURI               string   `json:"client_uri,omitempty"`
	LogoURI                 string   `json:"logo_uri,omitempty"`
	Scope                   string   `json:"scope"`
	ApplicationType         string   `json:"application_type"`
	SoftwareID              string   `json:"software_id,omitempty"`
	SoftwareVersion         string   `json:"software_version,omitempty"`
}

var (
	errRedirect = func(desc string) *oauthError {
		return oerr(http.StatusBadRequest, ErrInvalidRedirectURI, desc)
	}
	errMetadata = func(desc string) *oauthError {
		return oerr(http.StatusBadRequest, ErrInvalidClientMetadata, desc)
	}
)

// normalize validates m and fills defaults (RFC 7591 §2: grant_types
// defaults to authorization_code, response_types to code, the auth method
// to client_secret_basic). cimd applies the Client ID Metadata Document
// rules: no shared secrets, so the auth method must be none.
func (m *clientMetadata) normalize(cimd bool) (storedMetadata, *oauthError) {
	var out storedMetadata
	if len(m.RedirectURIs) == 0 {
		return out, errRedirect("at least one redirect_uri is required")
	}
	if len(m.RedirectURIs) > maxRedirectURIs {
		return out, errRedirect("too many redirect_uris")
	}
	allLoopback, anyLoopback := true, false
	for _, ru := range m.RedirectURIs {
		loop, e := validateRedirectURI(ru)
		if e != nil {
			return out, e
		}
		allLoopback = allLoopback && loop
		anyLoopback = anyLoopback || loop
	}
	out.RedirectURIs = slices.Clone(m.RedirectURIs)

	// application_type (OpenID Connect Registration §2, required to be
	// correct by the MCP 2026-07-28 DCR profile): web clients redirect to
	// https hosts that are not loopback; native clients to loopback http or
	// https. An omitted type is inferred from the redirect URIs, never
	// widened.
	switch m.ApplicationType {
	case "":
		switch {
		case allLoopback:
			out.ApplicationType = appNative
		case !anyLoopback:
			out.ApplicationType = appWeb
		default:
			return out, errMetadata("application_type is required when loopback and non-loopback redirect_uris are mixed")
		}
	case appWeb:
		if anyLoopback {
			return out, errRedirect("a web client must not use loopback redirect_uris")
		}
		out.ApplicationType = appWeb
	case appNative:
		out.ApplicationType = appNative
	default:
		return out, errMetadata("unsupported application_type")
	}

	out.GrantTypes = m.GrantTypes
	if len(out.GrantTypes) == 0 {
		out.GrantTypes = []string{grantAuthorizationCode}
	}
	for _, g := range out.GrantTypes {
		if !slices.Contains(supportedGrantTypes, g) {
			return out, errMetadata("unsupported grant_type")
		}
	}
	if !slices.Contains(out.GrantTypes, grantAuthorizationCode) {
		return out, errMetadata("grant_types must include authorization_code")
	}
	out.GrantTypes = dedupe(out.GrantTypes)

	out.ResponseTypes = m.ResponseTypes
	if len(out.ResponseTypes) == 0 {
		out.ResponseTypes = []string{respCode}
	}
	for _, rt := range out.ResponseTypes {
		if rt != respCode {
			return out, errMetadata("unsupported response_type")
		}
	}
	out.ResponseTypes = []string{respCode}

	out.TokenEndpointAuthMethod = m.TokenEndpointAuthMethod
	if cimd {
		// Client ID Metadata Documents are public: a document cannot carry
		// a shared secret, so only "none" is possible.
		if out.TokenEndpointAuthMethod == "" {
			out.TokenEndpointAuthMethod = authNone
		}
		if out.TokenEndpointAuthMethod != authNone || m.ClientSecret != "" {
			return out, errMetadata("a client ID metadata document must use token_endpoint_auth_method none")
		}
	} else if out.TokenEndpointAuthMethod == "" {
		out.TokenEndpointAuthMethod = authBasic
	}
	if !slices.Contains(supportedAuthMethods, out.TokenEndpointAuthMethod) {
		return out, errMetadata("unsupported token_endpoint_auth_method")
	}

	// Scopes (DESIGN §4): mcp:access is required and nothing unknown is
	// accepted; an omitted scope registers mcp:access (RFC 7591 §2 lets the
	// server choose the default), which is not a widening of a declared set.
	scopes := domain.ParseScope(m.Scope)
	if m.Scope == "" {
		scopes = []string{domain.ScopeMCPAccess}
	}
	if !domain.KnownScopes(scopes) {
		return out, errMetadata("unsupported scope")
	}
	if !domain.HasScope(scopes, domain.ScopeMCPAccess) {
		return out, errMetadata("scope must include mcp:access")
	}
	out.Scope = domain.JoinScope(scopes)

	if len(m.ClientName) > maxClientNameLen || !printable(m.ClientName) {
		return out, errMetadata("invalid client_name")
	}
	out.ClientName = m.ClientName
	for _, u := range []string{m.ClientURI, m.LogoURI} {
		if u == "" {
			continue
		}
		pu, err := url.Parse(u)
		if err != nil || pu.Scheme != "https" || pu.Host == "" || len(u) > maxURILen {
			return out, errMetadata("client_uri and logo_uri must be https URLs")
		}
	}
	out.ClientURI, out.LogoURI = m.ClientURI, m.LogoURI
	if len(m.SoftwareID) > maxClientNameLen || len(m.SoftwareVersion) > maxClientNameLen ||
		!printable(m.SoftwareID) || !printable(m.SoftwareVersion) {
		return out, errMetadata("invalid software_id or software_version")
	}
	out.SoftwareID, out.SoftwareVersion = m.SoftwareID, m.SoftwareVersion
	return out, nil
}

// validateRedirectURI enforces DESIGN §4 and RFC 9700 §2.1: an absolute
// https URL, or http on a loopback host (RFC 8252 §7.3); no fragment
// (RFC 6749 §3.1.2), no userinfo. It reports whether the host is loopback.
func validateRedirectURI(raw string) (loopback bool, e *oauthError) {
	if raw == "" || len(raw) > maxURILen {
		return false, errRedirect("invalid redirect_uri")
	}
	if strings.Contains(raw, "#") {
		return false, errRedirect("redirect_uri must not contain a fragment")
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.User != nil || u.Opaque != "" {
		return false, errRedirect("redirect_uri must be an absolute URL")
	}
	if !printable(raw) || !validHost(u) {
		return false, errRedirect("invalid redirect_uri")
	}
	loopback = isLoopbackHost(u.Hostname())
	switch u.Scheme {
	case "https":
		return loopback, nil
	case "http":
		if loopback {
			return true, nil
		}
		return false, errRedirect("redirect_uri must use https (http only on a loopback host)")
	default:
		return false, errRedirect("redirect_uri must use https (http only on a loopback host)")
	}
}

// validHost accepts a DNS name (letters, digits, '-', '.') or an IP
// literal, with an optional numeric port: a host that could carry quotes
// or other syntax into the consent page's CSP is refused.
func validHost(u *url.URL) bool {
	h := u.Hostname()
	if h == "" {
		return false
	}
	if p := u.Port(); p != "" {
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return false
			}
		}
	}
	if strings.HasPrefix(u.Host, "[") {
		return net.ParseIP(h) != nil
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// isLoopbackHost: localhost or a loopback IP literal.
func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

func dedupe(in []string) []string {
	var out []string
	for _, v := range in {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// client is a first-level client: a registered one (store) or one named
// by a Client ID Metadata Document.
type client struct {
	store.OAuthClient
	CIMD bool
}

func (c *client) allowsGrant(g string) bool { return slices.Contains(c.GrantTypes, g) }

// lookupClient resolves a client_id. https URLs are Client ID Metadata
// Documents (fetched, validated, cached); everything else is looked up in
// the store. The returned error is an invalid_client-style answer whose
// caller decides where it goes (page or JSON).
func (s *Server) lookupClient(ctx context.Context, id string) (*client, *oauthError) {
	if id == "" || len(id) > maxURILen || !printable(id) {
		return nil, oerr(http.StatusBadRequest, ErrInvalidClient, "unknown client").withReason("client_id_invalid")
	}
	if strings.HasPrefix(id, "https://") {
		c, err := s.cimd.get(ctx, id)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	oc, err := s.st.GetClient(ctx, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
			return nil, oerr(http.StatusBadRequest, ErrInvalidClient, "unknown client").withReason("client_unknown")
		}
		return nil, s.internal(ctx, "get client", err)
	}
	return &client{OAuthClient: oc}, nil
}

func metadataToClient(id string, md storedMetadata) store.OAuthClient {
	raw, _ := json.Marshal(md)
	return store.OAuthClient{
		ID:                      id,
		RedirectURIs:            md.RedirectURIs,
		GrantTypes:              md.GrantTypes,
		ResponseTypes:           md.ResponseTypes,
		TokenEndpointAuthMethod: md.TokenEndpointAuthMethod,
		Scope:                   md.Scope,
		ClientName:              md.ClientName,
		ClientURI:               md.ClientURI,
		LogoURI:                 md.LogoURI,
		ApplicationType:         md.ApplicationType,
		Metadata:                raw,
	}
}

func clientToMetadata(c store.OAuthClient) storedMetadata {
	var md storedMetadata
	if len(c.Metadata) > 0 {
		_ = json.Unmarshal(c.Metadata, &md)
	}
	md.RedirectURIs = c.RedirectURIs
	md.GrantTypes = c.GrantTypes
	md.ResponseTypes = c.ResponseTypes
	md.TokenEndpointAuthMethod = c.TokenEndpointAuthMethod
	md.Scope = c.Scope
	md.ClientName = c.ClientName
	md.ClientURI = c.ClientURI
	md.LogoURI = c.LogoURI
	md.ApplicationType = c.ApplicationType
	return md
}
