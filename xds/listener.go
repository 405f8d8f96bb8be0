package xds

import (
	"fmt"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// serverName replaces Envoy's "server: envoy" response header so the proxy
// implementation does not leak (server_header_transformation OVERWRITE).
const serverName = "mcpgw"

// adsConfigSource points a dynamic resource at the ADS stream of the
// bootstrap (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/config_source.proto).
func adsConfigSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

// mustAny packs m deterministically (map fields such as
// context_extensions in a stable order, so digests and versions are stable);
// it only fails on a programming error.
func mustAny(m proto.Message) *anypb.Any {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		panic(fmt.Sprintf("xds: packing %T: %v", m, err))
	}
	return a
}

// ExtAuthzFilter is the ext_authz HTTP filter config shared by the
// generated listener and the operator-listener bootstrap (DESIGN §6): gRPC
// to the extauthz cluster over the v3 transport, headers only (no
// with_request_body: bodies stream straight through and are never
// buffered), and fail closed — failure_mode_allow=false with
// status_on_error 503 so an unreachable extauthz never lets a request pass.
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/http/ext_authz/v3/ext_authz.proto
func ExtAuthzFilter(cluster string, timeout time.Duration) *extauthzv3.ExtAuthz {
	return &extauthzv3.ExtAuthz{
		Services: &extauthzv3.ExtAuthz_GrpcService{GrpcService: &corev3.GrpcService{
			TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: cluster}},
			Timeout:         durationpb.New(timeout),
		}},
		TransportApiVersion: corev3.ApiVersion_V3,
		FailureModeAllow:    false,
		StatusOnError:       &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable},
	}
}

// buildHCM returns the HTTP connection manager of the listener.
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto
func (b *builder) buildHCM() *hcmv3.HttpConnectionManager {
	o := b.opts
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: "mcpgw",
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsConfigSource(),
			RouteConfigName: o.RouteConfigName,
		}},
		HttpFilters: []*hcmv3.HttpFilter{
			{
				Name:       wellknown.HTTPExternalAuthorization,
				ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(ExtAuthzFilter(o.ExtAuthzCluster, o.ExtAuthzTimeout))},
			},
			{
				Name: wellknown.Router,
				// suppress_envoy_headers: no x-envoy-upstream-service-time
				// and friends on responses, no x-envoy-* added upstream.
				ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{SuppressEnvoyHeaders: true})},
			},
		},
		// Path hygiene before routing and before ext_authz sees the path
		// (DESIGN §8): RFC 3986 dot-segment normalization, "//" merged,
		// and %2F / %5C rejected outright (400) rather than decoded, so a
		// path can never be made to mean two things.
		NormalizePath:                &wrapperspb.BoolValue{Value: true},
		MergeSlashes:                 true,
		PathWithEscapedSlashesAction: hcmv3.HttpConnectionManager_REJECT_REQUEST,
		ServerName:                   serverName,
		ServerHeaderTransformation:   hcmv3.HttpConnectionManager_OVERWRITE,
		// Streamable HTTP/SSE streams live long: no overall request
		// timeout, an idle timeout instead.
		StreamIdleTimeout:     durationpb.New(o.StreamIdleTimeout),
		RequestTimeout:        durationpb.New(0),
		RequestHeadersTimeout: durationpb.New(o.RequestHeadersTimeout),
	}
	if o.UseRemoteAddress {
		hcm.UseRemoteAddress = &wrapperspb.BoolValue{Value: true}
	}
	return hcm
}

// buildListener returns the one listener of full-ADS mode.
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/listener/v3/listener.proto
func (b *builder) buildListener() *listenerv3.Listener {
	o := b.opts
	return &listenerv3.Listener{
		Name: o.ListenerName,
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Protocol:      corev3.SocketAddress_TCP,
			Address:       o.ListenerAddress,
			PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: o.ListenerPort},
		}}},
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       wellknown.HTTPConnectionManager,
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(b.buildHCM())},
			}},
		}},
	}
}
