package oauthserver

import (
	"errors"
	"net/http"
	"strings"

	"mcpgw/domain"
	"mcpgw/store"
)

// Grant types, response types and client authentication methods we
// implement; metadata advertises exactly these (DESIGN §4).
const (
	grantAuthorizationCode = "authorization_code"
	grantRefreshToken      = "refresh_token"

	authNone  = "none"
	authBasic = "client_secret_basic"
	authPost  = "client_secret_post"
	respCode  = "code"
	pkceS256  = "S256"
	appNative = "native"
	appWeb    = "web"
)

var (
	supportedGrantTypes  = []string{grantAuthorizationCode, grantRefreshToken}
	supportedAuthMethods = []string{authNone, authBasic, authPost}
)

// asMetadata is the RFC 8414 §2 document.
type asMetadata struct {
	Issuer                                     string   `json:"issuer"`
	AuthorizationEndpoint                      string   `json:"authorization_endpoint"`
	TokenEndpoint                              string   `json:"token_endpoint"`
	RegistrationEndpoint                       string   `json:"registration_endpoint"`
	RevocationEndpoint                         string   `json:"revocation_endpoint"`
	UserinfoEndpoint                           string   `json:"userinfo_endpoint"`
	JWKSURI                                    string   `json:"jwks_uri"`
	ScopesSupported                            []string `json:"scopes_supported"`
	ResponseTypesSupported                     []string `json:"response_types_supported"`
	ResponseModesSupported                     []string `json:"response_modes_supported"`
	GrantTypesSupported                        []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported          []string `json:"token_endpoint_auth_methods_supported"`
	RevocationEndpointAuthMethodsSupported     []string `json:"revocation_endpoint_auth_methods_supported"`
	CodeChallengeMethodsSupported              []string `json:"code_challenge_methods_supported"`
	ClientIDMetadataDocumentSupported          bool     `json:"client_id_metadata_document_supported"`
	AuthorizationResponseIssParameterSupported bool     `json:"authorization_response_iss_parameter_supported"`
}

func (s *Server) asMetadata() asMetadata {
	return asMetadata{
		Issuer:                                     s.issuer,
		AuthorizationEndpoint:                      s.endpoint("/oauth/authorize"),
		TokenEndpoint:                              s.endpoint("/oauth/token"),
		RegistrationEndpoint:                       s.endpoint("/oauth/register"),
		RevocationEndpoint:                         s.endpoint("/oauth/revoke"),
		UserinfoEndpoint:                           s.endpoint("/oauth/userinfo"),
		JWKSURI:                                    s.endpoint("/oauth/jwks.json"),
		ScopesSupported:                            domain.SupportedScopes,
		ResponseTypesSupported:                     []string{respCode},
		ResponseModesSupported:                     []string{"query"},
		GrantTypesSupported:                        supportedGrantTypes,
		TokenEndpointAuthMethodsSupported:          supportedAuthMethods,
		RevocationEndpointAuthMethodsSupported:     supportedAuthMethods,
		CodeChallengeMethodsSupported:              []string{pkceS256},
		ClientIDMetadataDocumentSupported:          true,
		AuthorizationResponseIssParameterSupported: true,
	}
}

// handleASMetadata serves RFC 8414 metadata at the well-known URI, its
// path-inserted form when the issuer has a path (RFC 8414 §3.1), and the
// OpenID discovery URIs with the same content for clients that try those
// first (MCP authorization-server discovery).
func (s *Server) handleASMetadata(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.asMetadata())
}

// prm is the RFC 9728 §2 protected-resource metadata document.
type prm struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	ScopesSupported        []string `json:"scopes_supported"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
}

// handleGenericPRM describes {base}/mcp-connect as a whole, for clients
// that probe the root (RFC 9728 §3).
func (s *Server) handleGenericPRM(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, prm{
		Resource:               s.publicBase + strings.TrimSuffix(domain.RoutePrefix, "/"),
		AuthorizationServers:   []string{s.issuer},
		ScopesSupported:        []string{domain.ScopeMCPAccess},
		BearerMethodsSupported: []string{"header"},
	})
}

// handleRoutePRM describes one route. Its resource is exactly the canonical
// route URL (RFC 9728 §3.3: clients compare it with the URL they called).
// Unknown, rotated, disabled or deleted routes are one indistinguishable
// 404 (DESIGN §10: reveals no owner).
func (s *Server) handleRoutePRM(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimPrefix(r.URL.EscapedPath(), "/.well-known/oauth-protected-resource")
	ref, rest, err := domain.ParseRoutePath(p)
	if err != nil || rest != "" {
		writeOAuthError(w, oerr(http.StatusNotFound, ErrNotFound, "unknown resource"))
		return
	}
	if _, _, err := s.st.LookupRoute(r.Context(), ref.Scope, ref.OwnerID, ref.ConfigID, ref.Key); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			writeOAuthError(w, oerr(http.StatusNotFound, ErrNotFound, "unknown resource"))
			return
		}
		writeOAuthError(w, s.internal(r.Context(), "prm lookup", err))
		return
	}
	writeJSON(w, http.StatusOK, prm{
		Resource:               ref.URL(s.publicBase),
		AuthorizationServers:   []string{s.issuer},
		ScopesSupported:        []string{domain.ScopeMCPAccess},
		BearerMethodsSupported: []string{"header"},
	})
}

// handleJWKS publishes the current and previous verification keys (RFC 7517)
// so tokens signed before a rotation keep verifying (DESIGN §4).
func (s *Server) handleJWKS(w http.ResponseWriter, r *http.Request) {
	set := s.keys.Load()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=60")
	_, _ = w.Write(set.JWKS())
}
