package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"mcpgw/config"
)

// runCmd runs a command in-process.
func runCmd(t *testing.T, environ []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), &app{stdout: &out, stderr: &errb, environ: environ}, args)
	return code, out.String(), errb.String()
}

func TestUsage(t *testing.T) {
	if code, _, errs := runCmd(t, nil); code != exitUsage || !strings.Contains(errs, "keygen") {
		t.Fatalf("no args: %d %q", code, errs)
	}
	if code, _, _ := runCmd(t, nil, "help"); code != exitOK {
		t.Fatal("help")
	}
	if code, _, errs := runCmd(t, nil, "frobnicate"); code != exitUsage || !strings.Contains(errs, "unknown command") {
		t.Fatalf("unknown: %d %q", code, errs)
	}
	if code, _, _ := runCmd(t, nil, "keygen", "-h"); code != exitOK {
		t.Fatal("keygen -h")
	}
}

func prodEnv(t *testing.T, lines string) []string {
	t.Helper()
	h, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	env := []string{
		"MCPGW_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres",
		"MCPGW_PUBLIC_BASE_URL=https://mcp.example.com",
		"MCPGW_STATIC_USERS=a@example.com:" + string(h),
	}
	for _, l := range strings.Split(strings.TrimSpace(lines), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			env = append(env, l)
		}
	}
	return env
}

func loadValidate(t *testing.T, env []string) *config.Config {
	t.Helper()
	c, err := config.Load(flagSet(), nil, env)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("printed lines do not validate: %v", err)
	}
	return c
}

func TestKeygen(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := runCmd(t, nil, "keygen", "--dir", dir)
	if code != exitOK {
		t.Fatalf("keygen: %d %s", code, errs)
	}
	signPath, encPath := filepath.Join(dir, "signing-key.pem"), filepath.Join(dir, "encryption-key")
	for _, p := range []string{signPath, encPath} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode %v", p, fi.Mode())
		}
	}
	c := loadValidate(t, prodEnv(t, out))

	// The commented YAML form loads to the same keys.
	var yml []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "# ") && !strings.HasPrefix(l, "# or") {
			yml = append(yml, strings.TrimPrefix(l, "# "))
		}
	}
	yf := filepath.Join(t.TempDir(), "keys.yaml")
	os.WriteFile(yf, []byte(strings.Join(yml, "\n")+"\n"), 0o600)
	cy := loadValidate(t, append(prodEnv(t, ""), "MCPGW_CONFIG="+yf))
	if cy.SigningKeys().Current.ID != c.SigningKeys().Current.ID || cy.KeyRing().PrimaryID() != c.KeyRing().PrimaryID() {
		t.Fatalf("YAML lines load different keys:\n%s", strings.Join(yml, "\n"))
	}

	pem, _ := os.ReadFile(signPath)
	if strings.Contains(string(pem), "Key-Id") {
		t.Fatal("keygen wrote a Key-Id PEM header, which OpenSSL refuses (kid checks: keygen_test.go)")
	}
	enc, _ := os.ReadFile(encPath)
	if !strings.Contains(out, "MCPGW_ENCRYPTION_KEYS="+strings.TrimSpace(string(enc))) {
		t.Fatal("printed ring does not match the key file")
	}
	if c.KeyRing().PrimaryID() == "" || strings.Contains(errs, strings.TrimSpace(string(enc))) {
		t.Fatal("ring / stderr leak")
	}

	// No overwrite without --force; nothing changes.
	code, _, errs = runCmd(t, nil, "keygen", "--dir", dir)
	if code != exitUsage || !strings.Contains(errs, "refusing to overwrite") {
		t.Fatalf("second keygen: %d %s", code, errs)
	}
	if pem2, _ := os.ReadFile(signPath); !bytes.Equal(pem, pem2) {
		t.Fatal("signing key changed without --force")
	}
	// Only one of the two files existing also refuses, and writes nothing.
	os.Remove(signPath)
	if code, _, _ := runCmd(t, nil, "keygen", "--dir", dir); code != exitUsage {
		t.Fatal("keygen overwrote the encryption key")
	}
	if _, err := os.Stat(signPath); err == nil {
		t.Fatal("keygen wrote the signing key although it refused")
	}
	os.WriteFile(signPath, pem, 0o600)

	// --force overwrites.
	code, _, errs = runCmd(t, nil, "keygen", "--dir", dir, "--force")
	if code != exitOK {
		t.Fatalf("--force: %d %s", code, errs)
	}
	if pem3, _ := os.ReadFile(signPath); bytes.Equal(pem, pem3) {
		t.Fatal("--force did not write a new key")
	}
	if code, _, _ := runCmd(t, nil, "keygen", "--dir", dir, "--bits", "1024", "--force"); code != exitUsage {
		t.Fatal("1024-bit key accepted")
	}
}

// TestKeygenRotation: with the current keys in the environment, the
// printed lines keep the old signing key as previous and the old
// encryption key behind the new one.
func TestKeygenRotation(t *testing.T) {
	dir := t.TempDir()
	_, out1, _ := runCmd(t, nil, "keygen", "--dir", dir)
	env1 := prodEnv(t, out1)
	old := loadValidate(t, env1)
	code, out2, errs := runCmd(t, env1, "keygen", "--dir", dir, "--signing-key-out", "signing-key-2.pem", "--encryption-key-out", "encryption-key-2")
	if code != exitOK {
		t.Fatalf("rotate: %s", errs)
	}
	if !strings.Contains(out2, "MCPGW_PREVIOUS_SIGNING_KEY_FILES="+filepath.Join(dir, "signing-key.pem")) {
		t.Fatalf("no previous key line:\n%s", out2)
	}
	c := loadValidate(t, prodEnv(t, out2))
	if ids := c.KeyRing().KeyIDs(); len(ids) != 2 || ids[1] != old.KeyRing().PrimaryID() {
		t.Fatalf("ring ids %v", ids)
	}
	if _, ok := c.SigningKeys().PublicKey(old.SigningKeys().Current.ID); !ok {
		t.Fatal("old signing key not kept for verification")
	}
}

func flagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func TestServeRejectsBadConfig(t *testing.T) {
	code, _, errs := runCmd(t, []string{"MCPGW_DATABASE_URL=postgres://u:hunter2@db/x"}, "serve", "--log-level=loud")
	if code != exitUsage {
		t.Fatalf("code %d", code)
	}
	for _, want := range []string{"log_level (MCPGW_LOG_LEVEL, --log-level)", "public_base_url", "keys.signing_key_file"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	if strings.Contains(errs, "hunter2") {
		t.Fatal("password leaked")
	}
	if code, _, errs := runCmd(t, nil, "serve", "extra"); code != exitUsage || !strings.Contains(errs, "unexpected") {
		t.Fatalf("extra args: %d %s", code, errs)
	}
}

// lineWriter delivers written lines on a channel.
type lineWriter struct {
	mu    sync.Mutex
	buf   []byte
	lines chan string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		select {
		case w.lines <- string(w.buf[:i]):
		default:
		}
		w.buf = w.buf[i+1:]
	}
}

func waitLine(t *testing.T, lines <-chan string, prefix string, d time.Duration) string {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case l := <-lines:
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-deadline:
			t.Fatalf("no %q line within %v", prefix, d)
		}
	}
}

func field(line, key string) string {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

// TestServeFramework runs the framework in-process with fake components:
// listeners are bound and handed over, the readiness line names them,
// metrics are served, cancellation shuts everything down, a failing
// component stops the process, and a component that ignores shutdown makes
// serve fail after the timeout.
func TestServeFramework(t *testing.T) {
	saved := components
	t.Cleanup(func() { components = saved })

	components = map[string]componentFunc{}
	registerComponent(config.ComponentXDS, func(ctx context.Context, d Deps) error {
		if d.Store == nil || d.Registry == nil || d.Config == nil || d.Logger == nil {
			return errors.New("missing deps")
		}
		return serveHTTP(ctx, d.Listener, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "fake-xds")
		}), time.Second)
	})
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("duplicate registration did not panic")
			}
		}()
		registerComponent(config.ComponentXDS, nil)
	}()

	args := []string{"--listen-http=127.0.0.1:0", "--listen-authz=127.0.0.1:0", "--listen-xds=127.0.0.1:0", "--listen-metrics=127.0.0.1:0"}
	ctx, cancel := context.WithCancel(context.Background())
	lw := &lineWriter{lines: make(chan string, 16)}
	var errb bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, &app{stdout: lw, stderr: &errb}, append([]string{"dev"}, args...)) }()
	ready := waitLine(t, lw.lines, "mcpgw ready", 30*time.Second)
	if field(ready, "components") != "xds" || field(ready, "store") != "memory" {
		t.Fatalf("ready line: %s", ready)
	}
	get := func(url string) string {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := get("http://" + field(ready, "xds") + "/"); got != "fake-xds" {
		t.Fatalf("component: %q", got)
	}
	if got := get("http://" + field(ready, "metrics") + "/metrics"); !strings.Contains(got, "go_goroutines") {
		t.Fatalf("metrics: %.200s", got)
	}
	if got := get("http://" + field(ready, "metrics") + "/readyz"); got != "ok\n" {
		t.Fatalf("readyz: %q", got)
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no shutdown")
	}

	// serve with a component that is not built in.
	components = map[string]componentFunc{}
	code, _, errs := runCmd(t, prodEnvNoKeys(), "serve", "--components=xds")
	if code != exitUsage || !strings.Contains(errs, "not built into this binary") {
		t.Fatalf("missing component: %d %s", code, errs)
	}

	// A failing component stops the process with its error.
	registerComponent(config.ComponentXDS, func(ctx context.Context, d Deps) error {
		d.Listener.Close()
		return errors.New("boom")
	})
	code, _, errs = runCmd(t, nil, append([]string{"dev"}, args...)...)
	if code != exitError || !strings.Contains(errs, "xds: boom") {
		t.Fatalf("failing component: %d %s", code, errs)
	}

	// A component that ignores cancellation hits the shutdown timeout.
	components = map[string]componentFunc{}
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	registerComponent(config.ComponentXDS, func(ctx context.Context, d Deps) error { <-block; return nil })
	ctx2, cancel2 := context.WithCancel(context.Background())
	lw2 := &lineWriter{lines: make(chan string, 16)}
	var errb2 bytes.Buffer
	go func() {
		done <- run(ctx2, &app{stdout: lw2, stderr: &errb2}, append([]string{"dev", "--shutdown-timeout=1s"}, args...))
	}()
	waitLine(t, lw2.lines, "mcpgw ready", 30*time.Second)
	cancel2()
	select {
	case code := <-done:
		if code != exitError {
			t.Fatalf("stuck component: exit %d", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not give up after the shutdown timeout")
	}
}

func prodEnvNoKeys() []string {
	return []string{"MCPGW_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres", "MCPGW_PUBLIC_BASE_URL=https://mcp.example.com"}
}

// TestDevBinary builds the real binary, runs `mcpgw dev` on ephemeral
// ports, waits for its readiness line, checks /healthz, and stops it with
// SIGTERM: exit code 0.
func TestDevBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "mcpgw")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "dev", "--listen-http=127.0.0.1:0", "--listen-authz=127.0.0.1:0", "--listen-xds=127.0.0.1:0", "--listen-metrics=127.0.0.1:0")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var ready string
	select {
	case ready = <-lines:
	case <-time.After(90 * time.Second):
		t.Fatalf("no readiness line; stderr:\n%s", stderr.String())
	}
	if !strings.HasPrefix(ready, "mcpgw ready mode=dev") {
		t.Fatalf("first line %q; stderr:\n%s", ready, stderr.String())
	}
	metrics := field(ready, "metrics")
	if _, _, err := net.SplitHostPort(metrics); err != nil {
		t.Fatalf("ready line lacks metrics address: %s", ready)
	}
	resp, err := http.Get("http://" + metrics + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz %d", resp.StatusCode)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for range lines {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v; stderr:\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "stopped") {
		t.Fatalf("no graceful stop logged:\n%s", stderr.String())
	}
}
