package oauthserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"mcpgw/domain"
	"mcpgw/domain/secrets"
	"mcpgw/store"
)

// FirstLevelRequest is an approved first-level authorization request
// waiting for its code: everything the code will be bound to (DESIGN §4).
// The provider flow carries it (encrypted, in its pending state) through
// the upstream round trip and hands it back to IssueCode.
type FirstLevelRequest struct {
	ClientID      string
	RedirectURI   string
	Resource      string
	Scopes        []string
	State         string
	CodeChallenge string
	UserID        string
	Route         domain.RouteRef
	ConfigVersion int64
	InstanceID    string
}

// ProviderFlow runs the provider (second-level) OAuth flow for a config in
// an OAuth auth mode whose instance has no usable grant (DESIGN §5). Start
// writes the response (normally a redirect to the upstream authorization
// server). When the provider callback has stored the grant, it calls
// Server.IssueCode with the same request and redirects the browser to the
// URL returned; on failure it redirects to Server.ErrorRedirect.
//
// If Start returns an error without writing a response, the client gets
// temporarily_unavailable at its redirect URI.
type ProviderFlow interface {
	Start(ctx context.Context, w http.ResponseWriter, r *http.Request, pending FirstLevelRequest) error
}

func (s *Server) startProvider(w http.ResponseWriter, r *http.Request, p FirstLevelRequest) {
	ctx := r.Context()
	if s.provider == nil {
		s.log.InfoContext(ctx, "provider flow unavailable", "client_id", p.ClientID, "config_id", p.Route.ConfigID)
		s.audit(ctx, store.AuditEvent{
			Type: "oauth.authorize", Outcome: "failure", ActorUserID: p.UserID, ClientID: p.ClientID,
			OwnerScope: p.Route.Scope, OwnerID: p.Route.OwnerID, ConfigID: p.Route.ConfigID,
			InstanceID: p.InstanceID, Reason: "provider_flow_unavailable",
		})
		s.redirectError(w, r, p.RedirectURI, p.State, oerr(http.StatusFound, ErrTemporarilyUnavailable,
			"this connection needs an upstream authorization, which is not available yet"))
		return
	}
	rec, _ := w.(*recorder)
	if err := s.provider.Start(ctx, w, r, p); err != nil {
		s.log.ErrorContext(ctx, "provider flow start failed", "config_id", p.Route.ConfigID, "err", err)
		if rec == nil || rec.status == 0 {
			s.redirectError(w, r, p.RedirectURI, p.State, oerr(http.StatusFound, ErrTemporarilyUnavailable,
				"the upstream authorization could not be started"))
		}
	}
}

// IssueCode re-checks the pending request (route, eligibility, config
// version, instance, and now the grant) and issues its authorization code.
// It returns the redirect URL carrying code, state and iss (RFC 9207).
// A request that is no longer eligible yields an error; use ErrorRedirect
// to tell the client.
func (s *Server) IssueCode(ctx context.Context, p FirstLevelRequest) (string, error) {
	el, err := s.recheck(ctx, p.Route, p.UserID, p.InstanceID, p.ConfigVersion, eligibility{})
	if err != nil {
		return "", err
	}
	if el.NeedsProvider {
		return "", &errIneligible{reason: store.ReasonGrantMissing}
	}
	cfg, _, err := s.st.LookupRoute(ctx, p.Route.Scope, p.Route.OwnerID, p.Route.ConfigID, p.Route.Key)
	if err != nil {
		return "", fmt.Errorf("lookup route: %w", err)
	}
	el.Config = cfg
	el.Instance = store.Instance{ID: p.InstanceID}
	return s.issueCode(ctx, p, el)
}

// ErrorRedirect returns the URL that tells the client of p about an
// OAuth error (code is one of the Err* constants) with state and iss.
func (s *Server) ErrorRedirect(p FirstLevelRequest, code, description string) string {
	u, err := url.Parse(p.RedirectURI)
	if err != nil {
		return ""
	}
	q := u.Query()
	q.Set("error", code)
	if description != "" {
		q.Set("error_description", description)
	}
	if p.State != "" {
		q.Set("state", p.State)
	}
	q.Set("iss", s.issuer)
	u.RawQuery = q.Encode()
	return u.String()
}

// issueCode stores a code (hash only, ≤10 min, bound to everything) and
// returns the success redirect.
func (s *Server) issueCode(ctx context.Context, p FirstLevelRequest, el eligibility) (string, error) {
	if el.Instance.ID == "" {
		return "", errors.New("issue code: no instance")
	}
	now := s.clock()
	code := secrets.NewToken(prefixCode)
	ac := store.AuthCode{
		Hash:             secrets.Hash(code),
		FamilyID:         newFamilyID(),
		ClientID:         p.ClientID,
		RedirectURI:      p.RedirectURI,
		Resource:         p.Resource,
		Scopes:           p.Scopes,
		CodeChallenge:    p.CodeChallenge,
		ConfigID:         p.Route.ConfigID,
		RouteKey:         p.Route.Key,
		OwnerScope:       p.Route.Scope,
		OwnerID:          p.Route.OwnerID,
		ExecutionContext: p.Route.ExecutionContext(),
		UserID:           p.UserID,
		InstanceID:       el.Instance.ID,
		ConfigVersion:    el.Config.Version,
		CreatedAt:        now,
		ExpiresAt:        now.Add(s.codeTTL),
	}
	if err := s.st.CreateAuthCode(ctx, ac); err != nil {
		return "", fmt.Errorf("create code: %w", err)
	}
	s.log.InfoContext(ctx, "authorization granted", "client_id", p.ClientID, "user_id", p.UserID, "config_id", p.Route.ConfigID, "instance_id", el.Instance.ID)
	s.audit(ctx, store.AuditEvent{
		Type: "oauth.authorize", Outcome: "success", ActorUserID: p.UserID, ClientID: p.ClientID,
		OwnerScope: p.Route.Scope, OwnerID: p.Route.OwnerID, ConfigID: p.Route.ConfigID, InstanceID: el.Instance.ID,
	})
	u, err := url.Parse(p.RedirectURI)
	if err != nil {
		return "", fmt.Errorf("parse redirect uri: %w", err)
	}
	q := u.Query()
	q.Set("code", code)
	if p.State != "" {
		q.Set("state", p.State)
	}
	q.Set("iss", s.issuer)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// newFamilyID names a token family: the code and every refresh token
// descended from it share it, so reuse can revoke them all (DESIGN §4). The
// config version the user consented to is stored on each refresh token.
func newFamilyID() string { return store.NewID() }

// audit appends one event; a failure is logged, not fatal (the action it
// records has already happened).
func (s *Server) audit(ctx context.Context, ev store.AuditEvent) {
	if ev.Time.IsZero() {
		ev.Time = s.clock()
	}
	if err := s.st.AppendAudit(ctx, ev); err != nil {
		s.log.ErrorContext(ctx, "audit append failed", "type", ev.Type, "err", err)
	}
}
