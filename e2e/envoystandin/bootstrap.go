package envoystandin

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"
)

// OptionsFromBootstrap reads an Envoy v3 bootstrap (YAML or JSON, such as
// mcpgw's envoy/bootstrap-ads.yaml or envoy/bootstrap-operator-listener.yaml)
// and returns the Options that make the stand-in behave like an Envoy
// started with it: node id and cluster, the ADS cluster, the static
// clusters (ext_authz), and — without lds_config — the static listener.
//
// addrs (cluster name → host:port) overrides static cluster addresses, so
// tests can point a bootstrap written for docker compose (host "mcpgw") at
// their own processes. A cluster missing from addrs uses its first
// load_assignment endpoint; a hostname there is resolved once, now (STRICT_DNS
// re-resolution is not modelled). ListenAddr and the other knobs are left
// for the caller.
//
// Envoy docs: Bootstrap (api-v3/config/bootstrap/v3/bootstrap.proto) and
// "xDS configuration: aggregated discovery service".
func OptionsFromBootstrap(data []byte, addrs map[string]string) (Options, error) {
	var opts Options
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return opts, fmt.Errorf("bootstrap: %w", err)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(js, b); err != nil {
		return opts, fmt.Errorf("bootstrap: %w", err)
	}
	if err := validate("bootstrap", b); err != nil {
		return opts, err
	}
	// Admin and stats have no effect on traffic.
	if err := onlyFields("bootstrap", b, "node", "admin", "static_resources", "dynamic_resources",
		"layered_runtime", "stats_config"); err != nil {
		return opts, err
	}
	if err := onlyFields("bootstrap.node", b.GetNode(), "id", "cluster", "metadata", "locality"); err != nil {
		return opts, err
	}
	opts.NodeID, opts.Cluster = b.GetNode().GetId(), b.GetNode().GetCluster()

	dr := b.GetDynamicResources()
	if err := onlyFields("bootstrap.dynamic_resources", dr, "ads_config", "lds_config", "cds_config"); err != nil {
		return opts, err
	}
	ads := dr.GetAdsConfig()
	if err := onlyFields("bootstrap.dynamic_resources.ads_config", ads, "api_type", "transport_api_version",
		"grpc_services", "set_node_on_first_message_only"); err != nil {
		return opts, err
	}
	if ads.GetApiType() != corev3.ApiConfigSource_GRPC || len(ads.GetGrpcServices()) != 1 ||
		ads.GetGrpcServices()[0].GetEnvoyGrpc() == nil || ads.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		return opts, fmt.Errorf("bootstrap: ads_config must be GRPC, transport V3, one envoy_grpc service")
	}
	adsCluster := ads.GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName()
	if err := checkADSSource("bootstrap.dynamic_resources.cds_config", dr.GetCdsConfig()); err != nil {
		return opts, err
	}
	if dr.GetLdsConfig() != nil {
		if err := checkADSSource("bootstrap.dynamic_resources.lds_config", dr.GetLdsConfig()); err != nil {
			return opts, err
		}
	}

	sr := b.GetStaticResources()
	if err := onlyFields("bootstrap.static_resources", sr, "listeners", "clusters"); err != nil {
		return opts, err
	}
	switch {
	case dr.GetLdsConfig() != nil && len(sr.GetListeners()) > 0:
		return opts, fmt.Errorf("bootstrap: static listeners next to lds_config are not supported")
	case dr.GetLdsConfig() == nil && len(sr.GetListeners()) != 1:
		return opts, fmt.Errorf("bootstrap: without lds_config exactly one static listener is required, got %d", len(sr.GetListeners()))
	case dr.GetLdsConfig() == nil:
		opts.Listener = sr.GetListeners()[0]
	}

	opts.BootstrapClusters = map[string]string{}
	for _, c := range sr.GetClusters() {
		if err := checkBootstrapCluster(c); err != nil {
			return opts, err
		}
		addr, ok := addrs[c.GetName()]
		if !ok {
			a, err := bootstrapEndpoint(c)
			if err != nil {
				return opts, err
			}
			addr = a
		}
		if c.GetName() == adsCluster {
			opts.ADSAddr = addr
			continue
		}
		opts.BootstrapClusters[c.GetName()] = addr
	}
	if opts.ADSAddr == "" {
		return opts, fmt.Errorf("bootstrap: ads cluster %q is not a static cluster", adsCluster)
	}
	return opts, nil
}

// checkBootstrapCluster accepts the static gRPC clusters mcpgw's bootstraps
// declare: STATIC or STRICT_DNS (the address is replaced), HTTP/2, plaintext.
func checkBootstrapCluster(c *clusterv3.Cluster) error {
	where := fmt.Sprintf("bootstrap cluster %q", c.GetName())
	if err := onlyFields(where, c, "name", "type", "connect_timeout", "load_assignment",
		"typed_extension_protocol_options", "http2_protocol_options", "dns_lookup_family"); err != nil {
		return err
	}
	switch c.GetType() {
	case clusterv3.Cluster_STATIC, clusterv3.Cluster_STRICT_DNS, clusterv3.Cluster_LOGICAL_DNS:
	default:
		return fmt.Errorf("%s: type %s not supported", where, c.GetType())
	}
	h2 := c.GetHttp2ProtocolOptions() != nil
	if a, ok := c.GetTypedExtensionProtocolOptions()[httpProtocolOptionsKey]; ok {
		po, err := unpack(where, a, func() *upstreamhttpv3.HttpProtocolOptions { return &upstreamhttpv3.HttpProtocolOptions{} })
		if err != nil {
			return err
		}
		h2 = h2 || po.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil
	}
	if !h2 {
		return fmt.Errorf("%s: static gRPC clusters must enable HTTP/2", where)
	}
	return nil
}

// bootstrapEndpoint returns the first endpoint of a static cluster as an
// IP:port, resolving a hostname.
func bootstrapEndpoint(c *clusterv3.Cluster) (string, error) {
	where := fmt.Sprintf("bootstrap cluster %q", c.GetName())
	var sa *corev3.SocketAddress
	for _, le := range c.GetLoadAssignment().GetEndpoints() {
		for _, lb := range le.GetLbEndpoints() {
			if sa == nil {
				sa = lb.GetEndpoint().GetAddress().GetSocketAddress()
			}
		}
	}
	if sa == nil {
		return "", fmt.Errorf("%s: no endpoint and no address given", where)
	}
	port := strconv.Itoa(int(sa.GetPortValue()))
	if ip, err := netip.ParseAddr(sa.GetAddress()); err == nil {
		return net.JoinHostPort(ip.String(), port), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", sa.GetAddress())
	if err != nil || len(ips) == 0 {
		return "", fmt.Errorf("%s: resolve %q: %v", where, sa.GetAddress(), err)
	}
	return net.JoinHostPort(ips[0].Unmap().String(), port), nil
}
