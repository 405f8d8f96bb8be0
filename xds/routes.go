package xds

import (
	"regexp"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"mcpgw/domain"
	"mcpgw/store"
)

// ControlPlanePrefixes are the paths served by oauthserver without
// ext_authz (DESIGN §8). Each is matched as a path-separated prefix, so
// "/login" matches "/login" and "/login/callback" but not "/loginx".
var ControlPlanePrefixes = []string{"/oauth", "/.well-known", "/api", "/login", "/logout", "/health"}

// notFoundBody is the one generic body for unknown paths: it says nothing
// about which part of a route was wrong or whether an owner exists.
const notFoundBody = "not found\n"

// Context extension keys extauthz reads (DESIGN §6).
const (
	CtxConfigID   = "config_id"
	CtxRouteKey   = "route_key"
	CtxOwnerScope = "owner_scope"
	CtxOwnerID    = "owner_id"
)

// extAuthzDisabled is the per-route override that skips ext_authz on
// control-plane and 404 routes.
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/http/ext_authz/v3/ext_authz.proto#extensions-filters-http-ext-authz-v3-extauthzperroute
var extAuthzDisabled = mustAny(&extauthzv3.ExtAuthzPerRoute{
	Override: &extauthzv3.ExtAuthzPerRoute_Disabled{Disabled: true},
})

func disabledAuthz() map[string]*anypb.Any {
	return map[string]*anypb.Any{wellknown.HTTPExternalAuthorization: extAuthzDisabled}
}

// controlPlaneRoutes route the oauthserver's paths. They come first in the
// virtual host so no config route can shadow them (config routes all live
// under /mcp-connect/ anyway).
func (b *builder) controlPlaneRoutes() []*routev3.Route {
	routes := make([]*routev3.Route, 0, len(ControlPlanePrefixes))
	for _, p := range ControlPlanePrefixes {
		routes = append(routes, &routev3.Route{
			Name:  "control" + strings.ReplaceAll(p, "/", "_"),
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: p}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: b.opts.OAuthCluster},
			}},
			TypedPerFilterConfig: disabledAuthz(),
		})
	}
	return routes
}

// notFoundRoutes end the virtual host: anything else under /mcp-connect/
// (unknown, rotated or deleted routes) and any other path get the same
// generic 404 without calling extauthz.
func notFoundRoutes() []*routev3.Route {
	mk := func(name, prefix string) *routev3.Route {
		return &routev3.Route{
			Name:  name,
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}},
			Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
				Status: 404,
				Body:   &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: notFoundBody}},
			}},
			TypedPerFilterConfig: disabledAuthz(),
		}
	}
	return []*routev3.Route{mk("unknown_connect_route", domain.RoutePrefix), mk("not_found", "/")}
}

// configRoute is the route of one enabled config (DESIGN §8): the route
// root matched exactly, or as a path-separated prefix with
// path_passthrough; rewritten to the upstream base path and host; no route
// timeout (streams may last) but an idle timeout; ext_authz told which
// route this is through context_extensions. Envoy follows no upstream
// redirects because no internal_redirect_policy is set: a 3xx goes back to
// the client as is (DESIGN §10).
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/route/v3/route_components.proto
func (b *builder) configRoute(rc store.RoutableConfig, up upstream) *routev3.Route {
	c := rc.Config
	ref := domain.RouteRef{Scope: c.OwnerScope, OwnerID: c.OwnerID, ConfigID: c.ID, Key: rc.Route.Key}
	root := ref.Path()
	action := &routev3.RouteAction{
		ClusterSpecifier:     &routev3.RouteAction_Cluster{Cluster: clusterName(c.ID)},
		HostRewriteSpecifier: &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: up.HostPort},
		Timeout:              durationpb.New(0),
		IdleTimeout:          durationpb.New(b.opts.RouteIdleTimeout),
	}
	match := &routev3.RouteMatch{}
	switch {
	case !c.PathPassthrough:
		match.PathSpecifier = &routev3.RouteMatch_Path{Path: root}
		action.PrefixRewrite = up.BasePath
	case !strings.HasSuffix(up.BasePath, "/"):
		// /root → /base, /root/x → /base/x, query kept.
		match.PathSpecifier = &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: root}
		action.PrefixRewrite = up.BasePath
	default:
		// The base ends in "/" (e.g. "/"): a plain prefix rewrite would
		// produce "//x", so swap "root" or "root/" for the base instead.
		match.PathSpecifier = &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: root}
		action.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{
			Pattern:      &matcherv3.RegexMatcher{Regex: "^" + regexp.QuoteMeta(root) + "/?"},
			Substitution: up.BasePath,
		}
	}
	return &routev3.Route{
		Name:   "config_" + c.ID,
		Match:  match,
		Action: &routev3.Route_Route{Route: action},
		TypedPerFilterConfig: map[string]*anypb.Any{
			wellknown.HTTPExternalAuthorization: mustAny(&extauthzv3.ExtAuthzPerRoute{
				Override: &extauthzv3.ExtAuthzPerRoute_CheckSettings{CheckSettings: &extauthzv3.CheckSettings{
					ContextExtensions: map[string]string{
						CtxConfigID:   c.ID,
						CtxRouteKey:   rc.Route.Key,
						CtxOwnerScope: string(c.OwnerScope),
						CtxOwnerID:    c.OwnerID,
					},
				}},
			}),
		},
	}
}

// buildRouteConfig assembles the route configuration as typed protos:
// control plane, config routes (in the given, deterministic order), then
// the 404s. Used for the static parts and in tests; the served resource is
// the pre-encoded form from encodedRouteConfig.
func (b *builder) buildRouteConfig(configRoutes []*routev3.Route) *routev3.RouteConfiguration {
	cp := b.controlPlaneRoutes()
	nf := notFoundRoutes()
	all := make([]*routev3.Route, 0, len(cp)+len(configRoutes)+len(nf))
	all = append(all, cp...)
	all = append(all, configRoutes...)
	all = append(all, nf...)
	return &routev3.RouteConfiguration{
		Name:         b.opts.RouteConfigName,
		VirtualHosts: []*routev3.VirtualHost{b.virtualHost(all)},
	}
}

func (b *builder) virtualHost(routes []*routev3.Route) *routev3.VirtualHost {
	return &routev3.VirtualHost{Name: "mcpgw", Domains: []string{"*"}, Routes: routes}
}

// Field numbers of the wire encoding assembled by encodedRouteConfig
// (envoy/config/route/v3/route.proto and route_components.proto).
const (
	fieldRouteConfigName         protowire.Number = 1 // RouteConfiguration.name
	fieldRouteConfigVirtualHosts protowire.Number = 2 // RouteConfiguration.virtual_hosts
	fieldVirtualHostRoutes       protowire.Number = 3 // VirtualHost.routes
)

// routeEncoder builds the served RouteConfiguration from pre-encoded
// routes. With 10k configs the route configuration is several MB, and
// go-control-plane marshals a resource once per stream per push; encoding
// each route once (when it changes) and splicing the bytes makes a push cost
// a memcpy instead of a full marshal per Envoy (see BENCHMARKS.md "## xds").
type routeEncoder struct {
	name     string
	vhPrefix []byte // VirtualHost name + domains + control-plane routes
	vhSuffix []byte // the 404 routes
}

func (b *builder) newRouteEncoder() *routeEncoder {
	enc := &routeEncoder{name: b.opts.RouteConfigName}
	head, err := deterministic.Marshal(b.virtualHost(b.controlPlaneRoutes()))
	if err != nil {
		panic(err)
	}
	enc.vhPrefix = head
	for _, r := range notFoundRoutes() {
		enc.vhSuffix = appendRoute(enc.vhSuffix, mustMarshal(r))
	}
	return enc
}

// appendRoute appends one encoded Route as VirtualHost.routes.
func appendRoute(b, route []byte) []byte {
	b = protowire.AppendTag(b, fieldVirtualHostRoutes, protowire.BytesType)
	return protowire.AppendBytes(b, route)
}

// encode returns the RouteConfiguration whose wire form is the virtual
// host with the given encoded config routes spliced in. The virtual host
// travels as unknown fields of the Go message: proto.Marshal emits them
// verbatim, and every receiver (Envoy, or proto.Unmarshal) sees the
// ordinary fields. Code that inspects the Go message must decode it first
// (decodeRouteConfig).
func (e *routeEncoder) encode(routes [][]byte) (*routev3.RouteConfiguration, []byte) {
	// One allocation, one copy of each route: size everything first, then
	// write the complete wire form — name (field 1), then virtual_hosts
	// (field 2) with the virtual host's bytes — into one buffer. The Go
	// message keeps the name as a field and the rest as unknown fields (a
	// subslice, not a copy); its deterministic marshal equals wire, which is
	// returned so the stream fan-out can send it without marshaling.
	vhLen := len(e.vhPrefix) + len(e.vhSuffix)
	for _, r := range routes {
		vhLen += protowire.SizeTag(fieldVirtualHostRoutes) + protowire.SizeBytes(len(r))
	}
	nameLen := protowire.SizeTag(fieldRouteConfigName) + protowire.SizeBytes(len(e.name))
	wire := make([]byte, 0, nameLen+protowire.SizeTag(fieldRouteConfigVirtualHosts)+protowire.SizeBytes(vhLen))
	wire = protowire.AppendTag(wire, fieldRouteConfigName, protowire.BytesType)
	wire = protowire.AppendString(wire, e.name)
	wire = protowire.AppendTag(wire, fieldRouteConfigVirtualHosts, protowire.BytesType)
	wire = protowire.AppendVarint(wire, uint64(vhLen))
	wire = append(wire, e.vhPrefix...)
	for _, r := range routes {
		wire = appendRoute(wire, r)
	}
	wire = append(wire, e.vhSuffix...)
	rc := &routev3.RouteConfiguration{Name: e.name}
	rc.ProtoReflect().SetUnknown(protoreflect.RawFields(wire[nameLen:]))
	return rc, wire
}

// decodeRouteConfig returns the fully decoded form of a served route
// configuration (tests, diagnostics).
func decodeRouteConfig(rc *routev3.RouteConfiguration) (*routev3.RouteConfiguration, error) {
	b, err := deterministic.Marshal(rc)
	if err != nil {
		return nil, err
	}
	out := &routev3.RouteConfiguration{}
	return out, proto.Unmarshal(b, out)
}
