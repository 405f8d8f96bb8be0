package extauthz

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"mcpgw/domain/signing"
)

// ErrUnknownKey is returned by a Keys source that has no key for a kid.
var ErrUnknownKey = errors.New("extauthz: unknown signing key id")

// Keys yields the RS256 verification key for a JWT kid (DESIGN §4: the
// oauthserver publishes the current and previous keys). Implementations
// must be safe for concurrent use and cheap on the hot path.
type Keys interface {
	PublicKey(ctx context.Context, kid string) (*rsa.PublicKey, error)
}

// StaticKeys verifies with the public halves of a local signing.Set (the
// same key files the oauthserver signs with), under every kid a token of
// the set may carry, including the legacy kid of a headerless key file
// (signing.Set.VerificationKeys). The keys are indexed once, so a lookup
// on the hot path is one map read. A nil set verifies nothing.
func StaticKeys(set *signing.Set) Keys {
	return staticKeys(set.VerificationKeys())
}

type staticKeys map[string]*rsa.PublicKey

func (s staticKeys) PublicKey(_ context.Context, kid string) (*rsa.PublicKey, error) {
	if k, ok := s[kid]; ok {
		return k, nil
	}
	return nil, ErrUnknownKey
}

// JWKSOptions configure a JWKS key source.
type JWKSOptions struct {
	// URL of the oauthserver's JWKS (e.g. {issuer}/oauth/jwks.json).
	URL string
	// Client fetches the JWKS; nil means a client with a 5 s timeout.
	Client *http.Client
	// MinRefresh is the least time between two fetches triggered by an
	// unknown kid (rate limit, so a flood of tokens with random kids cannot
	// turn into a flood of fetches). Default 10 s.
	MinRefresh time.Duration
	// MaxAge: keys older than this are refetched in the background on the
	// next lookup. Default 5 minutes.
	MaxAge time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// OnFetch, if set, is told the outcome of every fetch ("ok"/"error"),
	// for metrics.
	OnFetch func(result string)
}

// JWKS is a Keys source backed by the oauthserver's JWKS URL, so extauthz
// can run without the private key files (DESIGN §4, issue 5 item 4). Keys
// are cached; an unknown kid triggers a refetch at most once per MinRefresh
// (a key rotation publishes the new kid before tokens carry it); fetches are
// deduplicated across concurrent callers.
type JWKS struct {
	opts JWKSOptions

	mu        sync.RWMutex
	keys      map[string]*rsa.PublicKey
	fetchedAt time.Time // last successful fetch
	triedAt   time.Time // last fetch attempt
	group     singleflight.Group
}

// NewJWKS returns a JWKS source. It does not fetch until first use; call
// Refresh to fail fast at startup.
func NewJWKS(o JWKSOptions) (*JWKS, error) {
	if o.URL == "" {
		return nil, errors.New("extauthz: JWKS URL is empty")
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if o.MinRefresh <= 0 {
		o.MinRefresh = 10 * time.Second
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 5 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &JWKS{opts: o}, nil
}

// PublicKey returns the key for kid, refetching the JWKS when kid is unknown
// (rate limited) or the cache is older than MaxAge.
func (j *JWKS) PublicKey(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	now := j.opts.Now()
	j.mu.RLock()
	k, ok := j.keys[kid]
	stale := now.Sub(j.fetchedAt) > j.opts.MaxAge
	mayTry := now.Sub(j.triedAt) >= j.opts.MinRefresh
	j.mu.RUnlock()
	if ok && !stale {
		return k, nil
	}
	if ok && stale {
		if mayTry {
			// Refresh in the background; the cached key stays usable
			// meanwhile (it was published by the oauthserver).
			go func() { _ = j.Refresh(context.WithoutCancel(ctx)) }()
		}
		return k, nil
	}
	if !mayTry {
		return nil, ErrUnknownKey
	}
	if err := j.Refresh(ctx); err != nil {
		return nil, fmt.Errorf("%w (JWKS refresh failed: %v)", ErrUnknownKey, err)
	}
	j.mu.RLock()
	k, ok = j.keys[kid]
	j.mu.RUnlock()
	if !ok {
		return nil, ErrUnknownKey
	}
	return k, nil
}

// Refresh fetches the JWKS now (deduplicated with concurrent callers). On
// failure the previous keys are kept.
func (j *JWKS) Refresh(ctx context.Context) error {
	_, err, _ := j.group.Do("jwks", func() (any, error) {
		j.mu.Lock()
		j.triedAt = j.opts.Now()
		j.mu.Unlock()
		keys, err := j.fetch(ctx)
		if j.opts.OnFetch != nil {
			if err != nil {
				j.opts.OnFetch("error")
			} else {
				j.opts.OnFetch("ok")
			}
		}
		if err != nil {
			return nil, err
		}
		j.mu.Lock()
		j.keys = keys
		j.fetchedAt = j.opts.Now()
		j.mu.Unlock()
		return nil, nil
	})
	return err
}

const maxJWKSBody = 1 << 20

func (j *JWKS) fetch(ctx context.Context) (map[string]*rsa.PublicKey, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.opts.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("extauthz: JWKS request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := j.opts.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("extauthz: JWKS fetch: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("extauthz: JWKS fetch: HTTP %d", resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBody+1))
	if err != nil {
		return nil, fmt.Errorf("extauthz: JWKS read: %w", err)
	}
	if len(b) > maxJWKSBody {
		return nil, errors.New("extauthz: JWKS too large")
	}
	keys, err := signing.ParseJWKS(b)
	if err != nil {
		return nil, fmt.Errorf("extauthz: JWKS parse: %w", err)
	}
	if len(keys) == 0 {
		return nil, errors.New("extauthz: JWKS has no RS256 keys")
	}
	// The JWKS publishes thumbprint kids only; tokens a headerless key
	// signed before the kid change carry its legacy kid.
	return signing.WithLegacyKeyIDs(keys), nil
}
