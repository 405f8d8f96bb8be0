package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"mcpgw/provider"
	"mcpgw/store"
)

// Scenario 3: the TypeScript MCP SDK client (@modelcontextprotocol/sdk,
// pinned in e2e/package.json and package-lock.json) run with the machine's
// Node: discovery → DCR → consent → token → listTools → callTool →
// refresh, through the data plane, for every auth mode. The Go test plays
// the browser, including the provider flow at the upstream's authorization
// server for the OAuth modes (authorizeInBrowser follows it), so the
// TypeScript side is the same for every mode.
func TestTypeScriptSDKClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is required for the TypeScript client scenario (Debian: apt-get install nodejs): %v", err)
	}
	if _, err := os.Stat("node_modules/@modelcontextprotocol/sdk/package.json"); err != nil {
		t.Fatalf("e2e/node_modules is missing: run `npm ci` in e2e/ (scripts/test does): %v", err)
	}
	e := newEnv(t, envOptions{})
	const staticSecret = "Bearer ts-upstream-static-credential-5e1a7b"
	const staticClientID = "mcpgw-ts-operator-client"
	staticClientSecret := "ts-operator-client-secret-" + randString()
	e.upstream.as.addClient(staticClientID, staticClientSecret, "client_secret_basic", e.base+provider.CallbackPath)
	cases := []struct {
		name string
		spec configSpec
		// wantAuthz is the Authorization the upstream must receive on both
		// calls ("" = none); for the OAuth modes it must instead be a token
		// the upstream's AS issued to wantClient ("" = a DCR client).
		wantAuthz  string
		oauth      bool
		wantClient string
	}{
		{name: "none", spec: configSpec{name: "ts", mode: store.AuthNone}},
		{name: "static_headers", spec: configSpec{name: "ts static", mode: store.AuthStaticHeaders,
			static: map[string]string{"authorization": staticSecret}}, wantAuthz: staticSecret},
		{name: "oauth_dynamic", spec: configSpec{name: "ts dynamic", mode: store.AuthOAuthDynamic}, oauth: true},
		{name: "oauth_static", spec: configSpec{name: "ts oauth static", mode: store.AuthOAuthStatic,
			providerClient: &provider.StaticCredentials{ClientID: staticClientID, ClientSecret: staticClientSecret}},
			oauth: true, wantClient: staticClientID},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.remote = e.upstream.url + "/base/mcp"
			if tc.oauth {
				tc.spec.remote = e.upstream.url + "/protected/mcp"
			}
			s := e.seedConfig(tc.spec)
			e.waitRoute(s)
			authorizesBefore, _ := e.upstream.as.counts()
			done := e.runTSClient(t, node, s)

			if want := []string{"echo_headers", "large", "progress"}; !slices.Equal(done.Tools, want) {
				t.Errorf("listTools = %v, want %v", done.Tools, want)
			}
			if !strings.HasPrefix(done.ClientID, "dcr:") {
				t.Errorf("client id %q: want a dynamically registered client", done.ClientID)
			}
			if done.AuthorizeCalls != 1 {
				t.Errorf("authorize calls = %d, want 1", done.AuthorizeCalls)
			}
			if done.OwnTokenReachedUpstream {
				t.Errorf("the TypeScript client's gateway token reached the upstream")
			}
			if tc.oauth {
				// The provider flow ran once (the gateway-level refresh
				// does not touch the provider grant), and both calls
				// carried the token the upstream's AS issued to mcpgw.
				upTok, ok := strings.CutPrefix(done.UpstreamAuthorization, "Bearer ")
				e.plant(upTok)
				if issued := e.upstream.as.issuedTo(upTok); !ok || issued == "" || tc.wantClient != "" && issued != tc.wantClient {
					t.Errorf("upstream Authorization %q is not a token the upstream AS issued to mcpgw's client (issued to %q)", redact(upTok), issued)
				}
				if n, _ := e.upstream.as.counts(); n-authorizesBefore != 1 {
					t.Errorf("upstream authorizations = %d, want 1", n-authorizesBefore)
				}
				tc.wantAuthz = done.UpstreamAuthorization
			}
			if done.UpstreamAuthorization != tc.wantAuthz || done.UpstreamAuthorizationAfterRefresh != tc.wantAuthz {
				t.Errorf("upstream Authorization = %q, after refresh %q; want %q both times",
					redact(done.UpstreamAuthorization), redact(done.UpstreamAuthorizationAfterRefresh), redact(tc.wantAuthz))
			}
			for _, h := range []string{"cookie", "x-client-unknown"} {
				if slices.Contains(done.UpstreamHeaders, h) {
					t.Errorf("client header %s reached the upstream", h)
				}
			}
			if done.RefreshResult != "AUTHORIZED" || !done.Refreshed || !done.CallAfterRefresh {
				t.Errorf("refresh: result %q, rotated %v, call after refresh ok %v", done.RefreshResult, done.Refreshed, done.CallAfterRefresh)
			}
		})
	}
}

// tsDone is what the TypeScript client observed (its last JSON line).
type tsDone struct {
	Tools                             []string
	UpstreamHeaders                   []string
	UpstreamAuthorization             string
	UpstreamAuthorizationAfterRefresh string
	OwnTokenReachedUpstream           bool
	RefreshResult                     string
	Refreshed                         bool
	CallAfterRefresh                  bool
	AuthorizeCalls                    int
	ClientID                          string
}

// runTSClient runs tsclient/client.mjs against one route, playing the
// browser whenever it asks the user to authorize (as alice, allow), and
// returns what it observed.
func (e *env) runTSClient(t *testing.T, node string, s seeded) tsDone {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*convergence)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "tsclient/client.mjs", s.url(e.base), clientRedirect)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()

	var done tsDone
	sawDone := false
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var msg struct {
			Step string `json:"step"`
			URL  string `json:"url"`
		}
		if err := json.Unmarshal(sc.Bytes(), &msg); err != nil {
			t.Fatalf("node printed a line that is not JSON (%d bytes)", len(sc.Bytes()))
		}
		switch msg.Step {
		case "authorize":
			r, err := e.authorizeInBrowser(ctx, msg.URL, aliceEmail, "allow")
			if err != nil {
				t.Fatalf("authorize for the TypeScript client: %v", err)
			}
			q := r.location.Query()
			e.plant(q.Get("code"))
			b, _ := json.Marshal(map[string]string{"code": q.Get("code"), "state": q.Get("state")})
			stdin.Write(append(b, '\n'))
		case "done":
			if err := json.Unmarshal(sc.Bytes(), &done); err != nil {
				t.Fatal(err)
			}
			sawDone = true
		default:
			t.Fatalf("unexpected step %q", msg.Step)
		}
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("node client: %v\n%s", err, stderr.String())
	}
	if !sawDone {
		t.Fatalf("node client ended without reporting what it observed\n%s", stderr.String())
	}
	return done
}
