// Package config is mcpgw's one typed configuration: defaults, then an
// optional YAML file, then MCPGW_* environment variables, then command-line
// flags, each layer overriding the one before. Validate runs once and
// reports every bad value with the names an operator can act on (YAML key,
// environment variable, flag).
//
// Each server component owns a sub-struct in its own file (oauth.go,
// authz.go, xds.go, api.go) with its own fields, bindings, defaults and
// validation, so components extend the configuration without touching each
// other's code.
//
// Secret values (encryption keys, the OIDC client secret) are accepted from
// the file and the environment only — never as flags, which would expose them
// in the process list — and Redacted() masks them for logging.
package config

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"mcpgw/domain/addrpolicy"
	"mcpgw/domain/secrets"
	"mcpgw/domain/signing"
)

// Components that `mcpgw serve --components=...` can run (DESIGN §1).
const (
	ComponentOAuth = "oauth"
	ComponentAuthz = "authz"
	ComponentXDS   = "xds"
)

// AllComponents lists every component, in start order.
var AllComponents = []string{ComponentOAuth, ComponentAuthz, ComponentXDS}

// Trusted client IP sources (DESIGN §4 registration rate limiting).
const (
	ClientIPEnvoy = "envoy" // Envoy's x-envoy-external-address header
	ClientIPPeer  = "peer"  // the TCP peer address (no proxy in front)
)

// Config is the whole configuration. JSON tags are the YAML keys (the file
// is read with sigs.k8s.io/yaml, which goes through encoding/json).
type Config struct {
	// DatabaseURL is the Postgres connection string (URL or key=value).
	// Empty is allowed only for `mcpgw dev`, which then uses the embedded
	// in-memory store.
	DatabaseURL string `json:"database_url,omitempty"`
	// PublicBaseURL is the externally visible origin of the Envoy listener,
	// e.g. https://mcp.example.com (no path, no trailing slash). Canonical
	// route URLs (the OAuth resource and JWT aud) are built from it.
	PublicBaseURL string `json:"public_base_url,omitempty"`
	// Issuer is the OAuth issuer identifier (RFC 8414 §2); defaults to
	// PublicBaseURL.
	Issuer string `json:"issuer,omitempty"`
	// Components run by `serve` (default: all).
	Components []string `json:"components,omitempty"`
	// LogLevel: debug, info, warn or error.
	LogLevel string `json:"log_level,omitempty"`
	// ShutdownTimeout bounds graceful shutdown after SIGINT/SIGTERM.
	ShutdownTimeout Duration `json:"shutdown_timeout,omitempty"`

	Listen Listen `json:"listen"`
	Keys   Keys   `json:"keys"`

	// TrustedClientIP says where the client IP for rate limiting comes
	// from: "envoy" (x-envoy-external-address, set by Envoy) or "peer"
	// (socket peer). A raw X-Forwarded-For is never trusted.
	TrustedClientIP string `json:"trusted_client_ip,omitempty"`
	// AllowedOrigins are the browser Origins accepted on connect routes
	// (DESIGN §6 step 2) and the management API. Exact match,
	// scheme://host[:port].
	AllowedOrigins []string `json:"allowed_origins,omitempty"`
	// DevAllowlist lets upstreams resolve to non-public addresses or use
	// plain http. Dev/test only.
	DevAllowlist DevAllowlist `json:"dev_allowlist"`
	// StaticUsers are login users with bcrypt password hashes (dev/tests,
	// DESIGN §7).
	StaticUsers []StaticUser `json:"static_users,omitempty"`
	// OIDC is the upstream identity provider for browser login.
	OIDC OIDC `json:"oidc"`
	// Tokens holds lifetimes of OAuth artifacts.
	Tokens Tokens `json:"tokens"`
	// AuditRetention: audit rows older than this are deleted (DESIGN §9).
	AuditRetention Duration `json:"audit_retention,omitempty"`
	// CleanupInterval is how often the cleanup job runs (DESIGN §9: expired
	// OAuth artifacts, stale rate-limit windows, old audit rows). One
	// replica runs each pass (store.TryLeader).
	CleanupInterval Duration `json:"cleanup_interval,omitempty"`

	OAuth OAuth `json:"oauth"`
	Authz Authz `json:"authz"`
	XDS   XDS   `json:"xds"`
	API   API   `json:"api"`

	// Dev is set by `mcpgw dev` (never by file, env or flag): it allows an
	// empty DatabaseURL, plain-http public URLs, and generates ephemeral
	// keys when none are configured.
	Dev bool `json:"-"`

	// Derived by Validate.
	signingSet *signing.Set
	keyRing    *secrets.KeyRing
	allowlist  addrpolicy.Allowlist
	warnings   []string // Load's plus Validate's
	loadWarns  []string // Load's only, so Validate can run again
}

// Listen holds listen addresses (host:port). Defaults bind loopback only;
// set 0.0.0.0 / [::] explicitly to expose a listener.
type Listen struct {
	HTTP    string `json:"http,omitempty"`    // oauthserver: /oauth, /.well-known, /api, /login, /health
	Authz   string `json:"authz,omitempty"`   // extauthz gRPC (envoy.service.auth.v3)
	XDS     string `json:"xds,omitempty"`     // ADS gRPC
	Metrics string `json:"metrics,omitempty"` // Prometheus /metrics and /healthz
}

// Keys names the signing keys and holds the encryption key ring.
type Keys struct {
	// SigningKeyFile is the current RS256 key (PEM, from `mcpgw keygen`).
	SigningKeyFile string `json:"signing_key_file,omitempty"`
	// PreviousSigningKeyFiles still verify and are published in the JWKS.
	PreviousSigningKeyFiles []string `json:"previous_signing_key_files,omitempty"`
	// EncryptionKeys is the key ring spec "id:base64key,..." newest first
	// (secret).
	EncryptionKeys string `json:"encryption_keys,omitempty"`
}

// DevAllowlist is the upstream allowlist for dev and tests.
type DevAllowlist struct {
	CIDRs []string `json:"cidrs,omitempty"` // prefixes or single IPs
	Hosts []string `json:"hosts,omitempty"` // exact host names
}

// StaticUser is one email + bcrypt hash login.
type StaticUser struct {
	Email        string `json:"email"`
	PasswordHash string `json:"password_hash"`
}

// OIDC configures login through an upstream OpenID Provider. Either all of
// Issuer, ClientID, ClientSecret and RedirectURL are set, or none.
type OIDC struct {
	Issuer       string `json:"issuer,omitempty"`
	ClientID     string `json:"client_id,omitempty"`
	ClientSecret string `json:"client_secret,omitempty"` // secret
	RedirectURL  string `json:"redirect_url,omitempty"`
}

// Enabled reports whether OIDC login is configured.
func (o OIDC) Enabled() bool {
	return o.Issuer != "" || o.ClientID != "" || o.ClientSecret != "" || o.RedirectURL != ""
}

// Tokens are lifetimes of OAuth artifacts; the upper bounds come from
// DESIGN §2 and §4 and cannot be raised.
type Tokens struct {
	AccessToken   Duration `json:"access_token,omitempty"`   // gateway JWT, ≤ 15m
	RefreshToken  Duration `json:"refresh_token,omitempty"`  // first-level refresh token
	AuthCode      Duration `json:"auth_code,omitempty"`      // ≤ 10m
	AuthRequest   Duration `json:"auth_request,omitempty"`   // pending authorize request, ≤ 30m
	Consent       Duration `json:"consent,omitempty"`        // consent ticket, ≤ 5m
	ProviderState Duration `json:"provider_state,omitempty"` // pending provider state, ≤ 30m
	Session       Duration `json:"session,omitempty"`        // browser session
}

// Default returns a Config with every default filled in.
func Default() *Config {
	c := &Config{
		LogLevel:        "info",
		ShutdownTimeout: Duration(15 * time.Second),
		Listen: Listen{
			HTTP:    "127.0.0.1:8080",
			Authz:   "127.0.0.1:9191",
			XDS:     "127.0.0.1:18000",
			Metrics: "127.0.0.1:9090",
		},
		Tokens: Tokens{
			AccessToken:   Duration(15 * time.Minute),
			RefreshToken:  Duration(30 * 24 * time.Hour),
			AuthCode:      Duration(10 * time.Minute),
			AuthRequest:   Duration(30 * time.Minute),
			Consent:       Duration(5 * time.Minute),
			ProviderState: Duration(30 * time.Minute),
			Session:       Duration(12 * time.Hour),
		},
		AuditRetention:  Duration(60 * 24 * time.Hour),
		CleanupInterval: Duration(10 * time.Minute),
	}
	c.OAuth.defaults()
	c.Authz.defaults()
	c.XDS.defaults()
	c.API.defaults()
	return c
}

// SigningKeys is the loaded signing key set (nil before Validate, or when
// no key is configured for a component set that does not sign).
func (c *Config) SigningKeys() *signing.Set { return c.signingSet }

// KeyRing is the parsed encryption key ring (nil before Validate, or when
// not configured for a component set that does not need it).
func (c *Config) KeyRing() *secrets.KeyRing { return c.keyRing }

// Allowlist is the parsed dev allowlist (zero value: nothing allowed).
func (c *Config) Allowlist() addrpolicy.Allowlist { return c.allowlist }

// Warnings are non-fatal findings of Validate (e.g. a dev allowlist outside
// dev mode, ephemeral keys); the caller logs them.
func (c *Config) Warnings() []string { return c.warnings }

// Runs reports whether component is selected.
func (c *Config) Runs(component string) bool {
	for _, x := range c.Components {
		if x == component {
			return true
		}
	}
	return false
}

// Redacted returns a JSON rendering with every secret replaced by
// "REDACTED", for startup logs and `--print-config`-style output.
func (c *Config) Redacted() string {
	cp := *c
	mask := func(s string) string {
		if s == "" {
			return ""
		}
		return "REDACTED"
	}
	cp.Keys.EncryptionKeys = mask(cp.Keys.EncryptionKeys)
	cp.OIDC.ClientSecret = mask(cp.OIDC.ClientSecret)
	cp.DatabaseURL = redactDSN(cp.DatabaseURL)
	cp.StaticUsers = nil
	for _, u := range c.StaticUsers {
		cp.StaticUsers = append(cp.StaticUsers, StaticUser{Email: u.Email, PasswordHash: mask(u.PasswordHash)})
	}
	b, err := json.Marshal(&cp)
	if err != nil {
		return "{}"
	}
	return string(b)
}

// redactDSN masks a password in a Postgres URL or key=value DSN.
func redactDSN(dsn string) string {
	if dsn == "" {
		return ""
	}
	if strings.Contains(dsn, "://") {
		if at := strings.LastIndex(dsn, "@"); at > 0 {
			scheme := strings.Index(dsn, "://") + 3
			if colon := strings.Index(dsn[scheme:at], ":"); colon >= 0 {
				return dsn[:scheme+colon+1] + "REDACTED" + dsn[at:]
			}
		}
		if i := strings.Index(strings.ToLower(dsn), "password="); i >= 0 {
			return dsn[:i] + "password=REDACTED"
		}
		return dsn
	}
	var parts []string
	for _, f := range strings.Fields(dsn) {
		if strings.HasPrefix(strings.ToLower(f), "password=") {
			f = "password=REDACTED"
		}
		parts = append(parts, f)
	}
	return strings.Join(parts, " ")
}

// Duration is a time.Duration written as a Go duration string ("15m",
// "720h") in YAML, environment and flags.
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes the duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON accepts only a duration string; bare numbers are refused
// because their unit would be a guess.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"15m\"")
	}
	return d.Set(s)
}

// Set parses s (flag.Value).
func (d *Duration) Set(s string) error {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("invalid duration %q (want e.g. 90s, 15m, 720h)", s)
	}
	*d = Duration(v)
	return nil
}
