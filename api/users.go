package api

import (
	"context"
	"net/http"
	"strings"
	"time"

	"mcpgw/domain/secrets"
	"mcpgw/oauthserver"
	"mcpgw/store"
)

// UserView is the JSON form of a user.
type UserView struct {
	ID          string    `json:"id"`
	Email       string    `json:"email"`
	DisplayName string    `json:"display_name,omitempty"`
	Status      string    `json:"status"`
	SystemAdmin bool      `json:"system_admin"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

func userView(u store.User) UserView {
	return UserView{ID: u.ID, Email: u.Email, DisplayName: u.DisplayName, Status: string(u.Status),
		SystemAdmin: u.SystemAdmin, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt}
}

// MemberView is one membership.
type MemberView struct {
	OrgID     string    `json:"org_id"`
	UserID    string    `json:"user_id"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
}

func memberView(m store.Member) MemberView {
	return MemberView{OrgID: m.OrgID, UserID: m.UserID, Role: string(m.Role), CreatedAt: m.CreatedAt}
}

// MeView answers GET /me.
type MeView struct {
	User        UserView     `json:"user"`
	Via         string       `json:"via"`
	Memberships []MemberView `json:"memberships"`
}

func (h *Handler) me(r *http.Request, p oauthserver.Principal) (int, any, error) {
	ms, err := h.st.ListMemberships(r.Context(), p.User.ID)
	if err != nil {
		return 0, nil, err
	}
	out := MeView{User: userView(p.User), Via: p.Via, Memberships: []MemberView{}}
	for _, m := range ms {
		out.Memberships = append(out.Memberships, memberView(m))
	}
	return http.StatusOK, out, nil
}

// CreateUserRequest is the body of POST /users.
type CreateUserRequest struct {
	Email       string `json:"email"`
	DisplayName string `json:"display_name,omitempty"`
	// Status: active (default), blocked or provisional.
	Status      string `json:"status,omitempty"`
	SystemAdmin bool   `json:"system_admin,omitempty"`
}

func normEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

func (h *Handler) createUser(r *http.Request, p oauthserver.Principal) (int, any, error) {
	if err := requireAdmin(p); err != nil {
		return 0, nil, err
	}
	var req CreateUserRequest
	if err := h.decode(r, &req); err != nil {
		return 0, nil, err
	}
	email := normEmail(req.Email)
	if email == "" || !strings.Contains(email, "@") {
		return 0, nil, badRequest("email is required and must be an email address")
	}
	status := store.UserStatus(req.Status)
	switch status {
	case "":
		status = store.UserActive
	case store.UserActive, store.UserBlocked, store.UserProvisional:
	default:
		return 0, nil, badRequest("status must be active, blocked or provisional")
	}
	now := h.now().UTC()
	u := store.User{ID: store.NewID(), Email: email, DisplayName: req.DisplayName, Status: status,
		SystemAdmin: req.SystemAdmin, CreatedAt: now, UpdatedAt: now}
	created, err := h.st.CreateUser(r.Context(), u)
	if err != nil {
		if isConflict(err) {
			return 0, nil, conflict("a user with this email already exists")
		}
		return 0, nil, err
	}
	ev := actor(p, "user.create")
	ev.UserID = created.ID
	h.appendAudit(r, *ev)
	return http.StatusCreated, userView(created), nil
}

func (h *Handler) listUsers(r *http.Request, p oauthserver.Principal) (int, any, error) {
	if err := requireAdmin(p); err != nil {
		return 0, nil, err
	}
	inc, err := boolQuery(r, "include_deleted")
	if err != nil {
		return 0, nil, err
	}
	us, err := h.st.ListUsers(r.Context(), inc)
	if err != nil {
		return 0, nil, err
	}
	out := make([]UserView, 0, len(us))
	for _, u := range us {
		out = append(out, userView(u))
	}
	return http.StatusOK, map[string]any{"users": out}, nil
}

func (h *Handler) getUser(r *http.Request, p oauthserver.Principal) (int, any, error) {
	id, err := userID(r, p)
	if err != nil {
		return 0, nil, err
	}
	if err := selfOrAdmin(p, id); err != nil {
		return 0, nil, err
	}
	u, err := h.st.GetUser(r.Context(), id)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, userView(u), nil
}

func (h *Handler) blockUser(r *http.Request, p oauthserver.Principal) (int, any, error) {
	return h.setUserStatus(r, p, store.UserBlocked, "user.block")
}

func (h *Handler) unblockUser(r *http.Request, p oauthserver.Principal) (int, any, error) {
	return h.setUserStatus(r, p, store.UserActive, "user.unblock")
}

// setUserStatus blocks or unblocks (system admins only). Blocking takes
// effect at the next runtime check and removes nothing (DESIGN §3 rule 4).
func (h *Handler) setUserStatus(r *http.Request, p oauthserver.Principal, st store.UserStatus, typ string) (int, any, error) {
	if err := requireAdmin(p); err != nil {
		return 0, nil, err
	}
	id, err := pathID(r, "id")
	if err != nil {
		return 0, nil, err
	}
	if id == p.User.ID && st == store.UserBlocked {
		return 0, nil, conflict("you cannot block yourself")
	}
	ev := actor(p, typ)
	ev.UserID = id
	u, err := h.st.SetUserStatus(r.Context(), id, st, ev)
	if err != nil {
		if isConflict(err) {
			return 0, nil, conflict("the user is deleted")
		}
		return 0, nil, err
	}
	return http.StatusOK, userView(u), nil
}

// deleteUser soft-deletes and anonymizes the user; the store removes the
// user's instances, grants, pending state, refresh tokens, sessions, API
// tokens, assignments and memberships in the same transaction (DESIGN §7).
func (h *Handler) deleteUser(r *http.Request, p oauthserver.Principal) (int, any, error) {
	if err := requireAdmin(p); err != nil {
		return 0, nil, err
	}
	id, err := pathID(r, "id")
	if err != nil {
		return 0, nil, err
	}
	if id == p.User.ID {
		return 0, nil, conflict("you cannot delete yourself")
	}
	if _, err := h.st.GetUser(r.Context(), id); err != nil {
		return 0, nil, err
	}
	ev := actor(p, "user.delete")
	ev.UserID = id
	if err := h.st.SoftDeleteUser(r.Context(), id, ev); err != nil {
		if isConflict(err) {
			return 0, nil, conflict("the user is the last owner of an org: transfer ownership first")
		}
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

// TokenView is an API token without its secret.
type TokenView struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
}

// CreatedTokenView is the one answer that carries the raw token.
type CreatedTokenView struct {
	TokenView
	Token string `json:"token"`
}

// CreateTokenRequest is the body of POST /users/{id}/tokens.
type CreateTokenRequest struct {
	Name string `json:"name"`
	// ExpiresInSeconds: 0 means the token does not expire.
	ExpiresInSeconds int64 `json:"expires_in_seconds,omitempty"`
}

func tokenView(t store.APIToken) TokenView {
	return TokenView{ID: t.ID, Name: t.Name, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt, LastUsedAt: t.LastUsedAt, RevokedAt: t.RevokedAt}
}

// createToken mints a personal API token for the caller itself (nobody,
// not even a system admin, mints credentials for someone else). The raw
// value is in this answer only; the store keeps its SHA-256 (DESIGN §9).
func (h *Handler) createToken(r *http.Request, p oauthserver.Principal) (int, any, error) {
	id, err := userID(r, p)
	if err != nil {
		return 0, nil, err
	}
	if err := selfOrAdmin(p, id); err != nil {
		return 0, nil, err
	}
	if id != p.User.ID {
		return 0, nil, errForbidden
	}
	var req CreateTokenRequest
	if err := h.decode(r, &req); err != nil {
		return 0, nil, err
	}
	if strings.TrimSpace(req.Name) == "" {
		return 0, nil, badRequest("name is required")
	}
	if req.ExpiresInSeconds < 0 || req.ExpiresInSeconds > 10*365*24*3600 {
		return 0, nil, badRequest("expires_in_seconds must be between 0 (never) and ten years")
	}
	tok, err := IssueAPIToken(r.Context(), h.st, p.User.ID, req.Name, time.Duration(req.ExpiresInSeconds)*time.Second, h.now().UTC())
	if err != nil {
		return 0, nil, err
	}
	h.appendAudit(r, store.AuditEvent{Type: "api_token.create", Outcome: "success", ActorUserID: p.User.ID,
		Metadata: map[string]string{"via": p.Via, "token_id": tok.ID}})
	return http.StatusCreated, tok, nil
}

// IssueAPIToken creates a personal API token for userID and returns it
// with its raw value (shown once). Shared with `mcpgw bootstrap`.
func IssueAPIToken(ctx context.Context, st store.Store, userID, name string, ttl time.Duration, now time.Time) (CreatedTokenView, error) {
	raw := secrets.NewToken(oauthserver.PrefixAPIToken)
	t := store.APIToken{ID: store.NewID(), UserID: userID, Name: name, Hash: secrets.Hash(raw), CreatedAt: now}
	if ttl > 0 {
		exp := now.Add(ttl)
		t.ExpiresAt = &exp
	}
	created, err := st.CreateAPIToken(ctx, t)
	if err != nil {
		return CreatedTokenView{}, err
	}
	return CreatedTokenView{TokenView: tokenView(created), Token: raw}, nil
}

func (h *Handler) listTokens(r *http.Request, p oauthserver.Principal) (int, any, error) {
	id, err := userID(r, p)
	if err != nil {
		return 0, nil, err
	}
	if err := selfOrAdmin(p, id); err != nil {
		return 0, nil, err
	}
	ts, err := h.st.ListAPITokens(r.Context(), id)
	if err != nil {
		return 0, nil, err
	}
	out := make([]TokenView, 0, len(ts))
	for _, t := range ts {
		out = append(out, tokenView(t))
	}
	return http.StatusOK, map[string]any{"tokens": out}, nil
}

func (h *Handler) revokeToken(r *http.Request, p oauthserver.Principal) (int, any, error) {
	id, err := userID(r, p)
	if err != nil {
		return 0, nil, err
	}
	if err := selfOrAdmin(p, id); err != nil {
		return 0, nil, err
	}
	tid, err := pathID(r, "token")
	if err != nil {
		return 0, nil, err
	}
	if err := h.st.RevokeAPIToken(r.Context(), id, tid, h.now().UTC()); err != nil {
		return 0, nil, err
	}
	h.appendAudit(r, store.AuditEvent{Type: "api_token.revoke", Outcome: "success", ActorUserID: p.User.ID, UserID: id,
		Metadata: map[string]string{"via": p.Via, "token_id": tid}})
	return http.StatusNoContent, nil, nil
}

// userID is the {id} path parameter of the self-service user endpoints,
// where "me" names the caller (so a CLI needs no lookup first).
func userID(r *http.Request, p oauthserver.Principal) (string, error) {
	if r.PathValue("id") == "me" {
		return p.User.ID, nil
	}
	return pathID(r, "id")
}
