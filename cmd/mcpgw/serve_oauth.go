package main

import (
	"context"
	"errors"
	"net/http"
	"sync"

	"mcpgw/config"
	"mcpgw/oauthserver"
)

func init() { registerComponent(config.ComponentOAuth, runOAuth) }

// oauthMounts lets other handlers (the management API) attach themselves to
// the OAuth server's HTTP listener and share its authentication
// (oauthserver.Server.Authenticate). Register from an init() in
// serve_<name>.go.
var (
	oauthMountsMu sync.Mutex
	oauthMounts   []func(srv *oauthserver.Server, d Deps) error
)

// registerOAuthMount adds fn, called once the OAuth server exists.
func registerOAuthMount(fn func(srv *oauthserver.Server, d Deps) error) {
	oauthMountsMu.Lock()
	defer oauthMountsMu.Unlock()
	oauthMounts = append(oauthMounts, fn)
}

// oauthOptions maps the typed config onto oauthserver.Options.
func oauthOptions(d Deps) (oauthserver.Options, error) {
	c := d.Config
	keys := c.SigningKeys()
	if keys == nil {
		return oauthserver.Options{}, errors.New("no signing key configured (keys.signing_key_file; see `mcpgw keygen`)")
	}
	o := oauthserver.Options{
		Store:                  d.Store,
		Issuer:                 c.Issuer,
		PublicBaseURL:          c.PublicBaseURL,
		Keys:                   *keys,
		Logger:                 d.Logger,
		Registry:               d.Registry,
		ClientIPSource:         c.TrustedClientIP,
		RegistrationsPerMinute: c.OAuth.RegistrationPerMinute,
		AccessTokenTTL:         c.Tokens.AccessToken.D(),
		RefreshTokenTTL:        c.Tokens.RefreshToken.D(),
		CodeTTL:                c.Tokens.AuthCode.D(),
		SessionTTL:             c.Tokens.Session.D(),
		AuthRequestTTL:         c.Tokens.AuthRequest.D(),
		ConsentTTL:             c.Tokens.Consent.D(),
		CIMD:                   oauthserver.CIMDOptions{Allow: c.Allowlist()},
	}
	for _, u := range c.StaticUsers {
		o.StaticUsers = append(o.StaticUsers, oauthserver.StaticUser{Email: u.Email, BcryptHash: u.PasswordHash})
	}
	if c.OIDC.Enabled() {
		o.OIDC = &oauthserver.OIDCOptions{
			Issuer:          c.OIDC.Issuer,
			ClientID:        c.OIDC.ClientID,
			ClientSecret:    c.OIDC.ClientSecret,
			RedirectURL:     c.OIDC.RedirectURL,
			ProvisionActive: c.OAuth.OIDCProvisionActive,
		}
	}
	return o, nil
}

// runOAuth serves the OAuth authorization server (DESIGN §4, §7) on the
// HTTP listener until ctx ends.
func runOAuth(ctx context.Context, d Deps) error {
	o, err := oauthOptions(d)
	if err != nil {
		d.Listener.Close()
		return err
	}
	srv, err := oauthserver.New(o)
	if err != nil {
		d.Listener.Close()
		return err
	}
	oauthMountsMu.Lock()
	mounts := append([]func(*oauthserver.Server, Deps) error(nil), oauthMounts...)
	oauthMountsMu.Unlock()
	for _, m := range mounts {
		if err := m(srv, d); err != nil {
			d.Listener.Close()
			return err
		}
	}
	var h http.Handler = srv
	return serveHTTP(ctx, d.Listener, h, d.Config.ShutdownTimeout.D())
}
