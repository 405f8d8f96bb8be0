package envoystandin

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Defaults taken from the Envoy v3 API reference.
const (
	// Envoy docs: HttpConnectionManager.stream_idle_timeout — "If not
	// specified, this defaults to 5 minutes."
	defaultStreamIdleTimeout = 5 * time.Minute
	// Envoy docs: RouteAction.timeout — "If not specified, the default is 15s."
	defaultRouteTimeout = 15 * time.Second
	// Envoy docs: ext_authz ExtAuthz.grpc_service — "default timeout: 200ms".
	defaultExtAuthzTimeout = 200 * time.Millisecond
	// Envoy docs: Cluster.connect_timeout — "If not set, a default value of 5s will be used."
	defaultConnectTimeout = 5 * time.Second
	// Envoy docs: HttpProtocolOptions.idle_timeout — "If not specified, this defaults to 1 hour."
	defaultConnIdleTimeout = time.Hour
	// Envoy docs: HttpConnectionManager.server_name — defaults to "envoy".
	defaultServerName = "envoy"

	extAuthzPerRouteType   = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute"
	httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

type serverHeaderMode int

const (
	serverOverwrite serverHeaderMode = iota
	serverAppendIfAbsent
	serverPassThrough
)

// listenerConfig is one accepted LDS Listener reduced to what the stand-in
// serves.
type listenerConfig struct {
	name    string
	address string // host:port of its socket_address
	hcm     *hcmConfig
}

type hcmConfig struct {
	rdsName              string      // RDS route configuration name; "" when inline
	inline               *routeTable // inline route_config
	normalizePath        bool
	mergeSlashes         bool
	rejectEscapedSlashes bool
	serverHeader         serverHeaderMode
	serverName           string
	streamIdleTimeout    time.Duration // 0 disables
	requestTimeout       time.Duration // 0 disables
	useRemoteAddress     bool
	internalCIDRs        []netip.Prefix
	generateRequestID    bool
	preserveExternalID   bool
	http1Only            bool
	extAuthz             *extAuthzConfig // nil when the filter is absent
	suppressEnvoyHeaders bool
}

type extAuthzConfig struct {
	filterName                string
	cluster                   string
	authority                 string
	timeout                   time.Duration
	initialMetadata           [][2]string
	failureModeAllow          bool
	failureModeAllowHeaderAdd bool
	statusOnError             int
	encodeRawHeaders          bool
	validateMutations         bool
}

type routeTable struct {
	name      string
	vhosts    []*virtualHost
	perFilter map[string]*authzPerRoute
}

type virtualHost struct {
	name      string
	domains   []string
	routes    []*route
	perFilter map[string]*authzPerRoute
}

type matchKind int

const (
	matchPrefix matchKind = iota
	matchPath
	matchPathSeparatedPrefix
)

func (k matchKind) String() string {
	return [...]string{"prefix", "path", "path_separated_prefix"}[k]
}

type route struct {
	name      string
	kind      matchKind
	value     string
	caseSens  bool
	direct    *directResponse
	action    *routeAction
	perFilter map[string]*authzPerRoute
}

type directResponse struct {
	status int
	body   []byte
}

type routeAction struct {
	cluster          string
	prefixRewrite    string
	hasPrefixRewrite bool
	regex            *regexp.Regexp
	regexSubst       string
	hostRewrite      string
	timeout          time.Duration // 0 = disabled
	idleTimeout      *time.Duration
}

// authzPerRoute is ExtAuthzPerRoute. disabledSet distinguishes "disabled:
// false" in check_settings from no override at all.
type authzPerRoute struct {
	disabled          bool
	contextExtensions map[string]string
}

type clusterConfig struct {
	name           string
	eds            bool
	edsService     string
	static         []netip.AddrPort
	connectTimeout time.Duration
	tls            *tlsConfig
	http2          bool
	idleTimeout    time.Duration
	bootstrap      bool
	src            proto.Message // the accepted proto, to keep runtimes of unchanged clusters
}

// serviceName is the EDS resource name this cluster's endpoints come from.
func (c *clusterConfig) serviceName() string {
	if c.edsService != "" {
		return c.edsService
	}
	return c.name
}

type tlsConfig struct {
	sni        string
	roots      *x509.CertPool
	sans       []sanMatcher
	alpn       []string
	minVersion uint16
	maxVersion uint16
}

type sanMatcher struct {
	typ tlsv3.SubjectAltNameMatcher_SanType
	m   stringMatcher
}

type stringMatcher struct {
	exact, prefix, suffix, contains string
	kind                            string
	ignoreCase                      bool
	re                              *regexp.Regexp
}

func (m stringMatcher) match(s string) bool {
	v := s
	if m.ignoreCase {
		v = strings.ToLower(s)
	}
	low := func(x string) string {
		if m.ignoreCase {
			return strings.ToLower(x)
		}
		return x
	}
	switch m.kind {
	case "exact":
		return v == low(m.exact)
	case "prefix":
		return strings.HasPrefix(v, low(m.prefix))
	case "suffix":
		return strings.HasSuffix(v, low(m.suffix))
	case "contains":
		return strings.Contains(v, low(m.contains))
	case "safe_regex":
		return m.re.MatchString(s)
	}
	return false
}

func dur(d *durationpb.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.AsDuration()
}

func validate(where string, m proto.Message) error {
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
	}
	return nil
}

// translateListener validates one LDS Listener.
//
// Envoy docs: Listener configuration (api-v3/config/listener/v3/listener.proto).
// The stand-in serves exactly one HTTP connection manager on plain TCP: no
// listener filters, no downstream TLS, no filter chain matching.
func translateListener(l *listenerv3.Listener) (*listenerConfig, error) {
	where := fmt.Sprintf("listener %q", l.GetName())
	if err := validate(where, l); err != nil {
		return nil, err
	}
	if err := onlyFields(where, l, "name", "address", "filter_chains", "stat_prefix",
		"per_connection_buffer_limit_bytes", "traffic_direction"); err != nil {
		return nil, err
	}
	if sa := l.GetAddress().GetSocketAddress(); sa == nil {
		return nil, fmt.Errorf("%s: address must be a socket_address", where)
	} else if err := onlyFields(where+".address.socket_address", sa, "address", "port_value"); err != nil {
		return nil, err
	}
	if err := onlyFields(where+".address", l.GetAddress(), "socket_address"); err != nil {
		return nil, err
	}
	if len(l.GetFilterChains()) != 1 {
		return nil, fmt.Errorf("%s: exactly one filter chain is supported, got %d", where, len(l.GetFilterChains()))
	}
	fc := l.GetFilterChains()[0]
	if err := onlyFields(where+".filter_chains[0]", fc, "filters", "name"); err != nil {
		return nil, err
	}
	if len(fc.GetFilters()) != 1 {
		return nil, fmt.Errorf("%s: exactly one network filter (http_connection_manager) is supported, got %d", where, len(fc.GetFilters()))
	}
	f := fc.GetFilters()[0]
	if err := onlyFields(where+".filters[0]", f, "name", "typed_config"); err != nil {
		return nil, err
	}
	hcm, err := unpack(where+".filters[0]", f.GetTypedConfig(), func() *hcmv3.HttpConnectionManager { return &hcmv3.HttpConnectionManager{} })
	if err != nil {
		return nil, err
	}
	h, err := translateHCM(where+".http_connection_manager", hcm)
	if err != nil {
		return nil, err
	}
	sa := l.GetAddress().GetSocketAddress()
	addr := net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
	return &listenerConfig{name: l.GetName(), address: addr, hcm: h}, nil
}

// translateHCM follows Envoy docs: HTTP connection manager
// (api-v3/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto).
func translateHCM(where string, m *hcmv3.HttpConnectionManager) (*hcmConfig, error) {
	if err := onlyFields(where, m, "stat_prefix", "codec_type", "rds", "route_config", "http_filters",
		"normalize_path", "merge_slashes", "path_with_escaped_slashes_action",
		"server_header_transformation", "server_name", "stream_idle_timeout",
		"use_remote_address", "generate_request_id",
		"preserve_external_request_id", "request_timeout", "internal_address_config",
		// Enforced by the HTTP server's fixed header read timeout
		// (Options.RequestHeadersTimeout); see Start.
		"request_headers_timeout",
		// Observability only; no effect on traffic.
		"access_log"); err != nil {
		return nil, err
	}
	h := &hcmConfig{
		normalizePath:     m.GetNormalizePath().GetValue(),
		mergeSlashes:      m.GetMergeSlashes(),
		serverName:        defaultServerName,
		streamIdleTimeout: defaultStreamIdleTimeout,
		useRemoteAddress:  m.GetUseRemoteAddress().GetValue(),
		// Envoy docs: generate_request_id — "defaults to true".
		generateRequestID:  m.GetGenerateRequestId() == nil || m.GetGenerateRequestId().GetValue(),
		preserveExternalID: m.GetPreserveExternalRequestId(),
	}
	switch m.GetCodecType() {
	case hcmv3.HttpConnectionManager_AUTO, hcmv3.HttpConnectionManager_HTTP2:
	case hcmv3.HttpConnectionManager_HTTP1:
		h.http1Only = true
	default:
		return nil, fmt.Errorf("%s: codec_type %s not supported", where, m.GetCodecType())
	}
	switch m.GetPathWithEscapedSlashesAction() {
	case hcmv3.HttpConnectionManager_IMPLEMENTATION_SPECIFIC_DEFAULT, hcmv3.HttpConnectionManager_KEEP_UNCHANGED:
	case hcmv3.HttpConnectionManager_REJECT_REQUEST:
		h.rejectEscapedSlashes = true
	default:
		return nil, fmt.Errorf("%s: path_with_escaped_slashes_action %s not supported", where, m.GetPathWithEscapedSlashesAction())
	}
	switch m.GetServerHeaderTransformation() {
	case hcmv3.HttpConnectionManager_OVERWRITE:
	case hcmv3.HttpConnectionManager_APPEND_IF_ABSENT:
		h.serverHeader = serverAppendIfAbsent
	case hcmv3.HttpConnectionManager_PASS_THROUGH:
		h.serverHeader = serverPassThrough
	default:
		return nil, fmt.Errorf("%s: server_header_transformation %s not supported", where, m.GetServerHeaderTransformation())
	}
	if m.GetServerName() != "" {
		h.serverName = m.GetServerName()
	}
	if m.GetStreamIdleTimeout() != nil {
		h.streamIdleTimeout = dur(m.GetStreamIdleTimeout())
	}
	// Envoy docs: HttpConnectionManager.internal_address_config — "As of
	// Envoy 1.33.0 no IP addresses will be considered trusted" unless listed
	// here.
	if ia := m.GetInternalAddressConfig(); ia != nil {
		if err := onlyFields(where+".internal_address_config", ia, "cidr_ranges"); err != nil {
			return nil, err
		}
		for i, c := range ia.GetCidrRanges() {
			a, err := netip.ParseAddr(c.GetAddressPrefix())
			if err != nil {
				return nil, fmt.Errorf("%s.internal_address_config.cidr_ranges[%d]: %w", where, i, err)
			}
			bits := int(c.GetPrefixLen().GetValue())
			if c.GetPrefixLen() == nil {
				bits = a.BitLen()
			}
			pfx, err := a.Prefix(bits)
			if err != nil {
				return nil, fmt.Errorf("%s.internal_address_config.cidr_ranges[%d]: %w", where, i, err)
			}
			h.internalCIDRs = append(h.internalCIDRs, pfx)
		}
	}
	// Envoy docs: HttpConnectionManager.request_timeout — "The amount of
	// time that Envoy will wait for the entire request to be received ...
	// If not specified or set to 0, this timeout is disabled."
	h.requestTimeout = dur(m.GetRequestTimeout())
	switch {
	case m.GetRds() != nil:
		rds := m.GetRds()
		if err := onlyFields(where+".rds", rds, "config_source", "route_config_name"); err != nil {
			return nil, err
		}
		if err := checkADSSource(where+".rds.config_source", rds.GetConfigSource()); err != nil {
			return nil, err
		}
		if rds.GetRouteConfigName() == "" {
			return nil, fmt.Errorf("%s.rds: route_config_name is required", where)
		}
		h.rdsName = rds.GetRouteConfigName()
	case m.GetRouteConfig() != nil:
		rt, err := translateRouteConfig(m.GetRouteConfig())
		if err != nil {
			return nil, err
		}
		h.inline = rt
	default:
		return nil, fmt.Errorf("%s: rds or route_config is required", where)
	}

	// Envoy docs: HTTP filters — filters run in order and the router must be
	// the terminal filter. The stand-in knows two: ext_authz and router.
	fs := m.GetHttpFilters()
	if len(fs) == 0 {
		return nil, fmt.Errorf("%s: http_filters must end with the router filter", where)
	}
	for i, f := range fs {
		fw := fmt.Sprintf("%s.http_filters[%d] %q", where, i, f.GetName())
		if err := onlyFields(fw, f, "name", "typed_config"); err != nil {
			return nil, err
		}
		last := i == len(fs)-1
		switch f.GetTypedConfig().GetTypeUrl() {
		case typeURLOf(&routerv3.Router{}):
			if !last {
				return nil, fmt.Errorf("%s: router must be the last filter", fw)
			}
			r, err := unpack(fw, f.GetTypedConfig(), func() *routerv3.Router { return &routerv3.Router{} })
			if err != nil {
				return nil, err
			}
			if err := onlyFields(fw, r, "suppress_envoy_headers", "start_child_span", "dynamic_stats"); err != nil {
				return nil, err
			}
			h.suppressEnvoyHeaders = r.GetSuppressEnvoyHeaders()
		case typeURLOf(&extauthzv3.ExtAuthz{}):
			if last {
				return nil, fmt.Errorf("%s: the last filter must be the router", fw)
			}
			if h.extAuthz != nil {
				return nil, fmt.Errorf("%s: only one ext_authz filter is supported", fw)
			}
			a, err := unpack(fw, f.GetTypedConfig(), func() *extauthzv3.ExtAuthz { return &extauthzv3.ExtAuthz{} })
			if err != nil {
				return nil, err
			}
			cfg, err := translateExtAuthz(fw, f.GetName(), a)
			if err != nil {
				return nil, err
			}
			h.extAuthz = cfg
		default:
			return nil, fmt.Errorf("%s: unsupported HTTP filter type %q (the stand-in implements ext_authz and router only)", fw, f.GetTypedConfig().GetTypeUrl())
		}
	}
	return h, nil
}

// checkADSSource accepts only "ads: {}" config sources: the stand-in has a
// single ADS stream, as mcpgw's bootstrap configures Envoy.
//
// Envoy docs: ConfigSource (api-v3/config/core/v3/config_source.proto).
func checkADSSource(where string, cs *corev3.ConfigSource) error {
	if cs == nil || cs.GetAds() == nil {
		return fmt.Errorf("%s: only an ads config source is supported", where)
	}
	if err := onlyFields(where, cs, "ads", "resource_api_version", "initial_fetch_timeout"); err != nil {
		return err
	}
	if v := cs.GetResourceApiVersion(); v != corev3.ApiVersion_V3 && v != corev3.ApiVersion_AUTO {
		return fmt.Errorf("%s: resource_api_version %s not supported", where, v)
	}
	return nil
}

// translateExtAuthz follows Envoy docs: External Authorization HTTP filter
// (configuration/http/http_filters/ext_authz_filter and
// api-v3/extensions/filters/http/ext_authz/v3/ext_authz.proto).
func translateExtAuthz(where, name string, a *extauthzv3.ExtAuthz) (*extAuthzConfig, error) {
	if err := onlyFields(where, a, "grpc_service", "transport_api_version", "failure_mode_allow",
		"failure_mode_allow_header_add", "status_on_error", "encode_raw_headers",
		"validate_mutations", "include_peer_certificate", "clear_route_cache",
		"stat_prefix"); err != nil {
		return nil, err
	}
	if a.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		return nil, fmt.Errorf("%s: transport_api_version must be V3", where)
	}
	gs := a.GetGrpcService()
	if gs == nil {
		return nil, fmt.Errorf("%s: grpc_service is required (http_service is not supported)", where)
	}
	if err := onlyFields(where+".grpc_service", gs, "envoy_grpc", "timeout", "initial_metadata"); err != nil {
		return nil, err
	}
	eg := gs.GetEnvoyGrpc()
	if eg == nil {
		return nil, fmt.Errorf("%s.grpc_service: envoy_grpc is required", where)
	}
	if err := onlyFields(where+".grpc_service.envoy_grpc", eg, "cluster_name", "authority"); err != nil {
		return nil, err
	}
	cfg := &extAuthzConfig{
		filterName:                name,
		cluster:                   eg.GetClusterName(),
		authority:                 eg.GetAuthority(),
		timeout:                   defaultExtAuthzTimeout,
		failureModeAllow:          a.GetFailureModeAllow(),
		failureModeAllowHeaderAdd: a.GetFailureModeAllowHeaderAdd(),
		// Envoy docs: status_on_error — "defaults to 403 (Forbidden)".
		statusOnError:     403,
		encodeRawHeaders:  a.GetEncodeRawHeaders(),
		validateMutations: a.GetValidateMutations(),
	}
	if gs.GetTimeout() != nil {
		cfg.timeout = dur(gs.GetTimeout())
	}
	for i, hv := range gs.GetInitialMetadata() {
		if err := onlyFields(fmt.Sprintf("%s.grpc_service.initial_metadata[%d]", where, i), hv, "key", "value"); err != nil {
			return nil, err
		}
		cfg.initialMetadata = append(cfg.initialMetadata, [2]string{strings.ToLower(hv.GetKey()), hv.GetValue()})
	}
	if s := a.GetStatusOnError(); s != nil {
		if err := onlyFields(where+".status_on_error", s, "code"); err != nil {
			return nil, err
		}
		cfg.statusOnError = int(s.GetCode())
	}
	return cfg, nil
}

// translateRouteConfig follows Envoy docs: HTTP route configuration
// (api-v3/config/route/v3/route.proto, route_components.proto).
func translateRouteConfig(rc *routev3.RouteConfiguration) (*routeTable, error) {
	where := fmt.Sprintf("route_configuration %q", rc.GetName())
	if err := validate(where, rc); err != nil {
		return nil, err
	}
	if err := onlyFields(where, rc, "name", "virtual_hosts", "typed_per_filter_config", "validate_clusters"); err != nil {
		return nil, err
	}
	rt := &routeTable{name: rc.GetName()}
	var err error
	if rt.perFilter, err = translatePerFilter(where, rc.GetTypedPerFilterConfig()); err != nil {
		return nil, err
	}
	seenDomains := map[string]bool{}
	for i, vh := range rc.GetVirtualHosts() {
		vw := fmt.Sprintf("%s.virtual_hosts[%d] %q", where, i, vh.GetName())
		if err := onlyFields(vw, vh, "name", "domains", "routes", "typed_per_filter_config"); err != nil {
			return nil, err
		}
		v := &virtualHost{name: vh.GetName()}
		for _, d := range vh.GetDomains() {
			d = strings.ToLower(d)
			// Envoy docs: VirtualHost.domains — "Domain search order ... The
			// same domain may not appear in more than one virtual host."
			if seenDomains[d] {
				return nil, fmt.Errorf("%s: domain %q appears in more than one virtual host", vw, d)
			}
			if strings.Count(d, "*") > 1 || (strings.Contains(d, "*") && d != "*" && !strings.HasPrefix(d, "*") && !strings.HasSuffix(d, "*")) {
				return nil, fmt.Errorf("%s: invalid domain wildcard %q", vw, d)
			}
			seenDomains[d] = true
			v.domains = append(v.domains, d)
		}
		if v.perFilter, err = translatePerFilter(vw, vh.GetTypedPerFilterConfig()); err != nil {
			return nil, err
		}
		for j, r := range vh.GetRoutes() {
			tr, err := translateRoute(fmt.Sprintf("%s.routes[%d] %q", vw, j, r.GetName()), r)
			if err != nil {
				return nil, err
			}
			v.routes = append(v.routes, tr)
		}
		rt.vhosts = append(rt.vhosts, v)
	}
	return rt, nil
}

func translateRoute(where string, r *routev3.Route) (*route, error) {
	if err := onlyFields(where, r, "name", "match", "route", "direct_response", "typed_per_filter_config"); err != nil {
		return nil, err
	}
	m := r.GetMatch()
	if err := onlyFields(where+".match", m, "prefix", "path", "path_separated_prefix", "case_sensitive"); err != nil {
		return nil, err
	}
	out := &route{name: r.GetName(), caseSens: m.GetCaseSensitive() == nil || m.GetCaseSensitive().GetValue()}
	switch ps := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		out.kind, out.value = matchPrefix, ps.Prefix
	case *routev3.RouteMatch_Path:
		out.kind, out.value = matchPath, ps.Path
	case *routev3.RouteMatch_PathSeparatedPrefix:
		// Envoy docs: RouteMatch.path_separated_prefix — "The prefix must
		// not end with a slash" and must not contain '?' or '#'.
		if strings.HasSuffix(ps.PathSeparatedPrefix, "/") || strings.ContainsAny(ps.PathSeparatedPrefix, "?#") {
			return nil, fmt.Errorf("%s.match: invalid path_separated_prefix %q", where, ps.PathSeparatedPrefix)
		}
		out.kind, out.value = matchPathSeparatedPrefix, ps.PathSeparatedPrefix
	default:
		return nil, fmt.Errorf("%s.match: only prefix, path and path_separated_prefix are supported", where)
	}
	var err error
	if out.perFilter, err = translatePerFilter(where, r.GetTypedPerFilterConfig()); err != nil {
		return nil, err
	}
	switch a := r.GetAction().(type) {
	case *routev3.Route_DirectResponse:
		d := a.DirectResponse
		if err := onlyFields(where+".direct_response", d, "status", "body"); err != nil {
			return nil, err
		}
		dr := &directResponse{status: int(d.GetStatus())}
		if b := d.GetBody(); b != nil {
			if err := onlyFields(where+".direct_response.body", b, "inline_string", "inline_bytes"); err != nil {
				return nil, err
			}
			if b.GetInlineString() != "" {
				dr.body = []byte(b.GetInlineString())
			} else {
				dr.body = b.GetInlineBytes()
			}
		}
		out.direct = dr
	case *routev3.Route_Route:
		ra, err := translateRouteAction(where+".route", a.Route, out.kind)
		if err != nil {
			return nil, err
		}
		out.action = ra
	default:
		return nil, fmt.Errorf("%s: only route and direct_response actions are supported (redirects never)", where)
	}
	return out, nil
}

// translateRouteAction follows Envoy docs: RouteAction.
func translateRouteAction(where string, a *routev3.RouteAction, kind matchKind) (*routeAction, error) {
	if err := onlyFields(where, a, "cluster", "prefix_rewrite", "regex_rewrite", "host_rewrite_literal",
		"timeout", "idle_timeout", "internal_redirect_policy"); err != nil {
		return nil, err
	}
	if a.GetCluster() == "" {
		return nil, fmt.Errorf("%s: cluster is required (cluster_header / weighted_clusters not supported)", where)
	}
	// Envoy docs: RouteAction.internal_redirect_policy — internal redirects
	// happen only when a policy is configured; the stand-in accepts a policy
	// only when it can never redirect.
	if p := a.GetInternalRedirectPolicy(); p != nil {
		if err := onlyFields(where+".internal_redirect_policy", p, "max_internal_redirects", "redirect_response_codes"); err != nil {
			return nil, err
		}
		if p.GetMaxInternalRedirects() == nil || p.GetMaxInternalRedirects().GetValue() != 0 {
			return nil, fmt.Errorf("%s.internal_redirect_policy: only max_internal_redirects: 0 is supported (redirects are never followed)", where)
		}
	}
	out := &routeAction{cluster: a.GetCluster(), timeout: defaultRouteTimeout, hostRewrite: a.GetHostRewriteLiteral()}
	if a.GetPrefixRewrite() != "" {
		out.prefixRewrite, out.hasPrefixRewrite = a.GetPrefixRewrite(), true
	}
	if rr := a.GetRegexRewrite(); rr != nil {
		if out.hasPrefixRewrite {
			return nil, fmt.Errorf("%s: prefix_rewrite and regex_rewrite are mutually exclusive", where)
		}
		if err := onlyFields(where+".regex_rewrite", rr, "pattern", "substitution"); err != nil {
			return nil, err
		}
		re, err := compileRegex(where+".regex_rewrite.pattern", rr.GetPattern())
		if err != nil {
			return nil, err
		}
		out.regex = re
		out.regexSubst = envoySubstitution(rr.GetSubstitution())
	}
	if a.GetTimeout() != nil {
		out.timeout = dur(a.GetTimeout())
	}
	if a.GetIdleTimeout() != nil {
		d := dur(a.GetIdleTimeout())
		out.idleTimeout = &d
	}
	return out, nil
}

func compileRegex(where string, rm *matcherv3.RegexMatcher) (*regexp.Regexp, error) {
	if err := onlyFields(where, rm, "regex", "google_re2"); err != nil {
		return nil, err
	}
	// Envoy uses RE2; Go's regexp implements the same syntax.
	re, err := regexp.Compile(rm.GetRegex())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return re, nil
}

// envoySubstitution converts RE2 substitution syntax (\1) to Go's (${1}).
func envoySubstitution(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			b.WriteString("${" + string(s[i+1]) + "}")
			i++
		case c == '\\' && i+1 < len(s) && s[i+1] == '\\':
			b.WriteByte('\\')
			i++
		case c == '$':
			b.WriteString("$$")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// translatePerFilter validates typed_per_filter_config. The only per-route
// filter config the stand-in understands is ExtAuthzPerRoute, possibly
// wrapped in config.route.v3.FilterConfig.
//
// Envoy docs: ExtAuthzPerRoute and Route.typed_per_filter_config.
func translatePerFilter(where string, m map[string]*anypb.Any) (map[string]*authzPerRoute, error) {
	if len(m) == 0 {
		return nil, nil
	}
	out := make(map[string]*authzPerRoute, len(m))
	for name, a := range m {
		fw := fmt.Sprintf("%s.typed_per_filter_config[%q]", where, name)
		if a.GetTypeUrl() == typeURLOf(&routev3.FilterConfig{}) {
			fc, err := unpack(fw, a, func() *routev3.FilterConfig { return &routev3.FilterConfig{} })
			if err != nil {
				return nil, err
			}
			if err := onlyFields(fw, fc, "config"); err != nil {
				return nil, err
			}
			a = fc.GetConfig()
		}
		if a.GetTypeUrl() != extAuthzPerRouteType {
			return nil, fmt.Errorf("%s: unsupported per-filter config type %q", fw, a.GetTypeUrl())
		}
		pr, err := unpack(fw, a, func() *extauthzv3.ExtAuthzPerRoute { return &extauthzv3.ExtAuthzPerRoute{} })
		if err != nil {
			return nil, err
		}
		if err := onlyFields(fw, pr, "disabled", "check_settings"); err != nil {
			return nil, err
		}
		ap := &authzPerRoute{disabled: pr.GetDisabled()}
		if cs := pr.GetCheckSettings(); cs != nil {
			// disable_request_body_buffering has no effect: the stand-in
			// never buffers bodies for ext_authz.
			if err := onlyFields(fw+".check_settings", cs, "context_extensions", "disable_request_body_buffering"); err != nil {
				return nil, err
			}
			ap.contextExtensions = cs.GetContextExtensions()
		}
		out[name] = ap
	}
	return out, nil
}

// translateCluster follows Envoy docs: Cluster (api-v3/config/cluster/v3/cluster.proto).
// Supported discovery types: EDS over ADS, and STATIC.
func translateCluster(c *clusterv3.Cluster) (*clusterConfig, error) {
	where := fmt.Sprintf("cluster %q", c.GetName())
	if err := validate(where, c); err != nil {
		return nil, err
	}
	if err := onlyFields(where, c, "name", "type", "eds_cluster_config", "connect_timeout", "load_assignment",
		"transport_socket", "typed_extension_protocol_options", "http2_protocol_options",
		"dns_lookup_family", "per_connection_buffer_limit_bytes", "alt_stat_name",
		"ignore_health_on_host_removal"); err != nil {
		return nil, err
	}
	out := &clusterConfig{name: c.GetName(), connectTimeout: defaultConnectTimeout, idleTimeout: defaultConnIdleTimeout, src: c}
	if c.GetConnectTimeout() != nil {
		out.connectTimeout = dur(c.GetConnectTimeout())
	}
	switch c.GetType() {
	case clusterv3.Cluster_EDS:
		out.eds = true
		ec := c.GetEdsClusterConfig()
		if err := onlyFields(where+".eds_cluster_config", ec, "eds_config", "service_name"); err != nil {
			return nil, err
		}
		if err := checkADSSource(where+".eds_cluster_config.eds_config", ec.GetEdsConfig()); err != nil {
			return nil, err
		}
		out.edsService = ec.GetServiceName()
		if c.GetLoadAssignment() != nil {
			return nil, fmt.Errorf("%s: load_assignment on an EDS cluster is not supported", where)
		}
	case clusterv3.Cluster_STATIC:
		if c.GetEdsClusterConfig() != nil {
			return nil, fmt.Errorf("%s: eds_cluster_config on a STATIC cluster", where)
		}
		eps, err := translateEndpoints(c.GetLoadAssignment())
		if err != nil {
			return nil, fmt.Errorf("%s.load_assignment: %w", where, err)
		}
		out.static = eps
	default:
		return nil, fmt.Errorf("%s: discovery type %s not supported (EDS or STATIC only)", where, c.GetType())
	}
	if c.GetHttp2ProtocolOptions() != nil {
		out.http2 = true
	}
	for k, v := range c.GetTypedExtensionProtocolOptions() {
		if k != httpProtocolOptionsKey {
			return nil, fmt.Errorf("%s.typed_extension_protocol_options: unsupported key %q", where, k)
		}
		po, err := unpack(where+".typed_extension_protocol_options", v, func() *upstreamhttpv3.HttpProtocolOptions { return &upstreamhttpv3.HttpProtocolOptions{} })
		if err != nil {
			return nil, err
		}
		if err := onlyFields(where+".HttpProtocolOptions", po, "explicit_http_config", "common_http_protocol_options"); err != nil {
			return nil, err
		}
		if ch := po.GetCommonHttpProtocolOptions(); ch != nil {
			if err := onlyFields(where+".HttpProtocolOptions.common_http_protocol_options", ch, "idle_timeout"); err != nil {
				return nil, err
			}
			if ch.GetIdleTimeout() != nil {
				out.idleTimeout = dur(ch.GetIdleTimeout())
			}
		}
		ex := po.GetExplicitHttpConfig()
		if ex == nil {
			return nil, fmt.Errorf("%s.HttpProtocolOptions: explicit_http_config is required", where)
		}
		switch {
		case ex.GetHttp2ProtocolOptions() != nil:
			if err := onlyFields(where+".http2_protocol_options", ex.GetHttp2ProtocolOptions(),
				"max_concurrent_streams", "initial_stream_window_size", "initial_connection_window_size", "connection_keepalive"); err != nil {
				return nil, err
			}
			out.http2 = true
		case ex.GetHttpProtocolOptions() != nil:
			if err := onlyFields(where+".http_protocol_options", ex.GetHttpProtocolOptions()); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("%s.HttpProtocolOptions: only http_protocol_options or http2_protocol_options are supported", where)
		}
	}
	if ts := c.GetTransportSocket(); ts != nil {
		if err := onlyFields(where+".transport_socket", ts, "name", "typed_config"); err != nil {
			return nil, err
		}
		utc, err := unpack(where+".transport_socket", ts.GetTypedConfig(), func() *tlsv3.UpstreamTlsContext { return &tlsv3.UpstreamTlsContext{} })
		if err != nil {
			return nil, err
		}
		tc, err := translateUpstreamTLS(where+".transport_socket.UpstreamTlsContext", utc)
		if err != nil {
			return nil, err
		}
		out.tls = tc
	}
	return out, nil
}

// translateUpstreamTLS follows Envoy docs: UpstreamTlsContext and
// CertificateValidationContext (api-v3/extensions/transport_sockets/tls/v3/).
//
// A TLS context without a validation context (or with ACCEPT_UNTRUSTED) is
// refused: real Envoy would accept it and then not verify the upstream at
// all, which mcpgw must never configure (DESIGN §6).
func translateUpstreamTLS(where string, u *tlsv3.UpstreamTlsContext) (*tlsConfig, error) {
	if err := onlyFields(where, u, "common_tls_context", "sni", "max_session_keys"); err != nil {
		return nil, err
	}
	ctc := u.GetCommonTlsContext()
	if err := onlyFields(where+".common_tls_context", ctc, "validation_context", "alpn_protocols", "tls_params"); err != nil {
		return nil, err
	}
	vc := ctc.GetValidationContext()
	if vc == nil {
		return nil, fmt.Errorf("%s: validation_context is required (the upstream certificate must be verified)", where)
	}
	if err := onlyFields(where+".validation_context", vc, "trusted_ca", "match_typed_subject_alt_names"); err != nil {
		return nil, err
	}
	if vc.GetTrustedCa() == nil {
		return nil, fmt.Errorf("%s.validation_context: trusted_ca is required", where)
	}
	pemBytes, err := dataSource(where+".validation_context.trusted_ca", vc.GetTrustedCa())
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("%s.validation_context.trusted_ca: no PEM certificates found", where)
	}
	out := &tlsConfig{sni: u.GetSni(), roots: pool, alpn: ctc.GetAlpnProtocols()}
	if tp := ctc.GetTlsParams(); tp != nil {
		if err := onlyFields(where+".tls_params", tp, "tls_minimum_protocol_version", "tls_maximum_protocol_version"); err != nil {
			return nil, err
		}
		out.minVersion = tlsVersion(tp.GetTlsMinimumProtocolVersion())
		out.maxVersion = tlsVersion(tp.GetTlsMaximumProtocolVersion())
	}
	for i, sm := range vc.GetMatchTypedSubjectAltNames() {
		sw := fmt.Sprintf("%s.match_typed_subject_alt_names[%d]", where, i)
		if err := onlyFields(sw, sm, "san_type", "matcher"); err != nil {
			return nil, err
		}
		switch sm.GetSanType() {
		case tlsv3.SubjectAltNameMatcher_DNS, tlsv3.SubjectAltNameMatcher_URI,
			tlsv3.SubjectAltNameMatcher_IP_ADDRESS, tlsv3.SubjectAltNameMatcher_EMAIL:
		default:
			return nil, fmt.Errorf("%s: san_type %s not supported", sw, sm.GetSanType())
		}
		m, err := translateStringMatcher(sw+".matcher", sm.GetMatcher())
		if err != nil {
			return nil, err
		}
		out.sans = append(out.sans, sanMatcher{typ: sm.GetSanType(), m: m})
	}
	return out, nil
}

func translateStringMatcher(where string, m *matcherv3.StringMatcher) (stringMatcher, error) {
	if err := onlyFields(where, m, "exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case"); err != nil {
		return stringMatcher{}, err
	}
	out := stringMatcher{ignoreCase: m.GetIgnoreCase()}
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		out.kind, out.exact = "exact", p.Exact
	case *matcherv3.StringMatcher_Prefix:
		out.kind, out.prefix = "prefix", p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		out.kind, out.suffix = "suffix", p.Suffix
	case *matcherv3.StringMatcher_Contains:
		out.kind, out.contains = "contains", p.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := compileRegex(where+".safe_regex", p.SafeRegex)
		if err != nil {
			return out, err
		}
		// Envoy docs: safe_regex matches the whole string.
		out.kind, out.re = "safe_regex", regexp.MustCompile("^(?:"+re.String()+")$")
	default:
		return out, fmt.Errorf("%s: a match pattern is required", where)
	}
	return out, nil
}

func tlsVersion(v tlsv3.TlsParameters_TlsProtocol) uint16 {
	switch v {
	case tlsv3.TlsParameters_TLSv1_2:
		return 0x0303
	case tlsv3.TlsParameters_TLSv1_3:
		return 0x0304
	case tlsv3.TlsParameters_TLSv1_1:
		return 0x0302
	case tlsv3.TlsParameters_TLSv1_0:
		return 0x0301
	}
	return 0
}

func dataSource(where string, d *corev3.DataSource) ([]byte, error) {
	if err := onlyFields(where, d, "filename", "inline_string", "inline_bytes"); err != nil {
		return nil, err
	}
	switch {
	case d.GetFilename() != "":
		b, err := os.ReadFile(d.GetFilename())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		return b, nil
	case d.GetInlineString() != "":
		return []byte(d.GetInlineString()), nil
	case len(d.GetInlineBytes()) > 0:
		return d.GetInlineBytes(), nil
	}
	return nil, errors.New(where + ": empty data source")
}

// translateEndpoints follows Envoy docs: ClusterLoadAssignment
// (api-v3/config/endpoint/v3/endpoint.proto). Addresses must be IP literals:
// mcpgw pins validated addresses, and Envoy itself refuses hostnames in EDS.
// Hosts whose health_status is not UNKNOWN or HEALTHY receive no traffic.
func translateEndpoints(cla *endpointv3.ClusterLoadAssignment) ([]netip.AddrPort, error) {
	if cla == nil {
		return nil, nil
	}
	where := fmt.Sprintf("cluster_load_assignment %q", cla.GetClusterName())
	if err := validate(where, cla); err != nil {
		return nil, err
	}
	if err := onlyFields(where, cla, "cluster_name", "endpoints"); err != nil {
		return nil, err
	}
	var out []netip.AddrPort
	for i, le := range cla.GetEndpoints() {
		lw := fmt.Sprintf("%s.endpoints[%d]", where, i)
		if err := onlyFields(lw, le, "lb_endpoints", "locality"); err != nil {
			return nil, err
		}
		for j, lb := range le.GetLbEndpoints() {
			ew := fmt.Sprintf("%s.lb_endpoints[%d]", lw, j)
			if err := onlyFields(ew, lb, "endpoint", "health_status"); err != nil {
				return nil, err
			}
			ep := lb.GetEndpoint()
			if err := onlyFields(ew+".endpoint", ep, "address", "hostname"); err != nil {
				return nil, err
			}
			if err := onlyFields(ew+".endpoint.address", ep.GetAddress(), "socket_address"); err != nil {
				return nil, err
			}
			sa := ep.GetAddress().GetSocketAddress()
			if sa == nil {
				return nil, fmt.Errorf("%s: socket_address is required", ew)
			}
			if err := onlyFields(ew+".endpoint.address.socket_address", sa, "address", "port_value"); err != nil {
				return nil, err
			}
			ip, err := netip.ParseAddr(sa.GetAddress())
			if err != nil {
				return nil, fmt.Errorf("%s: address %q is not an IP literal", ew, sa.GetAddress())
			}
			switch lb.GetHealthStatus() {
			case corev3.HealthStatus_UNKNOWN, corev3.HealthStatus_HEALTHY:
				out = append(out, netip.AddrPortFrom(ip, uint16(sa.GetPortValue())))
			}
		}
	}
	return out, nil
}
