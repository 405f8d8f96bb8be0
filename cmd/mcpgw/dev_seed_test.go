package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestDevSeed runs `mcpgw dev --upstream ...` in-process and uses what it
// prints: the API token works against the management API, the connect URL
// is the demo config's, and the connect token is a gateway JWT for it.
func TestDevSeed(t *testing.T) {
	args := []string{"dev", "--listen-http=127.0.0.1:0", "--listen-authz=127.0.0.1:0", "--listen-xds=127.0.0.1:0", "--listen-metrics=127.0.0.1:0",
		"--upstream", "http://127.0.0.1:39999/mcp"}
	ctx, cancel := context.WithCancel(context.Background())
	lw := &lineWriter{lines: make(chan string, 64)}
	var errb bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, &app{stdout: lw, stderr: &errb}, args) }()
	defer func() {
		cancel()
		select {
		case code := <-done:
			if code != exitOK {
				t.Errorf("dev exit %d: %s", code, errb.String())
			}
		case <-time.After(30 * time.Second):
			t.Error("dev did not stop")
		}
	}()
	ready := waitLine(t, lw.lines, "mcpgw ready", 60*time.Second)
	oauth := field(ready, "oauth")
	login := waitLine(t, lw.lines, "dev: login", 30*time.Second)
	if !strings.Contains(login, "demo@example.com") || !strings.Contains(login, "password ") {
		t.Fatalf("login line: %s", login)
	}
	tokLine := waitLine(t, lw.lines, "dev: api token", 30*time.Second)
	tok := strings.TrimPrefix(strings.Fields(strings.TrimPrefix(tokLine, "dev: api token"))[0], "MCPGW_TOKEN=")
	waitLine(t, lw.lines, "dev: config", 30*time.Second)
	urlLine := waitLine(t, lw.lines, "dev: connect url", 30*time.Second)
	connectURL := strings.Fields(strings.TrimPrefix(urlLine, "dev: connect url"))[0]
	ctLine := waitLine(t, lw.lines, "dev: connect token", 30*time.Second)
	jwt := strings.Fields(strings.TrimPrefix(ctLine, "dev: connect token"))[0]

	req, _ := http.NewRequest("GET", "http://"+oauth+"/api/v1/available", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var av struct {
		Available []struct {
			ConnectURL string `json:"connect_url"`
			Name       string `json:"name"`
		} `json:"available"`
	}
	if res.StatusCode != 200 || json.NewDecoder(res.Body).Decode(&av) != nil || len(av.Available) != 1 || av.Available[0].ConnectURL != connectURL {
		t.Fatalf("available with the printed token: %d %+v (want %s)", res.StatusCode, av, connectURL)
	}
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("connect token is not a JWT: %q", jwt)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Aud   any    `json:"aud"`
		Scope string `json:"scope"`
	}
	json.Unmarshal(payload, &claims)
	if !strings.Contains(string(payload), connectURL) || claims.Scope != "mcp:access" {
		t.Fatalf("connect token claims %s, want aud %s", payload, connectURL)
	}
}
