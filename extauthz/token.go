package extauthz

import (
	"context"
	"crypto/rsa"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"mcpgw/domain"
	"mcpgw/store"
)

// Token verification failures (DESIGN §6 step 4). All map to 401
// invalid_token; the distinction is for metrics and logs only.
var (
	errTokenMalformed = errors.New("token malformed or bad signature")
	errTokenExpired   = errors.New("token expired")
	errTokenNotYet    = errors.New("token not valid yet")
	errTokenKey       = errors.New("token signing key unknown")
	errTokenIssuer    = errors.New("token issuer wrong")
	errTokenAudience  = errors.New("token audience wrong")
	errTokenClaims    = errors.New("token claims inconsistent with route")
)

// verifier checks gateway JWTs. One parser is built at startup and shared
// (no per-request parser or key allocation); verified tokens are cached by
// their exact string until they expire, so the RSA verification — the most
// expensive step of a Check — runs once per token rather than once per
// request. Every request-dependent check (audience, route consistency,
// expiry against now) still runs on every request, and the database recheck
// is never cached.
type verifier struct {
	keys   Keys
	issuer string
	leeway time.Duration
	now    func() time.Time
	parser *jwt.Parser
	cache  *tokenCache
}

func newVerifier(keys Keys, issuer string, leeway time.Duration, now func() time.Time, cacheSize int) *verifier {
	v := &verifier{keys: keys, issuer: issuer, leeway: leeway, now: now}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodRS256.Alg()}), // RS256 only: no none, no HS256-with-public-key
		jwt.WithIssuer(issuer),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(now),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(), // iat in the future (beyond leeway) is rejected
	)
	if cacheSize > 0 {
		v.cache = newTokenCache(cacheSize)
	}
	return v
}

// verify returns the token's claims once the signature, algorithm, kid,
// issuer and time claims hold, and its audience and route claims name
// exactly route, whose canonical URL is base+root.
func (v *verifier) verify(ctx context.Context, raw string, route domain.RouteRef, base, root string) (*domain.Claims, error) {
	now := v.now()
	if v.cache != nil {
		if e, ok := v.cache.get(raw); ok {
			// Expiry is re-checked against the clock (leeway as the
			// parser applies it); the key must still be published.
			if !now.Before(e.exp.Add(v.leeway)) {
				v.cache.remove(raw)
				return nil, errTokenExpired
			}
			if _, err := v.keys.PublicKey(ctx, e.kid); err != nil {
				v.cache.remove(raw)
				return nil, errTokenKey
			}
			return e.claims, checkRoute(e.claims, e.route, route, base, root)
		}
	}
	claims := new(domain.Claims)
	var kid string
	_, err := v.parser.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		if t.Method != jwt.SigningMethodRS256 {
			return nil, errTokenMalformed
		}
		k, _ := t.Header["kid"].(string)
		if k == "" {
			return nil, errTokenKey
		}
		pk, err := v.keys.PublicKey(ctx, k)
		if err != nil {
			return nil, errTokenKey
		}
		kid = k
		return (*rsa.PublicKey)(pk), nil
	})
	if err != nil {
		return nil, classifyJWTError(err)
	}
	if err := checkClaims(claims); err != nil {
		return nil, err
	}
	ref := claims.Route()
	if v.cache != nil {
		v.cache.put(raw, cachedToken{claims: claims, route: ref, kid: kid, exp: claims.ExpiresAt.Time}, now)
	}
	return claims, checkRoute(claims, ref, route, base, root)
}

func classifyJWTError(err error) error {
	switch {
	case errors.Is(err, errTokenKey):
		return errTokenKey
	case errors.Is(err, jwt.ErrTokenExpired):
		return errTokenExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return errTokenNotYet
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return errTokenIssuer
	default:
		return errTokenMalformed
	}
}

// checkClaims checks the route-independent shape of the claims: they are
// cached, so only what holds for the token's whole life belongs here. That
// includes the claims' internal consistency: mcp_id and execution_context
// agree with the owner tuple, config id and route key they carry.
func checkClaims(c *domain.Claims) error {
	if c.ExpiresAt == nil || c.IssuedAt == nil {
		return errTokenMalformed
	}
	if !store.ValidID(c.Subject) || !store.ValidID(c.InstanceID) || c.ConfigVersion < 1 {
		return errTokenClaims
	}
	if !c.Consistent(c.Route()) {
		return errTokenClaims
	}
	return nil
}

// checkRoute: aud must be exactly this route's canonical URL base+root (one
// value, RFC 8707 resource), and the route the claims name (tokenRoute,
// internally consistent per checkClaims) must be the route of the path
// (DESIGN §6 step 4). Compared piecewise so the hot path builds no strings.
func checkRoute(c *domain.Claims, tokenRoute, route domain.RouteRef, base, root string) error {
	if len(c.Audience) != 1 {
		return errTokenAudience
	}
	aud := c.Audience[0]
	if len(aud) != len(base)+len(root) || aud[:len(base)] != base || aud[len(base):] != root {
		return errTokenAudience
	}
	if tokenRoute != route {
		return errTokenClaims
	}
	return nil
}

// tokenCache is a bounded map of verified tokens. Entries expire with their
// token; when full, expired entries are swept and, if still full, an
// arbitrary eighth is evicted (Go's randomized map iteration). That is not
// LRU, but it is bounded, cheap and lock-light: reads take a read lock.
type tokenCache struct {
	mu  sync.RWMutex
	m   map[string]cachedToken
	max int
}

type cachedToken struct {
	claims *domain.Claims // shared, never mutated after insertion
	route  domain.RouteRef
	kid    string
	exp    time.Time
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{m: make(map[string]cachedToken, min(max, 1024)), max: max}
}

func (c *tokenCache) get(raw string) (cachedToken, bool) {
	c.mu.RLock()
	e, ok := c.m[raw]
	c.mu.RUnlock()
	return e, ok
}

func (c *tokenCache) remove(raw string) {
	c.mu.Lock()
	delete(c.m, raw)
	c.mu.Unlock()
}

func (c *tokenCache) put(raw string, e cachedToken, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for k, v := range c.m {
			if !v.exp.After(now) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= c.max {
			n := c.max / 8
			for k := range c.m {
				if n <= 0 {
					break
				}
				delete(c.m, k)
				n--
			}
		}
	}
	// Copy the key: raw may alias a larger request buffer.
	c.m[strings.Clone(raw)] = e
}

func (c *tokenCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
