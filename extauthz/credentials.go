package extauthz

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"time"

	"mcpgw/domain/headers"
	"mcpgw/domain/secrets"
	"mcpgw/store"
)

// Credentials yields a usable upstream access token for an OAuth-mode
// instance (DESIGN §6 step 7), refreshing it when it expires within a small
// skew: at most one refresh in flight per instance across replicas. It is
// implemented by the provider package (issue 4). Errors:
//
//   - ErrReauthRequired (wrapped): the grant is gone or the refresh was
//     refused; the instance was moved to needs_reauth if no newer grant was
//     written. The request gets 401 invalid_token so the client
//     re-authorizes, which re-runs the provider flow.
//   - ErrCredentialsTransient (wrapped): the provider could not be reached;
//     the request gets a generic 503 and may be retried.
//   - store.ErrUnavailable (wrapped): the database is down; Check fails with
//     gRPC Unavailable like every other infrastructure failure.
//
// Any other error denies with a generic 403. Errors must not carry provider
// payloads or tokens.
type Credentials interface {
	EnsureFresh(ctx context.Context, st store.RuntimeState) (accessToken string, err error)
}

var (
	// ErrReauthRequired: the user must authorize again.
	ErrReauthRequired = errors.New("extauthz: provider grant needs reauthorization")
	// ErrCredentialsTransient: try again later.
	ErrCredentialsTransient = errors.New("extauthz: provider credentials temporarily unavailable")
)

// storedGrantToken is the behaviour without a Credentials implementation:
// the grant's stored access token is used while it is valid beyond skew;
// otherwise the user must reauthorize. It never refreshes.
func storedGrantToken(kr *secrets.KeyRing, st store.RuntimeState, now time.Time, skew time.Duration) (string, error) {
	g := st.Grant
	if g == nil || len(g.AccessToken) == 0 {
		return "", ErrReauthRequired
	}
	if g.ExpiresAt != nil && !now.Add(skew).Before(*g.ExpiresAt) {
		return "", ErrReauthRequired
	}
	pt, err := kr.Open(g.AccessToken, secrets.AAD("grants", "access_token", st.InstanceID))
	if err != nil {
		return "", errUndecryptable
	}
	if !headers.ValidValue("Bearer "+string(pt)) || len(pt) == 0 {
		return "", errUndecryptable
	}
	return string(pt), nil
}

var errUndecryptable = errors.New("extauthz: stored credential cannot be decrypted or is malformed")

// staticCache keeps decrypted, parsed and validated static headers per
// config, so a busy config costs one map lookup instead of an AES-GCM open
// and a JSON parse per request. An entry is used only when the config's
// ciphertext is byte-for-byte the one it was opened from: a rotation writes
// a new ciphertext and misses, and because the key is the config id the
// associated-data binding still holds (a ciphertext copied into another
// config's row is opened, and fails, under that config's AAD). Bounded:
// cleared when full.
type staticCache struct {
	mu  sync.RWMutex
	m   map[string]staticEntry // by config id
	max int
}

type staticEntry struct {
	ct string
	h  []headers.Header
}

func (c *staticCache) get(configID string, ct []byte) ([]headers.Header, bool) {
	c.mu.RLock()
	e, ok := c.m[configID]
	c.mu.RUnlock()
	if !ok || e.ct != string(ct) {
		return nil, false
	}
	return e.h, true
}

func (c *staticCache) put(configID string, ct []byte, h []headers.Header) {
	c.mu.Lock()
	if c.m == nil || len(c.m) >= c.max {
		c.m = make(map[string]staticEntry)
	}
	c.m[configID] = staticEntry{ct: string(ct), h: h}
	c.mu.Unlock()
}

// staticHeaders opens a config's static headers (a JSON object name→value
// sealed with AAD configs/static_headers/{config id}) and validates them
// again (DESIGN §6 step 8: validated at save and here).
func (s *Server) staticHeaders(cfg store.RuntimeConfig) ([]headers.Header, error) {
	if len(cfg.StaticHeaders) == 0 {
		return nil, nil
	}
	if h, ok := s.static.get(cfg.ID, cfg.StaticHeaders); ok {
		return h, nil
	}
	pt, err := s.opts.KeyRing.Open(cfg.StaticHeaders, secrets.AAD("configs", "static_headers", cfg.ID))
	if err != nil {
		return nil, errUndecryptable
	}
	var m map[string]string
	err = json.Unmarshal(pt, &m)
	clear(pt)
	if err != nil {
		return nil, errUndecryptable
	}
	if err := headers.ValidateStatic(m); err != nil {
		return nil, errHeaderConflict
	}
	out := make([]headers.Header, 0, len(m))
	for k, v := range m {
		out = append(out, headers.Header{Name: k, Value: v})
	}
	slices.SortFunc(out, byName)
	s.static.put(cfg.ID, cfg.StaticHeaders, out)
	return out, nil
}

var errHeaderConflict = errors.New("extauthz: configured headers invalid or conflicting")
