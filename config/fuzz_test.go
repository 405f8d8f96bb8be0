package config

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadValidate feeds arbitrary YAML and an arbitrary environment value
// through Load and Validate: no panic, and a configuration Validate
// accepts has a usable shape.
func FuzzLoadValidate(f *testing.F) {
	f.Add("listen:\n  http: 127.0.0.1:0\n", "MCPGW_TOKENS_CONSENT=2m")
	f.Add("public_base_url: https://x.example\nallowed_origins: [https://a.example]\n", "MCPGW_DEV_ALLOWLIST_CIDRS=10.0.0.0/8")
	f.Add("static_users:\n  - email: a@b.example\n    password_hash: x\n", "MCPGW_STATIC_USERS=a:b")
	f.Add("tokens: {session: \"1h\"}\n", "MCPGW_COMPONENTS=xds,,oauth")
	dir := f.TempDir()
	var fixed []string // real key files, so dev mode does not generate RSA keys per input
	f.Fuzz(func(t *testing.T, yml, envKV string) {
		if fixed == nil {
			fx := testFixture(t)
			fixed = []string{"MCPGW_SIGNING_KEY_FILE=" + fx.keyFile, "MCPGW_ENCRYPTION_KEYS=" + fx.ring}
		}
		p := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(p, []byte(yml), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := load(t, []string{"--config", p}, append(fixed[:2:2], envKV)...)
		if err != nil {
			return
		}
		c.Dev = true
		if c.Validate() != nil {
			return
		}
		if c.PublicBaseURL == "" || len(c.Components) == 0 || c.KeyRing() == nil {
			t.Fatalf("Validate accepted an unusable config: %s", c.Redacted())
		}
	})
}
