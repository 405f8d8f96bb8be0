package oauthserver

import (
	"context"
	"errors"
	"fmt"

	"mcpgw/domain"
	"mcpgw/store"
)

// eligibility is the outcome of resolving a route for a user.
type eligibility struct {
	Config   store.Config
	Route    store.Route
	Instance store.Instance
	// NeedsProvider: the config uses an OAuth auth mode and the instance
	// has no usable grant yet (DESIGN §4: run the provider flow first).
	NeedsProvider bool
}

// errIneligible carries the store reason of a denial (for logs and audit,
// never for clients).
type errIneligible struct{ reason store.Reason }

func (e *errIneligible) Error() string { return "ineligible: " + string(e.reason) }

var errRouteGone = errors.New("route not found")

func ineligibleReason(err error) string {
	var ie *errIneligible
	if errors.As(err, &ie) {
		return string(ie.reason)
	}
	if errors.Is(err, errRouteGone) {
		return "route_not_found"
	}
	return "internal"
}

func isDenial(err error) bool {
	var ie *errIneligible
	return errors.As(err, &ie) || errors.Is(err, errRouteGone)
}

// precheck proves DESIGN §3 for userID on ref without creating anything:
// ResolveRuntime with an instance id that cannot exist passes every rule
// before the instance rules, so instance_not_found (or grant rules) means
// "eligible, no instance yet".
func (s *Server) precheck(ctx context.Context, ref domain.RouteRef, userID string) (store.Config, error) {
	cfg, _, err := s.st.LookupRoute(ctx, ref.Scope, ref.OwnerID, ref.ConfigID, ref.Key)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return cfg, errRouteGone
		}
		return cfg, fmt.Errorf("lookup route: %w", err)
	}
	st, err := s.st.ResolveRuntime(ctx, store.RuntimeQuery{
		ConfigID: ref.ConfigID, RouteKey: ref.Key, OwnerScope: ref.Scope, OwnerID: ref.OwnerID,
		UserID: userID, InstanceID: store.NewID(), ConfigVersion: cfg.Version,
		ExecutionContext: ref.ExecutionContext(),
	})
	if err != nil {
		return cfg, fmt.Errorf("resolve runtime: %w", err)
	}
	switch st.Reason {
	case store.ReasonOK, store.ReasonInstanceNotFound, store.ReasonInstanceMismatch,
		store.ReasonInstanceNotActive, store.ReasonGrantMissing:
		return cfg, nil
	}
	return cfg, &errIneligible{reason: st.Reason}
}

// resolveForIssue is the full check before a code or token is issued
// (DESIGN §4): route, eligibility, config version and context, with the
// instance created lazily when create is set.
func (s *Server) resolveForIssue(ctx context.Context, ref domain.RouteRef, userID string, create bool) (eligibility, error) {
	var el eligibility
	cfg, err := s.precheck(ctx, ref, userID)
	if err != nil {
		return el, err
	}
	el.Config = cfg
	var inst store.Instance
	if create {
		inst, _, err = s.st.GetOrCreateInstance(ctx, ref.Scope, ref.OwnerID, userID, ref.ConfigID, store.NewID())
		if err != nil {
			return el, fmt.Errorf("get or create instance: %w", err)
		}
	}
	el.Instance = inst
	return s.recheck(ctx, ref, userID, inst.ID, cfg.Version, el)
}

// recheck runs ResolveRuntime with the would-be token facts.
func (s *Server) recheck(ctx context.Context, ref domain.RouteRef, userID, instanceID string, version int64, el eligibility) (eligibility, error) {
	st, err := s.st.ResolveRuntime(ctx, store.RuntimeQuery{
		ConfigID: ref.ConfigID, RouteKey: ref.Key, OwnerScope: ref.Scope, OwnerID: ref.OwnerID,
		UserID: userID, InstanceID: instanceID, ConfigVersion: version,
		ExecutionContext: ref.ExecutionContext(),
	})
	if err != nil {
		return el, fmt.Errorf("resolve runtime: %w", err)
	}
	switch st.Reason {
	case store.ReasonOK:
		return el, nil
	case store.ReasonGrantMissing, store.ReasonInstanceNotActive:
		// needs_reauth instance or no grant: for OAuth modes the provider
		// flow repairs it; anything else is a denial.
		if el.Config.AuthMode.IsOAuth() {
			el.NeedsProvider = true
			return el, nil
		}
	}
	return el, &errIneligible{reason: st.Reason}
}
