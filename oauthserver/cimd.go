package oauthserver

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"mcpgw/domain"
	"mcpgw/domain/addrpolicy"
)

// CIMD fetch defaults (draft-ietf-oauth-client-id-metadata-document §4 and
// its security considerations: a short timeout, a small size cap, and a
// cache so the document host is not hammered).
const (
	defaultCIMDTimeout  = 5 * time.Second
	defaultCIMDMaxBytes = 64 << 10
	defaultCIMDCacheTTL = 5 * time.Minute
	maxCIMDCacheEntries = 1024
)

// cimdFetcher fetches and caches Client ID Metadata Documents. Its HTTP
// client is SSRF-safe: https only, every resolved address must be public
// (addrpolicy, unless allowlisted for dev/tests), redirects are not
// followed, proxies are not used, bodies are capped.
type cimdFetcher struct {
	hc       *http.Client
	maxBytes int64
	ttl      time.Duration
	now      func() time.Time

	mu    sync.Mutex
	cache map[string]cimdEntry
}

type cimdEntry struct {
	c       *client
	expires time.Time
}

func newCIMDFetcher(o CIMDOptions, now func() time.Time) *cimdFetcher {
	if o.Timeout <= 0 {
		o.Timeout = defaultCIMDTimeout
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = defaultCIMDMaxBytes
	}
	if o.CacheTTL <= 0 {
		o.CacheTTL = defaultCIMDCacheTTL
	}
	var res addrpolicy.Resolver = net.DefaultResolver
	if o.Resolver != nil {
		res = o.Resolver
	}
	tr := &http.Transport{
		Proxy:                 nil, // a proxy would bypass the address policy
		DialContext:           addrpolicy.SafeDialContext(res, o.Allow, &net.Dialer{Timeout: o.Timeout}),
		TLSClientConfig:       &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   o.Timeout,
		ResponseHeaderTimeout: o.Timeout,
		MaxIdleConns:          16,
		IdleConnTimeout:       30 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &cimdFetcher{
		hc: &http.Client{
			Transport: tr,
			Timeout:   o.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse // never follow (draft §4.1)
			},
		},
		maxBytes: o.MaxBytes,
		ttl:      o.CacheTTL,
		now:      now,
		cache:    map[string]cimdEntry{},
	}
}

func cimdError(reason string) *oauthError {
	return oerr(http.StatusBadRequest, ErrInvalidClient, "the client ID metadata document could not be used").withReason(reason)
}

// validCIMDURL: https, a host, a path other than "/", no userinfo, query,
// fragment or dot segments (draft §3).
func validCIMDURL(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil ||
		u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#") {
		return false
	}
	if u.Path == "" || u.Path == "/" || !validHost(u) {
		return false
	}
	if domain.HasDotSegment(u.EscapedPath()) {
		return false
	}
	return u.String() == raw
}

// get returns the client the document at id describes.
func (f *cimdFetcher) get(ctx context.Context, id string) (*client, *oauthError) {
	if !validCIMDURL(id) {
		return nil, cimdError("cimd_bad_url")
	}
	now := f.now()
	f.mu.Lock()
	if e, ok := f.cache[id]; ok && now.Before(e.expires) {
		f.mu.Unlock()
		return e.c, nil
	}
	f.mu.Unlock()

	c, oe := f.fetch(ctx, id)
	if oe != nil {
		return nil, oe
	}
	f.mu.Lock()
	if len(f.cache) >= maxCIMDCacheEntries {
		for k, e := range f.cache {
			if !now.Before(e.expires) || len(f.cache) >= maxCIMDCacheEntries {
				delete(f.cache, k)
			}
		}
	}
	f.cache[id] = cimdEntry{c: c, expires: now.Add(f.ttl)}
	f.mu.Unlock()
	return c, nil
}

func (f *cimdFetcher) fetch(ctx context.Context, id string) (*client, *oauthError) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, id, nil)
	if err != nil {
		return nil, cimdError("cimd_bad_url")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := f.hc.Do(req)
	if err != nil {
		if errors.Is(err, addrpolicy.ErrNotPublic) {
			return nil, cimdError("cimd_address_not_public")
		}
		return nil, cimdError("cimd_fetch_failed")
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, cimdError("cimd_status")
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, cimdError("cimd_content_type")
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.maxBytes+1))
	if err != nil {
		return nil, cimdError("cimd_fetch_failed")
	}
	if int64(len(body)) > f.maxBytes {
		return nil, cimdError("cimd_too_large")
	}
	var md clientMetadata
	if err := json.Unmarshal(body, &md); err != nil {
		return nil, cimdError("cimd_not_json")
	}
	// The document must name itself (draft §4.1): a document served for one
	// URL cannot speak for another client.
	if md.ClientID != id {
		return nil, cimdError("cimd_client_id_mismatch")
	}
	norm, oe := md.normalize(true)
	if oe != nil {
		return nil, cimdError("cimd_invalid_metadata")
	}
	oc := metadataToClient(id, norm)
	return &client{OAuthClient: oc, CIMD: true}, nil
}
