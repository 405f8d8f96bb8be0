package provider

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"mcpgw/domain/addrpolicy"
)

// fetcher is the one outbound HTTP client of the provider flow. Every
// request it makes is SSRF-safe (DESIGN §5, §6 "Upstream destinations"):
//
//   - https only, unless the URL's host is on the explicit dev/test
//     allowlist (addrpolicy.Allowlist);
//   - every A and AAAA answer must be public (or allowlisted), checked at
//     dial time by addrpolicy.SafeDialContext, so DNS rebinding between a
//     check and the connect is impossible;
//   - no proxy (a proxy would dial on our behalf), no redirects followed
//     (a 3xx is an error: a redirect is the classic SSRF pivot);
//   - a short timeout, and the body is read through a cap before any JSON
//     parsing.
type fetcher struct {
	hc       *http.Client
	allow    addrpolicy.Allowlist
	maxBytes int64
}

func newFetcher(allow addrpolicy.Allowlist, res addrpolicy.Resolver, roots *x509.CertPool, timeout time.Duration, maxBytes int64) *fetcher {
	if res == nil {
		res = net.DefaultResolver
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           addrpolicy.SafeDialContext(res, allow, &net.Dialer{Timeout: timeout}),
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConns:          32,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       30 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &fetcher{
		hc: &http.Client{
			Transport: tr,
			Timeout:   timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
		allow:    allow,
		maxBytes: maxBytes,
	}
}

// checkURL enforces the scheme rule and basic URL hygiene on a URL we are
// about to call or to send a browser to.
func (f *fetcher) checkURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Hostname() == "" || u.User != nil || u.Fragment != "" || strings.Contains(raw, "#") || len(raw) > 2048 {
		return nil, upErr("url", ReasonBadURL, false)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !f.allowedPlain(u.Hostname()) {
			return nil, upErr("url", ReasonSchemeNotAllowed, false)
		}
	default:
		return nil, upErr("url", ReasonSchemeNotAllowed, false)
	}
	// A literal address is judged now, without waiting for a dial: the
	// endpoint is refused at discovery with a clear reason. Host names
	// are checked on every resolution at dial time.
	if ip, ok := addrpolicy.ParseHostLiteral(u.Hostname()); ok {
		if err := addrpolicy.CheckAddrs(u.Hostname(), []netip.Addr{ip}, f.allow); err != nil {
			return nil, upErr("url", ReasonAddressNotPublic, false)
		}
	}
	return u, nil
}

// allowedPlain: plain http only to hosts or literal addresses the dev
// allowlist names.
func (f *fetcher) allowedPlain(host string) bool {
	if f.allow.AllowsHost(host) {
		return true
	}
	if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return f.allow.AllowsAddr(ip)
	}
	return false
}

// response is a capped upstream answer.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// do sends req (built by the caller) and returns the capped response. op
// names the operation in errors. Transport failures are classified; the
// status is left to the caller (a 401 is what a probe wants).
func (f *fetcher) do(op string, req *http.Request) (*response, error) {
	if _, err := f.checkURL(req.URL.String()); err != nil {
		e := err.(*Error)
		e.Op = op
		return nil, e
	}
	resp, err := f.hc.Do(req)
	if err != nil {
		return nil, classifyTransport(op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return nil, upErr(op, ReasonRedirect, false)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.maxBytes+1))
	if err != nil {
		return nil, classifyTransport(op, err)
	}
	if int64(len(body)) > f.maxBytes {
		return nil, upErr(op, ReasonTooLarge, false)
	}
	return &response{Status: resp.StatusCode, Header: resp.Header, Body: body}, nil
}

func classifyTransport(op string, err error) *Error {
	var e *Error
	switch {
	case errors.Is(err, addrpolicy.ErrNotPublic):
		e = upErr(op, ReasonAddressNotPublic, false)
	case errors.Is(err, context.Canceled):
		e = upErr(op, ReasonTimeout, true)
		e.err = context.Canceled
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || isTimeout(err):
		e = upErr(op, ReasonTimeout, true)
	default:
		e = upErr(op, ReasonUnreachable, true)
	}
	return e
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// getJSON fetches a metadata document: GET, 200, application/json, capped.
func (f *fetcher) getJSON(ctx context.Context, op, raw string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return nil, upErr(op, ReasonBadURL, false)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := f.do(op, req)
	if err != nil {
		return nil, err
	}
	if err := statusErr(op, resp.Status); err != nil {
		return nil, err
	}
	if !isJSON(resp.Header) {
		return nil, upErr(op, ReasonBadResponse, false)
	}
	return resp.Body, nil
}

// postForm posts an application/x-www-form-urlencoded body (RFC 6749 §4.1.3,
// §6) and returns the capped response whatever its status.
func (f *fetcher) postForm(ctx context.Context, op, raw string, form url.Values, basicUser, basicPass string) (*response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, raw, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, upErr(op, ReasonBadURL, false)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if basicUser != "" {
		// RFC 6749 §2.3.1: form-encode before Basic.
		req.SetBasicAuth(url.QueryEscape(basicUser), url.QueryEscape(basicPass))
	}
	return f.do(op, req)
}

// postJSON posts a JSON body (RFC 7591 registration).
func (f *fetcher) postJSON(ctx context.Context, op, raw string, body []byte) (*response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, raw, bytes.NewReader(body))
	if err != nil {
		return nil, upErr(op, ReasonBadURL, false)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	return f.do(op, req)
}

func statusErr(op string, status int) error {
	switch {
	case status >= 200 && status < 300:
		return nil
	case status >= 500:
		return upErr(op, ReasonStatus5xx, true)
	case status == http.StatusTooManyRequests || status == http.StatusRequestTimeout:
		return upErr(op, ReasonStatus4xx, true)
	default:
		return upErr(op, ReasonStatus4xx, false)
	}
}

func isJSON(h http.Header) bool {
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}
