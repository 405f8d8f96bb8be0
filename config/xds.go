package config

import (
	"net"
	"net/netip"
	"strconv"
	"time"
)

// XDS is the xds server's own configuration (DESIGN §8): the listener it
// generates for Envoy, where Envoy reaches oauthserver, upstream TLS trust,
// timeouts and DNS re-resolution bounds. Zero values mean the defaults set
// by defaults().
type XDS struct {
	// ResyncInterval is the periodic full rebuild from Postgres, the
	// safety net behind LISTEN/NOTIFY (DESIGN §8).
	ResyncInterval Duration `json:"resync_interval,omitempty"`
	// ListenerAddr is ip:port where the generated Envoy listener binds
	// (on the Envoy host, full-ADS mode).
	ListenerAddr string `json:"listener_addr,omitempty"`
	// OAuthServerAddr is host:port at which Envoy reaches oauthserver
	// (e.g. the compose service "mcpgw:8080"). Empty: listen.http, which
	// only works when Envoy runs on the same host.
	OAuthServerAddr string `json:"oauth_server_addr,omitempty"`
	// UpstreamCAFile is the trust bundle, on the Envoy host, for upstream
	// certificates.
	UpstreamCAFile string `json:"upstream_ca_file,omitempty"`
	// ExtAuthzTimeout bounds one ext_authz Check (then Envoy answers 503).
	ExtAuthzTimeout Duration `json:"ext_authz_timeout,omitempty"`
	// StreamIdleTimeout closes idle client streams (SSE keep-alives must
	// come more often).
	StreamIdleTimeout Duration `json:"stream_idle_timeout,omitempty"`
	// ResolveMin/ResolveMax bound the DNS re-resolution period derived
	// from record TTLs; ResolveGrace is how long the last validated answer
	// survives failing lookups before the endpoints are dropped.
	ResolveMin   Duration `json:"resolve_min_interval,omitempty"`
	ResolveMax   Duration `json:"resolve_max_interval,omitempty"`
	ResolveGrace Duration `json:"resolve_grace_timeout,omitempty"`
}

func (x *XDS) defaults() {
	x.ResyncInterval = Duration(5 * time.Minute)
	x.ListenerAddr = "0.0.0.0:10000"
	x.UpstreamCAFile = "/etc/ssl/certs/ca-certificates.crt"
	x.ExtAuthzTimeout = Duration(2 * time.Second)
	x.StreamIdleTimeout = Duration(5 * time.Minute)
	x.ResolveMin = Duration(30 * time.Second)
	x.ResolveMax = Duration(5 * time.Minute)
	x.ResolveGrace = Duration(2 * time.Minute)
}

func (x *XDS) bindings() []Binding {
	return []Binding{
		durVar("xds.resync_interval", "periodic full resync from the database", &x.ResyncInterval),
		strVar("xds.listener_addr", "ip:port the generated Envoy listener binds (on the Envoy host)", &x.ListenerAddr),
		strVar("xds.oauth_server_addr", "host:port at which Envoy reaches oauthserver (default: listen.http)", &x.OAuthServerAddr),
		strVar("xds.upstream_ca_file", "CA bundle on the Envoy host for upstream TLS validation", &x.UpstreamCAFile),
		durVar("xds.ext_authz_timeout", "timeout of one ext_authz Check (then 503)", &x.ExtAuthzTimeout),
		durVar("xds.stream_idle_timeout", "idle timeout of client streams (SSE)", &x.StreamIdleTimeout),
		durVar("xds.resolve_min_interval", "minimum upstream DNS re-resolution period", &x.ResolveMin),
		durVar("xds.resolve_max_interval", "maximum upstream DNS re-resolution period", &x.ResolveMax),
		durVar("xds.resolve_grace_timeout", "keep the last validated addresses this long while lookups fail", &x.ResolveGrace),
	}
}

func (x *XDS) validate(c *Config, v *validator) {
	v.between("xds.resync_interval", x.ResyncInterval, time.Second, 24*time.Hour)
	if h, p, err := net.SplitHostPort(x.ListenerAddr); err != nil {
		v.add("xds.listener_addr", "must be ip:port, e.g. 0.0.0.0:10000")
	} else if _, err := netip.ParseAddr(h); err != nil {
		v.add("xds.listener_addr", "host must be an IP address, e.g. 0.0.0.0")
	} else if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
		v.add("xds.listener_addr", "port must be 1-65535")
	}
	if x.OAuthServerAddr != "" {
		h, p, err := net.SplitHostPort(x.OAuthServerAddr)
		if n, perr := strconv.Atoi(p); err != nil || h == "" || perr != nil || n < 1 || n > 65535 {
			v.add("xds.oauth_server_addr", "must be host:port, e.g. mcpgw:8080")
		}
	}
	if x.UpstreamCAFile == "" {
		v.add("xds.upstream_ca_file", "required (upstream TLS is always validated)")
	}
	v.between("xds.ext_authz_timeout", x.ExtAuthzTimeout, 100*time.Millisecond, time.Minute)
	v.between("xds.stream_idle_timeout", x.StreamIdleTimeout, time.Second, 24*time.Hour)
	v.between("xds.resolve_min_interval", x.ResolveMin, time.Second, time.Hour)
	v.between("xds.resolve_max_interval", x.ResolveMax, time.Second, 24*time.Hour)
	if x.ResolveMin > x.ResolveMax {
		v.add("xds.resolve_min_interval", "must not exceed xds.resolve_max_interval")
	}
	v.between("xds.resolve_grace_timeout", x.ResolveGrace, 0, 24*time.Hour)
}
