package xds

import (
	"net/netip"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/durationpb"
)

// clusterName is the CDS (and EDS) name of a config's upstream cluster.
func clusterName(configID string) string { return UpstreamClusterPrefix + configID }

// upstreamCluster is the cluster of one config (DESIGN §6, §8). Its
// endpoints come only from EDS — the pinned, validated addresses xds
// resolved — never from Envoy's own DNS, so Envoy cannot be steered to an
// address we did not check. https upstreams get TLS with SNI = host and the
// certificate checked against the trust bundle with a SAN match on the host
// name (an IP SAN for IP-literal hosts), so a pinned address that no longer
// belongs to the host fails the handshake instead of receiving credentials.
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/cluster/v3/cluster.proto
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/transport_sockets/tls/v3/tls.proto
func (b *builder) upstreamCluster(configID string, up upstream) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                 clusterName(configID),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsConfigSource()},
		ConnectTimeout:       durationpb.New(b.opts.ConnectTimeout),
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
	}
	if !up.TLS {
		return c // plain http: only reachable under the dev/test allowlist
	}
	san := &tlsv3.SubjectAltNameMatcher{
		SanType: tlsv3.SubjectAltNameMatcher_DNS,
		Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: up.Host}},
	}
	sni := up.Host
	if _, isIP := up.hostIP(); isIP {
		// RFC 6066 §3: SNI carries host names only, never IP literals.
		san.SanType = tlsv3.SubjectAltNameMatcher_IP_ADDRESS
		sni = ""
	}
	tlsCtx := &tlsv3.UpstreamTlsContext{
		Sni: sni,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa:                 &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: b.opts.UpstreamCAFile}},
				MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{san},
			}},
		},
	}
	c.TransportSocket = &corev3.TransportSocket{
		Name:       wellknown.TransportSocketTLS,
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(tlsCtx)},
	}
	return c
}

// oauthCluster is the oauthserver's cluster. It is our own service, named
// by the operator, so Envoy may resolve it (STRICT_DNS) when it is a name;
// an IP literal gives a STATIC cluster.
func (b *builder) oauthCluster() *clusterv3.Cluster {
	host, port, _ := splitHostPort(b.opts.OAuthServerAddr) // validated in New
	typ := clusterv3.Cluster_STRICT_DNS
	if _, err := netip.ParseAddr(host); err == nil {
		typ = clusterv3.Cluster_STATIC
	}
	return &clusterv3.Cluster{
		Name:                 b.opts.OAuthCluster,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: typ},
		ConnectTimeout:       durationpb.New(b.opts.ConnectTimeout),
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: b.opts.OAuthCluster,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{lbEndpoint(host, port)},
			}},
		},
	}
}
