package memory

import (
	"encoding/json"
	"maps"
	"slices"
	"time"

	"mcpgw/store"
)

// Deep copies. Every value crossing the store boundary goes through one of
// these, so stored state shares no slice, map or pointer with a caller.

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

func cloneStrings(s []string) []string {
	if s == nil {
		return nil
	}
	return slices.Clone(s)
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	return maps.Clone(m)
}

func cloneJSON(r json.RawMessage) json.RawMessage {
	if r == nil {
		return nil
	}
	return append(json.RawMessage{}, r...)
}

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
	t.Hash = cloneBytes(t.Hash)
	t.ExpiresAt = cloneTimePtr(t.ExpiresAt)
	t.LastUsedAt = cloneTimePtr(t.LastUsedAt)
	t.RevokedAt = cloneTimePtr(t.RevokedAt)
	return t
}

func cloneSession(s store.Session) store.Session {
	s.IDHash = cloneBytes(s.IDHash)
	s.CSRFHash = cloneBytes(s.CSRFHash)
	s.RevokedAt = cloneTimePtr(s.RevokedAt)
	return s
}

func cloneConfig(c store.Config) store.Config {
	c.StaticHeaders = cloneBytes(c.StaticHeaders)
	c.StaticHeaderNames = cloneStrings(c.StaticHeaderNames)
	c.AuxHeaders = cloneMap(c.AuxHeaders)
	c.Provider.Scopes = cloneStrings(c.Provider.Scopes)
	c.Provider.ClientCredentials = cloneBytes(c.Provider.ClientCredentials)
	c.Registry = cloneJSON(c.Registry)
	return c
}

func cloneRoute(r store.Route) store.Route {
	r.DeactivatedAt = cloneTimePtr(r.DeactivatedAt)
	return r
}

func cloneGrant(g store.Grant) store.Grant {
	g.AccessToken = cloneBytes(g.AccessToken)
	g.RefreshToken = cloneBytes(g.RefreshToken)
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
	r.Ciphertext = cloneBytes(r.Ciphertext)
	return r
}

func clonePending(p store.PendingProviderState) store.PendingProviderState {
	p.StateHash = cloneBytes(p.StateHash)
	p.Ciphertext = cloneBytes(p.Ciphertext)
	p.ConsumedAt = cloneTimePtr(p.ConsumedAt)
	return p
}

func cloneClient(c store.OAuthClient) store.OAuthClient {
	c.SecretHash = cloneBytes(c.SecretHash)
	c.RegistrationTokenHash = cloneBytes(c.RegistrationTokenHash)
	c.RedirectURIs = cloneStrings(c.RedirectURIs)
	c.GrantTypes = cloneStrings(c.GrantTypes)
	c.ResponseTypes = cloneStrings(c.ResponseTypes)
	c.Metadata = cloneJSON(c.Metadata)
	return c
}

func cloneAuthRequest(r store.AuthRequest) store.AuthRequest {
	r.Scopes = cloneStrings(r.Scopes)
	return r
}

func cloneConsent(t store.ConsentTicket) store.ConsentTicket {
	t.Hash = cloneBytes(t.Hash)
	t.Scopes = cloneStrings(t.Scopes)
	t.ConsumedAt = cloneTimePtr(t.ConsumedAt)
	return t
}

func cloneCode(c store.AuthCode) store.AuthCode {
	c.Hash = cloneBytes(c.Hash)
	c.Scopes = cloneStrings(c.Scopes)
	c.ConsumedAt = cloneTimePtr(c.ConsumedAt)
	return c
}

func cloneRefresh(t store.RefreshToken) store.RefreshToken {
	t.Hash = cloneBytes(t.Hash)
	t.Scopes = cloneStrings(t.Scopes)
	t.ConsumedAt = cloneTimePtr(t.ConsumedAt)
	t.RevokedAt = cloneTimePtr(t.RevokedAt)
	return t
}

func cloneAudit(e store.AuditEvent) store.AuditEvent {
	e.Metadata = cloneMap(e.Metadata)
	return e
}
