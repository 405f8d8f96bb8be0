package envoystandin

import (
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// withHCM returns a copy of the baseline listener with its HCM mutated.
func withHCM(t *testing.T, mut func(*hcmv3.HttpConnectionManager)) *listenerv3.Listener {
	l := hcmListener(t, "routes",
		extAuthzFilter(t, "extauthz", time.Second, typev3.StatusCode_ServiceUnavailable), routerFilter(t, true))
	h := &hcmv3.HttpConnectionManager{}
	if err := l.FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(h); err != nil {
		t.Fatal(err)
	}
	mut(h)
	l.FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, h)}
	return l
}

func TestTranslateListener(t *testing.T) {
	ok, err := translateListener(withHCM(t, func(*hcmv3.HttpConnectionManager) {}))
	if err != nil {
		t.Fatalf("baseline listener rejected: %v", err)
	}
	if h := ok.hcm; !h.normalizePath || !h.mergeSlashes || !h.rejectEscapedSlashes || h.rdsName != "routes" ||
		h.extAuthz == nil || h.extAuthz.statusOnError != 503 || h.extAuthz.timeout != time.Second ||
		!h.suppressEnvoyHeaders || h.serverName != "envoy" || !h.generateRequestID {
		t.Fatalf("baseline translated to %+v", h)
	}

	cases := []struct {
		name string
		l    *listenerv3.Listener
		want string
	}{
		{"unknown HTTP filter", withHCM(t, func(h *hcmv3.HttpConnectionManager) {
			h.HttpFilters = append([]*hcmv3.HttpFilter{{Name: "envoy.filters.http.cors",
				ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routev3.CorsPolicy{})}}}, h.HttpFilters...)
		}), "unsupported HTTP filter type"},
		{"router not last", withHCM(t, func(h *hcmv3.HttpConnectionManager) {
			h.HttpFilters[0], h.HttpFilters[1] = h.HttpFilters[1], h.HttpFilters[0]
		}), "router must be the last filter"},
		{"unescape and redirect", withHCM(t, func(h *hcmv3.HttpConnectionManager) {
			h.PathWithEscapedSlashesAction = hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT
		}), "path_with_escaped_slashes_action"},
		{"unsupported HCM field", withHCM(t, func(h *hcmv3.HttpConnectionManager) {
			h.XffNumTrustedHops = 1
		}), "xff_num_trusted_hops"},
		{"connection idle timeout (not enforced by the stand-in)", withHCM(t, func(h *hcmv3.HttpConnectionManager) {
			h.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{}
			h.CommonHttpProtocolOptions.IdleTimeout = nil
			h.CommonHttpProtocolOptions.MaxHeadersCount = wrapperspb.UInt32(10)
		}), "common_http_protocol_options"},
		{"upgrade configs", withHCM(t, func(h *hcmv3.HttpConnectionManager) {
			h.UpgradeConfigs = []*hcmv3.HttpConnectionManager_UpgradeConfig{{UpgradeType: "websocket"}}
		}), "upgrade_configs"},
		{"non-ADS RDS source", withHCM(t, func(h *hcmv3.HttpConnectionManager) {
			h.GetRds().ConfigSource = &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Path{Path: "/x"}}
		}), "only an ads config source"},
		{"ext_authz with body", withHCM(t, func(h *hcmv3.HttpConnectionManager) {
			a := &extauthzv3.ExtAuthz{}
			_ = h.HttpFilters[0].GetTypedConfig().UnmarshalTo(a)
			a.WithRequestBody = &extauthzv3.BufferSettings{MaxRequestBytes: 10}
			h.HttpFilters[0].ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, a)}
		}), "with_request_body"},
		{"ext_authz google_grpc", withHCM(t, func(h *hcmv3.HttpConnectionManager) {
			a := &extauthzv3.ExtAuthz{}
			_ = h.HttpFilters[0].GetTypedConfig().UnmarshalTo(a)
			a.GetGrpcService().TargetSpecifier = &corev3.GrpcService_GoogleGrpc_{GoogleGrpc: &corev3.GrpcService_GoogleGrpc{TargetUri: "x", StatPrefix: "x"}}
			h.HttpFilters[0].ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, a)}
		}), "google_grpc"},
		{"ext_authz v2 transport", withHCM(t, func(h *hcmv3.HttpConnectionManager) {
			a := &extauthzv3.ExtAuthz{}
			_ = h.HttpFilters[0].GetTypedConfig().UnmarshalTo(a)
			a.TransportApiVersion = corev3.ApiVersion_AUTO
			h.HttpFilters[0].ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, a)}
		}), "transport_api_version must be V3"},
		{"listener filters", func() *listenerv3.Listener {
			l := withHCM(t, func(*hcmv3.HttpConnectionManager) {})
			l.ListenerFilters = []*listenerv3.ListenerFilter{{Name: "tls_inspector"}}
			return l
		}(), "listener_filters"},
		{"two filter chains", func() *listenerv3.Listener {
			l := withHCM(t, func(*hcmv3.HttpConnectionManager) {})
			l.FilterChains = append(l.FilterChains, l.FilterChains[0])
			return l
		}(), "exactly one filter chain"},
		{"downstream TLS", func() *listenerv3.Listener {
			l := withHCM(t, func(*hcmv3.HttpConnectionManager) {})
			l.FilterChains[0].TransportSocket = &corev3.TransportSocket{Name: "tls"}
			return l
		}(), "transport_socket"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := translateListener(c.l)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want containing %q", err, c.want)
			}
		})
	}
}

func TestTranslateRouteConfig(t *testing.T) {
	base := func() *routev3.RouteConfiguration {
		a := forward("c")
		a.Route.PrefixRewrite = "/base"
		return &routev3.RouteConfiguration{Name: "routes", VirtualHosts: []*routev3.VirtualHost{{
			Name: "vh", Domains: []string{"*"},
			Routes: []*routev3.Route{{Name: "r", Match: sepPrefixMatch("/mcp"), Action: a,
				TypedPerFilterConfig: authzPerRouteExt(t, map[string]string{"config_id": "x"})}},
		}}}
	}
	rt, err := translateRouteConfig(base())
	if err != nil {
		t.Fatalf("baseline rejected: %v", err)
	}
	r := rt.vhosts[0].routes[0]
	if r.kind != matchPathSeparatedPrefix || r.action.timeout != 0 || r.action.idleTimeout == nil ||
		r.perFilter["envoy.filters.http.ext_authz"].contextExtensions["config_id"] != "x" {
		t.Fatalf("baseline translated to %+v %+v", r, r.action)
	}

	cases := []struct {
		name string
		mut  func(*routev3.RouteConfiguration)
		want string
	}{
		{"safe_regex match", func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[0].Match = &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: ".*"}}}
		}, "safe_regex"},
		{"header matcher", func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[0].Match.Headers = []*routev3.HeaderMatcher{{Name: "x"}}
		}, "headers"},
		{"redirect action", func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[0].Action = &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{}}
		}, "redirect"},
		{"weighted clusters", func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[0].GetRoute().ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{
				Clusters: []*routev3.WeightedCluster_ClusterWeight{{Name: "a", Weight: wrapperspb.UInt32(1)}}}}
		}, "weighted_clusters"},
		{"auto host rewrite", func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[0].GetRoute().HostRewriteSpecifier = &routev3.RouteAction_AutoHostRewrite{AutoHostRewrite: wrapperspb.Bool(true)}
		}, "auto_host_rewrite"},
		{"retry policy", func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[0].GetRoute().RetryPolicy = &routev3.RetryPolicy{RetryOn: "5xx"}
		}, "retry_policy"},
		{"internal redirects allowed", func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[0].GetRoute().InternalRedirectPolicy = &routev3.InternalRedirectPolicy{}
		}, "max_internal_redirects: 0"},
		{"unknown per-filter config", func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[0].TypedPerFilterConfig = map[string]*anypb.Any{"envoy.filters.http.cors": mustAny(t, &routev3.CorsPolicy{})}
		}, "unsupported per-filter config"},
		{"ext_authz per-route with body", func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[0].TypedPerFilterConfig = map[string]*anypb.Any{"envoy.filters.http.ext_authz": mustAny(t, &extauthzv3.ExtAuthzPerRoute{
				Override: &extauthzv3.ExtAuthzPerRoute_CheckSettings{CheckSettings: &extauthzv3.CheckSettings{WithRequestBody: &extauthzv3.BufferSettings{MaxRequestBytes: 10}}}})}
		}, "with_request_body"},
		{"path_separated_prefix with trailing slash", func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[0].Match = sepPrefixMatch("/mcp/")
		}, "PathSeparatedPrefix"},
		{"response headers to add", func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].ResponseHeadersToAdd = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "a", Value: "b"}}}
		}, "response_headers_to_add"},
		{"duplicate domain", func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{Name: "vh2", Domains: []string{"*"}})
		}, "more than one virtual host"},
		{"bad rewrite regex", func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[0].GetRoute().PrefixRewrite = ""
			rc.VirtualHosts[0].Routes[0].GetRoute().RegexRewrite = &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "("}, Substitution: "/"}
		}, "regex_rewrite.pattern"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rc := base()
			c.mut(rc)
			_, err := translateRouteConfig(rc)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want containing %q", err, c.want)
			}
		})
	}
}

func TestTranslateCluster(t *testing.T) {
	ca := newTestCA(t)
	good := edsCluster(t, "c", upstreamTLS("up.example", ca.pem, exactSAN("up.example")))
	c, err := translateCluster(good)
	if err != nil {
		t.Fatalf("baseline rejected: %v", err)
	}
	if !c.eds || c.tls == nil || c.tls.sni != "up.example" || len(c.tls.sans) != 1 || c.connectTimeout != 2*time.Second {
		t.Fatalf("baseline translated to %+v", c)
	}
	if _, err := translateCluster(staticH2Cluster(t, "authz", "127.0.0.1:1")); err != nil {
		t.Fatalf("static h2 cluster rejected: %v", err)
	}

	withTLS := func(mut func(*tlsv3.UpstreamTlsContext)) *clusterv3.Cluster {
		u := upstreamTLS("up.example", ca.pem, exactSAN("up.example"))
		mut(u)
		return edsCluster(t, "c", u)
	}
	cases := []struct {
		name string
		c    *clusterv3.Cluster
		want string
	}{
		{"strict DNS", func() *clusterv3.Cluster {
			c := proto.Clone(good).(*clusterv3.Cluster)
			c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
			return c
		}(), "discovery type"},
		{"least request", func() *clusterv3.Cluster {
			c := proto.Clone(good).(*clusterv3.Cluster)
			c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
			return c
		}(), "lb_policy"},
		{"TLS without validation", withTLS(func(u *tlsv3.UpstreamTlsContext) {
			u.CommonTlsContext.ValidationContextType = nil
		}), "validation_context is required"},
		{"TLS accept untrusted", withTLS(func(u *tlsv3.UpstreamTlsContext) {
			u.GetCommonTlsContext().GetValidationContext().TrustChainVerification = tlsv3.CertificateValidationContext_ACCEPT_UNTRUSTED
		}), "trust_chain_verification"},
		{"TLS bad CA", withTLS(func(u *tlsv3.UpstreamTlsContext) {
			u.GetCommonTlsContext().GetValidationContext().TrustedCa = &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "junk"}}
		}), "no PEM certificates"},
		{"TLS client certificate", withTLS(func(u *tlsv3.UpstreamTlsContext) {
			u.CommonTlsContext.TlsCertificates = []*tlsv3.TlsCertificate{{}}
		}), "tls_certificates"},
		{"deprecated SAN matcher", withTLS(func(u *tlsv3.UpstreamTlsContext) {
			u.GetCommonTlsContext().GetValidationContext().MatchTypedSubjectAltNames = nil
			u.GetCommonTlsContext().GetValidationContext().MatchSubjectAltNames = []*matcherv3.StringMatcher{{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "x"}}}
		}), "match_subject_alt_names"},
		{"circuit breakers", func() *clusterv3.Cluster {
			c := proto.Clone(good).(*clusterv3.Cluster)
			c.CircuitBreakers = &clusterv3.CircuitBreakers{}
			return c
		}(), "circuit_breakers"},
		{"EDS not over ADS", func() *clusterv3.Cluster {
			c := proto.Clone(good).(*clusterv3.Cluster)
			c.EdsClusterConfig.EdsConfig = &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Path{Path: "/eds"}}
			return c
		}(), "only an ads config source"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := translateCluster(c.c)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want containing %q", err, c.want)
			}
		})
	}
}

func TestTranslateEndpoints(t *testing.T) {
	eps, err := translateEndpoints(cla(t, "c", "1.1.1.1:443", "[2606:4700::1111]:443"))
	if err != nil || len(eps) != 2 || eps[1].String() != "[2606:4700::1111]:443" {
		t.Fatalf("eps = %v, %v", eps, err)
	}
	unhealthy := cla(t, "c", "1.1.1.1:443", "8.8.8.8:443")
	unhealthy.Endpoints[0].LbEndpoints[1].HealthStatus = corev3.HealthStatus_UNHEALTHY
	if eps, err := translateEndpoints(unhealthy); err != nil || len(eps) != 1 {
		t.Fatalf("unhealthy host kept: %v %v", eps, err)
	}
	host := cla(t, "c", "1.1.1.1:443")
	host.Endpoints[0].LbEndpoints[0].GetEndpoint().GetAddress().GetSocketAddress().Address = "example.com"
	if _, err := translateEndpoints(host); err == nil || !strings.Contains(err.Error(), "not an IP literal") {
		t.Fatalf("hostname endpoint: %v", err)
	}
	prio := cla(t, "c", "1.1.1.1:443")
	prio.Endpoints[0].Priority = 1
	if _, err := translateEndpoints(prio); err == nil || !strings.Contains(err.Error(), "priority") {
		t.Fatalf("priority: %v", err)
	}
	weighted := cla(t, "c", "1.1.1.1:443")
	weighted.Policy = &endpointv3.ClusterLoadAssignment_Policy{}
	if _, err := translateEndpoints(weighted); err == nil || !strings.Contains(err.Error(), "policy") {
		t.Fatalf("policy: %v", err)
	}
}
