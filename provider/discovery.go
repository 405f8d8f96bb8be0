package provider

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"mcpgw/store"
)

// Metadata is what the provider flow knows about one config's upstream:
// the result of discovery with the operator's overrides applied. Resource
// and Scopes are what we send; empty means "omit the parameter"
// (DESIGN §5: never guessed, never taken from scopes_supported).
type Metadata struct {
	Issuer                string
	AuthorizationEndpoint string
	TokenEndpoint         string
	RegistrationEndpoint  string
	Resource              string
	Scopes                []string
	// TokenAuthMethods is token_endpoint_auth_methods_supported; empty
	// means the RFC 8414 §2 default, client_secret_basic.
	TokenAuthMethods []string
	// CIMDSupported: the AS accepts Client ID Metadata Documents
	// (client_id_metadata_document_supported).
	CIMDSupported bool
	// ISSParameter: the AS sends iss in authorization responses (RFC 9207),
	// so the callback must check it.
	ISSParameter bool
}

// challenge is the part of a WWW-Authenticate Bearer challenge discovery
// uses (RFC 6750 §3, RFC 9728 §5.1).
type challenge struct {
	ResourceMetadata string
	Scope            string
	Error            string
}

// parseChallenges returns the parameters of the first Bearer challenge in
// the WWW-Authenticate values (RFC 9110 §11.6.1: challenges are
// comma-separated, each a scheme followed by auth-params; values are
// tokens or quoted-strings). It is lenient about whitespace, strict about
// quoting, and bounded: anything unparsable ends the parse.
func parseChallenges(values []string) (challenge, bool) {
	for _, v := range values {
		if len(v) > 8<<10 {
			continue
		}
		if c, ok := parseChallenge(v); ok {
			return c, true
		}
	}
	return challenge{}, false
}

func parseChallenge(s string) (challenge, bool) {
	var c challenge
	inBearer, found := false, false
	i := 0
	skipWS := func() {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == ',') {
			i++
		}
	}
	for {
		skipWS()
		if i >= len(s) {
			return c, found
		}
		// a token: either a scheme or a parameter name
		start := i
		for i < len(s) && isTokenChar(s[i]) {
			i++
		}
		if start == i {
			return c, found
		}
		tok := s[start:i]
		j := i
		for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
			j++
		}
		if j < len(s) && s[j] == '=' && !(j+1 < len(s) && s[j+1] == '=') {
			// auth-param name=value
			i = j + 1
			for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
				i++
			}
			var val string
			if i < len(s) && s[i] == '"' {
				i++
				var b strings.Builder
				closed := false
				for i < len(s) {
					ch := s[i]
					if ch == '\\' && i+1 < len(s) {
						b.WriteByte(s[i+1])
						i += 2
						continue
					}
					if ch == '"' {
						i++
						closed = true
						break
					}
					b.WriteByte(ch)
					i++
				}
				if !closed {
					return c, found
				}
				val = b.String()
			} else {
				vs := i
				for i < len(s) && isTokenChar(s[i]) {
					i++
				}
				val = s[vs:i]
			}
			if inBearer {
				switch strings.ToLower(tok) {
				case "resource_metadata":
					c.ResourceMetadata = val
				case "scope":
					c.Scope = val
				case "error":
					c.Error = val
				}
			}
			continue
		}
		// a new challenge scheme (token68 after a scheme is skipped below)
		if found {
			return c, true
		}
		inBearer = strings.EqualFold(tok, "Bearer")
		found = inBearer
	}
}

func isTokenChar(b byte) bool {
	switch {
	case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}

// prmDoc is RFC 9728 §2 protected-resource metadata (the fields we use).
type prmDoc struct {
	Resource             string   `json:"resource"`
	AuthorizationServers []string `json:"authorization_servers"`
}

// asDoc is RFC 8414 §2 authorization-server metadata (the fields we use).
type asDoc struct {
	Issuer                                     string   `json:"issuer"`
	AuthorizationEndpoint                      string   `json:"authorization_endpoint"`
	TokenEndpoint                              string   `json:"token_endpoint"`
	RegistrationEndpoint                       string   `json:"registration_endpoint"`
	CodeChallengeMethodsSupported              []string `json:"code_challenge_methods_supported"`
	TokenEndpointAuthMethodsSupported          []string `json:"token_endpoint_auth_methods_supported"`
	ClientIDMetadataDocumentSupported          bool     `json:"client_id_metadata_document_supported"`
	AuthorizationResponseISSParameterSupported bool     `json:"authorization_response_iss_parameter_supported"`
}

type discoveryEntry struct {
	md      *Metadata
	expires time.Time
}

func discoveryKey(cfg store.Config) string {
	return cfg.ID + "/" + strconv.FormatInt(cfg.Version, 10)
}

// Discover returns the upstream metadata of cfg (DESIGN §5), from the cache
// when fresh. The cache is keyed by (config id, config version), so a
// material change — which advances the version — never sees stale
// endpoints. Concurrent discoveries of one config share one fetch.
func (p *Provider) Discover(ctx context.Context, cfg store.Config) (*Metadata, error) {
	key := discoveryKey(cfg)
	now := p.now()
	p.mu.Lock()
	if e, ok := p.disc[key]; ok && now.Before(e.expires) {
		p.mu.Unlock()
		return e.md, nil
	}
	p.mu.Unlock()
	v, err, _ := p.discSF.Do(key, func() (any, error) {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 4*p.timeout)
		defer cancel()
		return p.discover(dctx, cfg)
	})
	if err != nil {
		p.m.upstream.WithLabelValues("discovery", reasonOf(err, "error")).Inc()
		return nil, err
	}
	md := v.(*Metadata)
	p.mu.Lock()
	if len(p.disc) >= maxCacheEntries {
		for k, e := range p.disc {
			if !now.Before(e.expires) || len(p.disc) >= maxCacheEntries {
				delete(p.disc, k)
			}
		}
	}
	p.disc[key] = discoveryEntry{md: md, expires: now.Add(p.discoveryTTL)}
	p.mu.Unlock()
	p.m.upstream.WithLabelValues("discovery", "ok").Inc()
	return md, nil
}

// discover runs the MCP authorization discovery sequence: an
// unauthenticated call to the remote MCP URL for its WWW-Authenticate
// challenge, RFC 9728 protected-resource metadata, then RFC 8414
// authorization-server metadata falling back to OpenID Connect discovery
// in the order the MCP specification gives. Each step runs only when an
// operator override does not already supply what it would find.
func (p *Provider) discover(ctx context.Context, cfg store.Config) (*Metadata, error) {
	ov := cfg.Provider
	needAS := ov.AuthorizationEndpoint == "" || ov.TokenEndpoint == "" ||
		(cfg.AuthMode == store.AuthOAuthDynamic && ov.RegistrationEndpoint == "")
	needIssuer := needAS && ov.Issuer == ""
	needPRM := needIssuer || ov.Resource == "" || len(ov.Scopes) == 0

	md := &Metadata{}
	var ch challenge
	var prm *prmDoc
	if needPRM {
		var err error
		ch, prm, err = p.protectedResource(ctx, cfg.RemoteURL)
		if err != nil && needIssuer {
			return nil, err
		}
		if err != nil {
			p.log.InfoContext(ctx, "provider discovery: protected-resource metadata unavailable; using overrides",
				"config_id", cfg.ID, "reason", reasonOf(err, "error"))
		}
	}
	issuer := ov.Issuer
	if issuer == "" && prm != nil && len(prm.AuthorizationServers) > 0 {
		issuer = prm.AuthorizationServers[0]
	}
	if needAS {
		if issuer == "" {
			return nil, upErr("as_metadata", ReasonNoAS, false)
		}
		as, err := p.authServer(ctx, issuer)
		if err != nil {
			return nil, err
		}
		md.Issuer = as.Issuer
		md.AuthorizationEndpoint = as.AuthorizationEndpoint
		md.TokenEndpoint = as.TokenEndpoint
		md.RegistrationEndpoint = as.RegistrationEndpoint
		md.TokenAuthMethods = as.TokenEndpointAuthMethodsSupported
		md.CIMDSupported = as.ClientIDMetadataDocumentSupported
		md.ISSParameter = as.AuthorizationResponseISSParameterSupported
		// MCP authorization: PKCE is required; an AS that does not
		// advertise S256 must not be used (unless the operator pinned the
		// endpoints, taking responsibility).
		if !slices.Contains(as.CodeChallengeMethodsSupported, "S256") &&
			(ov.AuthorizationEndpoint == "" || ov.TokenEndpoint == "") {
			return nil, upErr("as_metadata", ReasonNoPKCE, false)
		}
	} else {
		md.Issuer = issuer
	}
	if ov.AuthorizationEndpoint != "" {
		md.AuthorizationEndpoint = ov.AuthorizationEndpoint
	}
	if ov.TokenEndpoint != "" {
		md.TokenEndpoint = ov.TokenEndpoint
	}
	if ov.RegistrationEndpoint != "" {
		md.RegistrationEndpoint = ov.RegistrationEndpoint
	}
	for _, u := range []string{md.AuthorizationEndpoint, md.TokenEndpoint} {
		if _, err := p.f.checkURL(u); err != nil {
			e := err.(*Error)
			e.Op = "as_metadata"
			return nil, e
		}
	}
	if md.RegistrationEndpoint != "" {
		if _, err := p.f.checkURL(md.RegistrationEndpoint); err != nil {
			md.RegistrationEndpoint = ""
		}
	}
	// Scopes (DESIGN §5): operator override, else the challenge's scope;
	// never scopes_supported; none known → no scope parameter.
	switch {
	case len(ov.Scopes) > 0:
		md.Scopes = slices.Clone(ov.Scopes)
	case ch.Scope != "":
		md.Scopes = strings.Fields(ch.Scope)
		if len(md.Scopes) > store.MaxScopes {
			md.Scopes = nil
		}
	}
	switch {
	case ov.Resource != "":
		md.Resource = ov.Resource
	case prm != nil:
		md.Resource = prm.Resource
	}
	return md, nil
}

// protectedResource probes the remote MCP URL without credentials and
// fetches its RFC 9728 metadata: from the challenge's resource_metadata
// when present, else the well-known URIs (path-inserted, then root).
func (p *Provider) protectedResource(ctx context.Context, remote string) (challenge, *prmDoc, error) {
	ru, err := p.f.checkURL(remote)
	if err != nil {
		e := err.(*Error)
		e.Op = "probe"
		return challenge{}, nil, e
	}
	ch, probeErr := p.probe(ctx, remote)
	var candidates []string
	if ch.ResourceMetadata != "" {
		candidates = []string{ch.ResourceMetadata}
	} else {
		origin := ru.Scheme + "://" + ru.Host
		if path := strings.TrimRight(ru.EscapedPath(), "/"); path != "" {
			candidates = append(candidates, origin+"/.well-known/oauth-protected-resource"+path)
		}
		candidates = append(candidates, origin+"/.well-known/oauth-protected-resource")
	}
	var lastErr error = probeErr
	for _, c := range candidates {
		body, err := p.f.getJSON(ctx, "resource_metadata", c)
		if err != nil {
			lastErr = err
			var e *Error
			if errorsAs(err, &e) && e.Reason == ReasonStatus4xx {
				continue // try the next well-known location
			}
			return ch, nil, err
		}
		var doc prmDoc
		if err := json.Unmarshal(body, &doc); err != nil || doc.Resource == "" {
			return ch, nil, upErr("resource_metadata", ReasonBadResponse, false)
		}
		if !resourceMatches(doc.Resource, remote) {
			return ch, nil, upErr("resource_metadata", ReasonResourceMismatch, false)
		}
		if len(doc.AuthorizationServers) > 20 {
			return ch, nil, upErr("resource_metadata", ReasonBadResponse, false)
		}
		return ch, &doc, nil
	}
	if lastErr == nil {
		lastErr = upErr("resource_metadata", ReasonBadResponse, false)
	}
	return ch, nil, lastErr
}

// resourceMatches applies RFC 9728 §3.3: the metadata's resource must be
// the resource we asked about. We accept the exact URL, or the same
// origin with a path that is a segment prefix of it (servers commonly name
// their origin as the resource while serving MCP under /mcp); anything on
// another origin is refused.
func resourceMatches(resource, remote string) bool {
	if resource == remote {
		return true
	}
	r, err1 := url.Parse(resource)
	m, err2 := url.Parse(remote)
	if err1 != nil || err2 != nil || r.RawQuery != "" || r.Fragment != "" {
		return false
	}
	if !strings.EqualFold(r.Scheme, m.Scheme) || !strings.EqualFold(r.Host, m.Host) {
		return false
	}
	rp := strings.TrimRight(r.EscapedPath(), "/")
	mp := strings.TrimRight(m.EscapedPath(), "/")
	return rp == mp || rp == "" || strings.HasPrefix(mp, rp+"/")
}

// probe sends an unauthenticated MCP initialize to the remote URL and
// parses the challenge of a 401 (MCP authorization, "Authorization Server
// Discovery"). A server that answers otherwise yields no challenge.
func (p *Provider) probe(ctx context.Context, remote string) (challenge, error) {
	body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"mcpgw","version":"1"}}}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, remote, strings.NewReader(body))
	if err != nil {
		return challenge{}, upErr("probe", ReasonBadURL, false)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := p.f.do("probe", req)
	if err != nil {
		return challenge{}, err
	}
	if resp.Status != http.StatusUnauthorized && resp.Status != http.StatusForbidden {
		return challenge{}, nil
	}
	ch, _ := parseChallenges(resp.Header.Values("WWW-Authenticate"))
	return ch, nil
}

// authServer fetches RFC 8414 metadata for issuer, trying the well-known
// locations in the MCP specification's order: for an issuer with a path,
// oauth-authorization-server path-inserted, openid-configuration
// path-inserted, openid-configuration path-appended; without a path,
// oauth-authorization-server then openid-configuration. The document's
// issuer must equal the issuer asked for (RFC 8414 §3.3).
func (p *Provider) authServer(ctx context.Context, issuer string) (*asDoc, error) {
	iu, err := p.f.checkURL(issuer)
	if err != nil {
		e := err.(*Error)
		e.Op = "as_metadata"
		return nil, e
	}
	if iu.RawQuery != "" {
		return nil, upErr("as_metadata", ReasonBadURL, false)
	}
	origin := iu.Scheme + "://" + iu.Host
	path := strings.TrimRight(iu.EscapedPath(), "/")
	var candidates []string
	if path != "" {
		candidates = []string{
			origin + "/.well-known/oauth-authorization-server" + path,
			origin + "/.well-known/openid-configuration" + path,
			origin + path + "/.well-known/openid-configuration",
		}
	} else {
		candidates = []string{
			origin + "/.well-known/oauth-authorization-server",
			origin + "/.well-known/openid-configuration",
		}
	}
	var lastErr error
	for _, c := range candidates {
		body, err := p.f.getJSON(ctx, "as_metadata", c)
		if err != nil {
			lastErr = err
			var e *Error
			if errorsAs(err, &e) && e.Reason == ReasonStatus4xx {
				continue
			}
			return nil, err
		}
		var doc asDoc
		if err := json.Unmarshal(body, &doc); err != nil {
			return nil, upErr("as_metadata", ReasonBadResponse, false)
		}
		if strings.TrimRight(doc.Issuer, "/") != strings.TrimRight(issuer, "/") {
			return nil, upErr("as_metadata", ReasonIssuerMismatch, false)
		}
		if doc.AuthorizationEndpoint == "" || doc.TokenEndpoint == "" {
			return nil, upErr("as_metadata", ReasonBadResponse, false)
		}
		return &doc, nil
	}
	return nil, lastErr
}
