package config

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"mcpgw/domain/secrets"
	"mcpgw/domain/signing"
)

type fixture struct {
	keyFile, prevFile string
	ring              string
	hash              string
}

var fx *fixture

// TestMain removes the shared key fixture after the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if fx != nil {
		os.RemoveAll(filepath.Dir(fx.keyFile))
	}
	os.Exit(code)
}

func testFixture(t *testing.T) *fixture {
	t.Helper()
	if fx != nil {
		return fx
	}
	dir, err := os.MkdirTemp("", "mcpgw-config-test")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{keyFile: filepath.Join(dir, "cur.pem"), prevFile: filepath.Join(dir, "prev.pem")}
	for _, p := range []string{f.keyFile, f.prevFile} {
		k, err := signing.Generate(2048)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, signing.EncodePEM(k), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	k, _ := secrets.NewKey("k1")
	f.ring = secrets.EncodeKey(k)
	h, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	f.hash = string(h)
	fx = f
	return f
}

func load(t *testing.T, args []string, env ...string) (*Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return Load(fs, args, env)
}

// validEnv is a complete production configuration.
func validEnv(f *fixture) []string {
	return []string{
		"MCPGW_DATABASE_URL=postgres://mcpgw:s3cret@db.internal:5432/mcpgw?sslmode=verify-full",
		"MCPGW_PUBLIC_BASE_URL=https://mcp.example.com/",
		"MCPGW_SIGNING_KEY_FILE=" + f.keyFile,
		"MCPGW_ENCRYPTION_KEYS=" + f.ring,
		"MCPGW_STATIC_USERS=alice@example.com:" + f.hash,
		"PATH=/usr/bin",
	}
}

func TestLoadLayers(t *testing.T) {
	f := testFixture(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "mcpgw.yaml")
	os.WriteFile(file, []byte(`
log_level: debug
listen:
  http: 0.0.0.0:8000
  authz: 0.0.0.0:9000
tokens:
  access_token: 10m
allowed_origins: [https://App.example.com/]
oauth:
  registration_per_minute: 5
`), 0o600)
	env := append(validEnv(f), "MCPGW_CONFIG="+file, "MCPGW_LISTEN_AUTHZ=0.0.0.0:9100", "MCPGW_TOKENS_CONSENT=2m")
	c, err := load(t, []string{"--listen-authz", "0.0.0.0:9200", "--log-level=warn", "rest"}, env...)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	checks := []struct{ name, got, want string }{
		{"file", c.Listen.HTTP, "0.0.0.0:8000"},
		{"flag beats env beats file", c.Listen.Authz, "0.0.0.0:9200"},
		{"flag beats file", c.LogLevel, "warn"},
		{"env", c.Tokens.Consent.String(), "2m0s"},
		{"file duration", c.Tokens.AccessToken.String(), "10m0s"},
		{"default", c.Listen.XDS, "127.0.0.1:18000"},
		{"trailing slash trimmed", c.PublicBaseURL, "https://mcp.example.com"},
		{"issuer defaults to base", c.Issuer, "https://mcp.example.com"},
		{"origin normalized", strings.Join(c.AllowedOrigins, ","), "https://app.example.com"},
		{"components default", strings.Join(c.Components, ","), "oauth,authz,xds"},
		{"trusted ip default", c.TrustedClientIP, "envoy"},
		{"audit retention", c.AuditRetention.String(), "1440h0m0s"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s: got %q want %q", ch.name, ch.got, ch.want)
		}
	}
	if c.OAuth.RegistrationPerMinute != 5 || c.SigningKeys() == nil || c.KeyRing() == nil {
		t.Fatal("component/keys not loaded")
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("listen:\n  htp: x\n"), 0o600)
	baddur := filepath.Join(dir, "baddur.yaml")
	os.WriteFile(baddur, []byte("tokens:\n  session: 3600\n"), 0o600)
	cases := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"unknown yaml key", nil, []string{"MCPGW_CONFIG=" + bad}, "htp"},
		{"numeric duration", nil, []string{"MCPGW_CONFIG=" + baddur}, "duration must be a string"},
		{"missing file", []string{"--config", filepath.Join(dir, "nope.yaml")}, nil, "config file"},
		{"bad env duration", nil, []string{"MCPGW_TOKENS_SESSION=forever"}, "MCPGW_TOKENS_SESSION"},
		{"bad flag duration", []string{"--tokens-session=1x"}, nil, "--tokens-session"},
		{"bad int", nil, []string{"MCPGW_OAUTH_REGISTRATION_PER_MINUTE=ten"}, "MCPGW_OAUTH_REGISTRATION_PER_MINUTE"},
		{"unknown flag", []string{"--nope"}, nil, "nope"},
		{"secret has no flag", []string{"--encryption-keys=x"}, nil, "encryption-keys"},
		{"bad static users", nil, []string{"MCPGW_STATIC_USERS=nocolon"}, "email:bcrypt-hash"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := load(t, c.args, c.env...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want mention of %q", err, c.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	f := testFixture(t)
	cases := []struct {
		name string
		env  []string // appended to validEnv
		args []string
		dev  bool
		key  string // expected problem key; "" = valid
	}{
		{name: "valid production"},
		{name: "dev needs nothing", dev: true, env: []string{"MCPGW_DATABASE_URL=", "MCPGW_PUBLIC_BASE_URL=", "MCPGW_SIGNING_KEY_FILE=", "MCPGW_ENCRYPTION_KEYS=", "MCPGW_STATIC_USERS="}},
		{name: "missing database", env: []string{"MCPGW_DATABASE_URL="}, key: "database_url"},
		{name: "bad database", env: []string{"MCPGW_DATABASE_URL=postgres://u:pw@host:notaport/db"}, key: "database_url"},
		{name: "missing public url", env: []string{"MCPGW_PUBLIC_BASE_URL="}, key: "public_base_url"},
		{name: "http public url", env: []string{"MCPGW_PUBLIC_BASE_URL=http://mcp.example.com"}, key: "public_base_url"},
		{name: "http loopback ok", env: []string{"MCPGW_PUBLIC_BASE_URL=http://127.0.0.1:10000"}},
		{name: "public url with path", env: []string{"MCPGW_PUBLIC_BASE_URL=https://x.example/gw"}, key: "public_base_url"},
		{name: "public url with query", env: []string{"MCPGW_PUBLIC_BASE_URL=https://x.example?a=b"}, key: "public_base_url"},
		{name: "public url with userinfo", env: []string{"MCPGW_PUBLIC_BASE_URL=https://u:p@x.example"}, key: "public_base_url"},
		{name: "relative public url", env: []string{"MCPGW_PUBLIC_BASE_URL=mcp.example.com"}, key: "public_base_url"},
		{name: "issuer with path ok", env: []string{"MCPGW_ISSUER=https://x.example/tenant"}},
		{name: "issuer with fragment", env: []string{"MCPGW_ISSUER=https://x.example/#f"}, key: "issuer"},
		{name: "unknown component", args: []string{"--components=oauth,proxy"}, key: "components"},
		{name: "xds alone needs no keys", args: []string{"--components=xds"}, env: []string{"MCPGW_SIGNING_KEY_FILE=", "MCPGW_ENCRYPTION_KEYS=", "MCPGW_STATIC_USERS="}},
		{name: "authz with jwks url needs no signing key", args: []string{"--components=authz", "--authz-jwks-url=https://mcp.example.com/oauth/jwks.json"}, env: []string{"MCPGW_SIGNING_KEY_FILE="}},
		{name: "authz needs signing key", args: []string{"--components=authz"}, env: []string{"MCPGW_SIGNING_KEY_FILE="}, key: "keys.signing_key_file"},
		{name: "oauth needs encryption keys", env: []string{"MCPGW_ENCRYPTION_KEYS="}, key: "keys.encryption_keys"},
		{name: "bad encryption keys", env: []string{"MCPGW_ENCRYPTION_KEYS=k1:c2hvcnQ="}, key: "keys.encryption_keys"},
		{name: "missing signing key file", env: []string{"MCPGW_SIGNING_KEY_FILE=/nonexistent/key.pem"}, key: "keys.signing_key_file"},
		{name: "previous without current", env: []string{"MCPGW_SIGNING_KEY_FILE=", "MCPGW_PREVIOUS_SIGNING_KEY_FILES=" + f.prevFile}, args: []string{"--components=xds"}, key: "keys.signing_key_file"},
		{name: "previous keys ok", env: []string{"MCPGW_PREVIOUS_SIGNING_KEY_FILES=" + f.prevFile}},
		{name: "previous same as current", env: []string{"MCPGW_PREVIOUS_SIGNING_KEY_FILES=" + f.keyFile}, key: "keys.signing_key_file"},
		{name: "bad listen", args: []string{"--listen-http=8080"}, key: "listen.http"},
		{name: "bad listen port", args: []string{"--listen-xds=:http"}, key: "listen.xds"},
		{name: "duplicate listen", args: []string{"--listen-authz=127.0.0.1:8080"}, key: "listen.authz"},
		{name: "port 0 may repeat", args: []string{"--listen-http=127.0.0.1:0", "--listen-authz=127.0.0.1:0"}},
		{name: "empty http listen for oauth", args: []string{"--listen-http="}, key: "listen.http"},
		{name: "metrics may be disabled", args: []string{"--listen-metrics="}},
		{name: "bad trusted ip", args: []string{"--trusted-client-ip=x-forwarded-for"}, key: "trusted_client_ip"},
		{name: "peer ip ok", args: []string{"--trusted-client-ip=peer"}},
		{name: "bad origin path", args: []string{"--allowed-origins=https://a.example/app"}, key: "allowed_origins"},
		{name: "wildcard origin", args: []string{"--allowed-origins=*"}, key: "allowed_origins"},
		{name: "bad cidr", args: []string{"--dev-allowlist-cidrs=10.0.0.0/33"}, key: "dev_allowlist.cidrs"},
		{name: "single ip in allowlist", args: []string{"--dev-allowlist-cidrs=127.0.0.1,::1"}},
		{name: "bad allowlist host", args: []string{"--dev-allowlist-hosts=http://x"}, key: "dev_allowlist.hosts"},
		{name: "bad email", env: []string{"MCPGW_STATIC_USERS=alice:" + f.hash}, key: "static_users"},
		{name: "bad bcrypt", env: []string{"MCPGW_STATIC_USERS=alice@example.com:plaintext"}, key: "static_users"},
		{name: "duplicate user", env: []string{"MCPGW_STATIC_USERS=a@x.example:" + f.hash + ",A@x.example:" + f.hash}, key: "static_users"},
		{name: "no login method", env: []string{"MCPGW_STATIC_USERS="}, key: "oidc"},
		{name: "oidc complete", env: []string{"MCPGW_STATIC_USERS=", "MCPGW_OIDC_ISSUER=https://idp.example", "MCPGW_OIDC_CLIENT_ID=c", "MCPGW_OIDC_CLIENT_SECRET=s", "MCPGW_OIDC_REDIRECT_URL=https://mcp.example.com/login/callback"}},
		{name: "oidc partial", env: []string{"MCPGW_OIDC_ISSUER=https://idp.example"}, key: "oidc"},
		{name: "oidc http issuer", env: []string{"MCPGW_OIDC_ISSUER=http://idp.example", "MCPGW_OIDC_CLIENT_ID=c", "MCPGW_OIDC_CLIENT_SECRET=s", "MCPGW_OIDC_REDIRECT_URL=https://mcp.example.com/cb"}, key: "oidc.issuer"},
		{name: "access token too long", args: []string{"--tokens-access-token=1h"}, key: "tokens.access_token"},
		{name: "code too long", args: []string{"--tokens-auth-code=11m"}, key: "tokens.auth_code"},
		{name: "consent too long", args: []string{"--tokens-consent=6m"}, key: "tokens.consent"},
		{name: "auth request too long", args: []string{"--tokens-auth-request=31m"}, key: "tokens.auth_request"},
		{name: "provider state too long", args: []string{"--tokens-provider-state=1h"}, key: "tokens.provider_state"},
		{name: "refresh too short", args: []string{"--tokens-refresh-token=1m"}, key: "tokens.refresh_token"},
		{name: "session too short", args: []string{"--tokens-session=1s"}, key: "tokens.session"},
		{name: "retention too short", args: []string{"--audit-retention=1h"}, key: "audit_retention"},
		{name: "bad log level", args: []string{"--log-level=loud"}, key: "log_level"},
		{name: "log level case", args: []string{"--log-level=DEBUG"}},
		{name: "shutdown timeout zero", args: []string{"--shutdown-timeout=0s"}, key: "shutdown_timeout"},
		{name: "registration rate zero", args: []string{"--oauth-registration-per-minute=0"}, key: "oauth.registration_per_minute"},
		{name: "jwks http", args: []string{"--authz-jwks-url=http://oauth.internal/jwks"}, key: "authz.jwks_url"},
		{name: "leeway too big", args: []string{"--authz-leeway=1h"}, key: "authz.leeway"},
		{name: "resync too small", args: []string{"--xds-resync-interval=1ms"}, key: "xds.resync_interval"},
		{name: "api body too small", args: []string{"--api-max-body-bytes=10"}, key: "api.max_body_bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := load(t, tc.args, append(validEnv(f), tc.env...)...)
			if err != nil {
				t.Fatal(err)
			}
			c.Dev = tc.dev
			err = c.Validate()
			if tc.key == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || !ve.Has(tc.key) {
				t.Fatalf("want a problem with %s, got %v", tc.key, err)
			}
			if len(ve.Problems) != 1 {
				t.Errorf("want exactly one problem, got %v", err)
			}
			// Messages name the env var and never echo secrets.
			for _, secret := range []string{"s3cret", f.ring[3:], f.hash} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error leaks a secret: %v", err)
				}
			}
		})
	}
}

func TestValidationMessageNamesEnvAndFlag(t *testing.T) {
	f := testFixture(t)
	c, _ := load(t, []string{"--log-level=loud"}, validEnv(f)...)
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "log_level (MCPGW_LOG_LEVEL, --log-level): must be") {
		t.Fatalf("message: %v", err)
	}
}

func TestDevDefaults(t *testing.T) {
	c, err := load(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Dev = true
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.PublicBaseURL != "http://127.0.0.1:8080" || c.TrustedClientIP != "peer" || c.SigningKeys() == nil || c.KeyRing() == nil || len(c.Warnings()) < 2 {
		t.Fatalf("dev defaults: %q %q %v", c.PublicBaseURL, c.TrustedClientIP, c.Warnings())
	}
}

func TestRedacted(t *testing.T) {
	f := testFixture(t)
	c, _ := load(t, nil, append(validEnv(f), "MCPGW_OIDC_CLIENT_SECRET=oidc-s3cret-value")...)
	out := c.Redacted()
	for _, s := range []string{"s3cret", f.ring[3:], f.hash, "oidc-s3cret-value"} {
		if strings.Contains(out, s) {
			t.Fatalf("Redacted leaks %q: %s", s, out)
		}
	}
	if !strings.Contains(out, "alice@example.com") || !strings.Contains(out, "db.internal") {
		t.Fatalf("Redacted lost non-secrets: %s", out)
	}
	for in, want := range map[string]string{
		"host=db user=u password=pw dbname=x": "host=db user=u password=REDACTED dbname=x",
		"postgres://u@db/x":                   "postgres://u@db/x",
		"postgres://u:p@ss@db/x":              "postgres://u:REDACTED@db/x",
	} {
		if got := redactDSN(in); got != want {
			t.Errorf("redactDSN(%q) = %q", in, got)
		}
	}
}

func TestUnknownEnvWarns(t *testing.T) {
	c, err := load(t, nil, "MCPGW_DATABSE_URL=x", "MCPGW_TEST_PG=y")
	if err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(c.Warnings(), ";"); !strings.Contains(w, "MCPGW_DATABSE_URL") || strings.Contains(w, "MCPGW_TEST_PG") {
		t.Fatalf("warnings: %q", w)
	}
}

// TestBindingsMatchYAML: every binding key is a real YAML key (so the
// README reference, env names and file keys agree), and names are unique.
func TestBindingsMatchYAML(t *testing.T) {
	envs, flags := map[string]bool{}, map[string]bool{}
	for _, b := range Reference() {
		if envs[b.Env()] || (b.Flag() != "" && flags[b.Flag()]) {
			t.Fatalf("duplicate name for %s", b.Key)
		}
		envs[b.Env()], flags[b.Flag()] = true, true
		if b.Secret && b.Flag() != "" {
			t.Fatalf("secret %s has a flag", b.Key)
		}
		if b.Key == "static_users" {
			continue
		}
		// Build a one-key YAML document and load it strictly.
		parts := strings.Split(b.Key, ".")
		doc, indent := "", ""
		for _, p := range parts[:len(parts)-1] {
			doc += indent + p + ":\n"
			indent += "  "
		}
		val := `"x"`
		switch {
		case strings.Contains(b.Usage, "comma-separated"):
			val = `["x"]`
		case strings.HasPrefix(b.Key, "tokens.") || strings.Contains(b.Key, "interval") || strings.Contains(b.Key, "timeout") || strings.Contains(b.Key, "retention") || strings.Contains(b.Key, "leeway") || strings.Contains(b.Key, "skew"):
			val = `"1m"`
		case strings.Contains(b.Key, "per_minute") || strings.Contains(b.Key, "bytes"):
			val = "1"
		}
		doc += indent + parts[len(parts)-1] + ": " + val + "\n"
		file := filepath.Join(t.TempDir(), "c.yaml")
		os.WriteFile(file, []byte(doc), 0o600)
		if _, err := load(t, []string{"--config", file}); err != nil {
			t.Errorf("key %s is not a YAML key: %v", b.Key, err)
		}
	}
	_ = time.Second
}

// TestBoolVar covers the helper component files use for boolean values,
// including a bare --flag.
func TestBoolVar(t *testing.T) {
	var v bool
	b := boolVar("oauth.x", "x", &v)
	if err := b.set("true"); err != nil || !v || b.Default() != "true" {
		t.Fatal("set true")
	}
	if err := b.set("maybe"); err == nil {
		t.Fatal("bad boolean accepted")
	}
	var seen [][2]string
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Var(&boolRawFlag{rawFlag{name: "x", seen: &seen}}, "x", "")
	if err := fs.Parse([]string{"--x"}); err != nil || len(seen) != 1 || seen[0][1] != "true" {
		t.Fatalf("bare bool flag: %v %v", err, seen)
	}
}
