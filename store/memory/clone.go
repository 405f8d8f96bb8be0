package memory

import (
	"bytes"
	"maps"
	"slices"
	"time"

	"mcpgw/store"
)

// Deep copies. Every value crossing the store boundary goes through one of
// these, so stored state shares no slice, map or pointer with a caller.

func cloneTimePtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := *t
	return &v
}

func ptr(t time.Time) *time.Time { return &t }

func cloneUser(u store.User) store.User { return u }

func cloneAPIToken(t store.APIToken) store.APIToken {
	t.Hash = bytes.Clone(t.Hash)
	t.ExpiresAt = cloneTimePtr(t.ExpiresAt)
	t.LastUsedAt = cloneTimePtr(t.LastUsedAt)
	t.RevokedAt = cloneTimePtr(t.RevokedAt)
	return t
}

func cloneSession(s store.Session) store.Session {
	s.IDHash = bytes.Clone(s.IDHash)
	s.CSRFHash = bytes.Clone(s.CSRFHash)
	s.RevokedAt = cloneTimePtr(s.RevokedAt)
	return s
}

func cloneConfig(c store.Config) store.Config {
	c.StaticHeaders = bytes.Clone(c.StaticHeaders)
	c.StaticHeaderNames = slices.Clone(c.StaticHeaderNames)
	c.AuxHeaders = maps.Clone(c.AuxHeaders)
	c.Provider.Scopes = slices.Clone(c.Provider.Scopes)
	c.Provider.ClientCredentials = bytes.Clone(c.Provider.ClientCredentials)
	c.Registry = slices.Clone(c.Registry)
	return c
}

func cloneRoute(r store.Route) store.Route {
	r.DeactivatedAt = cloneTimePtr(r.DeactivatedAt)
	return r
}

func cloneGrant(g store.Grant) store.Grant {
	g.AccessToken = bytes.Clone(g.AccessToken)
	g.RefreshToken = bytes.Clone(g.RefreshToken)
	g.ExpiresAt = cloneTimePtr(g.ExpiresAt)
	return g
}

func cloneGrantPtr(g *store.Grant) *store.Grant {
	if g == nil {
		return nil
	}
	c := cloneGrant(*g)
	return &c
}

func cloneRegistration(r store.ProviderRegistration) store.ProviderRegistration {
	r.Ciphertext = bytes.Clone(r.Ciphertext)
	return r
}

func clonePending(p store.PendingProviderState) store.PendingProviderState {
	p.StateHash = bytes.Clone(p.StateHash)
	p.Ciphertext = bytes.Clone(p.Ciphertext)
	p.ConsumedAt = cloneTimePtr(p.ConsumedAt)
	return p
}

func cloneClient(c store.OAuthClient) store.OAuthClient {
	c.SecretHash = bytes.Clone(c.SecretHash)
	c.RegistrationTokenHash = bytes.Clone(c.RegistrationTokenHash)
	c.RedirectURIs = slices.Clone(c.RedirectURIs)
	c.GrantTypes = slices.Clone(c.GrantTypes)
	c.ResponseTypes = slices.Clone(c.ResponseTypes)
	c.Metadata = slices.Clone(c.Metadata)
	return c
}

func cloneAuthRequest(r store.AuthRequest) store.AuthRequest {
	r.Scopes = slices.Clone(r.Scopes)
	return r
}

func cloneConsent(t store.ConsentTicket) store.ConsentTicket {
	t.Hash = bytes.Clone(t.Hash)
	t.Scopes = slices.Clone(t.Scopes)
	t.ConsumedAt = cloneTimePtr(t.ConsumedAt)
	return t
}

func cloneCode(c store.AuthCode) store.AuthCode {
	c.Hash = bytes.Clone(c.Hash)
	c.Scopes = slices.Clone(c.Scopes)
	c.ConsumedAt = cloneTimePtr(c.ConsumedAt)
	return c
}

func cloneRefresh(t store.RefreshToken) store.RefreshToken {
	t.Hash = bytes.Clone(t.Hash)
	t.Scopes = slices.Clone(t.Scopes)
	t.ConsumedAt = cloneTimePtr(t.ConsumedAt)
	t.RevokedAt = cloneTimePtr(t.RevokedAt)
	return t
}

func cloneAudit(e store.AuditEvent) store.AuditEvent {
	e.Metadata = maps.Clone(e.Metadata)
	return e
}
