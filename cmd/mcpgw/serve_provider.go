package main

import (
	"errors"
	"net/url"
	"strings"

	"mcpgw/extauthz"
	"mcpgw/oauthserver"
	"mcpgw/provider"
)

// The provider (second-level) OAuth client (DESIGN §5) runs inside the
// oauth component (authorization flow, /oauth/provider/callback, mcpgw's
// client metadata document) and inside the authz component (lazy refresh,
// DESIGN §6 step 7). Both build it from the same settings, so a grant
// obtained through one replica refreshes through any other.
func init() { registerOAuthMount(mountProvider) }

// providerOptions maps the typed config onto provider.Options.
func providerOptions(d Deps) (provider.Options, error) {
	c := d.Config
	if c.KeyRing() == nil {
		return provider.Options{}, errors.New("provider: no encryption key ring (keys.encryption_keys; see `mcpgw keygen`)")
	}
	base := c.Issuer
	if base == "" {
		base = c.PublicBaseURL
	}
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil || u.Host == "" {
		return provider.Options{}, errors.New("provider: issuer or public_base_url must be an absolute URL")
	}
	return provider.Options{
		Store:       d.Store,
		KeyRing:     c.KeyRing(),
		BaseURL:     u.Scheme + "://" + u.Host, // oauthserver endpoints live at the issuer origin
		Logger:      d.Logger,
		Registry:    d.Registry,
		Allow:       c.Allowlist(),
		RefreshSkew: c.Authz.RefreshSkew.D(),
	}, nil
}

// mountProvider plugs the provider flow into the OAuth server and mounts
// its endpoints.
func mountProvider(srv *oauthserver.Server, d Deps) error {
	o, err := providerOptions(d)
	if err != nil {
		return err
	}
	p, err := provider.New(o)
	if err != nil {
		return err
	}
	p.Bind(srv)
	srv.SetProvider(p)
	return p.Mount(srv)
}

// authzCredentials is extauthz's provider refresher. A configuration error
// is returned so the component fails at startup rather than denying every
// OAuth-mode request later.
func authzCredentials(d Deps) (extauthz.Credentials, error) {
	o, err := providerOptions(d)
	if err != nil {
		return nil, err
	}
	p, err := provider.New(o)
	if err != nil {
		return nil, err
	}
	return p, nil
}
