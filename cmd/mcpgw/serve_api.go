package main

import (
	"fmt"

	"mcpgw/api"
	"mcpgw/oauthserver"
)

// The management API (DESIGN §7) shares the OAuth server's listener and its
// authentication (API tokens, session + CSRF).
func init() { registerOAuthMount(mountAPI) }

func mountAPI(srv *oauthserver.Server, d Deps) error {
	h, err := api.New(api.Options{
		Store:         d.Store,
		Authenticate:  srv.Authenticate,
		KeyRing:       d.Config.KeyRing(),
		PublicBaseURL: d.Config.PublicBaseURL,
		Allowlist:     d.Config.Allowlist(),
		MaxBodyBytes:  int64(d.Config.API.MaxBodyBytes),
		Logger:        d.Logger,
		Registry:      d.Registry,
		// The OAuth server's own origin is a browser origin too (login
		// and consent pages are served there).
		AllowedOrigins: append([]string{d.Config.Issuer}, d.Config.AllowedOrigins...),
	})
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	return h.Mount(srv)
}
