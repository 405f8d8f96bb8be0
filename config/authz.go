package config

import "time"

// Authz is extauthz's own configuration (DESIGN §6). The extauthz owner
// extends this struct, its bindings, defaults and validate.
type Authz struct {
	// JWKSURL, when set, is where extauthz fetches verification keys
	// (oauthserver's /oauth/jwks.json) instead of reading signing key
	// files.
	JWKSURL string `json:"jwks_url,omitempty"`
	// Leeway is the clock skew tolerated on exp/iat (DESIGN §6 step 4).
	Leeway Duration `json:"leeway,omitempty"`
	// RefreshSkew: a provider token expiring within this is refreshed
	// before use (DESIGN §6 step 7).
	RefreshSkew Duration `json:"refresh_skew,omitempty"`
}

func (a *Authz) defaults() {
	a.Leeway = Duration(30 * time.Second)
	a.RefreshSkew = Duration(60 * time.Second)
}

func (a *Authz) bindings() []Binding {
	return []Binding{
		strVar("authz.jwks_url", "fetch verification keys from this JWKS URL instead of key files", &a.JWKSURL),
		durVar("authz.leeway", "clock skew tolerated on JWT exp/iat", &a.Leeway),
		durVar("authz.refresh_skew", "refresh provider tokens expiring within this", &a.RefreshSkew),
	}
}

func (a *Authz) validate(c *Config, v *validator) {
	if a.JWKSURL != "" {
		v.url("authz.jwks_url", a.JWKSURL, c.Dev, true)
	}
	v.between("authz.leeway", a.Leeway, 0, 5*time.Minute)
	v.between("authz.refresh_skew", a.RefreshSkew, 0, 10*time.Minute)
}
