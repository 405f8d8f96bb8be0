package extauthz

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"mcpgw/domain/headers"
)

// Register adds the Authorization service to a gRPC server.
func (s *Server) Register(g grpc.ServiceRegistrar) {
	authv3.RegisterAuthorizationServer(g, authorizationServer{s})
}

type authorizationServer struct{ s *Server }

func (a authorizationServer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return a.s.Check(ctx, req)
}

// Check is envoy.service.auth.v3.Authorization/Check: convert, Decide,
// convert back. An infrastructure failure is codes.Unavailable (Envoy then
// applies failure_mode_allow=false and status_on_error).
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	t0 := time.Now()
	d, err := s.Decide(ctx, requestFromEnvoy(req))
	s.m.checkLatency.Observe(time.Since(t0).Seconds())
	if err != nil {
		s.m.decision("error", d.Reason)
		// During an outage every request fails the same way: log the first
		// failure of each second and how many were suppressed, not all of
		// them (the metric counts every one).
		if n, ok := s.errLog.allow(time.Now()); ok {
			s.log.Error("extauthz: check failed", "request_id", req.GetAttributes().GetRequest().GetHttp().GetId(),
				"err", err, "suppressed_since_last", n)
		}
		if errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled) {
			return nil, status.Error(codes.Canceled, "request canceled")
		}
		return nil, status.Error(codes.Unavailable, "authorization temporarily unavailable")
	}
	if d.Allow {
		s.m.decision("allow", d.Reason)
		return okResponse(d), nil
	}
	s.m.decision("deny", d.Reason)
	s.log.Debug("extauthz: denied", "request_id", req.GetAttributes().GetRequest().GetHttp().GetId(),
		"status", d.Status, "reason", d.Reason)
	return deniedResponse(d), nil
}

// requestFromEnvoy flattens the CheckRequest. Envoy sends lower-case header
// names with repeated headers joined by ","; with encode_raw_headers it
// sends header_map instead, which is folded the same way.
func requestFromEnvoy(req *authv3.CheckRequest) Request {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	hdrs := h.GetHeaders()
	if len(hdrs) == 0 && h.GetHeaderMap() != nil {
		hdrs = make(map[string]string, len(h.GetHeaderMap().GetHeaders()))
		for _, hv := range h.GetHeaderMap().GetHeaders() {
			k := strings.ToLower(hv.GetKey())
			v := hv.GetValue()
			if v == "" && len(hv.GetRawValue()) > 0 {
				v = string(hv.GetRawValue())
			}
			if old, ok := hdrs[k]; ok {
				v = old + "," + v
			}
			hdrs[k] = v
		}
	}
	return Request{
		ID:                h.GetId(),
		Method:            h.GetMethod(),
		Scheme:            h.GetScheme(),
		Host:              h.GetHost(),
		Path:              h.GetPath(),
		Headers:           hdrs,
		ContextExtensions: attrs.GetContextExtensions(),
	}
}

// okResponse is the one builder of allow responses. Header order is the
// Decision's (sorted).
func okResponse(d Decision) *authv3.CheckResponse {
	ok := &authv3.OkHttpResponse{HeadersToRemove: d.RemoveHeaders}
	if len(d.Headers) > 0 {
		ok.Headers = headerOptions(d.Headers)
	}
	if len(d.ResponseHeaders) > 0 {
		ok.ResponseHeadersToAdd = headerOptions(d.ResponseHeaders)
	}
	return &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(code.Code_OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok},
	}
}

// deniedResponse is the one builder of denials.
func deniedResponse(d Decision) *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(code.Code_PERMISSION_DENIED)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(d.Status)},
			Headers: headerOptions(d.ResponseHeaders),
			Body:    d.Body,
		}},
	}
}

func headerOptions(hs []headers.Header) []*corev3.HeaderValueOption {
	out := make([]*corev3.HeaderValueOption, len(hs))
	for i, h := range hs {
		out[i] = &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: h.Name, Value: h.Value},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}
	}
	return out
}

// logLimiter lets one log line through per second and counts the rest.
type logLimiter struct {
	last       atomic.Int64 // unix nanoseconds of the last line let through
	suppressed atomic.Int64
}

func (l *logLimiter) allow(now time.Time) (suppressed int64, ok bool) {
	last := l.last.Load()
	if now.UnixNano()-last < int64(time.Second) || !l.last.CompareAndSwap(last, now.UnixNano()) {
		l.suppressed.Add(1)
		return 0, false
	}
	return l.suppressed.Swap(0), true
}
