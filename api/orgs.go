package api

import (
	"context"
	"net/http"
	"strings"
	"time"

	"mcpgw/oauthserver"
	"mcpgw/store"
)

// OrgView is the JSON form of an org.
type OrgView struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	// Role is the caller's role ("" when not a member).
	Role string `json:"role,omitempty"`
}

// CreateOrgRequest is the body of POST /orgs. The caller becomes the
// owner; a system admin may name another owner.
type CreateOrgRequest struct {
	Name        string `json:"name"`
	OwnerUserID string `json:"owner_user_id,omitempty"`
}

func (h *Handler) createOrg(r *http.Request, p oauthserver.Principal) (int, any, error) {
	var req CreateOrgRequest
	if err := h.decode(r, &req); err != nil {
		return 0, nil, err
	}
	name := strings.TrimSpace(req.Name)
	if name == "" {
		return 0, nil, badRequest("name is required")
	}
	owner := p.User.ID
	if req.OwnerUserID != "" && req.OwnerUserID != p.User.ID {
		if !p.User.SystemAdmin {
			return 0, nil, errForbidden
		}
		if !store.ValidID(req.OwnerUserID) {
			return 0, nil, badRequest("owner_user_id must be a user id")
		}
		owner = req.OwnerUserID
	}
	ev := actor(p, "org.create")
	ev.UserID = owner
	o, err := h.st.CreateOrg(r.Context(), store.Org{ID: store.NewID(), Name: name, CreatedAt: h.now().UTC()}, owner, ev)
	if err != nil {
		if isConflict(err) {
			return 0, nil, conflict("an org with this name already exists")
		}
		return 0, nil, err
	}
	v := OrgView{ID: o.ID, Name: o.Name, CreatedAt: o.CreatedAt}
	if owner == p.User.ID {
		v.Role = string(store.RoleOwner)
	}
	return http.StatusCreated, v, nil
}

func (h *Handler) listOrgs(r *http.Request, p oauthserver.Principal) (int, any, error) {
	ctx := r.Context()
	ms, err := h.st.ListMemberships(ctx, p.User.ID)
	if err != nil {
		return 0, nil, err
	}
	roles := map[string]string{}
	for _, m := range ms {
		roles[m.OrgID] = string(m.Role)
	}
	out := []OrgView{}
	if p.User.SystemAdmin {
		os, err := h.st.ListOrgs(ctx)
		if err != nil {
			return 0, nil, err
		}
		for _, o := range os {
			out = append(out, OrgView{ID: o.ID, Name: o.Name, CreatedAt: o.CreatedAt, Role: roles[o.ID]})
		}
	} else {
		for _, m := range ms {
			o, err := h.st.GetOrg(ctx, m.OrgID)
			if err != nil {
				return 0, nil, err
			}
			out = append(out, OrgView{ID: o.ID, Name: o.Name, CreatedAt: o.CreatedAt, Role: roles[o.ID]})
		}
	}
	return http.StatusOK, map[string]any{"orgs": out}, nil
}

// orgAccess loads the path's org: 404 unless the caller is a member or a
// system admin; with manage, 403 unless owner/admin or system admin.
func (h *Handler) orgAccess(ctx context.Context, p oauthserver.Principal, orgID string, manage bool) (store.Org, store.Role, error) {
	o, err := h.st.GetOrg(ctx, orgID)
	if err != nil {
		return store.Org{}, "", err
	}
	role, member, err := h.orgRole(ctx, orgID, p.User.ID)
	if err != nil {
		return store.Org{}, "", err
	}
	if !member && !p.User.SystemAdmin {
		return store.Org{}, "", errNotFound
	}
	if manage && !p.User.SystemAdmin && !role.Manages() {
		return store.Org{}, "", errForbidden
	}
	return o, role, nil
}

func (h *Handler) getOrg(r *http.Request, p oauthserver.Principal) (int, any, error) {
	id, err := pathID(r, "id")
	if err != nil {
		return 0, nil, err
	}
	o, role, err := h.orgAccess(r.Context(), p, id, false)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, OrgView{ID: o.ID, Name: o.Name, CreatedAt: o.CreatedAt, Role: string(role)}, nil
}

func (h *Handler) listMembers(r *http.Request, p oauthserver.Principal) (int, any, error) {
	id, err := pathID(r, "id")
	if err != nil {
		return 0, nil, err
	}
	if _, _, err := h.orgAccess(r.Context(), p, id, true); err != nil {
		return 0, nil, err
	}
	ms, err := h.st.ListMembers(r.Context(), id)
	if err != nil {
		return 0, nil, err
	}
	out := make([]MemberView, 0, len(ms))
	for _, m := range ms {
		out = append(out, memberView(m))
	}
	return http.StatusOK, map[string]any{"members": out}, nil
}

// MemberRequest is the body of POST /orgs/{id}/members and (role only)
// PATCH /orgs/{id}/members/{user}.
type MemberRequest struct {
	UserID string `json:"user_id,omitempty"`
	Role   string `json:"role"`
}

func parseRole(s string) (store.Role, error) {
	r := store.Role(s)
	if !r.Valid() {
		return "", badRequest("role must be owner, admin or member")
	}
	return r, nil
}

// ownerOnly: making or unmaking an owner needs an owner (or a system
// admin); org admins manage admins and members only.
func ownerOnly(p oauthserver.Principal, callerRole store.Role, roles ...store.Role) error {
	if p.User.SystemAdmin || callerRole == store.RoleOwner {
		return nil
	}
	for _, r := range roles {
		if r == store.RoleOwner {
			return errForbidden
		}
	}
	return nil
}

func (h *Handler) addMember(r *http.Request, p oauthserver.Principal) (int, any, error) {
	id, err := pathID(r, "id")
	if err != nil {
		return 0, nil, err
	}
	_, callerRole, err := h.orgAccess(r.Context(), p, id, true)
	if err != nil {
		return 0, nil, err
	}
	var req MemberRequest
	if err := h.decode(r, &req); err != nil {
		return 0, nil, err
	}
	if !store.ValidID(req.UserID) {
		return 0, nil, badRequest("user_id must be a user id")
	}
	role, err := parseRole(req.Role)
	if err != nil {
		return 0, nil, err
	}
	if err := ownerOnly(p, callerRole, role); err != nil {
		return 0, nil, err
	}
	ev := actor(p, "org.member_add")
	ev.OwnerScope, ev.OwnerID, ev.UserID = store.ScopeOrg, id, req.UserID
	ev.Metadata["role"] = string(role)
	m, err := h.st.AddMember(r.Context(), store.Member{OrgID: id, UserID: req.UserID, Role: role, CreatedAt: h.now().UTC()}, ev)
	if err != nil {
		switch {
		case isConflict(err):
			return 0, nil, conflict("the user is already a member")
		case isNotFound(err):
			return 0, nil, badRequest("user_id names no active user")
		}
		return 0, nil, err
	}
	return http.StatusCreated, memberView(m), nil
}

func (h *Handler) setMemberRole(r *http.Request, p oauthserver.Principal) (int, any, error) {
	id, err := pathID(r, "id")
	if err != nil {
		return 0, nil, err
	}
	uid, err := pathID(r, "user")
	if err != nil {
		return 0, nil, err
	}
	ctx := r.Context()
	_, callerRole, err := h.orgAccess(ctx, p, id, true)
	if err != nil {
		return 0, nil, err
	}
	var req MemberRequest
	if err := h.decode(r, &req); err != nil {
		return 0, nil, err
	}
	if req.UserID != "" && req.UserID != uid {
		return 0, nil, badRequest("user_id in the body must match the path or be omitted")
	}
	role, err := parseRole(req.Role)
	if err != nil {
		return 0, nil, err
	}
	cur, err := h.st.GetMember(ctx, id, uid)
	if err != nil {
		return 0, nil, err
	}
	if err := ownerOnly(p, callerRole, role, cur.Role); err != nil {
		return 0, nil, err
	}
	ev := actor(p, "org.member_role")
	ev.OwnerScope, ev.OwnerID, ev.UserID = store.ScopeOrg, id, uid
	ev.Metadata["role"] = string(role)
	m, err := h.st.SetMemberRole(ctx, id, uid, role, ev)
	if err != nil {
		if isConflict(err) {
			return 0, nil, conflict("an org must keep at least one owner")
		}
		return 0, nil, err
	}
	return http.StatusOK, memberView(m), nil
}

// removeMember removes a membership; the store removes the user's
// assignments, org instances, grants and pending state in the same
// transaction (DESIGN §7). A member may also leave on its own.
func (h *Handler) removeMember(r *http.Request, p oauthserver.Principal) (int, any, error) {
	id, err := pathID(r, "id")
	if err != nil {
		return 0, nil, err
	}
	uid, err := pathID(r, "user")
	if err != nil {
		return 0, nil, err
	}
	ctx := r.Context()
	self := uid == p.User.ID
	_, callerRole, err := h.orgAccess(ctx, p, id, !self)
	if err != nil {
		return 0, nil, err
	}
	cur, err := h.st.GetMember(ctx, id, uid)
	if err != nil {
		return 0, nil, err
	}
	if !self {
		if err := ownerOnly(p, callerRole, cur.Role); err != nil {
			return 0, nil, err
		}
	}
	ev := actor(p, "org.member_remove")
	ev.OwnerScope, ev.OwnerID, ev.UserID = store.ScopeOrg, id, uid
	if err := h.st.RemoveMember(ctx, id, uid, ev); err != nil {
		if isConflict(err) {
			return 0, nil, conflict("an org must keep at least one owner")
		}
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}
