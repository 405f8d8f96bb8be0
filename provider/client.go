package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"mcpgw/domain/secrets"
	"mcpgw/store"
)

// Token endpoint client authentication methods (RFC 7591 §2).
const (
	authNone  = "none"
	authBasic = "client_secret_basic"
	authPost  = "client_secret_post"
)

// upstreamClient is mcpgw's identity at one upstream AS. It is sealed into
// pending state and provider registrations, never logged.
type upstreamClient struct {
	ID         string `json:"client_id"`
	Secret     string `json:"client_secret,omitempty"`
	AuthMethod string `json:"token_endpoint_auth_method,omitempty"`
	// Via is "static", "dcr" or "cimd" (for audit metadata).
	Via string `json:"via,omitempty"`
}

// StaticCredentials is the plaintext of Config.Provider.ClientCredentials
// (oauth_static): the operator's client at the upstream AS. It is sealed
// with SealClientCredentials; the management API uses that helper so the
// associated data matches what the provider opens.
type StaticCredentials struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret,omitempty"`
	// TokenEndpointAuthMethod: client_secret_basic, client_secret_post or
	// none; empty picks from the AS metadata (basic preferred).
	TokenEndpointAuthMethod string `json:"token_endpoint_auth_method,omitempty"`
}

// credentialsAAD binds operator credentials to their config row
// (store.ColConfigProviderClientCredentials, DESIGN §9).
func credentialsAAD(configID string) []byte {
	col := store.ColConfigProviderClientCredentials
	return secrets.AAD(col.Table(), col.Column(), configID)
}

// registrationAAD binds a provider registration to (config, version)
// (store.ColProviderRegistration).
func registrationAAD(configID string, version int64) []byte {
	col := store.ColProviderRegistration
	return secrets.AAD(col.Table(), col.Column(), store.RegistrationRowID(configID, version))
}

// SealClientCredentials encrypts operator credentials for
// Config.Provider.ClientCredentials of config configID.
func SealClientCredentials(kr *secrets.KeyRing, configID string, c StaticCredentials) ([]byte, error) {
	if c.ClientID == "" {
		return nil, errors.New("provider: client id is required")
	}
	switch c.TokenEndpointAuthMethod {
	case "", authNone, authBasic, authPost:
	default:
		return nil, errors.New("provider: unsupported token endpoint auth method")
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	return kr.Seal(b, credentialsAAD(configID))
}

// clientFor returns the upstream client for cfg: the operator's
// (oauth_static), or our own registration (oauth_dynamic) — the cached one
// for (config, version), else a Client ID Metadata Document URL when the AS
// supports it, else a fresh RFC 7591 registration, stored for the version.
func (p *Provider) clientFor(ctx context.Context, cfg store.Config, md *Metadata) (upstreamClient, error) {
	switch cfg.AuthMode {
	case store.AuthOAuthStatic:
		return p.staticClient(cfg, md)
	case store.AuthOAuthDynamic:
	default:
		return upstreamClient{}, fmt.Errorf("provider: config auth mode is not an OAuth mode")
	}
	reg, err := p.st.GetProviderRegistration(ctx, cfg.ID, cfg.Version)
	switch {
	case err == nil:
		pt, err := p.kr.Open(reg.Ciphertext, registrationAAD(cfg.ID, cfg.Version))
		if err != nil {
			return upstreamClient{}, upErr("register", ReasonNoCredentials, false)
		}
		var c upstreamClient
		err = json.Unmarshal(pt, &c)
		clear(pt)
		if err != nil || c.ID == "" {
			return upstreamClient{}, upErr("register", ReasonNoCredentials, false)
		}
		return c, nil
	case !errors.Is(err, store.ErrNotFound):
		return upstreamClient{}, fmt.Errorf("provider: get registration: %w", err)
	}
	if md.CIMDSupported && p.cimdURL != "" {
		return upstreamClient{ID: p.cimdURL, AuthMethod: authNone, Via: "cimd"}, nil
	}
	if md.RegistrationEndpoint == "" {
		return upstreamClient{}, upErr("register", ReasonNoRegistration, false)
	}
	v, err, _ := p.regSF.Do(discoveryKey(cfg), func() (any, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*p.timeout)
		defer cancel()
		return p.register(rctx, cfg, md)
	})
	if err != nil {
		return upstreamClient{}, err
	}
	return v.(upstreamClient), nil
}

func (p *Provider) staticClient(cfg store.Config, md *Metadata) (upstreamClient, error) {
	if len(cfg.Provider.ClientCredentials) == 0 {
		return upstreamClient{}, upErr("client", ReasonNoCredentials, false)
	}
	pt, err := p.kr.Open(cfg.Provider.ClientCredentials, credentialsAAD(cfg.ID))
	if err != nil {
		return upstreamClient{}, upErr("client", ReasonNoCredentials, false)
	}
	var sc StaticCredentials
	err = json.Unmarshal(pt, &sc)
	clear(pt)
	if err != nil || sc.ClientID == "" {
		return upstreamClient{}, upErr("client", ReasonNoCredentials, false)
	}
	c := upstreamClient{ID: sc.ClientID, Secret: sc.ClientSecret, AuthMethod: sc.TokenEndpointAuthMethod, Via: "static"}
	if c.AuthMethod == "" {
		c.AuthMethod = pickAuthMethod(md.TokenAuthMethods, c.Secret != "")
	}
	return c, nil
}

// pickAuthMethod prefers client_secret_basic (the RFC 8414 default), then
// client_secret_post; none for a client without a secret.
func pickAuthMethod(supported []string, hasSecret bool) string {
	if !hasSecret {
		return authNone
	}
	if len(supported) == 0 || slices.Contains(supported, authBasic) {
		return authBasic
	}
	if slices.Contains(supported, authPost) {
		return authPost
	}
	return authBasic
}

// register performs RFC 7591 dynamic registration at the upstream AS and
// stores the result (sealed) for (config, version).
func (p *Provider) register(ctx context.Context, cfg store.Config, md *Metadata) (upstreamClient, error) {
	method := authBasic
	switch {
	case len(md.TokenAuthMethods) == 0 || slices.Contains(md.TokenAuthMethods, authBasic):
	case slices.Contains(md.TokenAuthMethods, authPost):
		method = authPost
	case slices.Contains(md.TokenAuthMethods, authNone):
		method = authNone
	}
	reqBody, _ := json.Marshal(map[string]any{
		"redirect_uris":              []string{p.callbackURL},
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"token_endpoint_auth_method": method,
		"client_name":                p.clientName,
	})
	resp, err := p.f.postJSON(ctx, "register", md.RegistrationEndpoint, reqBody)
	if err != nil {
		p.auditRegistration(ctx, cfg, "failure", reasonOf(err, "error"))
		return upstreamClient{}, err
	}
	if resp.Status != http.StatusCreated && resp.Status != http.StatusOK {
		err := statusErr("register", resp.Status)
		if err == nil {
			err = upErr("register", ReasonBadResponse, false)
		}
		p.auditRegistration(ctx, cfg, "failure", reasonOf(err, "error"))
		return upstreamClient{}, err
	}
	var out struct {
		ClientID                string `json:"client_id"`
		ClientSecret            string `json:"client_secret"`
		TokenEndpointAuthMethod string `json:"token_endpoint_auth_method"`
	}
	if !isJSON(resp.Header) || json.Unmarshal(resp.Body, &out) != nil || out.ClientID == "" || len(out.ClientID) > 2048 || len(out.ClientSecret) > 4096 {
		p.auditRegistration(ctx, cfg, "failure", ReasonBadResponse)
		return upstreamClient{}, upErr("register", ReasonBadResponse, false)
	}
	c := upstreamClient{ID: out.ClientID, Secret: out.ClientSecret, AuthMethod: out.TokenEndpointAuthMethod, Via: "dcr"}
	switch c.AuthMethod {
	case "":
		c.AuthMethod = method
	case authNone, authBasic, authPost:
	default:
		p.auditRegistration(ctx, cfg, "failure", ReasonBadResponse)
		return upstreamClient{}, upErr("register", ReasonBadResponse, false)
	}
	if c.AuthMethod != authNone && c.Secret == "" {
		c.AuthMethod = authNone
	}
	pt, _ := json.Marshal(c)
	ct, err := p.kr.Seal(pt, registrationAAD(cfg.ID, cfg.Version))
	clear(pt)
	if err != nil {
		return upstreamClient{}, fmt.Errorf("provider: seal registration: %w", err)
	}
	if err := p.st.PutProviderRegistration(ctx, store.ProviderRegistration{
		ConfigID: cfg.ID, ConfigVersion: cfg.Version, Ciphertext: ct, CreatedAt: p.now(),
	}); err != nil {
		if errors.Is(err, store.ErrStale) {
			return upstreamClient{}, upErr("register", ReasonConfigChanged, false)
		}
		return upstreamClient{}, fmt.Errorf("provider: store registration: %w", err)
	}
	p.auditRegistration(ctx, cfg, "success", "")
	return c, nil
}

func (p *Provider) auditRegistration(ctx context.Context, cfg store.Config, outcome, reason string) {
	p.audit(ctx, store.AuditEvent{
		Type: "provider.registration", Outcome: outcome, Reason: reason,
		OwnerScope: cfg.OwnerScope, OwnerID: cfg.OwnerID, ConfigID: cfg.ID,
	})
}

// handleClientMetadata serves mcpgw's Client ID Metadata Document
// (draft-ietf-oauth-client-id-metadata-document): the document whose URL is
// our client_id at upstream authorization servers that support it. It is
// public, static and holds no secret (a public client using PKCE).
func (p *Provider) handleClientMetadata(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"client_id":                  p.cimdURL,
		"client_name":                p.clientName,
		"redirect_uris":              []string{p.callbackURL},
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"token_endpoint_auth_method": authNone,
	})
}
