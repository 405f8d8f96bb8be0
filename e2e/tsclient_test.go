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
)

// Scenario 3: the TypeScript MCP SDK client (@modelcontextprotocol/sdk,
// pinned in e2e/package.json and package-lock.json) run with the machine's
// Node: discovery → DCR → consent → token → listTools → callTool →
// refresh, through the data plane. The Go test plays the browser.
func TestTypeScriptSDKClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is required for the TypeScript client scenario (Debian: apt-get install nodejs): %v", err)
	}
	if _, err := os.Stat("node_modules/@modelcontextprotocol/sdk/package.json"); err != nil {
		t.Fatalf("e2e/node_modules is missing: run `npm ci` in e2e/ (scripts/test does): %v", err)
	}
	e := newEnv(t, envOptions{})
	s := e.seedConfig(configSpec{name: "ts", remote: e.upstream.url + "/base/mcp"})
	e.waitRoute(s)

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

	var done struct {
		Tools                   []string
		UpstreamHeaders         []string
		UpstreamAuthorization   string
		OwnTokenReachedUpstream bool
		RefreshResult           string
		Refreshed               bool
		CallAfterRefresh        bool
		AuthorizeCalls          int
		ClientID                string
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var msg struct {
			Step string `json:"step"`
			URL  string `json:"url"`
		}
		if err := json.Unmarshal(sc.Bytes(), &msg); err != nil {
			t.Fatalf("node printed %q", sc.Text())
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
		default:
			t.Fatalf("unexpected step %q", msg.Step)
		}
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("node client: %v\n%s", err, stderr.String())
	}
	if want := []string{"echo_headers", "large", "progress"}; !slices.Equal(done.Tools, want) {
		t.Errorf("listTools = %v, want %v", done.Tools, want)
	}
	if !strings.HasPrefix(done.ClientID, "dcr:") {
		t.Errorf("client id %q: want a dynamically registered client", done.ClientID)
	}
	if done.AuthorizeCalls != 1 {
		t.Errorf("authorize calls = %d, want 1", done.AuthorizeCalls)
	}
	if done.OwnTokenReachedUpstream || done.UpstreamAuthorization != "" {
		t.Errorf("upstream saw Authorization %q (own token: %v); auth mode none injects none", redact(done.UpstreamAuthorization), done.OwnTokenReachedUpstream)
	}
	for _, h := range []string{"cookie", "x-client-unknown"} {
		if slices.Contains(done.UpstreamHeaders, h) {
			t.Errorf("client header %s reached the upstream", h)
		}
	}
	if done.RefreshResult != "AUTHORIZED" || !done.Refreshed || !done.CallAfterRefresh {
		t.Errorf("refresh: result %q, rotated %v, call after refresh ok %v", done.RefreshResult, done.Refreshed, done.CallAfterRefresh)
	}
}
