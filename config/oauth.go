package config

import "fmt"

// OAuth is oauthserver's own configuration (DESIGN §4). The oauthserver
// owner extends this struct, its bindings, defaults and validate.
type OAuth struct {
	// RegistrationPerMinute is the dynamic client registration rate limit
	// per trusted client IP (DESIGN §4: 10 per minute).
	RegistrationPerMinute int `json:"registration_per_minute,omitempty"`
	// OIDCProvisionActive creates users who first sign in through OIDC as
	// active instead of provisional (DESIGN §7: provisional users are
	// ineligible until an administrator activates them). File only.
	OIDCProvisionActive bool `json:"oidc_provision_active,omitempty"`
}

func (o *OAuth) defaults() { o.RegistrationPerMinute = 10 }

func (o *OAuth) bindings() []Binding {
	return []Binding{
		intVar("oauth.registration_per_minute", "dynamic client registrations allowed per client IP per minute", &o.RegistrationPerMinute),
	}
}

func (o *OAuth) validate(c *Config, v *validator) {
	if o.RegistrationPerMinute < 1 || o.RegistrationPerMinute > 10000 {
		v.add("oauth.registration_per_minute", fmt.Sprintf("must be 1-10000, got %d", o.RegistrationPerMinute))
	}
}
