// Package xds turns the database into Envoy configuration and serves it over
// the aggregated discovery service (ADS, state of the world) with
// go-control-plane (DESIGN §8).
//
// One listener (an HTTP connection manager with ext_authz then router), one
// route configuration, and one cluster plus one endpoint set per config are
// generated. Endpoints are the IP addresses xds itself resolved and checked
// against the public-address policy (DESIGN §6 "Upstream destinations"):
// Envoy never resolves an upstream host name on its own, so DNS rebinding
// between our check and Envoy's connect is impossible.
//
// Every Envoy node group (node.cluster) gets a snapshot; versions are hashes
// of the resources, so two replicas reading the same database serve identical
// versions and an Envoy can fail over between them without a spurious push.
package xds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"mcpgw/domain/addrpolicy"
	"mcpgw/store"
)

// Names shared with the bootstrap files in envoy/ (a test cross-checks them).
const (
	// DefaultListenerName is the name of the generated listener (LDS).
	DefaultListenerName = "mcpgw_http"
	// DefaultRouteConfigName is the route configuration (RDS) the listener's
	// HTTP connection manager asks for. An operator-owned listener (envoy/
	// bootstrap-operator-listener.yaml) references the same name.
	DefaultRouteConfigName = "mcpgw_routes"
	// DefaultExtAuthzCluster is the static bootstrap cluster of the extauthz
	// gRPC service.
	DefaultExtAuthzCluster = "mcpgw_extauthz"
	// DefaultOAuthCluster is the CDS cluster of the oauthserver (control
	// plane paths). xds generates it from Options.OAuthServerAddr.
	DefaultOAuthCluster = "mcpgw_oauthserver"
	// DefaultXDSCluster is the static bootstrap cluster Envoy uses to reach
	// us. xds does not generate it; it is named here for the cross-check.
	DefaultXDSCluster = "mcpgw_xds"
	// UpstreamClusterPrefix prefixes the per-config cluster names:
	// "upstream_" + config id.
	UpstreamClusterPrefix = "upstream_"
)

// Resolver looks up the A and AAAA records of a host. *net.Resolver
// satisfies it (with network "ip"). It is the same shape as
// addrpolicy.Resolver so one fake serves both.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// TTLResolver is an optional extension of Resolver for resolvers that know
// the records' TTL. net.Resolver does not; without it re-resolution runs
// every Options.ResolveInterval (default DefaultResolveInterval), always
// clamped to [MinResolveInterval, MaxResolveInterval].
type TTLResolver interface {
	// LookupNetIPTTL returns every A and AAAA answer and the smallest TTL
	// among them.
	LookupNetIPTTL(ctx context.Context, host string) ([]netip.Addr, time.Duration, error)
}

// Store is the part of store.Store that xds reads: the routable configs,
// the change feed, and the audit log for upstream rejections.
type Store interface {
	ListRoutable(ctx context.Context) ([]store.RoutableConfig, error)
	GetRoutable(ctx context.Context, configID string) (store.RoutableConfig, error)
	Watch(ctx context.Context) (<-chan store.Change, error)
	AppendAudit(ctx context.Context, events ...store.AuditEvent) error
}

// Defaults. Each is used when the matching Options field is zero.
const (
	DefaultListenerAddress        = "0.0.0.0"
	DefaultListenerPort           = 8080
	DefaultExtAuthzTimeout        = 2 * time.Second
	DefaultStreamIdleTimeout      = 5 * time.Minute
	DefaultRouteIdleTimeout       = 5 * time.Minute
	DefaultRequestHeadersTimeout  = 10 * time.Second
	DefaultConnectTimeout         = 5 * time.Second
	DefaultMinResolveInterval     = 30 * time.Second
	DefaultMaxResolveInterval     = 5 * time.Minute
	DefaultResolveInterval        = 60 * time.Second
	DefaultResolveGrace           = 2 * time.Minute
	DefaultResolveTimeout         = 5 * time.Second
	DefaultResyncInterval         = 5 * time.Minute
	DefaultUpstreamCAFile         = "/etc/ssl/certs/ca-certificates.crt"
	DefaultNodeGroup              = "default"
	defaultResolveConcurrency     = 32
	defaultRetryAfterBuildFailure = 5 * time.Second
)

// Options configure a Server. The zero value of every field but Store means
// "use the default" (see the Default* constants).
type Options struct {
	// Store is the system of record (required).
	Store Store
	// Resolver resolves upstream hosts (nil: net.DefaultResolver). If it
	// also implements TTLResolver, record TTLs set the re-resolution time.
	Resolver Resolver
	// Allowlist is the dev/test upstream allowlist (DESIGN §6): addresses
	// or hosts on it pass the public-address policy and may use plain
	// http. The zero value allows nothing, which is the production setting.
	Allowlist addrpolicy.Allowlist

	// ListenerName, ListenerAddress and ListenerPort place the generated
	// listener (full-ADS mode).
	ListenerName    string
	ListenerAddress string
	ListenerPort    uint32
	// RouteConfigName is the RDS name the listener uses.
	RouteConfigName string
	// UseRemoteAddress makes Envoy treat the connection peer as the client
	// address and set x-envoy-external-address, which oauthserver may trust
	// for rate limiting. Enable it when Envoy is the edge (no proxy in
	// front of it); leave it off behind another proxy.
	UseRemoteAddress bool

	// ExtAuthzCluster names the bootstrap's static extauthz cluster.
	ExtAuthzCluster string
	// ExtAuthzTimeout bounds one Check call; on timeout Envoy answers 503.
	ExtAuthzTimeout time.Duration

	// OAuthCluster names the generated oauthserver cluster and
	// OAuthServerAddr is its "host:port" (required). An IP literal gives a
	// STATIC cluster; a name (e.g. a docker-compose service) a STRICT_DNS
	// cluster that Envoy resolves itself — it is our own service, not an
	// upstream an end user chose, so the public-address policy does not
	// apply to it.
	OAuthCluster    string
	OAuthServerAddr string

	// PublicBaseURL is the public origin of the listener (informational;
	// routes are matched on path only).
	PublicBaseURL string

	// StreamIdleTimeout closes a stream with no activity (long-lived SSE
	// streams send events or keep-alives well within it).
	StreamIdleTimeout time.Duration
	// RouteIdleTimeout is the per-route idle timeout that replaces the
	// (disabled) route timeout for streaming upstream responses.
	RouteIdleTimeout time.Duration
	// RequestHeadersTimeout bounds how long a client may take to send its
	// request headers (slowloris).
	RequestHeadersTimeout time.Duration
	// ConnectTimeout bounds TCP+TLS connection setup to an upstream.
	ConnectTimeout time.Duration

	// UpstreamCAFile is the PEM trust bundle (on the Envoy host) that
	// upstream certificates are validated against. Default: the Debian
	// system bundle, which the official Envoy image ships.
	UpstreamCAFile string

	// MinResolveInterval and MaxResolveInterval bound the re-resolution
	// period derived from record TTLs; ResolveInterval is used when the
	// resolver does not report TTLs. ResolveGrace is how long the last
	// good answer survives failed re-resolutions before the endpoints are
	// dropped (fail closed). ResolveTimeout bounds one lookup.
	MinResolveInterval time.Duration
	MaxResolveInterval time.Duration
	ResolveInterval    time.Duration
	ResolveGrace       time.Duration
	ResolveTimeout     time.Duration

	// ResyncInterval is the period of the full rebuild that heals missed
	// change notifications.
	ResyncInterval time.Duration

	// Logger receives operational logs (nil: slog.Default()).
	Logger *slog.Logger
	// Registerer receives the metrics (nil: metrics are not registered).
	Registerer prometheus.Registerer
	// Now is the clock (nil: time.Now). Tests advance it instead of
	// sleeping.
	Now func() time.Time
}

// withDefaults returns o with every zero field set to its default, or an
// error naming the first invalid field.
func (o Options) withDefaults() (Options, error) {
	if o.Store == nil {
		return o, errors.New("xds: Options.Store is required")
	}
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	defd := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.ListenerName, DefaultListenerName)
	def(&o.ListenerAddress, DefaultListenerAddress)
	def(&o.RouteConfigName, DefaultRouteConfigName)
	def(&o.ExtAuthzCluster, DefaultExtAuthzCluster)
	def(&o.OAuthCluster, DefaultOAuthCluster)
	def(&o.UpstreamCAFile, DefaultUpstreamCAFile)
	if o.ListenerPort == 0 {
		o.ListenerPort = DefaultListenerPort
	}
	defd(&o.ExtAuthzTimeout, DefaultExtAuthzTimeout)
	defd(&o.StreamIdleTimeout, DefaultStreamIdleTimeout)
	defd(&o.RouteIdleTimeout, DefaultRouteIdleTimeout)
	defd(&o.RequestHeadersTimeout, DefaultRequestHeadersTimeout)
	defd(&o.ConnectTimeout, DefaultConnectTimeout)
	defd(&o.MinResolveInterval, DefaultMinResolveInterval)
	defd(&o.MaxResolveInterval, DefaultMaxResolveInterval)
	defd(&o.ResolveInterval, DefaultResolveInterval)
	defd(&o.ResolveGrace, DefaultResolveGrace)
	defd(&o.ResolveTimeout, DefaultResolveTimeout)
	defd(&o.ResyncInterval, DefaultResyncInterval)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}

	if _, err := netip.ParseAddr(o.ListenerAddress); err != nil {
		return o, fmt.Errorf("xds: ListenerAddress %q is not an IP address", o.ListenerAddress)
	}
	if o.ListenerPort > 65535 {
		return o, fmt.Errorf("xds: ListenerPort %d out of range", o.ListenerPort)
	}
	if o.OAuthServerAddr == "" {
		return o, errors.New("xds: Options.OAuthServerAddr is required")
	}
	if _, _, err := splitHostPort(o.OAuthServerAddr); err != nil {
		return o, fmt.Errorf("xds: OAuthServerAddr: %w", err)
	}
	if o.MinResolveInterval > o.MaxResolveInterval {
		return o, errors.New("xds: MinResolveInterval exceeds MaxResolveInterval")
	}
	for _, d := range []time.Duration{o.ExtAuthzTimeout, o.StreamIdleTimeout, o.RouteIdleTimeout,
		o.RequestHeadersTimeout, o.ConnectTimeout, o.ResolveGrace, o.ResolveTimeout, o.ResyncInterval} {
		if d < 0 {
			return o, errors.New("xds: negative duration in Options")
		}
	}
	return o, nil
}

// splitHostPort splits "host:port" and checks the port.
func splitHostPort(hp string) (string, uint32, error) {
	host, ps, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, fmt.Errorf("address %q: %w", hp, err)
	}
	p, err := strconv.ParseUint(ps, 10, 16)
	if err != nil || p == 0 || host == "" {
		return "", 0, fmt.Errorf("address %q: bad host or port", hp)
	}
	return host, uint32(p), nil
}
