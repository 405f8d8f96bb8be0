package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Scenario 7: the README's quick start, `go run ./cmd/mcpgw dev`, started
// as a process, answers health and protected-resource metadata. Listeners
// use port 0 (README Troubleshooting) so the test never collides with
// anything else on the machine; the readiness line gives the addresses.
func TestDevQuickStart(t *testing.T) {
	// The developer's environment (module and build caches), minus any
	// MCPGW_* setting that would change what dev does.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MCPGW_") {
			env = append(env, kv)
		}
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go is not on PATH: %v", err)
	}
	p := startProc(t, "mcpgw-dev", env, gobin, "-C", "..", "run", "./cmd/mcpgw", "dev",
		"--listen-http=127.0.0.1:0", "--listen-authz=127.0.0.1:0", "--listen-xds=127.0.0.1:0", "--listen-metrics=127.0.0.1:0")
	ready := p.waitReady(t)
	var base string
	for _, f := range strings.Fields(ready) {
		if v, ok := strings.CutPrefix(f, "public_base_url="); ok {
			base = v
		}
	}
	if !strings.Contains(ready, "mode=dev") || !strings.Contains(ready, "components=oauth,authz,xds") || base == "" {
		t.Fatalf("readiness line %q", ready)
	}
	code, _, body := get(t, "GET", base+"/health", nil)
	if code != http.StatusOK || !strings.Contains(body, `"status":"ok"`) {
		t.Errorf("dev /health = %d %q", code, body)
	}
	code, _, body = get(t, "GET", base+"/.well-known/oauth-protected-resource", nil)
	var prm struct {
		Resource             string   `json:"resource"`
		AuthorizationServers []string `json:"authorization_servers"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &prm) != nil || !strings.HasPrefix(prm.Resource, base) || len(prm.AuthorizationServers) == 0 {
		t.Errorf("dev PRM = %d %q", code, body)
	}
	p.stop(t)
	if !strings.Contains(p.output(), "stopped") {
		t.Errorf("dev did not stop gracefully:\n%s", tail(p.output()))
	}
}
