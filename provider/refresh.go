package provider

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"mcpgw/domain/secrets"
	"mcpgw/extauthz"
	"mcpgw/store"
)

// EnsureFresh implements extauthz.Credentials (DESIGN §6 step 7): it
// returns the instance's upstream access token, refreshing it first when
// it expires within the skew.
//
// Refresh coordination: callers in this process for one instance share one
// attempt (singleflight); that attempt takes store.LockGrant — a row lock
// in Postgres shared by every replica — and re-reads the grant under it.
// If another replica refreshed meanwhile, the fresh grant is reused and no
// upstream call is made. So across all replicas at most one refresh per
// grant version reaches the upstream.
//
// Errors: extauthz.ErrReauthRequired when there is no usable grant or the
// upstream refused the refresh (4xx) — the instance then moves to
// needs_reauth via MarkNeedsReauth, which never clobbers a newer grant;
// extauthz.ErrCredentialsTransient when the upstream failed (5xx,
// timeout, unreachable, malformed answer) — the grant is kept;
// store.ErrUnavailable when the database is down.
func (p *Provider) EnsureFresh(ctx context.Context, st store.RuntimeState) (string, error) {
	if st.Grant == nil || len(st.Grant.AccessToken) == 0 || st.InstanceID == "" {
		return "", extauthz.ErrReauthRequired
	}
	if tok, ok := p.usable(st.InstanceID, st.Grant); ok {
		return tok, nil
	}
	// The shared attempt must not die with the first caller's request.
	ch := p.refreshSF.DoChan(st.InstanceID, func() (any, error) {
		return p.refreshLocked(context.WithoutCancel(ctx), st)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return "", r.Err
		}
		return r.Val.(string), nil
	case <-ctx.Done():
		// This caller gives up (e.g. Envoy's ext_authz timeout); the
		// refresh goes on and the next request reuses its result.
		return "", fmt.Errorf("%w: %w", extauthz.ErrCredentialsTransient, ctx.Err())
	}
}

// usable opens g's access token when it is valid beyond the skew.
func (p *Provider) usable(instanceID string, g *store.Grant) (string, bool) {
	if g == nil || len(g.AccessToken) == 0 {
		return "", false
	}
	if g.ExpiresAt != nil && !p.now().Add(p.skew).Before(*g.ExpiresAt) {
		return "", false
	}
	pt, err := p.kr.Open(g.AccessToken, secrets.AAD("grants", "access_token", instanceID))
	if err != nil || !validToken(string(pt)) {
		return "", false
	}
	return string(pt), true
}

// errRefreshRefused carries the grant version whose refresh was refused
// out of the locked section.
type errRefreshRefused struct {
	version int64
	reason  string
}

func (e *errRefreshRefused) Error() string { return "provider: refresh refused: " + e.reason }

func (p *Provider) refreshLocked(ctx context.Context, st store.RuntimeState) (string, error) {
	ctx, cancelAll := context.WithTimeout(ctx, 8*p.timeout)
	defer cancelAll()
	cfg, err := p.st.GetConfig(ctx, st.Config.ID)
	if err != nil {
		if errors.Is(err, store.ErrUnavailable) {
			return "", err
		}
		return "", fmt.Errorf("%w: config: %w", extauthz.ErrReauthRequired, err)
	}
	// Discovery and the client lookup happen before the lock (they may
	// need the network when the cache is cold), so the row lock is held
	// only for the one token request. A failure here matters only if the
	// grant under the lock turns out to need a refresh.
	var (
		md     *Metadata
		c      upstreamClient
		preErr error
	)
	func() {
		dctx, cancel := context.WithTimeout(ctx, 4*p.timeout)
		defer cancel()
		if md, preErr = p.Discover(dctx, cfg); preErr == nil {
			c, preErr = p.clientFor(dctx, cfg, md)
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, 2*p.timeout)
	defer cancel()
	var (
		token   string
		outcome = "reused"
		prevVer int64
	)
	written, err := p.st.LockGrant(ctx, st.InstanceID, func(cur *store.Grant) (*store.Grant, error) {
		if cur == nil {
			return nil, fmt.Errorf("%w: no grant", extauthz.ErrReauthRequired)
		}
		// Another replica (or an earlier attempt) refreshed already.
		if tok, ok := p.usable(st.InstanceID, cur); ok {
			token = tok
			return nil, nil
		}
		prevVer = cur.Version
		if len(cur.RefreshToken) == 0 {
			return nil, &errRefreshRefused{version: cur.Version, reason: ReasonNoRefreshToken}
		}
		rt, err := p.kr.Open(cur.RefreshToken, secrets.AAD("grants", "refresh_token", st.InstanceID))
		if err != nil {
			return nil, &errRefreshRefused{version: cur.Version, reason: ReasonNoCredentials}
		}
		if preErr != nil {
			clear(rt)
			return nil, preErr
		}
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {string(rt)}}
		clear(rt)
		if md.Resource != "" {
			form.Set("resource", md.Resource)
		}
		ts, err := p.tokenRequest(ctx, "refresh", md.TokenEndpoint, c, form)
		if err != nil {
			var e *Error
			if errors.As(err, &e) && e.Reason == ReasonStatus4xx && !e.Transient {
				return nil, &errRefreshRefused{version: cur.Version, reason: ReasonRefreshRefused}
			}
			return nil, err
		}
		// Rotation (RFC 6749 §6, OAuth 2.1 §4.3.1): a new refresh token
		// replaces the old one in the same write as the access token.
		g, err := p.sealGrant(st.InstanceID, ts, cur.RefreshToken)
		if err != nil {
			return nil, err
		}
		token = ts.AccessToken
		outcome = "success"
		return &g, nil
	})
	ev := store.AuditEvent{Type: "provider.refresh", InstanceID: st.InstanceID, ConfigID: cfg.ID,
		OwnerScope: cfg.OwnerScope, OwnerID: cfg.OwnerID}
	var refused *errRefreshRefused
	switch {
	case err == nil:
		p.m.refresh.WithLabelValues(outcome).Inc()
		if outcome == "success" {
			ev.Outcome = "success"
			ev.Metadata = map[string]string{"grant_version": fmt.Sprint(written.Version), "previous_version": fmt.Sprint(prevVer)}
			p.audit(ctx, ev)
			p.log.InfoContext(ctx, "provider token refreshed", "instance_id", st.InstanceID, "grant_version", written.Version)
		}
		return token, nil
	case errors.As(err, &refused):
		p.m.refresh.WithLabelValues("reauth").Inc()
		ev.Outcome, ev.Reason = "failure", refused.reason
		done, merr := p.st.MarkNeedsReauth(ctx, st.InstanceID, refused.version, &store.AuditEvent{
			Type: "provider.grant", Outcome: "revoked", Reason: refused.reason, InstanceID: st.InstanceID,
			ConfigID: cfg.ID, OwnerScope: cfg.OwnerScope, OwnerID: cfg.OwnerID,
		})
		ev.Metadata = map[string]string{"needs_reauth": fmt.Sprint(done)}
		p.audit(ctx, ev)
		p.log.InfoContext(ctx, "provider refresh refused", "instance_id", st.InstanceID, "reason", refused.reason, "needs_reauth", done)
		if merr != nil && errors.Is(merr, store.ErrUnavailable) {
			return "", merr
		}
		return "", fmt.Errorf("%w: %s", extauthz.ErrReauthRequired, refused.reason)
	case errors.Is(err, extauthz.ErrReauthRequired):
		p.m.refresh.WithLabelValues("reauth").Inc()
		return "", err
	case errors.Is(err, store.ErrUnavailable):
		p.m.refresh.WithLabelValues("store_unavailable").Inc()
		return "", err
	case errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound):
		p.m.refresh.WithLabelValues("reauth").Inc()
		return "", fmt.Errorf("%w: instance gone", extauthz.ErrReauthRequired)
	default:
		reason := reasonOf(err, "error")
		p.m.refresh.WithLabelValues("transient").Inc()
		ev.Outcome, ev.Reason = "failure", reason
		ev.Metadata = map[string]string{"transient": "true"}
		p.audit(ctx, ev)
		p.log.WarnContext(ctx, "provider refresh failed; grant kept", "instance_id", st.InstanceID, "reason", reason)
		return "", fmt.Errorf("%w: %s", extauthz.ErrCredentialsTransient, reason)
	}
}
