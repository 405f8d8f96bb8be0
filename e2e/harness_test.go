package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"mcpgw/domain"
	"mcpgw/domain/secrets"
	"mcpgw/e2e/envoystandin"
	"mcpgw/provider"
	"mcpgw/store"
	"mcpgw/store/postgres"
	"mcpgw/store/postgres/pgtest"
)

// mcpgwBin is the mcpgw binary built from this repository by TestMain: the
// scenarios run the real command, as an operator would.
var mcpgwBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mcpgw-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	mcpgwBin = filepath.Join(dir, "mcpgw")
	build := exec.Command("go", "build", "-o", mcpgwBin, "./cmd/mcpgw")
	build.Dir = ".."
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: go build ./cmd/mcpgw:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	alicePassword = "correct horse battery staple e2e"
	aliceEmail    = "alice@example.com"
	bobEmail      = "bob@example.com"
	allowedOrigin = "https://app.example.com"
	// convergence bounds every wait for the system to reach a state.
	convergence = 20 * time.Second
)

// envOptions select how a scenario's system is laid out.
type envOptions struct {
	// split runs oauth, authz and xds as three processes (fault scenarios
	// stop one of them); otherwise one `mcpgw serve` runs all three.
	split bool
}

// env is one complete system: its own database, mcpgw process(es), data
// plane, upstream MCP server and seeded users.
type env struct {
	t    *testing.T
	dir  string
	opts envOptions

	dsn   string        // the test database (seeding)
	pg    *pgtest.Proxy // mcpgw reaches Postgres only through this (faults cut it)
	pgDSN string        // dsn through pg
	st    *postgres.Store
	ring  *secrets.KeyRing
	ca    *testCA

	keyEnv   []string // MCPGW_SIGNING_KEY_FILE, MCPGW_ENCRYPTION_KEYS
	secrets  []string // planted secret values that must never leak
	listen   string   // data plane listener ip:port (xds.listener_addr)
	base     string   // public_base_url = http://listen
	xdsAddr  string
	authz    string
	oauth    string
	metrics  map[string]string
	procs    map[string]*proc // by component ("all" when not split)
	dp       dataPlane
	upstream *upstream

	alice, bob store.User
}

// newEnv starts a complete system for one test and stops it when t ends.
func newEnv(t *testing.T, opts envOptions) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), opts: opts, procs: map[string]*proc{}, metrics: map[string]string{}}
	e.dsn = pgtest.DSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), convergence)
	defer cancel()
	st, err := postgres.Open(ctx, e.dsn)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(st.Close)
	e.st = st
	e.pg, e.pgDSN = pgtest.NewProxy(t, e.dsn)

	e.ca = newTestCA(t, e.dir)
	e.upstream = startUpstream(t, e.ca)
	e.keygen()

	e.listen = freeAddr(t)
	e.base = "http://" + e.listen
	e.xdsAddr = freeAddr(t)
	e.authz = freeAddr(t)
	e.oauth = freeAddr(t)
	e.seedUsers()

	if opts.split {
		for _, c := range []string{"xds", "authz", "oauth"} {
			e.startComponent(c)
		}
	} else {
		e.startComponent("all")
	}
	e.dp = startDataPlane(t, e)
	e.waitHTTP(e.base+"/health", http.StatusOK)
	t.Cleanup(e.checkNoLeaks)
	return e
}

// keygen runs `mcpgw keygen` and keeps the environment lines it prints.
func (e *env) keygen() {
	e.t.Helper()
	dir := filepath.Join(e.dir, "keys")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		e.t.Fatal(err)
	}
	out, err := exec.Command(mcpgwBin, "keygen", "--dir", dir).Output()
	if err != nil {
		e.t.Fatalf("mcpgw keygen: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "MCPGW_") {
			e.keyEnv = append(e.keyEnv, line)
			if v, ok := strings.CutPrefix(line, "MCPGW_ENCRYPTION_KEYS="); ok {
				r, err := secrets.ParseKeyRing(v)
				if err != nil {
					e.t.Fatalf("key ring: %v", err)
				}
				e.ring = r
				// The whole ring spec is a secret; its base64 key part too.
				e.plant(v[strings.IndexByte(v, ':')+1:])
			}
		}
	}
	if e.ring == nil || len(e.keyEnv) != 2 {
		e.t.Fatalf("keygen printed %q", out)
	}
}

// serveEnv is the environment of every mcpgw process of this env.
func (e *env) serveEnv() []string {
	hash, err := bcrypt.GenerateFromPassword([]byte(alicePassword), bcrypt.MinCost)
	if err != nil {
		e.t.Fatal(err)
	}
	env := append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + e.dir,
		"MCPGW_DATABASE_URL=" + e.pgDSN,
		"MCPGW_PUBLIC_BASE_URL=" + e.base,
		"MCPGW_LISTEN_HTTP=" + e.oauth,
		"MCPGW_LISTEN_AUTHZ=" + e.authz,
		"MCPGW_LISTEN_XDS=" + e.xdsAddr,
		"MCPGW_LISTEN_METRICS=127.0.0.1:0",
		"MCPGW_LOG_LEVEL=debug",
		"MCPGW_STATIC_USERS=" + aliceEmail + ":" + string(hash) + "," + bobEmail + ":" + string(hash),
		"MCPGW_ALLOWED_ORIGINS=" + allowedOrigin,
		// Only 127.0.0.1 is allowlisted: 127.0.0.2 stays "loopback outside
		// the allowlist" for the SSRF scenario.
		"MCPGW_DEV_ALLOWLIST_CIDRS=127.0.0.1/32",
		"MCPGW_TRUSTED_CLIENT_IP=envoy",
		"MCPGW_XDS_LISTENER_ADDR=" + e.listen,
		"MCPGW_XDS_UPSTREAM_CA_FILE=" + e.ca.file,
		"MCPGW_XDS_EXT_AUTHZ_TIMEOUT=2s",
		"MCPGW_XDS_RESYNC_INTERVAL=30s",
		"MCPGW_XDS_OAUTH_SERVER_ADDR=" + e.oauth,
		"MCPGW_CLEANUP_INTERVAL=1h",
		// xds holds ADS streams open; a graceful stop waits for them until
		// this bound (see the report on issue 8), so keep restarts quick.
		"MCPGW_SHUTDOWN_TIMEOUT=2s",
		// CIMD documents are served over TLS by the test's CA.
		"SSL_CERT_FILE=" + e.ca.file,
	}, e.keyEnv...)
	return env
}

// startComponent starts `mcpgw serve` for one component ("all" = every
// component in one process) and waits for its readiness line.
func (e *env) startComponent(c string) {
	e.t.Helper()
	comps := "oauth,authz,xds"
	if c != "all" {
		comps = c
	}
	p := startProc(e.t, "mcpgw-"+c, e.serveEnv(), mcpgwBin, "serve", "--components="+comps)
	line := p.waitReady(e.t)
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, "metrics="); ok {
			e.metrics[c] = v
		}
	}
	e.procs[c] = p
}

// restartComponent stops and starts one component process (split envs).
func (e *env) stopComponent(c string) { e.procs[c].stop(e.t) }

// seedUsers creates alice and bob as active users (the static login finds
// them by email), and an org where both are members.
func (e *env) seedUsers() {
	ctx := context.Background()
	var err error
	e.alice, err = e.st.CreateUser(ctx, store.User{ID: store.NewID(), Email: aliceEmail, DisplayName: "Alice", Status: store.UserActive})
	if err != nil {
		e.t.Fatalf("seed alice: %v", err)
	}
	e.bob, err = e.st.CreateUser(ctx, store.User{ID: store.NewID(), Email: bobEmail, DisplayName: "Bob", Status: store.UserActive})
	if err != nil {
		e.t.Fatalf("seed bob: %v", err)
	}
}

// configSpec describes one connection to seed.
type configSpec struct {
	name        string
	remote      string
	mode        store.AuthMode
	static      map[string]string // static_headers mode
	aux         map[string]string
	passthrough bool
	org         *store.Org // nil: personal config of alice
	// providerClient is the operator's client at the upstream AS
	// (oauth_static), sealed into Provider.ClientCredentials.
	providerClient *provider.StaticCredentials
}

// seeded is a config with its current route.
type seeded struct {
	cfg store.Config
	ref domain.RouteRef
}

func (s seeded) url(base string) string { return s.ref.URL(base) }

// seedConfig creates a config owned by alice (or an org config assigned
// to alice) directly in Postgres: seeding is setup, not what is tested.
func (e *env) seedConfig(sp configSpec) seeded {
	e.t.Helper()
	ctx := context.Background()
	c := store.Config{ID: store.NewID(), OwnerScope: store.ScopeUser, OwnerID: e.alice.ID, Name: sp.name,
		RemoteURL: sp.remote, AuthMode: sp.mode, SharingMode: store.SingleUser, PathPassthrough: sp.passthrough,
		AuxHeaders: sp.aux, CreatedBy: e.alice.ID}
	if sp.mode == "" {
		c.AuthMode = store.AuthNone
	}
	if sp.org != nil {
		c.OwnerScope, c.OwnerID, c.SharingMode = store.ScopeOrg, sp.org.ID, store.MultiUser
	}
	if len(sp.static) > 0 {
		pt, err := json.Marshal(sp.static)
		if err != nil {
			e.t.Fatal(err)
		}
		ct, err := e.ring.Seal(pt, secrets.AAD("configs", "static_headers", c.ID))
		if err != nil {
			e.t.Fatal(err)
		}
		c.StaticHeaders = ct
		for k, v := range sp.static {
			c.StaticHeaderNames = append(c.StaticHeaderNames, k)
			e.plant(v)
		}
	}
	if sp.providerClient != nil {
		ct, err := provider.SealClientCredentials(e.ring, c.ID, *sp.providerClient)
		if err != nil {
			e.t.Fatal(err)
		}
		c.Provider.ClientCredentials = ct
		e.plant(sp.providerClient.ClientSecret)
	}
	key := domain.NewRouteKey()
	cfg, rt, err := e.st.CreateConfig(ctx, c, store.NewID(), key, nil)
	if err != nil {
		e.t.Fatalf("seed config %s: %v", sp.name, err)
	}
	if sp.org != nil {
		if _, err := e.st.Assign(ctx, store.Assignment{ConfigID: cfg.ID, UserID: e.alice.ID, CreatedBy: e.alice.ID}, nil); err != nil {
			e.t.Fatalf("assign: %v", err)
		}
	}
	return seeded{cfg: cfg, ref: domain.RouteRef{Scope: cfg.OwnerScope, OwnerID: cfg.OwnerID, ConfigID: cfg.ID, Key: rt.Key}}
}

// seedOrg creates an org owned by alice.
func (e *env) seedOrg(name string) store.Org {
	e.t.Helper()
	o, err := e.st.CreateOrg(context.Background(), store.Org{ID: store.NewID(), Name: name}, e.alice.ID, nil)
	if err != nil {
		e.t.Fatalf("seed org: %v", err)
	}
	return o
}

// rotate rotates a config's route key and returns the new route.
func (e *env) rotate(s seeded) seeded {
	e.t.Helper()
	key := domain.NewRouteKey()
	if _, err := e.st.RotateRoute(context.Background(), s.cfg.ID, store.NewID(), key, nil); err != nil {
		e.t.Fatalf("rotate: %v", err)
	}
	s.ref.Key = key
	return s
}

// plant records a value that must never appear in any mcpgw output.
func (e *env) plant(v ...string) { e.secrets = append(e.secrets, v...) }

// checkNoLeaks searches every mcpgw process's stdout and stderr for the
// planted secrets and for every secret the upstream's authorization server
// handed out (DESIGN §9).
func (e *env) checkNoLeaks() {
	planted := append(slices.Clone(e.secrets), e.upstream.as.mintedSecrets()...)
	for name, p := range e.procs {
		out := p.output()
		for _, s := range planted {
			if s != "" && strings.Contains(out, s) {
				e.t.Errorf("planted secret %.6q… appears in the output of %s", s, name)
			}
		}
	}
}

// waitHTTP polls url until it answers want, within the convergence bound.
func (e *env) waitHTTP(url string, want int) {
	e.t.Helper()
	eventually(e.t, "GET "+url+" → "+fmt.Sprint(want), func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
}

// eventually retries f until it succeeds or the convergence bound passes.
// It waits on a short backoff between attempts: convergence is observed,
// never assumed after a fixed sleep.
func eventually(t testing.TB, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(convergence)
	wait := 10 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not converged within %v: %s: %v", convergence, what, err)
		}
		time.Sleep(wait)
		wait = min(wait*2, 200*time.Millisecond)
	}
}

// proc is one child process with its output captured.
type proc struct {
	name  string
	cmd   *exec.Cmd
	mu    sync.Mutex
	buf   bytes.Buffer
	ready chan string
	done  chan struct{}
}

type procWriter struct {
	p      *proc
	stdout bool
	line   []byte
}

func (w *procWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	w.p.buf.Write(b)
	w.p.mu.Unlock()
	if w.stdout {
		w.line = append(w.line, b...)
		for {
			i := bytes.IndexByte(w.line, '\n')
			if i < 0 {
				break
			}
			l := string(w.line[:i])
			w.line = w.line[i+1:]
			if strings.HasPrefix(l, "mcpgw ready ") {
				select {
				case w.p.ready <- l:
				default:
				}
			}
		}
	}
	return len(b), nil
}

func startProc(t testing.TB, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, ready: make(chan string, 1), done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = env
	// Its own process group, so stop and kill reach the children of
	// wrappers such as `go run` too.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.cmd.Stdout = &procWriter{p: p, stdout: true}
	p.cmd.Stderr = &procWriter{p: p}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(t)
		if !t.Failed() {
			return
		}
		if os.Getenv("E2E_VERBOSE") != "" {
			t.Logf("---- %s output ----\n%s", name, p.output())
			return
		}
		// Without E2E_VERBOSE, the lines that explain most failures:
		// denials with their reason, warnings and errors.
		var keep []string
		for _, l := range strings.Split(p.output(), "\n") {
			if strings.Contains(l, "denied") || strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
				keep = append(keep, l)
			}
		}
		if len(keep) > 40 {
			keep = keep[len(keep)-40:]
		}
		t.Logf("---- %s: denials, warnings, errors (E2E_VERBOSE=1 for everything) ----\n%s", name, strings.Join(keep, "\n"))
	})
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.buf.String()
}

func (p *proc) waitReady(t testing.TB) string {
	t.Helper()
	select {
	case l := <-p.ready:
		return l
	case <-p.done:
		t.Fatalf("%s exited before it was ready:\n%s", p.name, tail(p.output()))
	case <-time.After(convergence):
		t.Fatalf("%s not ready within %v:\n%s", p.name, convergence, tail(p.output()))
	}
	return ""
}

// stop sends SIGTERM and waits for a graceful exit (SIGKILL after the
// bound).
func (p *proc) stop(t testing.TB) {
	select {
	case <-p.done:
		return
	default:
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(convergence):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		t.Errorf("%s did not stop within %v after SIGTERM", p.name, convergence)
	}
}

// kill ends the process at once (SIGKILL), like a crash.
func (p *proc) kill() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

func tail(s string) string {
	if len(s) > 4000 {
		return "…" + s[len(s)-4000:]
	}
	return s
}

// freeAddr returns a loopback address with a port that was free a moment
// ago. Used only where the address must be known before the process that
// binds it starts (the data plane listener, which is also the public base
// URL; and the ports a restarted component must bind again).
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// dataPlane is real Envoy (ENVOY_BIN) or the stand-in.
type dataPlane interface {
	kind() string
	close()
}

type standinPlane struct{ si *envoystandin.StandIn }

func (s standinPlane) kind() string { return "stand-in" }
func (s standinPlane) close()       { s.si.Close() }

// startDataPlane starts the data plane from envoy/bootstrap-ads.yaml with
// the static clusters pointed at this env's xds and authz listeners.
func startDataPlane(t *testing.T, e *env) dataPlane {
	t.Helper()
	bootstrap, err := os.ReadFile("../envoy/bootstrap-ads.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if bin := os.Getenv("ENVOY_BIN"); bin != "" {
		return startEnvoy(t, e, bin, bootstrap)
	}
	opts, err := envoystandin.OptionsFromBootstrap(bootstrap, map[string]string{
		"mcpgw_xds": e.xdsAddr, "mcpgw_extauthz": e.authz,
	})
	if err != nil {
		t.Fatalf("stand-in options: %v", err)
	}
	opts.ListenAddr = e.listen
	opts.NodeID = "e2e-" + t.Name()
	opts.RetryInterval = 20 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), convergence)
	defer cancel()
	si, err := envoystandin.Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("stand-in: %v", err)
	}
	t.Cleanup(func() { si.Close() })
	if err := si.Ready(ctx); err != nil {
		t.Fatalf("stand-in not serving: %v (NACKs %v)", err, si.Status().NACKs)
	}
	return standinPlane{si}
}

type envoyPlane struct{ p *proc }

func (p envoyPlane) kind() string { return "envoy" }
func (p envoyPlane) close()       { p.p.kill() }

// startEnvoy writes a bootstrap with the test's addresses and runs real
// Envoy. The generated listener binds xds.listener_addr (e.listen).
func startEnvoy(t *testing.T, e *env, bin string, bootstrap []byte) dataPlane {
	t.Helper()
	host := func(a string) (string, string) { h, p, _ := net.SplitHostPort(a); return h, p }
	xh, xp := host(e.xdsAddr)
	ah, ap := host(e.authz)
	_, adminPort := host(freeAddr(t))
	b := string(bootstrap)
	b = strings.Replace(b, "{ address: mcpgw, port_value: 18000 }", "{ address: "+xh+", port_value: "+xp+" }", 1)
	b = strings.Replace(b, "{ address: mcpgw, port_value: 9191 }", "{ address: "+ah+", port_value: "+ap+" }", 1)
	b = strings.Replace(b, "port_value: 9901", "port_value: "+adminPort, 1)
	b = strings.Replace(b, "id: mcpgw-envoy-0", "id: e2e-"+strings.NewReplacer("/", "-").Replace(t.Name()), 1)
	if strings.Contains(b, "address: mcpgw") {
		t.Fatalf("bootstrap still names host mcpgw after substitution")
	}
	path := filepath.Join(e.dir, "envoy.yaml")
	if err := os.WriteFile(path, []byte(b), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, "envoy", os.Environ(), bin, "-c", path, "--disable-hot-restart", "--log-level", "warn")
	return envoyPlane{p}
}

// get performs a request with optional headers and returns status, headers
// and body.
func get(t testing.TB, method, url string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

var noRedirect = &http.Client{
	Timeout:       convergence,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// rawRequest writes one HTTP/1.1 request with an exact request target (no
// client-side cleaning) and returns the status code.
func rawRequest(t testing.TB, addr, target string, hdr map[string]string) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, convergence)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(convergence))
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", target, addr)
	for k, v := range hdr {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return 0
		}
		t.Fatalf("raw %s: %v", target, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
