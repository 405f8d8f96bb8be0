package config

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// EnvPrefix prefixes every environment variable.
const EnvPrefix = "MCPGW_"

// EnvConfigFile names the YAML file to load (flag --config).
const EnvConfigFile = EnvPrefix + "CONFIG"

// Binding ties one configuration value to its YAML key, environment
// variable and flag. Component files add their own bindings.
type Binding struct {
	Key    string // YAML path, e.g. "listen.http"
	Usage  string
	Secret bool // environment and file only, never a flag; masked in output
	isBool bool // flag may be given without a value (--x means --x=true)
	env    string
	flag   string // "" = derived from Key; "-" = no flag
	set    func(string) error
	get    func() string
}

// Env is the environment variable name: MCPGW_ + the key upper-cased with
// '.' → '_' unless set explicitly.
func (b Binding) Env() string {
	if b.env != "" {
		return b.env
	}
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(b.Key, ".", "_"))
}

// Flag is the flag name without dashes ("" when the value has no flag).
func (b Binding) Flag() string {
	if b.Secret || b.flag == "-" {
		return ""
	}
	if b.flag != "" {
		return b.flag
	}
	return strings.NewReplacer(".", "-", "_", "-").Replace(b.Key)
}

// Default is the value's default as text (secrets: "").
func (b Binding) Default() string {
	if b.Secret {
		return ""
	}
	return b.get()
}

func strVar(key, usage string, p *string) Binding {
	return Binding{Key: key, Usage: usage, set: func(s string) error { *p = strings.TrimSpace(s); return nil }, get: func() string { return *p }}
}

func secretVar(key, usage string, p *string) Binding {
	b := strVar(key, usage, p)
	b.Secret = true
	return b
}

func listVar(key, usage string, p *[]string) Binding {
	return Binding{Key: key, Usage: usage + " (comma-separated)", set: func(s string) error { *p = splitList(s); return nil }, get: func() string { return strings.Join(*p, ",") }}
}

func durVar(key, usage string, p *Duration) Binding {
	return Binding{Key: key, Usage: usage, set: p.Set, get: func() string {
		if *p == 0 {
			return ""
		}
		return p.String()
	}}
}

func boolVar(key, usage string, p *bool) Binding {
	return Binding{Key: key, Usage: usage, isBool: true, set: func(s string) error {
		v, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("invalid boolean %q (want true or false)", s)
		}
		*p = v
		return nil
	}, get: func() string { return strconv.FormatBool(*p) }}
}

func intVar(key, usage string, p *int) Binding {
	return Binding{Key: key, Usage: usage, set: func(s string) error {
		v, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("invalid integer %q", s)
		}
		*p = v
		return nil
	}, get: func() string { return strconv.Itoa(*p) }}
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// staticUsersVar parses "email:bcrypthash,email:bcrypthash" (bcrypt hashes
// contain neither ':' nor ',').
func staticUsersVar(p *[]StaticUser) Binding {
	return Binding{
		Key:   "static_users",
		Usage: "static login users as email:bcrypt-hash pairs (comma-separated); dev/tests",
		set: func(s string) error {
			var us []StaticUser
			for i, e := range splitList(s) {
				email, hash, ok := strings.Cut(e, ":")
				if !ok {
					return fmt.Errorf("entry %d is not email:bcrypt-hash", i+1)
				}
				us = append(us, StaticUser{Email: strings.TrimSpace(email), PasswordHash: strings.TrimSpace(hash)})
			}
			*p = us
			return nil
		},
		get: func() string {
			var parts []string
			for _, u := range *p {
				parts = append(parts, u.Email+":…")
			}
			return strings.Join(parts, ",")
		},
	}
}

// bindings lists every configuration value of c, core first, then each
// component's.
func (c *Config) bindings() []Binding {
	bs := []Binding{
		strVar("database_url", "Postgres connection string; empty = embedded memory store (dev only)", &c.DatabaseURL),
		strVar("public_base_url", "external origin of the Envoy listener, e.g. https://mcp.example.com", &c.PublicBaseURL),
		strVar("issuer", "OAuth issuer identifier (default: public_base_url)", &c.Issuer),
		listVar("components", "components run by serve: oauth, authz, xds (default: all)", &c.Components),
		strVar("log_level", "debug, info, warn or error", &c.LogLevel),
		durVar("shutdown_timeout", "graceful shutdown bound", &c.ShutdownTimeout),
		strVar("listen.http", "oauthserver HTTP listen address", &c.Listen.HTTP),
		strVar("listen.authz", "extauthz gRPC listen address", &c.Listen.Authz),
		strVar("listen.xds", "xDS (ADS) gRPC listen address", &c.Listen.XDS),
		strVar("listen.metrics", "Prometheus /metrics listen address", &c.Listen.Metrics),
		{Key: "keys.signing_key_file", env: EnvPrefix + "SIGNING_KEY_FILE", flag: "signing-key-file",
			Usage: "current RS256 signing key (PEM from mcpgw keygen)",
			set:   func(s string) error { c.Keys.SigningKeyFile = strings.TrimSpace(s); return nil },
			get:   func() string { return c.Keys.SigningKeyFile }},
		{Key: "keys.previous_signing_key_files", env: EnvPrefix + "PREVIOUS_SIGNING_KEY_FILES", flag: "previous-signing-key-files",
			Usage: "previous signing keys, still verified and published in the JWKS (comma-separated)",
			set:   func(s string) error { c.Keys.PreviousSigningKeyFiles = splitList(s); return nil },
			get:   func() string { return strings.Join(c.Keys.PreviousSigningKeyFiles, ",") }},
		{Key: "keys.encryption_keys", env: EnvPrefix + "ENCRYPTION_KEYS", Secret: true,
			Usage: "AES-256-GCM key ring id:base64key,... newest first (secret: env or file only)",
			set:   func(s string) error { c.Keys.EncryptionKeys = strings.TrimSpace(s); return nil },
			get:   func() string { return "" }},
		strVar("trusted_client_ip", "client IP source for rate limits: envoy (x-envoy-external-address) or peer (default: envoy; dev: peer)", &c.TrustedClientIP),
		listVar("allowed_origins", "browser Origins allowed on connect routes and the API", &c.AllowedOrigins),
		listVar("dev_allowlist.cidrs", "dev/test only: upstream prefixes allowed although not public", &c.DevAllowlist.CIDRs),
		listVar("dev_allowlist.hosts", "dev/test only: upstream hosts allowed although not public (and over http)", &c.DevAllowlist.Hosts),
		staticUsersVar(&c.StaticUsers),
		strVar("oidc.issuer", "OpenID Provider issuer URL for browser login", &c.OIDC.Issuer),
		strVar("oidc.client_id", "OIDC client id", &c.OIDC.ClientID),
		secretVar("oidc.client_secret", "OIDC client secret (secret: env or file only)", &c.OIDC.ClientSecret),
		strVar("oidc.redirect_url", "OIDC redirect URL registered at the provider", &c.OIDC.RedirectURL),
		durVar("tokens.access_token", "gateway JWT lifetime (≤ 15m)", &c.Tokens.AccessToken),
		durVar("tokens.refresh_token", "refresh token lifetime", &c.Tokens.RefreshToken),
		durVar("tokens.auth_code", "authorization code lifetime (≤ 10m)", &c.Tokens.AuthCode),
		durVar("tokens.auth_request", "pending authorization request lifetime (≤ 30m)", &c.Tokens.AuthRequest),
		durVar("tokens.consent", "consent decision lifetime (≤ 5m)", &c.Tokens.Consent),
		durVar("tokens.provider_state", "pending provider authorization lifetime (≤ 30m)", &c.Tokens.ProviderState),
		durVar("tokens.session", "browser session lifetime", &c.Tokens.Session),
		durVar("audit_retention", "audit rows older than this are deleted", &c.AuditRetention),
		durVar("cleanup_interval", "how often expired OAuth artifacts, rate-limit windows and old audit rows are deleted", &c.CleanupInterval),
	}
	bs = append(bs, c.OAuth.bindings()...)
	bs = append(bs, c.Authz.bindings()...)
	bs = append(bs, c.XDS.bindings()...)
	bs = append(bs, c.API.bindings()...)
	return bs
}

// Reference lists every configuration value with its defaults, for help
// output and the README.
func Reference() []Binding { return Default().bindings() }

func (c *Config) binding(key string) (Binding, bool) {
	for _, b := range c.bindings() {
		if b.Key == key {
			return b, true
		}
	}
	return Binding{}, false
}

// rawFlag records a flag's text in command-line order so Load can apply
// flags after the file and the environment.
type rawFlag struct {
	name string
	seen *[][2]string
	def  string
}

func (f *rawFlag) String() string { return f.def }

// boolRawFlag lets a boolean flag be given bare (--x).
type boolRawFlag struct{ rawFlag }

func (f *boolRawFlag) IsBoolFlag() bool { return true }
func (f *rawFlag) Set(s string) error {
	*f.seen = append(*f.seen, [2]string{f.name, s})
	return nil
}

// Load builds the configuration: Default(), then the YAML file named by
// --config or MCPGW_CONFIG (unknown keys are errors), then MCPGW_*
// variables from environ (os.Environ() form), then the flags in args. It
// registers its flags on fs and parses args with it; fs.Args() holds the
// remaining arguments afterwards. Validate is not called.
func Load(fs *flag.FlagSet, args []string, environ []string) (*Config, error) {
	c := Default()
	var seen [][2]string
	configFile := fs.String("config", "", "YAML configuration file (env "+EnvConfigFile+")")
	byFlag := map[string]Binding{}
	for _, b := range c.bindings() {
		name := b.Flag()
		if name == "" {
			continue
		}
		byFlag[name] = b
		rf := rawFlag{name: name, seen: &seen, def: b.Default()}
		if b.isBool {
			fs.Var(&boolRawFlag{rf}, name, b.Usage+" (env "+b.Env()+")")
		} else {
			fs.Var(&rf, name, b.Usage+" (env "+b.Env()+")")
		}
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}

	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, EnvPrefix) {
			env[k] = v
		}
	}

	path := *configFile
	if path == "" {
		path = env[EnvConfigFile]
	}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config file: %w", err)
		}
		if err := yaml.UnmarshalStrict(b, c); err != nil {
			return nil, fmt.Errorf("config file %s: %w", path, err)
		}
	}

	known := map[string]bool{EnvConfigFile: true}
	var errs []string
	for _, b := range c.bindings() {
		known[b.Env()] = true
		v, ok := env[b.Env()]
		if !ok {
			continue
		}
		if err := b.set(v); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", b.Env(), err))
		}
	}
	for _, fv := range seen {
		if err := byFlag[fv[0]].set(fv[1]); err != nil {
			errs = append(errs, fmt.Sprintf("--%s: %v", fv[0], err))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("configuration: %s", strings.Join(errs, "; "))
	}
	var unknown []string
	for k := range env {
		if !known[k] && !strings.HasPrefix(k, EnvPrefix+"TEST_") && !strings.HasPrefix(k, EnvPrefix+"BENCH_") {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		c.loadWarns = append(c.loadWarns, "unknown environment variable "+k+" ignored (typo?)")
	}
	c.warnings = slices.Clone(c.loadWarns)
	return c, nil
}
