package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"mcpgw/api"
	"mcpgw/domain/secrets"
	"mcpgw/domain/signing"
	"mcpgw/oauthserver"
	"mcpgw/store/postgres"
	"mcpgw/store/postgres/pgtest"
)

var (
	adminBinOnce sync.Once
	adminBinPath string
	adminBinErr  error
)

// realBinary builds the mcpgw binary once per test process.
func realBinary(t *testing.T) string {
	t.Helper()
	adminBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mcpgw-admin-test-")
		if err != nil {
			adminBinErr = err
			return
		}
		adminBinPath = filepath.Join(dir, "mcpgw")
		out, err := exec.Command("go", "build", "-o", adminBinPath, ".").CombinedOutput()
		if err != nil {
			adminBinErr = errors.New("go build: " + err.Error() + "\n" + string(out))
		}
	})
	if adminBinErr != nil {
		t.Fatal(adminBinErr)
	}
	return adminBinPath
}

// cli runs the real binary with env and args.
type cli struct {
	t   *testing.T
	bin string
	env []string
	// used records every admin subcommand run (coverage check).
	used map[string]bool
}

func (c *cli) run(args ...string) (int, string, string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, c.env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("run %v: %v", args, err)
	}
	if len(args) > 0 && args[0] == "admin" {
		if cmd, _ := findAdminCmd(stripGlobal(args[1:])); cmd != nil {
			c.used[cmd.words] = true
		}
	}
	return code, out.String(), errb.String()
}

func stripGlobal(args []string) []string {
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		withValue := !strings.Contains(args[0], "=")
		args = args[1:]
		if withValue && len(args) > 0 {
			args = args[1:]
		}
	}
	return args
}

// ok runs an admin command that must succeed and returns its stdout.
func (c *cli) ok(args ...string) string {
	c.t.Helper()
	code, out, errs := c.run(append([]string{"admin"}, args...)...)
	if code != 0 {
		c.t.Fatalf("mcpgw admin %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// okJSON runs with -o json and decodes into v.
func (c *cli) okJSON(v any, args ...string) {
	c.t.Helper()
	out := c.ok(append([]string{"-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		c.t.Fatalf("mcpgw admin %s: not JSON: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestAdminCLIAgainstRealServer bootstraps a system admin in a real
// Postgres with the real binary, then drives every `mcpgw admin`
// subcommand against an API server on that database.
func TestAdminCLIAgainstRealServer(t *testing.T) {
	bin := realBinary(t)
	dsn := pgtest.DSN(t)
	c := &cli{t: t, bin: bin, used: map[string]bool{}}

	// bootstrap: first admin, token printed once; a second run refuses.
	code, out, errs := c.run("bootstrap", "--database-url", dsn, "--email", "Root@Example.com")
	if code != 0 {
		t.Fatalf("bootstrap: %d %s %s", code, out, errs)
	}
	var rootToken string
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "MCPGW_TOKEN="); ok {
			rootToken = v
		}
	}
	if !strings.HasPrefix(rootToken, "mgw_") {
		t.Fatalf("bootstrap printed no token:\n%s", out)
	}
	if code, _, errs := c.run("bootstrap", "--database-url", dsn, "--email", "second@example.com"); code != exitError || !strings.Contains(errs, "already exists") {
		t.Fatalf("second bootstrap: %d %s", code, errs)
	}
	if code, _, errs := c.run("bootstrap", "--database-url", dsn); code != exitUsage || !strings.Contains(errs, "--email") {
		t.Fatalf("bootstrap without email: %d %s", code, errs)
	}

	// The API server: oauthserver + api on the same Postgres.
	st, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	key, err := signing.Generate(2048)
	if err != nil {
		t.Fatal(err)
	}
	set, _ := signing.NewSet(key)
	ek, _ := secrets.NewKey("k1")
	kr, _ := secrets.NewKeyRing(ek)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	as, err := oauthserver.New(oauthserver.Options{Store: st, Issuer: "http://127.0.0.1", PublicBaseURL: "https://gw.example.com", Keys: *set, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	h, err := api.New(api.Options{Store: st, Authenticate: as.Authenticate, KeyRing: kr, PublicBaseURL: "https://gw.example.com",
		Resolver: cliResolver{}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Mount(as); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(as)
	t.Cleanup(srv.Close)
	c.env = []string{"MCPGW_SERVER=" + srv.URL, "MCPGW_TOKEN=" + rootToken}

	// Usage errors: no token, unknown subcommand, missing argument.
	noTok := &cli{t: t, bin: bin, env: []string{"MCPGW_SERVER=" + srv.URL}, used: map[string]bool{}}
	if code, _, errs := noTok.run("admin", "me"); code != exitUsage || !strings.Contains(errs, "MCPGW_TOKEN") {
		t.Fatalf("no token: %d %s", code, errs)
	}
	if code, _, errs := c.run("admin", "frob"); code != exitUsage || !strings.Contains(errs, "unknown subcommand") {
		t.Fatalf("unknown subcommand: %d %s", code, errs)
	}
	if code, _, errs := c.run("admin", "configs", "get"); code != exitUsage || !strings.Contains(errs, "CONFIG_ID") {
		t.Fatalf("missing arg: %d %s", code, errs)
	}
	if code, _, errs := c.run("admin", "--token", "mgw_wrong", "me"); code != exitError || !strings.Contains(errs, "401 unauthenticated") {
		t.Fatalf("bad token: %d %s", code, errs)
	}

	var me api.MeView
	c.okJSON(&me, "me")
	if me.User.Email != "root@example.com" || !me.User.SystemAdmin {
		t.Fatalf("me = %+v", me)
	}
	if out := c.ok("me"); !strings.Contains(out, "root@example.com") {
		t.Fatalf("me table:\n%s", out)
	}

	// Users and tokens.
	var alice, bob api.UserView
	c.okJSON(&alice, "users", "create", "--email", "alice@example.com", "--display-name", "Alice")
	c.okJSON(&bob, "users", "create", "--email", "bob@example.com")
	if out := c.ok("users", "list"); !strings.Contains(out, "EMAIL") || !strings.Contains(out, "alice@example.com") || !strings.Contains(out, "bob@example.com") {
		t.Fatalf("users list table:\n%s", out)
	}
	c.ok("users", "get", alice.ID)
	var tok api.CreatedTokenView
	c.okJSON(&tok, "tokens", "create", "--name", "ci", "--expires-in", "1h")
	if !strings.HasPrefix(tok.Token, "mgw_") {
		t.Fatalf("token = %+v", tok)
	}
	if out := c.ok("tokens", "list", "me"); !strings.Contains(out, "ci") || strings.Contains(out, tok.Token) {
		t.Fatalf("tokens list:\n%s", out)
	}
	c.ok("tokens", "revoke", me.User.ID, tok.ID)

	// Orgs and members.
	var org api.OrgView
	c.okJSON(&org, "orgs", "create", "--name", "Acme")
	c.ok("members", "add", org.ID, alice.ID, "--role", "admin")
	c.ok("members", "add", org.ID, bob.ID)
	if out := c.ok("members", "list", org.ID); strings.Count(out, "\n") != 4 {
		t.Fatalf("members list:\n%s", out)
	}
	c.ok("members", "set-role", org.ID, bob.ID, "--role", "member")
	if out := c.ok("orgs", "list"); !strings.Contains(out, "Acme") {
		t.Fatalf("orgs list:\n%s", out)
	}
	c.ok("orgs", "get", org.ID)

	// Configs: static header from a file (secret stays out of argv).
	hf := filepath.Join(t.TempDir(), "headers")
	if err := os.WriteFile(hf, []byte("Authorization: Bearer cli-secret-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var cfg api.ConfigView
	c.okJSON(&cfg, "configs", "create", "--org", org.ID, "--name", "tools", "--remote-url", "https://mcp.example.com/mcp",
		"--auth-mode", "static_headers", "--sharing-mode", "multi_user", "--static-headers-file", hf, "--aux-header", "X-Tenant: acme")
	if cfg.Version != 1 || cfg.AuxHeaders["x-tenant"] != "acme" || cfg.ConnectURL == "" {
		t.Fatalf("config = %+v", cfg)
	}
	if out := c.ok("configs", "list", "--org", org.ID); !strings.Contains(out, "CONNECT_URL") || !strings.Contains(out, cfg.ID) {
		t.Fatalf("configs list:\n%s", out)
	}
	if out := c.ok("configs", "get", cfg.ID); strings.Contains(out, "cli-secret-value") {
		t.Fatalf("configs get shows the secret:\n%s", out)
	}
	var up api.UpdateResult
	c.okJSON(&up, "configs", "update", cfg.ID, "--name", "tools-2")
	if up.Material || up.Config.Name != "tools-2" {
		t.Fatalf("update = %+v", up)
	}
	c.okJSON(&up, "configs", "update", cfg.ID, "--remote-url", "https://mcp.example.com/v2")
	if !up.Material || up.Config.Version != 2 {
		t.Fatalf("material update = %+v", up)
	}
	body := filepath.Join(t.TempDir(), "patch.json")
	os.WriteFile(body, []byte(`{"registry":{"owner":"team-a"}}`), 0o600)
	c.okJSON(&up, "configs", "update", cfg.ID, "-f", body)
	if string(up.Config.Registry) == "" {
		t.Fatalf("-f update = %+v", up)
	}
	c.ok("configs", "disable", cfg.ID)
	c.ok("configs", "enable", cfg.ID)
	var rot api.RotateResult
	c.okJSON(&rot, "configs", "rotate-route", cfg.ID)
	if rot.ConnectURL == cfg.ConnectURL {
		t.Fatal("rotation kept the URL")
	}

	// Bad input is the server's 400, printed on stderr, exit 1.
	code, _, errs = c.run("admin", "configs", "create", "--name", "bad", "--remote-url", "https://10.0.0.1/", "--auth-mode", "none")
	if code != exitError || !strings.Contains(errs, "400 invalid_request") || !strings.Contains(errs, "non-public") {
		t.Fatalf("bad config: %d %s", code, errs)
	}

	// Assignments, available, connect token, instances.
	// A non-member cannot be assigned: the server refuses (409) with a message.
	if code, _, errs := c.run("admin", "assignments", "add", cfg.ID, "00000000-0000-4000-8000-000000000000"); code != exitError || !strings.Contains(errs, "409") {
		t.Fatalf("assign non-member: %d %s", code, errs)
	}
	c.ok("assignments", "add", cfg.ID, me.User.ID)
	c.ok("assignments", "add", cfg.ID, bob.ID)
	if out := c.ok("assignments", "list", cfg.ID); !strings.Contains(out, bob.ID) {
		t.Fatalf("assignments:\n%s", out)
	}
	c.ok("assignments", "remove", cfg.ID, bob.ID)
	var av struct{ Available []api.AvailableView }
	c.okJSON(&av, "available")
	if len(av.Available) != 1 || av.Available[0].ConnectURL != rot.ConnectURL {
		t.Fatalf("available = %+v", av)
	}
	var ct struct {
		AccessToken string `json:"access_token"`
	}
	c.okJSON(&ct, "connect-token", cfg.ID)
	if strings.Count(ct.AccessToken, ".") != 2 {
		t.Fatalf("connect token = %+v", ct)
	}
	var insts struct{ Instances []api.InstanceView }
	c.okJSON(&insts, "instances", "list")
	if len(insts.Instances) != 1 {
		t.Fatalf("instances = %+v", insts)
	}
	c.okJSON(&insts, "instances", "list", "--org", org.ID, "--all")
	c.ok("instances", "revoke", insts.Instances[0].ID)

	// Audit with filters and pagination.
	var page api.AuditPage
	c.okJSON(&page, "audit", "--org", org.ID, "--limit", "2")
	if len(page.Events) != 2 || page.NextBefore == 0 {
		t.Fatalf("audit page = %+v", page)
	}
	if out := c.ok("audit", "--config", cfg.ID, "--type", "config.update"); strings.Count(out, "config.update") != 3 {
		t.Fatalf("audit table:\n%s", out)
	}

	// Teardown commands.
	c.ok("members", "remove", org.ID, bob.ID)
	c.ok("configs", "delete", cfg.ID)
	c.ok("users", "block", alice.ID)
	c.ok("users", "unblock", alice.ID)
	c.ok("users", "delete", alice.ID)

	// Every subcommand was exercised.
	var missing []string
	for _, cmd := range adminCmds() {
		if !c.used[cmd.words] {
			missing = append(missing, cmd.words)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("subcommands not exercised: %v", missing)
	}
}

// TestAdminCLICoversAPI: every API operation has a CLI subcommand.
func TestAdminCLICoversAPI(t *testing.T) {
	// The CLI's requests, by method and path pattern.
	covered := map[string]bool{}
	for _, cmd := range adminCmds() {
		fs := newFlagSet()
		build := cmd.flags(fs)
		var pos []string
		for _, a := range strings.Fields(cmd.args) {
			_ = a
			pos = append(pos, "00000000-0000-4000-8000-000000000001")
		}
		// Fill required flags so the builder returns a request.
		_ = fs.Set("user", "00000000-0000-4000-8000-000000000001")
		r, err := build(pos)
		if err != nil {
			t.Fatalf("%s: %v", cmd.words, err)
		}
		covered[r.method+" "+normPath(r.path)] = true
		if cmd.words == "instances list" {
			_ = fs.Set("org", "00000000-0000-4000-8000-000000000001")
			r, _ = build(nil)
			covered[r.method+" "+normPath(r.path)] = true
		}
	}
	for _, route := range api.Routes() {
		if !covered[normPath(route)] {
			t.Errorf("API operation %s has no mcpgw admin subcommand", route)
		}
	}
}

func newFlagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// cliResolver resolves every name to one public address (no DNS in tests).
type cliResolver struct{}

func (cliResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return []netip.Addr{netip.MustParseAddr("93.184.216.34")}, nil
}

// normPath replaces ids and {wildcards} with "*".
func normPath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		if strings.HasPrefix(s, "{") || len(s) == 36 && strings.Count(s, "-") == 4 {
			parts[i] = "*"
		}
	}
	return strings.Join(parts, "/")
}
