package oauthserver

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"html/template"
	"net/http"
	"net/url"
	"strings"
)

// The pages are server-rendered with html/template (contextual escaping),
// load no remote assets and use one inline stylesheet allowed by a
// per-response CSP nonce.
var pages = template.Must(template.New("pages").Parse(`
{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · mcpgw</title>
<style nonce="{{.Nonce}}">
body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}
dt{font-weight:600;margin-top:.6rem}dd{margin:0;word-break:break-all}
.unverified{color:#8a4b00;font-size:.9em}.err{color:#a00}
button{font-size:1rem;padding:.5rem 1.2rem;margin-right:1rem}
code{background:#f3f3f3;padding:0 .2rem}
</style></head><body>{{end}}

{{define "error"}}{{template "head" .}}
<h1>Authorization error</h1>
<p class="err" data-error="{{.Code}}">{{.Message}}</p>
<p>Error code: <code>{{.Code}}</code></p>
</body></html>{{end}}

{{define "login"}}{{template "head" .}}
<h1>Sign in to mcpgw</h1>
{{if .Failed}}<p class="err" data-error="login_failed">The email or password is wrong.</p>{{end}}
{{if .Static}}
<form method="post" action="/login">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<input type="hidden" name="req" value="{{.Req}}">
<p><label>Email <input type="email" name="email" autocomplete="username" required></label></p>
<p><label>Password <input type="password" name="password" autocomplete="current-password" required></label></p>
<p><button type="submit">Sign in</button></p>
</form>{{end}}
{{if .OIDC}}<p><a href="{{.OIDCURL}}">Sign in with your identity provider</a></p>{{end}}
</body></html>{{end}}

{{define "signedin"}}{{template "head" .}}
<h1>Signed in</h1><p>You are signed in as {{.Email}}.</p>
</body></html>{{end}}

{{define "consent"}}{{template "head" .}}
<h1>Allow access to an MCP connection?</h1>
<p>An application wants to use one of your MCP connections through mcpgw on your behalf.</p>
<dl>
<dt>Application</dt><dd>{{if .ClientName}}{{.ClientName}} <span class="unverified">(name supplied by the application, not verified)</span>{{else}}<em>no name given</em>{{end}}</dd>
<dt>Client ID</dt><dd><code>{{.ClientID}}</code></dd>
<dt>It will be sent back to</dt><dd><code>{{.RedirectURI}}</code></dd>
<dt>Connection</dt><dd>{{.ConnectionName}}</dd>
<dt>Upstream server</dt><dd><code>{{.UpstreamHost}}</code></dd>
<dt>Owner</dt><dd>{{.OwnerContext}}</dd>
<dt>Your account</dt><dd>{{.Account}}</dd>
</dl>
<p><strong>What it gets:</strong> {{.AccessWords}}</p>
<form method="post" action="/oauth/consent">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<input type="hidden" name="req" value="{{.Req}}">
<input type="hidden" name="ticket" value="{{.Ticket}}">
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>
</body></html>{{end}}
`))

type pageData struct {
	Title string
	Nonce string
	// error
	Code, Message string
	// login
	Static, OIDC, Failed bool
	CSRF, Req, OIDCURL   string
	Email                string
	// consent
	ClientName, ClientID, RedirectURI, ConnectionName string
	UpstreamHost, OwnerContext, Account, AccessWords  string
	Ticket                                            string
}

// renderPage writes an HTML page with the security headers of DESIGN §4:
// no-store, framing denied twice (X-Frame-Options and CSP
// frame-ancestors), no referrer, and a CSP that loads nothing remote and
// lets forms post only to self and, on the consent page, to the validated
// redirect target (the POST answers with a redirect there).
func (s *Server) renderPage(w http.ResponseWriter, status int, name string, d pageData, formTarget string) {
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	d.Nonce = base64.RawStdEncoding.EncodeToString(nonce)
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, d); err != nil {
		s.log.Error("render page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	formAction := "'self'"
	if src := cspSource(formTarget); src != "" {
		formAction += " " + src
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'nonce-"+d.Nonce+"'; img-src 'none'; "+
		"form-action "+formAction+"; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// cspSource turns a validated redirect URI into a CSP source expression
// (scheme://host[:port]/path, CSP3 §2.3.1): no query, and characters that
// would end the directive percent-encoded.
func cspSource(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || !validHost(u) {
		return ""
	}
	p := u.EscapedPath()
	p = strings.NewReplacer(";", "%3B", ",", "%2C", " ", "%20", "'", "%27").Replace(p)
	return u.Scheme + "://" + u.Host + p
}

// errorPage answers an authorization error that must not be redirected
// (RFC 6749 §4.1.2.1: before the redirect URI is trusted).
func (s *Server) errorPage(w http.ResponseWriter, status int, code, msg string) {
	setOutcome(w, code)
	s.renderPage(w, status, "error", pageData{Title: "Authorization error", Code: code, Message: msg}, "")
}
