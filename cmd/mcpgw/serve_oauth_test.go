package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"mcpgw/config"
)

// TestServeOAuth runs the oauth component through the serve framework
// (dev mode, embedded store): the config reaches oauthserver (issuer,
// static users), metadata, health and a static-user login work, and the
// AS metrics appear on the metrics listener.
func TestServeOAuth(t *testing.T) {
	saved := components
	t.Cleanup(func() { components = saved })
	components = map[string]componentFunc{}
	registerComponent(config.ComponentOAuth, runOAuth)

	hash, _ := bcrypt.GenerateFromPassword([]byte("planted-serve-password"), bcrypt.MinCost)
	environ := []string{"MCPGW_STATIC_USERS=ops@example.com:" + string(hash)}
	args := []string{"dev", "--listen-http=127.0.0.1:0", "--listen-authz=127.0.0.1:0", "--listen-xds=127.0.0.1:0", "--listen-metrics=127.0.0.1:0"}
	ctx, cancel := context.WithCancel(context.Background())
	lw := &lineWriter{lines: make(chan string, 16)}
	var errb bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, &app{stdout: lw, stderr: &errb, environ: environ}, args) }()
	ready := waitLine(t, lw.lines, "mcpgw ready", 30*time.Second)
	base := "http://" + field(ready, "oauth")
	metrics := "http://" + field(ready, "metrics")

	get := func(u string) (int, string) {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if st, body := get(base + "/.well-known/oauth-authorization-server"); st != 200 || !strings.Contains(body, `"issuer":"`+base+`"`) {
		t.Errorf("metadata: %d %s", st, body)
	}
	if st, body := get(base + "/health"); st != 200 || body != `{"status":"ok","service":"mcpgw"}`+"\n" {
		t.Errorf("health: %d %q", st, body)
	}
	jar, _ := cookiejar.New(nil)
	b := &http.Client{Jar: jar}
	resp, err := b.Get(base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page)
	if m == nil {
		t.Fatalf("login page without CSRF field: %s", page)
	}
	resp, err = b.PostForm(base+"/login", url.Values{"csrf": {string(m[1])}, "email": {"ops@example.com"}, "password": {"planted-serve-password"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "Signed in") {
		t.Errorf("static login: %d %s", resp.StatusCode, body)
	}
	if _, body := get(metrics + "/metrics"); !strings.Contains(body, `mcpgw_oauth_requests_total{endpoint="login",outcome="ok",status="200"}`) {
		t.Errorf("oauth metrics missing from /metrics")
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d: %s", code, errb.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop")
	}
	if strings.Contains(errb.String(), "planted-serve-password") {
		t.Errorf("the password reached the log")
	}
}
