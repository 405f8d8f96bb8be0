package api

import (
	"context"
	"errors"

	"mcpgw/oauthserver"
	"mcpgw/store"
)

// Authorization (DESIGN §3, §7, issue 7):
//
//   - system admins may do everything;
//   - a personal config is managed by its owner;
//   - an org config is managed by the org's owners and admins, who may use
//     it only when assigned (DESIGN §3 rule 2);
//   - an assigned member sees the configs it may use, and its own
//     instances, and may revoke those — nothing else;
//   - anyone else gets 404 for a thing they cannot see (so ids of other
//     people's configs are not confirmed), 403 for a thing they can see but
//     not change.

// orgRole returns the caller's role in org, ok=false when not a member.
func (h *Handler) orgRole(ctx context.Context, orgID, userID string) (store.Role, bool, error) {
	m, err := h.st.GetMember(ctx, orgID, userID)
	if errors.Is(err, store.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return m.Role, true, nil
}

// canManageOrg reports whether p may manage org orgID's configs, members
// and audit (system admin, or org owner/admin).
func (h *Handler) canManageOrg(ctx context.Context, p oauthserver.Principal, orgID string) (bool, error) {
	if p.User.SystemAdmin {
		return true, nil
	}
	role, ok, err := h.orgRole(ctx, orgID, p.User.ID)
	if err != nil {
		return false, err
	}
	return ok && role.Manages(), nil
}

// access is what a principal may do with one config.
type access struct {
	manage bool // change it, its route and assignments
	use    bool // it is one of the caller's usable configs (view only)
}

func (a access) visible() bool { return a.manage || a.use }

// configAccess decides the caller's access to cfg.
func (h *Handler) configAccess(ctx context.Context, p oauthserver.Principal, cfg store.Config) (access, error) {
	if cfg.Status == store.ConfigDeleted {
		return access{}, nil
	}
	var a access
	if p.User.SystemAdmin {
		a.manage = true
	}
	switch cfg.OwnerScope {
	case store.ScopeUser:
		if cfg.OwnerID == p.User.ID {
			a.manage, a.use = true, true
		}
	case store.ScopeOrg:
		role, member, err := h.orgRole(ctx, cfg.OwnerID, p.User.ID)
		if err != nil {
			return access{}, err
		}
		if member && role.Manages() {
			a.manage = true
		}
		if member {
			as, err := h.st.ListAssignments(ctx, cfg.ID)
			if err != nil {
				return access{}, err
			}
			for _, x := range as {
				if x.UserID == p.User.ID {
					a.use = true
				}
			}
		}
	}
	return a, nil
}

// loadConfig loads the path's config and checks access: 404 unless
// visible, 403 unless manageable when manage is asked for.
func (h *Handler) loadConfig(ctx context.Context, p oauthserver.Principal, id string, manage bool) (store.Config, access, error) {
	cfg, err := h.st.GetConfig(ctx, id)
	if err != nil {
		return store.Config{}, access{}, err
	}
	a, err := h.configAccess(ctx, p, cfg)
	if err != nil {
		return store.Config{}, access{}, err
	}
	if !a.visible() {
		return store.Config{}, access{}, errNotFound
	}
	if manage && !a.manage {
		return store.Config{}, access{}, errForbidden
	}
	return cfg, a, nil
}

// requireAdmin refuses everyone but system admins.
func requireAdmin(p oauthserver.Principal) error {
	if !p.User.SystemAdmin {
		return errForbidden
	}
	return nil
}

// selfOrAdmin allows the user itself and system admins; others get 404 (a
// user id is not confirmed to exist).
func selfOrAdmin(p oauthserver.Principal, userID string) error {
	if p.User.ID == userID || p.User.SystemAdmin {
		return nil
	}
	return errNotFound
}
