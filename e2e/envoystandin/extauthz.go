package envoystandin

import (
	"context"
	"errors"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// authzOutcome is what the ext_authz filter decided.
type authzOutcome struct {
	allow bool
	// For a local reply (denied or error):
	status  int
	headers headerList
	body    string
	// For an allowed request:
	responseHeaders []*corev3.HeaderValueOption
}

// perRouteAuthz merges typed_per_filter_config for the ext_authz filter
// from the least to the most specific level (route configuration, virtual
// host, route). disabled comes from the most specific config that exists;
// context_extensions merge, more specific keys winning.
//
// Envoy docs: ExtAuthzPerRoute, and HTTP filters "Route specific
// configuration" — "the most specific configuration wins" for flags, while
// ext_authz merges CheckSettings.context_extensions across levels.
func perRouteAuthz(filter string, rt *routeTable, vh *virtualHost, r *route) (disabled bool, ext map[string]string) {
	for _, m := range []map[string]*authzPerRoute{rt.perFilter, vh.perFilter, r.perFilter} {
		c := m[filter]
		if c == nil {
			continue
		}
		disabled = c.disabled
		if len(c.contextExtensions) > 0 {
			if ext == nil {
				ext = map[string]string{}
			}
			maps.Copy(ext, c.contextExtensions)
		}
	}
	return disabled, ext
}

func socketAddress(a net.Addr) *corev3.Address {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return nil
	}
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       ap.Addr().Unmap().String(),
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(ap.Port())},
	}}}
}

// buildCheckRequest builds the CheckRequest as Envoy's ext_authz filter does.
//
// Envoy docs: service.auth.v3.AttributeContext — source/destination are the
// downstream connection's peer and local addresses; request.http.id is the
// stream id; method, path (the :path header, query included, after path
// normalization), host (:authority), scheme (:scheme), protocol
// ("HTTP/1.1", "HTTP/2"); headers — "A map of the HTTP request headers. The
// header keys must be lower-cased" — holds every entry of the header map
// including the pseudo headers, repeated names joined with ","; with
// encode_raw_headers, header_map carries each entry with raw_value instead;
// context_extensions are the merged per-route values. Bodies are never
// buffered (with_request_body is refused by the stand-in).
func buildCheckRequest(cfg *extAuthzConfig, hs headerList, proto string, src, dst net.Addr, start time.Time, ext map[string]string) *authv3.CheckRequest {
	// Envoy sanitizes string attributes to valid UTF-8 (proto strings must
	// be UTF-8) and never forwards a client's x-envoy-auth-partial-body.
	get := func(k string) string { v, _ := hs.get(k); return sanitizeUTF8(v) }
	httpReq := &authv3.AttributeContext_HttpRequest{
		Id:       strconv.FormatUint(rand.Uint64(), 10),
		Method:   get(":method"),
		Path:     get(":path"),
		Host:     get(":authority"),
		Scheme:   get(":scheme"),
		Protocol: proto,
	}
	if cfg.encodeRawHeaders {
		hm := &corev3.HeaderMap{}
		for _, e := range hs {
			if e.k == partialBodyHeader {
				continue
			}
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: e.k, RawValue: []byte(e.v)})
		}
		httpReq.HeaderMap = hm
	} else {
		m := hs.merged()
		delete(m, partialBodyHeader)
		for k, v := range m {
			m[k] = sanitizeUTF8(v)
		}
		httpReq.Headers = m
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:            &authv3.AttributeContext_Peer{Address: socketAddress(src)},
		Destination:       &authv3.AttributeContext_Peer{Address: socketAddress(dst)},
		Request:           &authv3.AttributeContext_Request{Time: timestamppb.New(start), Http: httpReq},
		ContextExtensions: ext,
	}}
}

const partialBodyHeader = "x-envoy-auth-partial-body"

func sanitizeUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "!")
}

var errAuthzCluster = errors.New("ext_authz cluster unavailable")

// callAuthz performs the Check call and turns the answer into an outcome,
// applying OK mutations to hs.
//
// Envoy docs: External Authorization filter — Check answers with status OK
// allow (ok_response mutations applied: headers first, then
// headers_to_remove, which never removes pseudo headers or host; query
// parameter changes rewrite :path; response_headers_to_add go to the
// client's response); any other status denies with 403 or the
// denied_response status, headers and body; an error_response, a gRPC
// failure or the timeout is an error answered with status_on_error (or
// allowed with failure_mode_allow).
func (s *StandIn) callAuthz(ctx context.Context, st *state, cfg *extAuthzConfig, hs *headerList, req *authv3.CheckRequest) authzOutcome {
	resp, err := s.check(ctx, st, cfg, req)
	if err != nil {
		s.log.Debug("envoystandin: ext_authz error", "err", err)
		return authzError(cfg, hs)
	}
	switch {
	case resp.GetStatus().GetCode() == int32(codes.OK):
		ok := resp.GetOkResponse()
		if cfg.validateMutations {
			for _, o := range append(append([]*corev3.HeaderValueOption(nil), ok.GetHeaders()...), ok.GetResponseHeadersToAdd()...) {
				if !validHeader(o.GetHeader().GetKey(), o.GetHeader().GetValue()) {
					return authzOutcome{status: 500}
				}
			}
		}
		for _, o := range ok.GetHeaders() {
			hs.applyOption(o)
		}
		for _, k := range ok.GetHeadersToRemove() {
			k = lower(k)
			if len(k) > 0 && k[0] == ':' || k == "host" {
				continue
			}
			hs.del(k)
		}
		if len(ok.GetQueryParametersToSet()) > 0 || len(ok.GetQueryParametersToRemove()) > 0 {
			p, _ := hs.get(":path")
			hs.set(":path", rewriteQuery(p, ok))
		}
		return authzOutcome{allow: true, responseHeaders: ok.GetResponseHeadersToAdd()}
	case resp.GetErrorResponse() != nil:
		er := resp.GetErrorResponse()
		out := authzError(cfg, hs)
		if out.allow {
			return out
		}
		if c := int(er.GetStatus().GetCode()); c > 0 {
			out.status = c
		}
		out.body = er.GetBody()
		for _, o := range er.GetHeaders() {
			out.headers.set(lower(o.GetHeader().GetKey()), o.GetHeader().GetValue())
		}
		return out
	default:
		out := authzOutcome{status: 403}
		if d := resp.GetDeniedResponse(); d != nil {
			if c := int(d.GetStatus().GetCode()); c > 0 {
				out.status = c
			}
			out.body = d.GetBody()
			// Envoy removes each named header first, then adds every
			// value, so a header may be set several times (Set-Cookie).
			for _, o := range d.GetHeaders() {
				out.headers.del(lower(o.GetHeader().GetKey()))
			}
			for _, o := range d.GetHeaders() {
				out.headers.add(lower(o.GetHeader().GetKey()), o.GetHeader().GetValue())
			}
		}
		return out
	}
}

func authzError(cfg *extAuthzConfig, hs *headerList) authzOutcome {
	if cfg.failureModeAllow {
		if cfg.failureModeAllowHeaderAdd {
			hs.add("x-envoy-auth-failure-mode-allowed", "true")
		}
		return authzOutcome{allow: true}
	}
	return authzOutcome{status: cfg.statusOnError}
}

func (s *StandIn) check(ctx context.Context, st *state, cfg *extAuthzConfig, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	rt := st.runtimes[cfg.cluster]
	if rt == nil {
		return nil, errAuthzCluster
	}
	cc, err := rt.grpcClient(cfg.authority)
	if err != nil {
		return nil, err
	}
	if cfg.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.timeout)
		defer cancel()
	}
	for _, kv := range cfg.initialMetadata {
		ctx = metadata.AppendToOutgoingContext(ctx, kv[0], kv[1])
	}
	return authv3.NewAuthorizationClient(cc).Check(ctx, req)
}
