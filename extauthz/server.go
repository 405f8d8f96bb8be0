// Package extauthz is the Envoy ext_authz gRPC server (DESIGN §6): the only
// place upstream credentials are attached to traffic. The decision core,
// Decide, knows nothing about Envoy; Check converts Envoy's CheckRequest in
// and the Decision out. A denial is a normal CheckResponse; an
// infrastructure failure (database down) is a gRPC Unavailable error, so
// Envoy's fail-closed setting (failure_mode_allow: false) answers 503.
//
// Nothing is logged on the allow path. Tokens, secrets and header values
// never reach logs, metrics, audit rows or response bodies.
package extauthz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"mcpgw/domain/secrets"
	"mcpgw/store"
)

// Store is what extauthz needs from the system of record.
type Store interface {
	store.RuntimeStore
	store.AuditStore
}

// Options configure a Server. Zero values mean the documented default.
type Options struct {
	// Store answers the recheck and takes usage audit rows. Required.
	Store Store
	// Keys verify gateway JWTs (StaticKeys or NewJWKS). Required.
	Keys Keys
	// Issuer is the expected iss of gateway JWTs. Required.
	Issuer string
	// PublicBaseURL is the externally visible base URL (no trailing
	// slash): the canonical resource of a route is PublicBaseURL + route
	// path (DESIGN §2). Required.
	PublicBaseURL string
	// AllowedOrigins are the browser origins (scheme://host[:port]) allowed
	// on connect routes; empty allows only requests without Origin.
	AllowedOrigins []string
	// KeyRing opens static headers and stored grants. Required.
	KeyRing *secrets.KeyRing
	// Credentials refreshes provider tokens for OAuth modes; nil means the
	// stored access token is used while valid (see storedGrantToken).
	Credentials Credentials
	// Registry receives the metrics; nil registers nothing.
	Registry prometheus.Registerer
	// Logger; nil discards.
	Logger *slog.Logger
	// Now is the clock for token expiry; nil means time.Now.
	Now func() time.Time
	// Leeway for exp/nbf/iat (default 30 s).
	Leeway time.Duration
	// CredentialSkew: a provider token expiring within it is not used
	// (default 30 s).
	CredentialSkew time.Duration
	// TokenCacheSize bounds the verified-token cache (default 10000;
	// negative disables the cache).
	TokenCacheSize int
	// Audit tunes the asynchronous usage audit.
	Audit AuditOptions
	// BatchRecheck > 0 coalesces rechecks in flight at the same moment into
	// one round trip when the store implements BatchResolver: that many
	// concurrent batches (match the database pool size), up to 32 queries
	// each. 0 sends one query per request.
	BatchRecheck int
	// RecheckTimeout bounds one recheck round trip, batched or not
	// (default 5 s); Envoy's own gRPC timeout usually ends it sooner.
	RecheckTimeout time.Duration
}

// Server decides Checks. It is safe for concurrent use. Close flushes the
// usage audit.
type Server struct {
	opts     Options
	log      *slog.Logger
	m        *metrics
	verifier *verifier
	audit    *auditor
	origins  map[string]bool
	prmBase  string
	static   staticCache
	batch    *batcher // nil: one query per request
	errLog   logLimiter
}

// New validates opts and returns a Server.
func New(opts Options) (*Server, error) {
	var errs []error
	if opts.Store == nil {
		errs = append(errs, errors.New("store is required"))
	}
	if opts.Keys == nil {
		errs = append(errs, errors.New("verification keys are required"))
	}
	if opts.Issuer == "" {
		errs = append(errs, errors.New("issuer is required"))
	}
	if opts.KeyRing == nil {
		errs = append(errs, errors.New("key ring is required"))
	}
	base := strings.TrimRight(opts.PublicBaseURL, "/")
	if !strings.HasPrefix(base, "https://") && !strings.HasPrefix(base, "http://") {
		errs = append(errs, errors.New("public base URL must be an http(s) URL"))
	}
	origins := map[string]bool{}
	for _, o := range opts.AllowedOrigins {
		n, ok := normalizeOrigin(o)
		if !ok {
			errs = append(errs, fmt.Errorf("allowed origin %q is not scheme://host[:port]", o))
			continue
		}
		origins[n] = true
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("extauthz: %w", errors.Join(errs...))
	}
	opts.PublicBaseURL = base
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Leeway <= 0 {
		opts.Leeway = 30 * time.Second
	}
	if opts.CredentialSkew <= 0 {
		opts.CredentialSkew = 30 * time.Second
	}
	if opts.RecheckTimeout <= 0 {
		opts.RecheckTimeout = 5 * time.Second
	}
	if opts.TokenCacheSize == 0 {
		opts.TokenCacheSize = 10000
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(opts.Registry)
	if err != nil {
		return nil, fmt.Errorf("extauthz: metrics: %w", err)
	}
	if j, ok := opts.Keys.(*JWKS); ok && j.opts.OnFetch == nil {
		j.opts.OnFetch = func(result string) { m.jwks.WithLabelValues(result).Inc() }
	}
	s := &Server{
		opts:     opts,
		log:      log,
		m:        m,
		verifier: newVerifier(opts.Keys, opts.Issuer, opts.Leeway, opts.Now, opts.TokenCacheSize),
		origins:  origins,
		prmBase:  base + PRMPath,
		static:   staticCache{max: 4096},
	}
	if br, ok := opts.Store.(BatchResolver); ok && opts.BatchRecheck > 0 {
		s.batch = newBatcher(br, opts.BatchRecheck, 32, opts.RecheckTimeout)
	}
	s.audit = newAuditor(opts.Store, opts.Audit, m, log, opts.Now)
	return s, nil
}

// Close stops the usage audit worker after writing what is queued. (The
// recheck batcher owns no goroutines: a batch in flight belongs to a Check,
// which gRPC's graceful stop waits for.)
func (s *Server) Close() {
	s.audit.close()
}

// resolve is the step-6 recheck: batched when configured, else direct.
func (s *Server) resolve(ctx context.Context, q store.RuntimeQuery) (store.RuntimeState, error) {
	if s.batch != nil {
		return s.batch.resolve(ctx, q)
	}
	ctx, cancel := withTimeoutIfSooner(ctx, s.opts.RecheckTimeout)
	defer cancel()
	return s.opts.Store.ResolveRuntime(ctx, q)
}

// withTimeoutIfSooner bounds ctx to timeout from now, but returns ctx
// itself when its own deadline already comes first: Envoy sends every
// Check with its ext_authz timeout (xds default 2 s, below the default
// RecheckTimeout of 5 s), and context.WithTimeout would then build a
// cancel context and a timer per request only to be equivalent to its
// parent (context.WithDeadline documents that equivalence).
func withTimeoutIfSooner(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= timeout {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, timeout)
}
