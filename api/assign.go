package api

import (
	"net/http"
	"strconv"
	"time"

	"mcpgw/oauthserver"
	"mcpgw/store"
)

// AssignmentView is one assignment.
type AssignmentView struct {
	ConfigID  string    `json:"config_id"`
	UserID    string    `json:"user_id"`
	CreatedBy string    `json:"created_by,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// Replaced is the previous assignee of a single_user config, whose
	// assignment, instance and grant were removed (DESIGN §3 rule 3).
	Replaced string `json:"replaced_user_id,omitempty"`
}

// AssignRequest is the body of POST /configs/{id}/assignments.
type AssignRequest struct {
	UserID string `json:"user_id"`
}

func (h *Handler) listAssignments(r *http.Request, p oauthserver.Principal) (int, any, error) {
	id, err := pathID(r, "id")
	if err != nil {
		return 0, nil, err
	}
	if _, _, err := h.loadConfig(r.Context(), p, id, true); err != nil {
		return 0, nil, err
	}
	as, err := h.st.ListAssignments(r.Context(), id)
	if err != nil {
		return 0, nil, err
	}
	out := make([]AssignmentView, 0, len(as))
	for _, a := range as {
		out = append(out, AssignmentView{ConfigID: a.ConfigID, UserID: a.UserID, CreatedBy: a.CreatedBy, CreatedAt: a.CreatedAt})
	}
	return http.StatusOK, map[string]any{"assignments": out}, nil
}

// assign gives a member the use of an org config. For single_user the
// store removes the previous assignee's assignment, instance and grant in
// the same transaction.
func (h *Handler) assign(r *http.Request, p oauthserver.Principal) (int, any, error) {
	ctx := r.Context()
	id, err := pathID(r, "id")
	if err != nil {
		return 0, nil, err
	}
	cfg, _, err := h.loadConfig(ctx, p, id, true)
	if err != nil {
		return 0, nil, err
	}
	var req AssignRequest
	if err := h.decode(r, &req); err != nil {
		return 0, nil, err
	}
	if !store.ValidID(req.UserID) {
		return 0, nil, badRequest("user_id must be a user id")
	}
	if cfg.OwnerScope != store.ScopeOrg {
		return 0, nil, conflict("personal configs are used by their owner only and take no assignments")
	}
	if _, member, err := h.orgRole(ctx, cfg.OwnerID, req.UserID); err != nil {
		return 0, nil, err
	} else if !member {
		return 0, nil, conflict("the user is not a member of the config's org")
	}
	prev, err := h.st.ListAssignments(ctx, id)
	if err != nil {
		return 0, nil, err
	}
	ev := actor(p, "assignment.create")
	ev.OwnerScope, ev.OwnerID, ev.ConfigID, ev.UserID = cfg.OwnerScope, cfg.OwnerID, cfg.ID, req.UserID
	ev.Metadata["sharing_mode"] = string(cfg.SharingMode)
	var replaced string
	if cfg.SharingMode == store.SingleUser {
		for _, a := range prev {
			if a.UserID != req.UserID {
				replaced = a.UserID
			}
		}
		if replaced != "" {
			ev.Metadata["replaced_user_id"] = replaced
		}
	}
	a, err := h.st.Assign(ctx, store.Assignment{ConfigID: id, UserID: req.UserID, CreatedBy: p.User.ID, CreatedAt: h.now().UTC()}, ev)
	if err != nil {
		if isConflict(err) {
			return 0, nil, conflict("the user cannot be assigned (not a member of the config's org)")
		}
		return 0, nil, err
	}
	return http.StatusCreated, AssignmentView{ConfigID: a.ConfigID, UserID: a.UserID, CreatedBy: a.CreatedBy, CreatedAt: a.CreatedAt, Replaced: replaced}, nil
}

// unassign removes the assignment and the user's instance and grant of
// the config (one store transaction).
func (h *Handler) unassign(r *http.Request, p oauthserver.Principal) (int, any, error) {
	ctx := r.Context()
	id, err := pathID(r, "id")
	if err != nil {
		return 0, nil, err
	}
	uid, err := pathID(r, "user")
	if err != nil {
		return 0, nil, err
	}
	cfg, _, err := h.loadConfig(ctx, p, id, true)
	if err != nil {
		return 0, nil, err
	}
	ev := actor(p, "assignment.delete")
	ev.OwnerScope, ev.OwnerID, ev.ConfigID, ev.UserID = cfg.OwnerScope, cfg.OwnerID, cfg.ID, uid
	if err := h.st.Unassign(ctx, id, uid, ev); err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

// AvailableView is one config the caller can use now.
type AvailableView struct {
	ConfigID         string `json:"config_id"`
	Name             string `json:"name"`
	OwnerScope       string `json:"owner_scope"`
	OwnerID          string `json:"owner_id"`
	ExecutionContext string `json:"execution_context"`
	AuthMode         string `json:"auth_mode"`
	ConnectURL       string `json:"connect_url"`
	// NeedsAuthorization: an OAuth-mode config without a usable upstream
	// grant; connect through the OAuth flow (an MCP client) first.
	NeedsAuthorization bool   `json:"needs_authorization"`
	InstanceID         string `json:"instance_id,omitempty"`
	InstanceState      string `json:"instance_state,omitempty"`
}

// available lists the caller's usable configs (DESIGN §3, §7).
func (h *Handler) available(r *http.Request, p oauthserver.Principal) (int, any, error) {
	ctx := r.Context()
	us, err := h.st.ListUsable(ctx, p.User.ID)
	if err != nil {
		return 0, nil, err
	}
	out := make([]AvailableView, 0, len(us))
	for _, u := range us {
		v := AvailableView{ConfigID: u.Config.ID, Name: u.Config.Name, OwnerScope: string(u.Config.OwnerScope),
			OwnerID: u.Config.OwnerID, ExecutionContext: store.ExecutionContext(u.Config.OwnerScope, u.Config.OwnerID),
			AuthMode: string(u.Config.AuthMode), ConnectURL: h.connectURL(u.Route)}
		if u.Instance != nil {
			v.InstanceID, v.InstanceState = u.Instance.ID, string(u.Instance.State)
		}
		if u.Config.AuthMode.IsOAuth() {
			v.NeedsAuthorization = true
			if u.Instance != nil && u.Instance.State == store.InstanceActive {
				if _, err := h.st.GetGrant(ctx, u.Instance.ID); err == nil {
					v.NeedsAuthorization = false
				} else if !isNotFound(err) {
					return 0, nil, err
				}
			}
		}
		out = append(out, v)
	}
	return http.StatusOK, map[string]any{"available": out}, nil
}

// InstanceView is one instance (never its grant).
type InstanceView struct {
	ID           string    `json:"id"`
	OwnerScope   string    `json:"owner_scope"`
	OwnerID      string    `json:"owner_id"`
	UserID       string    `json:"user_id"`
	ConfigID     string    `json:"config_id"`
	State        string    `json:"state"`
	GrantVersion int64     `json:"grant_version"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

func instanceView(i store.Instance) InstanceView {
	return InstanceView{ID: i.ID, OwnerScope: string(i.OwnerScope), OwnerID: i.OwnerID, UserID: i.UserID, ConfigID: i.ConfigID,
		State: string(i.State), GrantVersion: i.GrantVersion, CreatedAt: i.CreatedAt, UpdatedAt: i.UpdatedAt}
}

func (h *Handler) listMyInstances(r *http.Request, p oauthserver.Principal) (int, any, error) {
	inc, err := boolQuery(r, "include_terminal")
	if err != nil {
		return 0, nil, err
	}
	is, err := h.st.ListInstances(r.Context(), p.User.ID, "", inc)
	if err != nil {
		return 0, nil, err
	}
	out := make([]InstanceView, 0, len(is))
	for _, i := range is {
		out = append(out, instanceView(i))
	}
	return http.StatusOK, map[string]any{"instances": out}, nil
}

// listOrgInstances lists the instances of an org's configs (owners,
// admins, system admins).
func (h *Handler) listOrgInstances(r *http.Request, p oauthserver.Principal) (int, any, error) {
	ctx := r.Context()
	id, err := pathID(r, "id")
	if err != nil {
		return 0, nil, err
	}
	if _, _, err := h.orgAccess(ctx, p, id, true); err != nil {
		return 0, nil, err
	}
	inc, err := boolQuery(r, "include_terminal")
	if err != nil {
		return 0, nil, err
	}
	cfgs, err := h.st.ListConfigs(ctx, store.ScopeOrg, id)
	if err != nil {
		return 0, nil, err
	}
	out := []InstanceView{}
	for _, c := range cfgs {
		is, err := h.st.ListInstances(ctx, "", c.ID, inc)
		if err != nil {
			return 0, nil, err
		}
		for _, i := range is {
			out = append(out, instanceView(i))
		}
	}
	return http.StatusOK, map[string]any{"instances": out}, nil
}

// revokeInstance ends an instance (state revoked) with its grant and
// pending state: the instance's user, an owner/admin of the instance's org,
// or a system admin. Others get 404.
func (h *Handler) revokeInstance(r *http.Request, p oauthserver.Principal) (int, any, error) {
	ctx := r.Context()
	id, err := pathID(r, "id")
	if err != nil {
		return 0, nil, err
	}
	inst, err := h.st.GetInstance(ctx, id)
	if err != nil {
		return 0, nil, err
	}
	allowed := inst.UserID == p.User.ID || p.User.SystemAdmin
	if !allowed && inst.OwnerScope == store.ScopeOrg {
		if allowed, err = h.canManageOrg(ctx, p, inst.OwnerID); err != nil {
			return 0, nil, err
		}
	}
	if !allowed {
		return 0, nil, errNotFound
	}
	ev := actor(p, "instance.revoke")
	ev.OwnerScope, ev.OwnerID, ev.ConfigID, ev.InstanceID, ev.UserID = inst.OwnerScope, inst.OwnerID, inst.ConfigID, inst.ID, inst.UserID
	ended, err := h.st.EndInstance(ctx, id, store.InstanceRevoked, ev)
	if err != nil {
		if isConflict(err) {
			return 0, nil, conflict("the instance is already revoked or removed")
		}
		return 0, nil, err
	}
	return http.StatusOK, instanceView(ended), nil
}

// AuditView is one audit event.
type AuditView struct {
	ID          int64             `json:"id"`
	Time        time.Time         `json:"time"`
	Type        string            `json:"type"`
	Outcome     string            `json:"outcome"`
	ActorUserID string            `json:"actor_user_id,omitempty"`
	OwnerScope  string            `json:"owner_scope,omitempty"`
	OwnerID     string            `json:"owner_id,omitempty"`
	ConfigID    string            `json:"config_id,omitempty"`
	RouteID     string            `json:"route_id,omitempty"`
	InstanceID  string            `json:"instance_id,omitempty"`
	UserID      string            `json:"user_id,omitempty"`
	ClientID    string            `json:"client_id,omitempty"`
	Reason      string            `json:"reason,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
}

// AuditPage answers GET /audit. NextBefore is the cursor for the next
// (older) page, 0 when there is none.
type AuditPage struct {
	Events     []AuditView `json:"events"`
	NextBefore int64       `json:"next_before,omitempty"`
}

// audit queries audit events: system admins any; org owners/admins only
// their org's events (org_id, or a config_id of their org). Filters:
// org_id, owner_scope+owner_id, config_id, user_id, type, since, until
// (RFC 3339), before (cursor), limit (≤1000).
func (h *Handler) audit(r *http.Request, p oauthserver.Principal) (int, any, error) {
	ctx := r.Context()
	q := r.URL.Query()
	for k := range q {
		switch k {
		case "org_id", "owner_scope", "owner_id", "config_id", "user_id", "type", "since", "until", "before", "limit":
		default:
			return 0, nil, badRequest("unknown query parameter %s", sanitizeField(k))
		}
	}
	f := store.AuditFilter{OwnerScope: store.OwnerScope(q.Get("owner_scope")), OwnerID: q.Get("owner_id"),
		ConfigID: q.Get("config_id"), UserID: q.Get("user_id"), Type: q.Get("type")}
	if org := q.Get("org_id"); org != "" {
		if f.OwnerScope != "" && (f.OwnerScope != store.ScopeOrg || f.OwnerID != org) {
			return 0, nil, badRequest("org_id conflicts with owner_scope/owner_id")
		}
		f.OwnerScope, f.OwnerID = store.ScopeOrg, org
	}
	for _, id := range []struct{ name, v string }{{"owner_id", f.OwnerID}, {"config_id", f.ConfigID}, {"user_id", f.UserID}} {
		if id.v != "" && !store.ValidID(id.v) {
			return 0, nil, badRequest("%s must be an id", id.name)
		}
	}
	if f.OwnerScope != "" && !f.OwnerScope.Valid() {
		return 0, nil, badRequest("owner_scope must be user or org")
	}
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := q.Get(t.name); v != "" {
			tm, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return 0, nil, badRequest("%s must be an RFC 3339 time", t.name)
			}
			*t.dst = tm
		}
	}
	for _, n := range []struct {
		name string
		dst  *int64
	}{{"before", &f.Before}} {
		if v := q.Get(n.name); v != "" {
			x, err := strconv.ParseInt(v, 10, 64)
			if err != nil || x < 0 {
				return 0, nil, badRequest("%s must be a non-negative integer", n.name)
			}
			*n.dst = x
		}
	}
	if v := q.Get("limit"); v != "" {
		x, err := strconv.Atoi(v)
		if err != nil || x < 1 || x > 1000 {
			return 0, nil, badRequest("limit must be 1 to 1000")
		}
		f.Limit = x
	}
	if !p.User.SystemAdmin {
		// Org owners/admins see their org's events only. A config filter
		// alone is narrowed to the config's org.
		if f.OwnerScope == "" && f.ConfigID != "" {
			cfg, err := h.st.GetConfig(ctx, f.ConfigID)
			if err != nil && !isNotFound(err) {
				return 0, nil, err
			}
			if err == nil && cfg.OwnerScope == store.ScopeOrg {
				f.OwnerScope, f.OwnerID = store.ScopeOrg, cfg.OwnerID
			}
		}
		if f.OwnerScope != store.ScopeOrg || f.OwnerID == "" {
			return 0, nil, errForbidden
		}
		ok, err := h.canManageOrg(ctx, p, f.OwnerID)
		if err != nil {
			return 0, nil, err
		}
		if !ok {
			return 0, nil, errForbidden
		}
	}
	evs, next, err := h.st.QueryAudit(ctx, f)
	if err != nil {
		return 0, nil, err
	}
	out := AuditPage{Events: make([]AuditView, 0, len(evs)), NextBefore: next}
	for _, e := range evs {
		out.Events = append(out.Events, AuditView{ID: e.ID, Time: e.Time, Type: e.Type, Outcome: e.Outcome, ActorUserID: e.ActorUserID,
			OwnerScope: string(e.OwnerScope), OwnerID: e.OwnerID, ConfigID: e.ConfigID, RouteID: e.RouteID, InstanceID: e.InstanceID,
			UserID: e.UserID, ClientID: e.ClientID, Reason: e.Reason, Metadata: e.Metadata})
	}
	return http.StatusOK, out, nil
}
