package providertest

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
)

// MCPOptions configure a test upstream MCP server.
type MCPOptions struct {
	// Scopes is the scope of the 401 challenge (and required of tokens);
	// empty: the challenge carries no scope.
	Scopes []string
	// AuthorizationServers overrides the PRM's authorization_servers
	// (default: the AS's issuer), e.g. to point at 169.254.169.254.
	AuthorizationServers []string
	// NoResourceMetadata omits resource_metadata from the challenge, so
	// clients must use the well-known PRM location.
	NoResourceMetadata bool
	// Resource overrides the PRM's resource (default: URL exactly).
	Resource string
}

// MCP is a running upstream MCP server (go-sdk streamable HTTP) behind
// auth.RequireBearerToken.
type MCP struct {
	// URL is the MCP endpoint: https://localhost:port/mcp.
	URL string
	// PRMURL is its RFC 9728 metadata URL.
	PRMURL string
}

// NewMCP starts an MCP server whose bearer verifier accepts access tokens
// issued by as. Its tool "whoami" answers with the upstream subject and
// client of the token the call carried, so a test can prove which
// credential reached the upstream.
func NewMCP(t testing.TB, as *AS, opt MCPOptions) *MCP {
	t.Helper()
	srv := mcp.NewServer(&mcp.Implementation{Name: "providertest-upstream", Version: "1.0.0"}, nil)
	mcp.AddTool(srv, &mcp.Tool{Name: "whoami", Description: "who the upstream thinks you are"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			ti := req.Extra.TokenInfo
			if ti == nil {
				return nil, nil, fmt.Errorf("no token")
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{
				Text: fmt.Sprintf("subject=%s client=%v", ti.UserID, ti.Extra["client_id"]),
			}}}, nil, nil
		})
	m := &MCP{}
	verifier := func(ctx context.Context, token string, _ *http.Request) (*auth.TokenInfo, error) {
		tk, ok := as.Verify(token, time.Now())
		if !ok {
			return nil, auth.ErrInvalidToken
		}
		return &auth.TokenInfo{
			Scopes: strings.Fields(tk.Scope), Expiration: tk.Expires, UserID: tk.Subject,
			Extra: map[string]any{"client_id": tk.ClientID},
		}, nil
	}
	handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil)
	startTLS(t, func(base string) http.Handler {
		m.URL = base + "/mcp"
		m.PRMURL = base + "/.well-known/oauth-protected-resource/mcp"
		ro := &auth.RequireBearerTokenOptions{Scopes: opt.Scopes}
		if !opt.NoResourceMetadata {
			ro.ResourceMetadataURL = m.PRMURL
		}
		servers := opt.AuthorizationServers
		if servers == nil {
			servers = []string{as.URL}
		}
		resource := opt.Resource
		if resource == "" {
			resource = m.URL
		}
		mux := http.NewServeMux()
		mux.Handle("/mcp", auth.RequireBearerToken(verifier, ro)(handler))
		mux.Handle("GET /.well-known/oauth-protected-resource/mcp", auth.ProtectedResourceMetadataHandler(&oauthex.ProtectedResourceMetadata{
			Resource: resource, AuthorizationServers: servers, ScopesSupported: []string{"files:read", "admin:everything"},
		}))
		return mux
	})
	return m
}
