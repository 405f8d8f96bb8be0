// Package provider is mcpgw's provider (second-level) OAuth client
// (DESIGN §5, §6 step 7, §9): it discovers a config's upstream
// authorization server (RFC 9728, RFC 8414, OIDC discovery), obtains a
// client there (operator credentials, RFC 7591 registration, or a Client
// ID Metadata Document), runs the authorization code flow with PKCE from
// the first-level authorize flow, stores the resulting grant encrypted,
// and refreshes it lazily with at most one refresh in flight per instance
// across every replica.
//
// A *Provider implements oauthserver.ProviderFlow (Start) and
// extauthz.Credentials (EnsureFresh), and serves
// GET /oauth/provider/callback and mcpgw's client metadata document
// (Handler). Every outbound request is SSRF-safe (see fetcher).
package provider

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"mcpgw/domain/addrpolicy"
	"mcpgw/domain/secrets"
	"mcpgw/oauthserver"
	"mcpgw/store"
)

// Paths served by Handler, under the oauthserver's origin (Envoy routes
// /oauth/ there, DESIGN §8).
const (
	CallbackPath       = "/oauth/provider/callback"
	ClientMetadataPath = "/oauth/provider/client-metadata.json"
)

// Defaults.
const (
	DefaultTimeout      = 5 * time.Second
	DefaultMaxBytes     = 64 << 10
	DefaultDiscoveryTTL = 10 * time.Minute
	DefaultRefreshSkew  = 60 * time.Second
	DefaultPendingTTL   = 10 * time.Minute
	// MaxPendingTTL is DESIGN §5's ceiling on pending provider state.
	MaxPendingTTL   = 30 * time.Minute
	maxCacheEntries = 4096
)

// FirstLevel is what the provider needs from the first-level AS: issue the
// code once the grant is stored, tell the client about a failure, and know
// who is signed in. *oauthserver.Server implements it.
type FirstLevel interface {
	IssueCode(ctx context.Context, p oauthserver.FirstLevelRequest) (string, error)
	ErrorRedirect(p oauthserver.FirstLevelRequest, code, description string) string
	Authenticate(r *http.Request) (oauthserver.Principal, error)
}

// Options configure a Provider. Store, KeyRing and BaseURL are required.
type Options struct {
	Store   store.Store
	KeyRing *secrets.KeyRing
	// BaseURL is the public origin of the oauthserver (scheme://host[:port]):
	// the callback is BaseURL+CallbackPath and our Client ID Metadata
	// Document is BaseURL+ClientMetadataPath.
	BaseURL string
	// ClientName is shown by upstream consent pages; default "mcpgw".
	ClientName string
	Logger     *slog.Logger
	// Registry receives the metrics; nil: not registered.
	Registry prometheus.Registerer
	// Now is the clock; nil: time.Now.
	Now func() time.Time

	// Allow is the dev/test address allowlist: hosts or prefixes that may
	// be non-public and reached over plain http. Zero: none (production).
	Allow addrpolicy.Allowlist
	// Resolver resolves upstream hosts; nil: net.DefaultResolver.
	Resolver addrpolicy.Resolver
	// RootCAs verifies upstream TLS; nil: system roots.
	RootCAs *x509.CertPool
	// Timeout bounds each outbound request; default 5 s.
	Timeout time.Duration
	// MaxBytes caps each upstream response body; default 64 KiB.
	MaxBytes int64
	// DiscoveryTTL is how long discovered metadata is cached; default 10 min.
	DiscoveryTTL time.Duration
	// RefreshSkew: a token expiring within it is refreshed; default 60 s.
	RefreshSkew time.Duration
	// PendingTTL bounds a provider authorization round trip; default
	// 10 min, at most 30 min (DESIGN §5).
	PendingTTL time.Duration
}

// Provider is the provider OAuth client. Create it with New; Bind the
// first-level AS before serving.
type Provider struct {
	st         store.Store
	kr         *secrets.KeyRing
	log        *slog.Logger
	now        func() time.Time
	f          *fetcher
	m          *metrics
	timeout    time.Duration
	skew       time.Duration
	pendingTTL time.Duration

	discoveryTTL time.Duration
	callbackURL  string
	cimdURL      string
	clientName   string

	fl   FirstLevel
	flMu sync.RWMutex

	mu   sync.Mutex
	disc map[string]discoveryEntry

	discSF, regSF, refreshSF singleflight.Group
}

// New validates opts and returns a Provider.
func New(opts Options) (*Provider, error) {
	if opts.Store == nil {
		return nil, errors.New("provider: Store is required")
	}
	if opts.KeyRing == nil || opts.KeyRing.PrimaryID() == "" {
		return nil, errors.New("provider: an encryption key ring is required")
	}
	base := strings.TrimRight(opts.BaseURL, "/")
	u, err := url.Parse(base)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, errors.New("provider: BaseURL must be an absolute http(s) origin")
	}
	p := &Provider{
		st:           opts.Store,
		kr:           opts.KeyRing,
		log:          opts.Logger,
		now:          opts.Now,
		timeout:      opts.Timeout,
		skew:         opts.RefreshSkew,
		pendingTTL:   opts.PendingTTL,
		discoveryTTL: opts.DiscoveryTTL,
		callbackURL:  base + CallbackPath,
		cimdURL:      base + ClientMetadataPath,
		clientName:   opts.ClientName,
		disc:         map[string]discoveryEntry{},
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	p.log = p.log.With("component", "provider")
	if p.now == nil {
		p.now = time.Now
	}
	if p.timeout <= 0 {
		p.timeout = DefaultTimeout
	}
	if p.skew <= 0 {
		p.skew = DefaultRefreshSkew
	}
	if p.pendingTTL <= 0 {
		p.pendingTTL = DefaultPendingTTL
	}
	if p.pendingTTL > MaxPendingTTL {
		return nil, errors.New("provider: pending state lifetime exceeds 30 minutes (DESIGN §5)")
	}
	if p.discoveryTTL <= 0 {
		p.discoveryTTL = DefaultDiscoveryTTL
	}
	if p.clientName == "" {
		p.clientName = "mcpgw"
	}
	maxBytes := opts.MaxBytes
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	p.f = newFetcher(opts.Allow, opts.Resolver, opts.RootCAs, p.timeout, maxBytes)
	p.m = newMetrics(opts.Registry)
	return p, nil
}

// Bind sets the first-level AS (normally the *oauthserver.Server whose
// Options.Provider is p). Call it before serving.
func (p *Provider) Bind(fl FirstLevel) {
	p.flMu.Lock()
	p.fl = fl
	p.flMu.Unlock()
}

func (p *Provider) firstLevel() FirstLevel {
	p.flMu.RLock()
	defer p.flMu.RUnlock()
	return p.fl
}

// Handler serves GET CallbackPath and GET ClientMetadataPath. Mount both
// patterns on the oauthserver (Server.Mount) or route them to it.
func (p *Provider) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+CallbackPath, p.handleCallback)
	mux.HandleFunc("GET "+ClientMetadataPath, p.handleClientMetadata)
	return mux
}

// Mount registers the provider's endpoints on an oauthserver.
func (p *Provider) Mount(srv interface {
	Mount(pattern string, h http.Handler) error
}) error {
	h := p.Handler()
	for _, pat := range []string{"GET " + CallbackPath, "GET " + ClientMetadataPath} {
		if err := srv.Mount(pat, h); err != nil {
			return err
		}
	}
	return nil
}

// audit appends one event; failure is logged (the action happened).
func (p *Provider) audit(ctx context.Context, ev store.AuditEvent) {
	if ev.Time.IsZero() {
		ev.Time = p.now().UTC()
	}
	if err := p.st.AppendAudit(context.WithoutCancel(ctx), ev); err != nil {
		p.log.ErrorContext(ctx, "audit append failed", "type", ev.Type, "err", err)
	}
}

type metrics struct {
	upstream *prometheus.CounterVec // op, outcome
	flows    *prometheus.CounterVec // outcome
	refresh  *prometheus.CounterVec // outcome
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		upstream: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mcpgw", Subsystem: "provider", Name: "upstream_requests_total",
			Help: "Provider OAuth upstream operations by operation and outcome reason.",
		}, []string{"op", "outcome"}),
		flows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mcpgw", Subsystem: "provider", Name: "authorizations_total",
			Help: "Provider authorization flows by outcome (started, success, or a failure reason).",
		}, []string{"outcome"}),
		refresh: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mcpgw", Subsystem: "provider", Name: "refresh_total",
			Help: "Provider token refreshes by outcome (success, reused, reauth, transient).",
		}, []string{"outcome"}),
	}
	if reg != nil {
		// Several Providers may share one registry (the oauth and authz
		// components of one process): reuse the collectors already there.
		for _, c := range []**prometheus.CounterVec{&m.upstream, &m.flows, &m.refresh} {
			if err := reg.Register(*c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					panic(err)
				}
				if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
					*c = existing
				}
			}
		}
	}
	return m
}

func errorsAs(err error, target **Error) bool { return errors.As(err, target) }
