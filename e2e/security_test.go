package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Scenario 5: security properties observed from outside.
func TestSecurity(t *testing.T) {
	e := newEnv(t, envOptions{})
	s := e.seedConfig(configSpec{name: "passthrough", remote: e.upstream.url + "/base/mcp", passthrough: true,
		static: map[string]string{"authorization": "Bearer upstream-credential-for-redirect-test-71c3"}})
	e.waitRoute(s)
	tok := e.authorize(t, s)
	auth := map[string]string{"Authorization": "Bearer " + tok.Access}

	t.Run("upstream redirect is returned, not followed", func(t *testing.T) {
		code, hdr, _ := get(t, "GET", s.url(e.base)+"/redirect", auth)
		if code != http.StatusFound || !strings.HasPrefix(hdr.Get("Location"), e.upstream.redirect.URL) {
			t.Errorf("redirect = %d Location %q, want 302 to the other host", code, hdr.Get("Location"))
		}
		if hits := e.upstream.redirectHits(); len(hits) != 0 {
			t.Errorf("the redirect target was contacted %d times (credential sent: %v)", len(hits), hits[0].Get("Authorization") != "")
		}
	})

	t.Run("foreign Origin", func(t *testing.T) {
		if code := mcpInit(t, s.url(e.base), tok.Access, map[string]string{"Origin": "https://evil.example"}); code != http.StatusForbidden {
			t.Errorf("Origin evil = %d, want 403", code)
		}
		if code := mcpInit(t, s.url(e.base), "", map[string]string{"Origin": "https://evil.example"}); code != http.StatusForbidden {
			t.Errorf("Origin evil without a token = %d, want 403 (origin is checked first)", code)
		}
		if code := mcpInit(t, s.url(e.base), tok.Access, map[string]string{"Origin": allowedOrigin}); code != http.StatusOK {
			t.Errorf("allowed Origin = %d, want 200", code)
		}
	})

	t.Run("path escapes stay inside the upstream base path", func(t *testing.T) {
		root := s.ref.Path()
		attempts := []string{
			root + "/..%2f..%2f..%2fsecret",
			root + "/%2e%2e/%2e%2e/%2e%2e/secret",
			root + "/%2E%2E%2F%2E%2E%2Fsecret",
			root + "/../../../../secret",
			root + "//secret",
			root + "/x/..%5c..%5csecret",
			root + "/%252e%252e/secret",
			"/mcp-connect/../base/secret",
		}
		// Positive control: a descendant inside the base path is proxied.
		if code, _, body := get(t, "GET", s.url(e.base)+"/inside/ok", auth); code != http.StatusOK || body != "inside base: /base/mcp/inside/ok" {
			t.Fatalf("passthrough control = %d %q", code, body)
		}
		for _, p := range attempts {
			code := rawRequest(t, e.listen, p, auth)
			// merge_slashes turns "//secret" into "/secret", a legitimate
			// descendant; everything else must be refused. The upstream's
			// own record (below) proves nothing escaped either way.
			if code == http.StatusTeapot || (code == http.StatusOK && !strings.HasSuffix(p, "//secret")) {
				t.Errorf("%s = %d: it reached the upstream", p, code)
			}
		}
		for _, p := range e.upstream.seenPaths() {
			if p != "/base/mcp" && !strings.HasPrefix(p, "/base/mcp/") {
				t.Errorf("upstream received a request outside the base path: %q", p)
			}
			if strings.Contains(p, "..") || strings.Contains(strings.ToLower(p), "%2e") || strings.Contains(p, "//") {
				t.Errorf("upstream received an unnormalized path: %q", p)
			}
		}
	})

	t.Run("non-public upstream outside the dev allowlist gets no endpoints", func(t *testing.T) {
		// 127.0.0.2 is loopback like the allowlisted 127.0.0.1, but not
		// on the allowlist: xds must give its cluster no endpoints.
		port := e.upstream.url[strings.LastIndexByte(e.upstream.url, ':')+1:]
		bad := e.seedConfig(configSpec{name: "ssrf", remote: "https://127.0.0.2:" + port + "/base/mcp"})
		e.waitRoute(bad)
		btok := e.authorize(t, bad)
		before := len(e.upstream.seenPaths())
		if code := mcpInit(t, bad.url(e.base), btok.Access, nil); code != http.StatusServiceUnavailable {
			t.Errorf("request to a non-public upstream = %d, want 503 (no endpoints)", code)
		}
		if after := len(e.upstream.seenPaths()); after != before {
			t.Errorf("the upstream received %d requests for the rejected config", after-before)
		}
		if sp, ok := e.dp.(standinPlane); ok {
			if eps := sp.si.Status().Endpoints("upstream_" + bad.cfg.ID); len(eps) != 0 {
				t.Errorf("cluster has endpoints %v", eps)
			}
		}
	})

	t.Run("SSE stream of 1,000 events in order, unbuffered", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", e.listen, convergence)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * convergence))
		fmt.Fprintf(c, "GET %s/sse HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\nAuthorization: Bearer %s\r\n\r\n", s.ref.Path(), e.listen, tok.Access)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("sse status %d", resp.StatusCode)
		}
		sc := bufio.NewScanner(resp.Body)
		next, gateOpen := 0, false
		for sc.Scan() {
			line := sc.Text()
			data, ok := strings.CutPrefix(line, "data: ")
			if !ok {
				continue
			}
			if data != fmt.Sprintf("event %d", next) {
				t.Fatalf("event %d: got %q (out of order)", next, data)
			}
			next++
			if !gateOpen {
				// The first event arrived while the upstream has not yet
				// produced the others: nothing buffered the stream.
				gateOpen = true
				close(e.upstream.sseGate)
			}
			if next == 1000 {
				break
			}
		}
		if next != 1000 {
			t.Fatalf("received %d events, want 1000 (%v)", next, sc.Err())
		}
	})
}
