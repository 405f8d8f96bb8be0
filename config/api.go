package config

// API is the management API's own configuration (DESIGN §7), served by
// oauthserver. The management API owner extends this struct, its bindings,
// defaults and validate.
type API struct {
	// MaxBodyBytes caps JSON request bodies.
	MaxBodyBytes int `json:"max_body_bytes,omitempty"`
}

func (a *API) defaults() { a.MaxBodyBytes = 1 << 20 }

func (a *API) bindings() []Binding {
	return []Binding{
		intVar("api.max_body_bytes", "largest accepted management API request body", &a.MaxBodyBytes),
	}
}

func (a *API) validate(c *Config, v *validator) {
	if a.MaxBodyBytes < 1024 || a.MaxBodyBytes > 64<<20 {
		v.add("api.max_body_bytes", "must be between 1024 and 67108864")
	}
}
