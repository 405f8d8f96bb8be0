package config

import (
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/crypto/bcrypt"

	"mcpgw/domain/addrpolicy"
	"mcpgw/domain/secrets"
	"mcpgw/domain/signing"
)

// Problem is one rejected value.
type Problem struct {
	Key     string // YAML key, e.g. "listen.http"
	Message string
}

// ValidationError lists every problem Validate found.
type ValidationError struct {
	Problems []Problem
	names    map[string]string
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("invalid configuration:")
	for _, p := range e.Problems {
		b.WriteString("\n  - ")
		b.WriteString(p.Key)
		if n := e.names[p.Key]; n != "" {
			b.WriteString(" (" + n + ")")
		}
		b.WriteString(": ")
		b.WriteString(p.Message)
	}
	return b.String()
}

// Has reports whether a problem was reported for key.
func (e *ValidationError) Has(key string) bool {
	for _, p := range e.Problems {
		if p.Key == key {
			return true
		}
	}
	return false
}

type validator struct {
	c    *Config
	errs []Problem
}

func (v *validator) add(key, msg string) { v.errs = append(v.errs, Problem{Key: key, Message: msg}) }

// between checks min ≤ d ≤ max.
func (v *validator) between(key string, d Duration, min, max time.Duration) {
	if d.D() < min || d.D() > max {
		v.add(key, fmt.Sprintf("must be between %v and %v, got %v", min, max, d.D()))
	}
}

// url checks an absolute https URL without userinfo, query or fragment;
// plain http only when allowHTTP or for a loopback host. allowPath permits
// a path. It returns the parsed URL or nil.
func (v *validator) url(key, raw string, allowHTTP, allowPath bool) *url.URL {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "" {
		v.add(key, "must be an absolute URL like https://host")
		return nil
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && (allowHTTP || isLoopbackHost(u.Hostname())):
	default:
		v.add(key, "must use https (plain http only on a loopback host or in dev)")
		return nil
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		v.add(key, "must not contain user info, a query or a fragment")
		return nil
	}
	if !allowPath && u.Path != "" && u.Path != "/" {
		v.add(key, "must not contain a path")
		return nil
	}
	return u
}

func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.IsLoopback()
}

// listenAddr checks host:port with a numeric port.
func (v *validator) listenAddr(key, addr string, required bool) {
	if addr == "" {
		if required {
			v.add(key, "required")
		}
		return
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.add(key, "must be host:port, e.g. 127.0.0.1:8080 or :8080")
		return
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		v.add(key, "port must be a number 0-65535")
		return
	}
	if host != "" && strings.ContainsAny(host, " /") {
		v.add(key, "invalid host")
	}
}

// SlogLevel is LogLevel as a slog.Level (info when invalid).
func (c *Config) SlogLevel() slog.Level {
	switch c.LogLevel {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// Validate normalizes the configuration, checks every value, and loads the
// keys (signing key files, encryption key ring) so that later code never
// meets a half-valid configuration. It reports every problem at once as a
// *ValidationError naming the YAML key, environment variable and flag. In
// dev mode it fills a missing public URL and generates ephemeral keys
// (with a warning). Error messages never contain secret values.
func (c *Config) Validate() error {
	v := &validator{c: c}
	c.warnings = slices.Clone(c.loadWarns)
	c.normalize()

	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.LogLevel) {
		v.add("log_level", "must be debug, info, warn or error")
	}
	v.between("shutdown_timeout", c.ShutdownTimeout, time.Second, 10*time.Minute)

	if len(c.Components) == 0 {
		v.add("components", "at least one of oauth, authz, xds")
	}
	for _, comp := range c.Components {
		if !slices.Contains(AllComponents, comp) {
			v.add("components", fmt.Sprintf("unknown component %q (known: %s)", comp, strings.Join(AllComponents, ", ")))
		}
	}

	switch {
	case c.DatabaseURL == "" && !c.Dev:
		v.add("database_url", "required (only `mcpgw dev` may run on the embedded memory store)")
	case c.DatabaseURL != "":
		if _, err := pgconn.ParseConfig(c.DatabaseURL); err != nil {
			// pgconn's message may echo the string (with a password): never
			// include it.
			v.add("database_url", "not a valid Postgres connection string (postgres://user@host:5432/db?sslmode=... or key=value form)")
		}
	}

	if c.PublicBaseURL == "" {
		v.add("public_base_url", "required, e.g. https://mcp.example.com")
	} else {
		v.url("public_base_url", c.PublicBaseURL, c.Dev, false)
	}
	if c.Issuer != "" && c.Issuer != c.PublicBaseURL {
		v.url("issuer", c.Issuer, c.Dev, true)
	}

	v.listenAddr("listen.http", c.Listen.HTTP, c.Runs(ComponentOAuth))
	v.listenAddr("listen.authz", c.Listen.Authz, c.Runs(ComponentAuthz))
	v.listenAddr("listen.xds", c.Listen.XDS, c.Runs(ComponentXDS))
	v.listenAddr("listen.metrics", c.Listen.Metrics, false)
	c.checkDistinctListeners(v)

	c.validateKeys(v)

	if c.TrustedClientIP != ClientIPEnvoy && c.TrustedClientIP != ClientIPPeer {
		v.add("trusted_client_ip", `must be "envoy" or "peer"`)
	}
	c.validateOrigins(v)
	c.validateAllowlist(v)
	c.validateUsers(v)

	if c.OIDC.Enabled() {
		if c.OIDC.Issuer == "" || c.OIDC.ClientID == "" || c.OIDC.ClientSecret == "" || c.OIDC.RedirectURL == "" {
			v.add("oidc", "issuer, client_id, client_secret and redirect_url must all be set to enable OIDC login")
		}
		if c.OIDC.Issuer != "" {
			v.url("oidc.issuer", c.OIDC.Issuer, c.Dev, true)
		}
		if c.OIDC.RedirectURL != "" {
			v.url("oidc.redirect_url", c.OIDC.RedirectURL, c.Dev, true)
		}
	}
	if c.Runs(ComponentOAuth) && !c.Dev && !c.OIDC.Enabled() && len(c.StaticUsers) == 0 {
		v.add("oidc", "the oauth component needs a login method: configure oidc.* or static_users")
	}

	v.between("tokens.access_token", c.Tokens.AccessToken, time.Minute, 15*time.Minute)
	v.between("tokens.refresh_token", c.Tokens.RefreshToken, time.Hour, 365*24*time.Hour)
	v.between("tokens.auth_code", c.Tokens.AuthCode, 30*time.Second, 10*time.Minute)
	v.between("tokens.auth_request", c.Tokens.AuthRequest, time.Minute, 30*time.Minute)
	v.between("tokens.consent", c.Tokens.Consent, 30*time.Second, 5*time.Minute)
	v.between("tokens.provider_state", c.Tokens.ProviderState, time.Minute, 30*time.Minute)
	v.between("tokens.session", c.Tokens.Session, 5*time.Minute, 30*24*time.Hour)
	v.between("audit_retention", c.AuditRetention, 24*time.Hour, 10*365*24*time.Hour)
	v.between("cleanup_interval", c.CleanupInterval, time.Minute, 24*time.Hour)

	c.OAuth.validate(c, v)
	c.Authz.validate(c, v)
	c.XDS.validate(c, v)
	c.API.validate(c, v)

	if len(v.errs) == 0 {
		return nil
	}
	names := map[string]string{}
	for _, b := range c.bindings() {
		n := b.Env()
		if f := b.Flag(); f != "" {
			n += ", --" + f
		}
		names[b.Key] = n
	}
	return &ValidationError{Problems: v.errs, names: names}
}

func (c *Config) normalize() {
	c.LogLevel = strings.ToLower(strings.TrimSpace(c.LogLevel))
	if len(c.Components) == 0 {
		c.Components = slices.Clone(AllComponents)
	}
	var comps []string
	for _, x := range c.Components {
		x = strings.ToLower(strings.TrimSpace(x))
		if x != "" && !slices.Contains(comps, x) {
			comps = append(comps, x)
		}
	}
	c.Components = comps
	if c.Dev && c.PublicBaseURL == "" && c.Listen.HTTP != "" {
		host, port, err := net.SplitHostPort(c.Listen.HTTP)
		if err == nil {
			if host == "" || host == "0.0.0.0" || host == "::" {
				host = "localhost"
			}
			c.PublicBaseURL = "http://" + net.JoinHostPort(host, port)
		}
	}
	c.PublicBaseURL = strings.TrimRight(c.PublicBaseURL, "/")
	c.Issuer = strings.TrimRight(c.Issuer, "/")
	if c.Issuer == "" {
		c.Issuer = c.PublicBaseURL
	}
	if c.TrustedClientIP == "" {
		c.TrustedClientIP = ClientIPEnvoy
		if c.Dev {
			c.TrustedClientIP = ClientIPPeer
		}
	}
}

func (c *Config) checkDistinctListeners(v *validator) {
	seen := map[string]string{}
	for _, l := range []struct{ key, addr string }{
		{"listen.http", c.Listen.HTTP}, {"listen.authz", c.Listen.Authz},
		{"listen.xds", c.Listen.XDS}, {"listen.metrics", c.Listen.Metrics},
	} {
		_, port, err := net.SplitHostPort(l.addr)
		if err != nil || port == "0" {
			continue
		}
		if other, dup := seen[l.addr]; dup {
			v.add(l.key, "same address as "+other)
		}
		seen[l.addr] = l.key
	}
}

func (c *Config) validateKeys(v *validator) {
	c.signingSet, c.keyRing = nil, nil
	needSign := c.Runs(ComponentOAuth) || (c.Runs(ComponentAuthz) && c.Authz.JWKSURL == "")
	needRing := c.Runs(ComponentOAuth) || c.Runs(ComponentAuthz)

	switch {
	case c.Keys.SigningKeyFile != "":
		set, err := signing.LoadSet(c.Keys.SigningKeyFile, c.Keys.PreviousSigningKeyFiles...)
		if err != nil {
			v.add("keys.signing_key_file", err.Error())
		} else {
			c.signingSet = set
		}
	case len(c.Keys.PreviousSigningKeyFiles) > 0:
		v.add("keys.signing_key_file", "previous signing keys are set but the current key is not")
	case needSign && c.Dev:
		k, err := signing.Generate(2048)
		if err != nil {
			v.add("keys.signing_key_file", err.Error())
			break
		}
		c.signingSet = &signing.Set{Current: k}
		c.warnings = append(c.warnings, "dev: using an ephemeral signing key (tokens die with the process); run `mcpgw keygen` to keep one")
	case needSign:
		v.add("keys.signing_key_file", "required for the oauth and authz components (create one with `mcpgw keygen`)")
	}

	switch {
	case c.Keys.EncryptionKeys != "":
		r, err := secrets.ParseKeyRing(c.Keys.EncryptionKeys)
		if err != nil {
			v.add("keys.encryption_keys", err.Error())
		} else {
			c.keyRing = r
		}
	case needRing && c.Dev:
		k, err := secrets.NewKey("dev-ephemeral")
		if err == nil {
			c.keyRing, err = secrets.NewKeyRing(k)
		}
		if err != nil {
			v.add("keys.encryption_keys", err.Error())
			break
		}
		c.warnings = append(c.warnings, "dev: using an ephemeral encryption key (stored secrets die with the process)")
	case needRing:
		v.add("keys.encryption_keys", "required for the oauth and authz components (create one with `mcpgw keygen`)")
	}
}

func (c *Config) validateOrigins(v *validator) {
	var out []string
	for _, o := range c.AllowedOrigins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
			u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			v.add("allowed_origins", fmt.Sprintf("%q is not an origin like https://app.example.com", o))
			continue
		}
		norm := strings.ToLower(u.Scheme + "://" + u.Host)
		if !slices.Contains(out, norm) {
			out = append(out, norm)
		}
	}
	c.AllowedOrigins = out
}

func (c *Config) validateAllowlist(v *validator) {
	var a addrpolicy.Allowlist
	for _, s := range c.DevAllowlist.CIDRs {
		if p, err := netip.ParsePrefix(s); err == nil {
			a.Prefixes = append(a.Prefixes, p.Masked())
		} else if ip, err := netip.ParseAddr(s); err == nil && ip.Zone() == "" {
			a.Prefixes = append(a.Prefixes, netip.PrefixFrom(ip, ip.BitLen()))
		} else {
			v.add("dev_allowlist.cidrs", fmt.Sprintf("%q is not a CIDR prefix or IP address", s))
		}
	}
	for _, h := range c.DevAllowlist.Hosts {
		if h == "" || strings.ContainsAny(h, " /:@?#") {
			v.add("dev_allowlist.hosts", fmt.Sprintf("%q is not a host name", h))
			continue
		}
		a.Hosts = append(a.Hosts, strings.ToLower(h))
	}
	c.allowlist = a
	if !a.Empty() && !c.Dev {
		c.warnings = append(c.warnings, "dev_allowlist is set outside dev mode: upstreams may reach non-public addresses")
	}
}

func (c *Config) validateUsers(v *validator) {
	seen := map[string]bool{}
	for i := range c.StaticUsers {
		u := &c.StaticUsers[i]
		u.Email = strings.ToLower(strings.TrimSpace(u.Email))
		a, err := mail.ParseAddress(u.Email)
		if err != nil || a.Address != u.Email || a.Name != "" {
			v.add("static_users", fmt.Sprintf("user %d: %q is not a plain email address", i+1, u.Email))
			continue
		}
		if seen[u.Email] {
			v.add("static_users", fmt.Sprintf("user %d: duplicate email %q", i+1, u.Email))
		}
		seen[u.Email] = true
		if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
			v.add("static_users", fmt.Sprintf("user %q: password_hash is not a bcrypt hash (create one with `htpasswd -nbBC 12 user password`)", u.Email))
		}
	}
}
