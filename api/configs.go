package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strings"
	"time"

	"mcpgw/domain"
	"mcpgw/domain/headers"
	"mcpgw/domain/secrets"
	"mcpgw/oauthserver"
	"mcpgw/provider"
	"mcpgw/store"
)

// ProviderRequest is a config's provider (second-level OAuth) settings as
// sent by the caller. Every field is an operator override; empty means
// discover. ClientID/ClientSecret/TokenEndpointAuthMethod are the operator's
// client for oauth_static; they are sealed at once and never shown again.
type ProviderRequest struct {
	Issuer                  string   `json:"issuer,omitempty"`
	AuthorizationEndpoint   string   `json:"authorization_endpoint,omitempty"`
	TokenEndpoint           string   `json:"token_endpoint,omitempty"`
	RegistrationEndpoint    string   `json:"registration_endpoint,omitempty"`
	Scopes                  []string `json:"scopes,omitempty"`
	Resource                string   `json:"resource,omitempty"`
	ClientID                string   `json:"client_id,omitempty"`
	ClientSecret            string   `json:"client_secret,omitempty"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method,omitempty"`
}

// CreateConfigRequest is the body of POST /configs.
type CreateConfigRequest struct {
	// OwnerScope: "user" (personal, default) or "org".
	OwnerScope string `json:"owner_scope,omitempty"`
	// OwnerID: the owning user (default: the caller) or org.
	OwnerID         string `json:"owner_id,omitempty"`
	Name            string `json:"name"`
	RemoteURL       string `json:"remote_url"`
	AuthMode        string `json:"auth_mode"`
	SharingMode     string `json:"sharing_mode,omitempty"` // default single_user
	PathPassthrough bool   `json:"path_passthrough,omitempty"`
	Disabled        bool   `json:"disabled,omitempty"`
	// StaticHeaders are secret (sealed at rest, never shown again).
	StaticHeaders map[string]string `json:"static_headers,omitempty"`
	// AuxHeaders are non-secret and shown back.
	AuxHeaders map[string]string `json:"aux_headers,omitempty"`
	Provider   *ProviderRequest  `json:"provider,omitempty"`
	Registry   json.RawMessage   `json:"registry,omitempty"`
}

// UpdateConfigRequest is the body of PATCH /configs/{id}. Absent (or
// null) fields are kept. static_headers, aux_headers and provider replace
// the whole value when present ({} clears them); provider client
// credentials are kept unless client_id is sent.
type UpdateConfigRequest struct {
	Name            *string            `json:"name,omitempty"`
	RemoteURL       *string            `json:"remote_url,omitempty"`
	AuthMode        *string            `json:"auth_mode,omitempty"`
	SharingMode     *string            `json:"sharing_mode,omitempty"`
	PathPassthrough *bool              `json:"path_passthrough,omitempty"`
	StaticHeaders   *map[string]string `json:"static_headers,omitempty"`
	AuxHeaders      *map[string]string `json:"aux_headers,omitempty"`
	Provider        *ProviderRequest   `json:"provider,omitempty"`
	Registry        json.RawMessage    `json:"registry,omitempty"`
}

// ProviderView shows provider settings without credentials.
type ProviderView struct {
	Issuer                string   `json:"issuer,omitempty"`
	AuthorizationEndpoint string   `json:"authorization_endpoint,omitempty"`
	TokenEndpoint         string   `json:"token_endpoint,omitempty"`
	RegistrationEndpoint  string   `json:"registration_endpoint,omitempty"`
	Scopes                []string `json:"scopes,omitempty"`
	Resource              string   `json:"resource,omitempty"`
	HasClientCredentials  bool     `json:"has_client_credentials"`
}

// ConfigView is the JSON form of a config. Static header values and
// provider credentials are never included.
type ConfigView struct {
	ID                string            `json:"id"`
	OwnerScope        string            `json:"owner_scope"`
	OwnerID           string            `json:"owner_id"`
	Name              string            `json:"name"`
	RemoteURL         string            `json:"remote_url"`
	AuthMode          string            `json:"auth_mode"`
	SharingMode       string            `json:"sharing_mode"`
	Status            string            `json:"status"`
	Version           int64             `json:"version"`
	PathPassthrough   bool              `json:"path_passthrough"`
	StaticHeaderNames []string          `json:"static_header_names,omitempty"`
	AuxHeaders        map[string]string `json:"aux_headers,omitempty"`
	Provider          *ProviderView     `json:"provider,omitempty"`
	Registry          json.RawMessage   `json:"registry,omitempty"`
	RouteID           string            `json:"route_id,omitempty"`
	ConnectURL        string            `json:"connect_url,omitempty"`
	CreatedBy         string            `json:"created_by,omitempty"`
	CreatedAt         time.Time         `json:"created_at"`
	UpdatedAt         time.Time         `json:"updated_at"`
}

func (h *Handler) configView(c store.Config, rt *store.Route) ConfigView {
	v := ConfigView{ID: c.ID, OwnerScope: string(c.OwnerScope), OwnerID: c.OwnerID, Name: c.Name, RemoteURL: c.RemoteURL,
		AuthMode: string(c.AuthMode), SharingMode: string(c.SharingMode), Status: string(c.Status), Version: c.Version,
		PathPassthrough: c.PathPassthrough, StaticHeaderNames: c.StaticHeaderNames, AuxHeaders: c.AuxHeaders,
		Registry: c.Registry, CreatedBy: c.CreatedBy, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt}
	pv := c.Provider
	if pv.Issuer != "" || pv.AuthorizationEndpoint != "" || pv.TokenEndpoint != "" || pv.RegistrationEndpoint != "" ||
		len(pv.Scopes) > 0 || pv.Resource != "" || len(pv.ClientCredentials) > 0 {
		v.Provider = &ProviderView{Issuer: pv.Issuer, AuthorizationEndpoint: pv.AuthorizationEndpoint, TokenEndpoint: pv.TokenEndpoint,
			RegistrationEndpoint: pv.RegistrationEndpoint, Scopes: pv.Scopes, Resource: pv.Resource,
			HasClientCredentials: len(pv.ClientCredentials) > 0}
	}
	if rt != nil {
		v.RouteID = rt.ID
		v.ConnectURL = h.connectURL(*rt)
	}
	return v
}

func (h *Handler) connectURL(rt store.Route) string {
	return domain.RouteRef{Scope: rt.OwnerScope, OwnerID: rt.OwnerID, ConfigID: rt.ConfigID, Key: rt.Key}.URL(h.o.PublicBaseURL)
}

// viewWithRoute adds the active route; a config without one (deleted) is
// shown without a connect URL.
func (h *Handler) viewWithRoute(ctx context.Context, c store.Config) (ConfigView, error) {
	rt, err := h.st.GetActiveRoute(ctx, c.ID)
	if errors.Is(err, store.ErrNotFound) {
		return h.configView(c, nil), nil
	}
	if err != nil {
		return ConfigView{}, err
	}
	return h.configView(c, &rt), nil
}

// normHeaders lower-cases header names (HTTP names are case-insensitive,
// RFC 9110 §5.1; the stored form is canonical) and rejects a name given
// twice in different cases.
func normHeaders(kind string, in map[string]string) (map[string]string, error) {
	if in == nil {
		return nil, nil
	}
	out := make(map[string]string, len(in))
	for k, v := range in {
		lk := strings.ToLower(k)
		if _, dup := out[lk]; dup {
			return nil, badRequest("%s header names must be unique regardless of case", kind)
		}
		out[lk] = v
	}
	return out, nil
}

// headerErr turns a domain/headers error into a 400; its message never
// contains a value.
func headerErr(err error) error {
	var he *headers.Error
	if errors.As(err, &he) {
		if he.Name == "" {
			return badRequest("invalid %s header: %s", he.Kind, he.Reason)
		}
		return badRequest("invalid %s header %q: %s", he.Kind, he.Name, he.Reason)
	}
	return badRequest("invalid headers")
}

// draft is a config being validated: the store form plus plaintext static
// headers when the request sets them (nil: unchanged).
type draft struct {
	cfg    store.Config
	static map[string]string
	creds  *provider.StaticCredentials
}

// check validates a draft against the rules the API owns (DESIGN §3, §5,
// §6 step 8): auth mode vs sharing mode, header names and values, one
// source of Authorization, provider settings that fit the auth mode.
func (h *Handler) check(d *draft) error {
	c := &d.cfg
	if strings.TrimSpace(c.Name) == "" {
		return badRequest("name is required")
	}
	if !c.AuthMode.Valid() {
		return badRequest("auth_mode must be none, static_headers, oauth_dynamic or oauth_static")
	}
	if !c.SharingMode.Valid() {
		return badRequest("sharing_mode must be single_user or multi_user")
	}
	if c.OwnerScope == store.ScopeUser && c.SharingMode != store.SingleUser {
		return badRequest("personal configs must be single_user (DESIGN §3)")
	}
	staticNames := c.StaticHeaderNames
	if d.static != nil {
		if err := headers.ValidateStatic(d.static); err != nil {
			return headerErr(err)
		}
		staticNames = sortedNames(d.static)
	}
	switch c.AuthMode {
	case store.AuthStaticHeaders:
		if len(staticNames) == 0 {
			return badRequest("auth_mode static_headers needs at least one static header")
		}
	case store.AuthNone:
		if len(staticNames) > 0 {
			return badRequest("auth_mode none takes no static headers: use static_headers")
		}
	}
	if err := headers.ValidateAux(c.AuxHeaders); err != nil {
		return headerErr(err)
	}
	if err := headers.ValidateSources(c.AuthMode.IsOAuth(), staticNames, c.AuxHeaders); err != nil {
		return headerErr(err)
	}
	p := c.Provider
	hasProvider := p.Issuer != "" || p.AuthorizationEndpoint != "" || p.TokenEndpoint != "" || p.RegistrationEndpoint != "" ||
		len(p.Scopes) > 0 || p.Resource != "" || len(p.ClientCredentials) > 0 || d.creds != nil
	if !c.AuthMode.IsOAuth() && hasProvider {
		return badRequest("provider settings need auth_mode oauth_dynamic or oauth_static")
	}
	hasCreds := len(p.ClientCredentials) > 0 || d.creds != nil
	switch c.AuthMode {
	case store.AuthOAuthStatic:
		if !hasCreds {
			return badRequest("auth_mode oauth_static needs provider.client_id (and usually client_secret)")
		}
	case store.AuthOAuthDynamic:
		if hasCreds {
			return badRequest("auth_mode oauth_dynamic registers its own client: provider.client_id is for oauth_static")
		}
	}
	for _, f := range []struct{ name, v string }{
		{"issuer", p.Issuer}, {"authorization_endpoint", p.AuthorizationEndpoint}, {"token_endpoint", p.TokenEndpoint},
		{"registration_endpoint", p.RegistrationEndpoint}, {"resource", p.Resource},
	} {
		if err := h.checkProviderURL(f.name, f.v); err != nil {
			return err
		}
	}
	return nil
}

func sortedNames(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// seal encrypts the draft's new secrets bound to the config id (AAD
// configs/static_headers/{id}, the one extauthz opens; provider
// credentials through provider.SealClientCredentials).
func (h *Handler) seal(d *draft) error {
	if d.static != nil {
		if len(d.static) == 0 {
			d.cfg.StaticHeaders, d.cfg.StaticHeaderNames = nil, nil
		} else {
			if h.o.KeyRing == nil {
				return badRequest("static headers need an encryption key on the server (keys.encryption_keys)")
			}
			pt, err := json.Marshal(d.static)
			if err != nil {
				return err
			}
			ct, err := h.o.KeyRing.Seal(pt, secrets.AAD("configs", "static_headers", d.cfg.ID))
			clear(pt)
			if err != nil {
				return err
			}
			d.cfg.StaticHeaders, d.cfg.StaticHeaderNames = ct, sortedNames(d.static)
		}
	}
	if d.creds != nil {
		if h.o.KeyRing == nil {
			return badRequest("provider credentials need an encryption key on the server (keys.encryption_keys)")
		}
		ct, err := provider.SealClientCredentials(h.o.KeyRing, d.cfg.ID, *d.creds)
		if err != nil {
			return badRequest("provider client credentials are invalid (client_id required; token_endpoint_auth_method none, client_secret_basic or client_secret_post)")
		}
		d.cfg.Provider.ClientCredentials = ct
	}
	return nil
}

// applyProvider replaces the draft's provider settings with pr, keeping
// the sealed credentials unless pr carries a client id.
func applyProvider(d *draft, pr *ProviderRequest) error {
	if pr == nil {
		return nil
	}
	if pr.ClientID == "" && (pr.ClientSecret != "" || pr.TokenEndpointAuthMethod != "") {
		return badRequest("provider.client_secret and token_endpoint_auth_method need provider.client_id")
	}
	keep := d.cfg.Provider.ClientCredentials
	d.cfg.Provider = store.ProviderSettings{Issuer: pr.Issuer, AuthorizationEndpoint: pr.AuthorizationEndpoint,
		TokenEndpoint: pr.TokenEndpoint, RegistrationEndpoint: pr.RegistrationEndpoint, Scopes: pr.Scopes,
		Resource: pr.Resource, ClientCredentials: keep}
	if pr.ClientID != "" {
		d.creds = &provider.StaticCredentials{ClientID: pr.ClientID, ClientSecret: pr.ClientSecret, TokenEndpointAuthMethod: pr.TokenEndpointAuthMethod}
	}
	return nil
}

func (h *Handler) createConfig(r *http.Request, p oauthserver.Principal) (int, any, error) {
	ctx := r.Context()
	var req CreateConfigRequest
	if err := h.decode(r, &req); err != nil {
		return 0, nil, err
	}
	scope := store.OwnerScope(req.OwnerScope)
	if scope == "" {
		scope = store.ScopeUser
	}
	owner := req.OwnerID
	switch scope {
	case store.ScopeUser:
		if owner == "" {
			owner = p.User.ID
		}
		if !store.ValidID(owner) {
			return 0, nil, badRequest("owner_id must be a user id")
		}
		if owner != p.User.ID && !p.User.SystemAdmin {
			return 0, nil, errForbidden
		}
	case store.ScopeOrg:
		if !store.ValidID(owner) {
			return 0, nil, badRequest("owner_id must be an org id for owner_scope org")
		}
		if _, _, err := h.orgAccess(ctx, p, owner, true); err != nil {
			return 0, nil, err
		}
	default:
		return 0, nil, badRequest("owner_scope must be user or org")
	}
	sharing := store.SharingMode(req.SharingMode)
	if sharing == "" {
		sharing = store.SingleUser
	}
	static, err := normHeaders("static", req.StaticHeaders)
	if err != nil {
		return 0, nil, err
	}
	aux, err := normHeaders("auxiliary", req.AuxHeaders)
	if err != nil {
		return 0, nil, err
	}
	now := h.now().UTC()
	d := &draft{static: static, cfg: store.Config{
		ID: store.NewID(), OwnerScope: scope, OwnerID: owner, Name: strings.TrimSpace(req.Name), RemoteURL: req.RemoteURL,
		AuthMode: store.AuthMode(req.AuthMode), SharingMode: sharing, Status: store.ConfigEnabled,
		PathPassthrough: req.PathPassthrough, AuxHeaders: aux, Registry: req.Registry, CreatedBy: p.User.ID,
		CreatedAt: now, UpdatedAt: now,
	}}
	if req.Disabled {
		d.cfg.Status = store.ConfigDisabled
	}
	if d.static == nil {
		d.static = map[string]string{}
	}
	if err := applyProvider(d, req.Provider); err != nil {
		return 0, nil, err
	}
	if err := h.check(d); err != nil {
		return 0, nil, err
	}
	if err := h.checkRemoteURL(ctx, req.RemoteURL); err != nil {
		return 0, nil, err
	}
	if err := h.seal(d); err != nil {
		return 0, nil, err
	}
	ev := actor(p, "config.create")
	ev.OwnerScope, ev.OwnerID, ev.ConfigID = scope, owner, d.cfg.ID
	cfg, rt, err := h.st.CreateConfig(ctx, d.cfg, store.NewID(), domain.NewRouteKey(), ev)
	if err != nil {
		if isNotFound(err) {
			return 0, nil, badRequest("owner_id names no active owner")
		}
		return 0, nil, err
	}
	return http.StatusCreated, h.configView(cfg, &rt), nil
}

func (h *Handler) listConfigs(r *http.Request, p oauthserver.Principal) (int, any, error) {
	ctx := r.Context()
	q := r.URL.Query()
	scope, owner := store.OwnerScope(q.Get("owner_scope")), q.Get("owner_id")
	var cfgs []store.Config
	switch {
	case scope == "" && owner == "":
		if p.User.SystemAdmin {
			all, err := h.st.ListConfigs(ctx, "", "")
			if err != nil {
				return 0, nil, err
			}
			cfgs = all
			break
		}
		// The caller's own configs and those of the orgs it manages.
		mine, err := h.st.ListConfigs(ctx, store.ScopeUser, p.User.ID)
		if err != nil {
			return 0, nil, err
		}
		cfgs = mine
		ms, err := h.st.ListMemberships(ctx, p.User.ID)
		if err != nil {
			return 0, nil, err
		}
		for _, m := range ms {
			if !m.Role.Manages() {
				continue
			}
			oc, err := h.st.ListConfigs(ctx, store.ScopeOrg, m.OrgID)
			if err != nil {
				return 0, nil, err
			}
			cfgs = append(cfgs, oc...)
		}
	case scope == store.ScopeUser && store.ValidID(owner):
		if err := selfOrAdmin(p, owner); err != nil {
			return 0, nil, errForbidden
		}
		c, err := h.st.ListConfigs(ctx, scope, owner)
		if err != nil {
			return 0, nil, err
		}
		cfgs = c
	case scope == store.ScopeOrg && store.ValidID(owner):
		if _, _, err := h.orgAccess(ctx, p, owner, true); err != nil {
			return 0, nil, err
		}
		c, err := h.st.ListConfigs(ctx, scope, owner)
		if err != nil {
			return 0, nil, err
		}
		cfgs = c
	default:
		return 0, nil, badRequest("filter with owner_scope (user or org) and owner_id together, or neither")
	}
	out := make([]ConfigView, 0, len(cfgs))
	for _, c := range cfgs {
		v, err := h.viewWithRoute(ctx, c)
		if err != nil {
			return 0, nil, err
		}
		out = append(out, v)
	}
	return http.StatusOK, map[string]any{"configs": out}, nil
}

func (h *Handler) getConfig(r *http.Request, p oauthserver.Principal) (int, any, error) {
	id, err := pathID(r, "id")
	if err != nil {
		return 0, nil, err
	}
	cfg, _, err := h.loadConfig(r.Context(), p, id, false)
	if err != nil {
		return 0, nil, err
	}
	v, err := h.viewWithRoute(r.Context(), cfg)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, v, nil
}

// UpdateResult answers PATCH /configs/{id}.
type UpdateResult struct {
	Config ConfigView `json:"config"`
	// Material reports a material change (DESIGN §5): the version advanced
	// and every grant and pending provider state of the config was revoked.
	Material bool `json:"material"`
}

// updateConfig applies a partial update. The store classifies it with
// store.MaterialChange and runs the cascade in the same transaction.
func (h *Handler) updateConfig(r *http.Request, p oauthserver.Principal) (int, any, error) {
	ctx := r.Context()
	id, err := pathID(r, "id")
	if err != nil {
		return 0, nil, err
	}
	cur, _, err := h.loadConfig(ctx, p, id, true)
	if err != nil {
		return 0, nil, err
	}
	var req UpdateConfigRequest
	if err := h.decode(r, &req); err != nil {
		return 0, nil, err
	}
	var static, aux map[string]string
	if req.StaticHeaders != nil {
		if static, err = normHeaders("static", *req.StaticHeaders); err != nil {
			return 0, nil, err
		}
		if static == nil {
			static = map[string]string{}
		}
	}
	if req.AuxHeaders != nil {
		if aux, err = normHeaders("auxiliary", *req.AuxHeaders); err != nil {
			return 0, nil, err
		}
	}
	// Validate and seal against the current state first (DNS and
	// encryption stay outside the store transaction); the update function
	// then applies the same fields to the row it reads.
	build := func(c store.Config) (*draft, error) {
		d := &draft{cfg: c, static: static}
		if req.Name != nil {
			d.cfg.Name = strings.TrimSpace(*req.Name)
		}
		if req.RemoteURL != nil {
			d.cfg.RemoteURL = *req.RemoteURL
		}
		if req.AuthMode != nil {
			d.cfg.AuthMode = store.AuthMode(*req.AuthMode)
		}
		if req.SharingMode != nil {
			d.cfg.SharingMode = store.SharingMode(*req.SharingMode)
		}
		if req.PathPassthrough != nil {
			d.cfg.PathPassthrough = *req.PathPassthrough
		}
		if req.AuxHeaders != nil {
			d.cfg.AuxHeaders = aux
		}
		if req.Registry != nil {
			d.cfg.Registry = req.Registry
		}
		if err := applyProvider(d, req.Provider); err != nil {
			return nil, err
		}
		if d.cfg.AuthMode != store.AuthOAuthStatic && d.creds == nil {
			// Only oauth_static keeps operator credentials.
			d.cfg.Provider.ClientCredentials = nil
		}
		if !d.cfg.AuthMode.IsOAuth() && req.Provider == nil && req.AuthMode != nil {
			// Leaving OAuth drops the provider settings with it.
			d.cfg.Provider = store.ProviderSettings{}
		}
		if d.cfg.AuthMode == store.AuthNone && req.AuthMode != nil && req.StaticHeaders == nil && len(d.cfg.StaticHeaderNames) > 0 {
			d.static = map[string]string{}
		}
		return d, h.check(d)
	}
	d, err := build(cur)
	if err != nil {
		return 0, nil, err
	}
	if req.RemoteURL != nil {
		if err := h.checkRemoteURL(ctx, *req.RemoteURL); err != nil {
			return 0, nil, err
		}
	}
	if err := h.seal(d); err != nil {
		return 0, nil, err
	}
	sealed := d.cfg
	ev := actor(p, "config.update")
	ev.OwnerScope, ev.OwnerID, ev.ConfigID = cur.OwnerScope, cur.OwnerID, cur.ID
	updated, material, err := h.st.UpdateConfig(ctx, id, func(c *store.Config) error {
		old := *c
		nd, err := build(old)
		if err != nil {
			return err
		}
		c.Name, c.RemoteURL, c.AuthMode, c.SharingMode = nd.cfg.Name, nd.cfg.RemoteURL, nd.cfg.AuthMode, nd.cfg.SharingMode
		c.PathPassthrough, c.AuxHeaders, c.Registry = nd.cfg.PathPassthrough, nd.cfg.AuxHeaders, nd.cfg.Registry
		c.Provider = nd.cfg.Provider
		if d.creds != nil {
			c.Provider.ClientCredentials = sealed.Provider.ClientCredentials
		}
		if nd.static != nil {
			c.StaticHeaders, c.StaticHeaderNames = sealed.StaticHeaders, sealed.StaticHeaderNames
		}
		ev.Metadata["material"] = boolStr(store.MaterialChange(&old, c))
		return nil
	}, ev)
	if err != nil {
		if isConflict(err) {
			return 0, nil, conflict("the change conflicts with the current state (single_user needs at most one assignee)")
		}
		return 0, nil, err
	}
	v, err := h.viewWithRoute(ctx, updated)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, UpdateResult{Config: v, Material: material}, nil
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func (h *Handler) enableConfig(r *http.Request, p oauthserver.Principal) (int, any, error) {
	return h.setConfigStatus(r, p, store.ConfigEnabled, "config.enable")
}

// disableConfig: the runtime denies at once; route, instances and grants
// are kept (DESIGN §7).
func (h *Handler) disableConfig(r *http.Request, p oauthserver.Principal) (int, any, error) {
	return h.setConfigStatus(r, p, store.ConfigDisabled, "config.disable")
}

func (h *Handler) setConfigStatus(r *http.Request, p oauthserver.Principal, s store.ConfigStatus, typ string) (int, any, error) {
	ctx := r.Context()
	id, err := pathID(r, "id")
	if err != nil {
		return 0, nil, err
	}
	cur, _, err := h.loadConfig(ctx, p, id, true)
	if err != nil {
		return 0, nil, err
	}
	ev := actor(p, typ)
	ev.OwnerScope, ev.OwnerID, ev.ConfigID = cur.OwnerScope, cur.OwnerID, cur.ID
	cfg, err := h.st.SetConfigStatus(ctx, id, s, ev)
	if err != nil {
		return 0, nil, err
	}
	v, err := h.viewWithRoute(ctx, cfg)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, v, nil
}

// deleteConfig: the store invalidates the route and removes every
// dependent instance, grant, assignment and pending state in one
// transaction (DESIGN §7).
func (h *Handler) deleteConfig(r *http.Request, p oauthserver.Principal) (int, any, error) {
	ctx := r.Context()
	id, err := pathID(r, "id")
	if err != nil {
		return 0, nil, err
	}
	cur, _, err := h.loadConfig(ctx, p, id, true)
	if err != nil {
		return 0, nil, err
	}
	ev := actor(p, "config.delete")
	ev.OwnerScope, ev.OwnerID, ev.ConfigID = cur.OwnerScope, cur.OwnerID, cur.ID
	if err := h.st.DeleteConfig(ctx, id, ev); err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

// RotateResult answers POST /configs/{id}/rotate-route.
type RotateResult struct {
	RouteID    string `json:"route_id"`
	ConnectURL string `json:"connect_url"`
}

// rotateRoute replaces the route key: the old URL stops working at once
// (extauthz) and leaves every Envoy with the next xds push (DESIGN §8).
func (h *Handler) rotateRoute(r *http.Request, p oauthserver.Principal) (int, any, error) {
	ctx := r.Context()
	id, err := pathID(r, "id")
	if err != nil {
		return 0, nil, err
	}
	cur, _, err := h.loadConfig(ctx, p, id, true)
	if err != nil {
		return 0, nil, err
	}
	ev := actor(p, "route.rotate")
	ev.OwnerScope, ev.OwnerID, ev.ConfigID = cur.OwnerScope, cur.OwnerID, cur.ID
	routeID := store.NewID()
	ev.RouteID = routeID
	rt, err := h.st.RotateRoute(ctx, id, routeID, domain.NewRouteKey(), ev)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, RotateResult{RouteID: rt.ID, ConnectURL: h.connectURL(rt)}, nil
}
