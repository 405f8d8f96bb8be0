package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"
)

// chromiumPath is Debian's chromium (scripts/test installs it).
const chromiumPath = "/usr/bin/chromium"

// Scenario 8: login and consent in a real browser (headless Chromium
// driven over CDP with chromedp): the consent page shows the redirect URI,
// the upstream host and the "not verified" client label; Allow lands on the
// client's redirect with code, state and iss; Deny gives access_denied; an
// attacker page that frames the consent page does not get it rendered.
// Screenshots go to e2e/artifacts/ (gitignored).
func TestBrowserConsent(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("headless Chromium is required (%s): apt-get install -y chromium (scripts/test does): %v", chromiumPath, err)
	}
	e := newEnv(t, envOptions{})
	s := e.seedConfig(configSpec{name: "Browser tools", remote: e.upstream.url + "/base/mcp"})
	e.waitRoute(s)

	// The client's redirect target: records what the browser brings back.
	var mu sync.Mutex
	var callbacks []url.Values
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r) // the browser's favicon request
			return
		}
		mu.Lock()
		callbacks = append(callbacks, r.URL.Query())
		mu.Unlock()
		fmt.Fprint(w, "<html><body><h1 id=cb>client callback</h1></body></html>")
	}))
	defer cb.Close()
	redirect := cb.URL + "/callback"
	clientID := e.registerClient(t, redirect, "Totally Official Client")

	artifacts, err := filepath.Abs("artifacts")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1000, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	ctx, cancel := context.WithTimeout(bctx, 3*convergence)
	defer cancel()

	authURL := func(state string) string {
		verifier := oauth2.GenerateVerifier()
		return e.base + "/oauth/authorize?" + url.Values{"response_type": {"code"}, "client_id": {clientID},
			"redirect_uri": {redirect}, "code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)},
			"code_challenge_method": {"S256"}, "scope": {"mcp:access"}, "resource": {s.url(e.base)}, "state": {state}}.Encode()
	}
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			buf, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(artifacts, name), buf, 0o644)
		})
	}
	email, password := chromedp.CSS(`input[name="email"]`), chromedp.CSS(`input[name="password"]`)
	allow, deny := chromedp.CSS(`button[value="allow"]`), chromedp.CSS(`button[value="deny"]`)
	landed := chromedp.ID("cb")

	// Allow.
	err = chromedp.Do(ctx,
		chromedp.Navigate(authURL("state-allow")),
		chromedp.WaitVisible(email),
		shot("login.png"),
		chromedp.SendKeys(email, aliceEmail),
		chromedp.SendKeys(password, alicePassword),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(allow),
		shot("consent.png"),
	)
	if err != nil {
		t.Fatalf("browser login: %v", err)
	}
	consentText, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Click(allow), chromedp.WaitVisible(landed)); err != nil {
		t.Fatalf("browser allow: %v", err)
	}
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	for _, want := range []string{redirect, strings.TrimPrefix(e.upstream.url, "https://"), "Totally Official Client", "not verified", aliceEmail, "Browser tools"} {
		if !strings.Contains(consentText, want) {
			t.Errorf("consent page does not show %q", want)
		}
	}
	got := mustLastCallback(t, &mu, &callbacks)
	if !strings.HasPrefix(loc, redirect) || got.Get("code") == "" || got.Get("state") != "state-allow" || got.Get("iss") != e.base {
		t.Errorf("allow landed on %.40s… with code %v, state %q, iss %q", loc, got.Get("code") != "", got.Get("state"), got.Get("iss"))
	}
	e.plant(got.Get("code"))

	// Deny, in a second run (the session is still signed in).
	err = chromedp.Do(ctx,
		chromedp.Navigate(authURL("state-deny")),
		chromedp.WaitVisible(deny),
		chromedp.Click(deny),
		chromedp.WaitVisible(landed),
	)
	if err != nil {
		t.Fatalf("browser deny flow: %v", err)
	}
	got = mustLastCallback(t, &mu, &callbacks)
	if got.Get("error") != "access_denied" || got.Get("state") != "state-deny" || got.Get("code") != "" {
		t.Errorf("deny landed with %v", got)
	}

	// Clickjacking: an attacker page on another origin frames the
	// authorization URL (which shows consent to the signed-in user).
	// Framing is denied, so the frame never renders the page.
	target := authURL("state-framed")
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<html><body><h1 id=evil>win a prize</h1><iframe id=f src="%s" width=800 height=600></iframe></body></html>`, html.EscapeString(target))
	}))
	defer attacker.Close()
	if err := chromedp.Do(ctx, chromedp.Navigate(attacker.URL), chromedp.WaitVisible(chromedp.ID("evil"))); err != nil {
		t.Fatalf("attacker page: %v", err)
	}
	// Wait until the iframe's navigation has settled (committed or
	// blocked) before judging it.
	var frames *page.FrameTree
	eventually(t, "iframe navigation settled", func() error {
		res, err := chromedp.Call(ctx, page.GetFrameTree, cdp.Empty{})
		if err != nil {
			return err
		}
		frames = res.FrameTree
		if len(frames.ChildFrames) == 0 {
			return fmt.Errorf("no iframe yet: %s", dumpFrames(frames))
		}
		if c := frames.ChildFrames[0].Frame; c.URL == "about:blank" && c.UnreachableURL == "" || c.URL == "" {
			return fmt.Errorf("iframe not settled: %s", dumpFrames(frames))
		}
		return nil
	})
	if err := chromedp.Do(ctx, shot("attacker.png")); err != nil {
		t.Fatal(err)
	}
	child := frames.ChildFrames[0].Frame
	if strings.HasPrefix(child.URL, e.base) && child.UnreachableURL == "" {
		t.Errorf("the consent page rendered inside an attacker's iframe: %s", dumpFrames(frames))
	}
	mu.Lock()
	n := len(callbacks)
	mu.Unlock()
	if n != 2 {
		t.Errorf("callbacks = %d, want exactly the allow and the deny", n)
	}
}

func mustLastCallback(t *testing.T, mu *sync.Mutex, cbs *[]url.Values) url.Values {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if len(*cbs) == 0 {
		t.Fatalf("the browser never reached the client's redirect URI")
	}
	return (*cbs)[len(*cbs)-1]
}

func dumpFrames(ft *page.FrameTree) string {
	var b strings.Builder
	var walk func(*page.FrameTree, int)
	walk = func(f *page.FrameTree, d int) {
		fmt.Fprintf(&b, "%s%s unreachable=%q; ", strings.Repeat(">", d), f.Frame.URL, f.Frame.UnreachableURL)
		for _, c := range f.ChildFrames {
			walk(c, d+1)
		}
	}
	walk(ft, 0)
	return b.String()
}

// registerClient registers a public client by DCR and returns its id.
func (e *env) registerClient(t *testing.T, redirect, name string) string {
	t.Helper()
	reg, _ := json.Marshal(map[string]any{"redirect_uris": []string{redirect}, "token_endpoint_auth_method": "none",
		"grant_types": []string{"authorization_code"}, "response_types": []string{"code"}, "scope": "mcp:access",
		"client_name": name})
	resp, err := http.Post(e.base+"/oauth/register", "application/json", bytes.NewReader(reg))
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(resp)
	var c struct {
		ClientID string `json:"client_id"`
	}
	if resp.StatusCode != http.StatusCreated || json.Unmarshal([]byte(body), &c) != nil {
		t.Fatalf("register: %s %s", resp.Status, body)
	}
	return c.ClientID
}
