package envoystandin

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/uuid"
)

func lower(s string) string { return strings.ToLower(s) }

var (
	errIdleTimeout  = errors.New("stream idle timeout")
	errRouteTimeout = errors.New("upstream request timeout")
	errReqTimeout   = errors.New("request timeout")
)

// serveHTTP is the HTTP connection manager followed by the configured
// filters (ext_authz, router).
func (s *StandIn) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	st := s.cur.Load()
	h, rt := st.activeRoutes()
	if h == nil {
		// The listener went away or is warming: no HTTP answer exists.
		panic(http.ErrAbortHandler)
	}
	if h.http1Only && r.ProtoMajor != 1 {
		panic(http.ErrAbortHandler)
	}
	local := func(status int, body string, extra headerList) {
		s.localReply(w, h, status, body, extra)
	}

	// :path. Absolute-form targets are reduced to origin form.
	target := r.RequestURI
	if i := strings.Index(target, "://"); i > 0 && !strings.HasPrefix(target, "/") {
		rest := target[i+3:]
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			target = rest[j:]
		} else {
			target = "/"
		}
	}
	if !strings.HasPrefix(target, "/") {
		local(400, "", nil)
		return
	}
	// Envoy rejects request targets carrying a fragment (runtime
	// envoy.reloadable_features.http_reject_path_with_fragment, on by
	// default) with 400.
	if strings.ContainsRune(target, '#') {
		local(400, "", nil)
		return
	}
	path, query := splitPathQuery(target)
	if h.rejectEscapedSlashes && hasEscapedSlash(path) {
		local(400, "", nil)
		return
	}
	if h.normalizePath {
		p, err := canonicalPath(path)
		if err != nil {
			local(400, "", nil)
			return
		}
		path = p
	}
	if h.mergeSlashes {
		path = mergeSlashes(path)
	}

	// Request headers as Envoy's header map.
	hs := make(headerList, 0, len(r.Header)+8)
	hs.add(":authority", r.Host)
	hs.add(":path", path+query)
	hs.add(":method", r.Method)
	hs.add(":scheme", "http")
	keys := make([]string, 0, len(r.Header))
	for k := range r.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		lk := lower(k)
		if lk == "host" {
			continue
		}
		for _, v := range r.Header[k] {
			hs.add(lk, v)
		}
	}
	s.mutateRequestHeaders(h, &hs, r)

	// Route selection (the route is resolved before the filters run).
	vh, rte := rt.match(r.Host, path)
	if rte == nil {
		// Envoy docs: HTTP routing — no matching virtual host or route
		// answers 404 (response flag NR). ext_authz is skipped when there
		// is no route.
		local(404, "", nil)
		return
	}

	// ext_authz filter.
	var respMut authzOutcome
	if h.extAuthz != nil {
		disabled, ext := perRouteAuthz(h.extAuthz.filterName, rt, vh, rte)
		if !disabled {
			var src, dst net.Addr
			if c, ok := r.Context().Value(connKey{}).(net.Conn); ok {
				src, dst = c.RemoteAddr(), c.LocalAddr()
			}
			protoName := "HTTP/1.1"
			if r.ProtoMajor == 2 {
				protoName = "HTTP/2"
			} else if r.ProtoMinor == 0 {
				protoName = "HTTP/1.0"
			}
			req := buildCheckRequest(h.extAuthz, hs, protoName, src, dst, start, ext)
			out := s.callAuthz(r.Context(), st, h.extAuthz, &hs, req)
			if !out.allow {
				local(out.status, out.body, out.headers)
				return
			}
			respMut = out
		}
	}

	// Router filter.
	if rte.direct != nil {
		// Envoy docs: DirectResponseAction — "Return an arbitrary HTTP
		// response directly, without proxying."
		s.finishLocal(w, h, rte.direct.status, string(rte.direct.body), nil, respMut)
		return
	}
	s.forward(w, r, st, h, rte, hs, respMut, start)
}

// mutateRequestHeaders applies the HTTP connection manager's request header
// handling.
//
// Envoy docs: HTTP header manipulation (configuration/http/http_conn_man/headers):
//   - x-forwarded-proto: set from the downstream connection's scheme when
//     absent; overwritten when use_remote_address is true (edge).
//   - with use_remote_address the peer address is appended to
//     x-forwarded-for and decides internal versus external origin:
//     internal peers (only those in internal_address_config — none by
//     default since Envoy 1.33) get x-envoy-internal: true; external ones
//     get x-envoy-external-address and lose the x-envoy-* request headers
//     Envoy reserves for trusted callers.
//   - x-request-id: generated when absent (generate_request_id, default
//     true), and regenerated for external requests unless
//     preserve_external_request_id.
func (s *StandIn) mutateRequestHeaders(h *hcmConfig, hs *headerList, r *http.Request) {
	// Envoy removes connection-specific headers before any filter sees the
	// request (no upgrades are configured).
	for _, k := range []string{"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"} {
		hs.del(k)
	}
	internal := false
	var peer string
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		a := ap.Addr().Unmap()
		peer = a.String()
		for _, p := range h.internalCIDRs {
			if p.Contains(a) {
				internal = true
			}
		}
	}
	hs.del("x-envoy-internal")
	if h.useRemoteAddress {
		hs.set("x-forwarded-proto", "http")
		if xff, ok := hs.get("x-forwarded-for"); ok && xff != "" {
			hs.set("x-forwarded-for", xff+","+peer)
		} else {
			hs.set("x-forwarded-for", peer)
		}
		if internal {
			hs.set("x-envoy-internal", "true")
		} else {
			for _, k := range edgeSanitized {
				hs.del(k)
			}
			hs.set("x-envoy-external-address", peer)
		}
	} else if !hs.has("x-forwarded-proto") {
		hs.add("x-forwarded-proto", "http")
	}
	if h.generateRequestID {
		_, has := hs.get("x-request-id")
		external := h.useRemoteAddress && !internal
		if !has || (external && !h.preserveExternalID) {
			hs.set("x-request-id", uuid.NewString())
		}
	}
}

// edgeSanitized are the request headers Envoy removes from external
// requests (Envoy docs: HTTP header manipulation, and the router's
// x-envoy-* request headers, which are honoured only from internal callers).
var edgeSanitized = []string{
	"x-envoy-decorator-operation", "x-envoy-downstream-service-cluster",
	"x-envoy-downstream-service-node", "x-envoy-external-address",
	"x-envoy-retry-on", "x-envoy-retry-grpc-on", "x-envoy-max-retries",
	"x-envoy-upstream-alt-stat-name", "x-envoy-upstream-rq-timeout-ms",
	"x-envoy-upstream-rq-per-try-timeout-ms", "x-envoy-upstream-rq-timeout-alt-response",
	"x-envoy-expected-rq-timeout-ms", "x-envoy-ip-tags", "x-envoy-hedge-on-per-try-timeout",
	"x-envoy-force-trace", "x-envoy-original-path",
}

// localReply sends a response generated by the stand-in itself (Envoy's
// sendLocalReply): text/plain body when there is one, and the server
// header.
func (s *StandIn) localReply(w http.ResponseWriter, h *hcmConfig, status int, body string, extra headerList) {
	s.finishLocal(w, h, status, body, extra, authzOutcome{})
}

func (s *StandIn) finishLocal(w http.ResponseWriter, h *hcmConfig, status int, body string, extra headerList, mut authzOutcome) {
	rh := headerList{}
	if body != "" {
		rh.set("content-type", "text/plain")
	}
	for _, e := range extra {
		if e.k == "content-type" {
			rh.del("content-type")
		}
	}
	rh = append(rh, extra...)
	for _, o := range mut.responseHeaders {
		rh.applyOption(o)
	}
	s.serverHeader(h, &rh)
	out := w.Header()
	out["Content-Type"] = nil // never sniff
	for _, e := range rh {
		out[http.CanonicalHeaderKey(e.k)] = append(out[http.CanonicalHeaderKey(e.k)], e.v)
	}
	out.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// serverHeader applies server_header_transformation.
//
// Envoy docs: HttpConnectionManager.server_header_transformation —
// OVERWRITE (default): "Overwrite any Server header with the contents of
// server_name"; APPEND_IF_ABSENT: "If no Server header is present, append
// Server server_name"; PASS_THROUGH: "Pass through the value of the server
// header, and do not append a header if none is present."
func (s *StandIn) serverHeader(h *hcmConfig, rh *headerList) {
	switch h.serverHeader {
	case serverOverwrite:
		rh.set("server", h.serverName)
	case serverAppendIfAbsent:
		if !rh.has("server") {
			rh.add("server", h.serverName)
		}
	}
}

// forward is the router filter: cluster selection, rewrites, upstream
// request, streamed response.
func (s *StandIn) forward(w http.ResponseWriter, r *http.Request, st *state, h *hcmConfig, rte *route, hs headerList, mut authzOutcome, start time.Time) {
	a := rte.action
	crt := st.runtimes[a.cluster]
	if crt == nil {
		// Envoy docs: RouteAction.cluster_not_found_response_code —
		// default SERVICE_UNAVAILABLE (503).
		s.localReply(w, h, 503, "", nil)
		return
	}
	p, _ := hs.get(":path")
	path, query := splitPathQuery(p)
	path = rte.rewritePath(path)
	authority, _ := hs.get(":authority")
	if a.hostRewrite != "" {
		// Envoy docs: RouteAction.host_rewrite_literal — "Indicates that
		// during forwarding, the host header will be swapped with this
		// value."
		authority = a.hostRewrite
	}
	method, _ := hs.get(":method")

	out := http.Header{}
	for _, e := range hs {
		if strings.HasPrefix(e.k, ":") || hopByHop[e.k] && !(e.k == "te" && lower(e.v) == "trailers") {
			continue
		}
		out[http.CanonicalHeaderKey(e.k)] = append(out[http.CanonicalHeaderKey(e.k)], e.v)
	}
	// Envoy docs: HTTP header manipulation, x-envoy-original-path — with a
	// path rewrite the router sends the original :path upstream, unless
	// suppress_envoy_headers (it would carry mcpgw's route key upstream).
	if !h.suppressEnvoyHeaders && p != path+query {
		out.Set("X-Envoy-Original-Path", p)
	}
	// Go's transport would add its own User-Agent; Envoy adds none.
	if _, ok := out["User-Agent"]; !ok {
		out["User-Agent"] = []string{""}
	}
	// Envoy docs: Router filter, x-envoy-expected-rq-timeout-ms — set on
	// the upstream request when a route timeout applies, unless
	// suppress_envoy_headers.
	if !h.suppressEnvoyHeaders && a.timeout > 0 {
		out.Set("X-Envoy-Expected-Rq-Timeout-Ms", strconv.FormatInt(a.timeout.Milliseconds(), 10))
	}

	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	idle := h.streamIdleTimeout
	if a.idleTimeout != nil {
		// Envoy docs: RouteAction.idle_timeout — "Specifies the idle timeout
		// for the route. If not specified, there is no per-route idle timeout,
		// although the connection manager wide stream_idle_timeout will still
		// apply."
		idle = *a.idleTimeout
	}
	var timer *idleTimer
	if idle > 0 {
		timer = newIdleTimer(idle, func() { cancel(errIdleTimeout) })
		defer timer.stop()
	}
	// Envoy docs: RouteAction.timeout — "This spans between the point at
	// which the entire downstream request (i.e. end-of-stream) has been
	// processed and when the upstream response has been completely
	// processed"; 0 disables it.
	var routeTimer *time.Timer
	startRouteTimer := func() {}
	if a.timeout > 0 {
		var once sync.Once
		startRouteTimer = func() {
			once.Do(func() { routeTimer = time.AfterFunc(a.timeout, func() { cancel(errRouteTimeout) }) })
		}
		defer func() {
			once.Do(func() {}) // no timer after return
			if routeTimer != nil {
				routeTimer.Stop()
			}
		}()
	}

	var reqTimer *time.Timer
	if h.requestTimeout > 0 {
		// Envoy docs: request_timeout — disarmed once the response is
		// initiated; firing before that answers 408.
		reqTimer = time.AfterFunc(h.requestTimeout-time.Since(start), func() { cancel(errReqTimeout) })
		defer reqTimer.Stop()
	}

	scheme := "http"
	if crt.cfg.tls != nil {
		scheme = "https"
	}
	// The path goes upstream byte for byte as normalized and rewritten.
	u := &url.URL{Scheme: scheme, Host: "upstream", RawQuery: strings.TrimPrefix(query, "?"), ForceQuery: query == "?"}
	if dec, err := url.PathUnescape(path); err == nil && !strings.HasPrefix(path, "//") {
		u.Path, u.RawPath = dec, path
	} else if err == nil {
		// A leading "//" would read as an authority in Opaque; Path/RawPath
		// keep it a path.
		u.Path, u.RawPath = dec, path
	} else {
		u.Opaque = path
	}
	var body io.ReadCloser = http.NoBody
	if r.Body != nil && r.Body != http.NoBody && (r.ContentLength != 0 || len(r.TransferEncoding) > 0) {
		body = &activityReader{rc: r.Body, t: timer, eof: startRouteTimer}
	} else {
		startRouteTimer()
	}
	up := (&http.Request{
		Method:        method,
		URL:           u,
		Host:          authority,
		Header:        out,
		Body:          body,
		ContentLength: r.ContentLength,
		Proto:         "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
	}).WithContext(ctx)
	if r.ContentLength < 0 || (body != http.NoBody && r.ContentLength == 0) {
		up.ContentLength = -1
	}

	// Request and response bodies stream independently, as in Envoy: an
	// HTTP/1.1 handler may keep reading the request body after the
	// response started.
	if r.ProtoMajor == 1 {
		_ = http.NewResponseController(w).EnableFullDuplex()
	}

	// The transport never follows redirects: a 3xx is returned to the
	// client as is (Envoy docs: RouteAction.internal_redirect_policy —
	// redirects are only handled internally when configured).
	resp, err := crt.transport.RoundTrip(up)
	if err != nil {
		switch cause := context.Cause(ctx); {
		case errors.Is(cause, errIdleTimeout):
			// Envoy docs: stream_idle_timeout — "a 408 Request Timeout
			// error code if no upstream response header has been received".
			s.localReply(w, h, 408, "stream timeout", nil)
		case errors.Is(cause, errReqTimeout):
			s.localReply(w, h, 408, "request timeout", nil)
		case errors.Is(cause, errRouteTimeout):
			s.localReply(w, h, 504, "upstream request timeout", nil)
		case errors.Is(err, errNoHealthyUpstream):
			s.localReply(w, h, 503, "no healthy upstream", nil)
		case r.Context().Err() != nil:
			// Downstream went away; nothing to answer.
		default:
			s.log.Debug("envoystandin: upstream error", "cluster", a.cluster, "err", err)
			s.localReply(w, h, 503, "upstream connect error or disconnect/reset before headers. reset reason: connection failure", nil)
		}
		return
	}
	defer resp.Body.Close()
	if reqTimer != nil {
		reqTimer.Stop()
	}
	if timer != nil {
		timer.touch()
	}

	rh := headerList{}
	rkeys := make([]string, 0, len(resp.Header))
	for k := range resp.Header {
		rkeys = append(rkeys, k)
	}
	sort.Strings(rkeys)
	for _, k := range rkeys {
		lk := lower(k)
		if hopByHop[lk] {
			continue
		}
		for _, v := range resp.Header[k] {
			rh.add(lk, v)
		}
	}
	if !h.suppressEnvoyHeaders {
		// Envoy docs: Router filter, x-envoy-upstream-service-time.
		rh.set("x-envoy-upstream-service-time", strconv.FormatInt(time.Since(start).Milliseconds(), 10))
	}
	for _, o := range mut.responseHeaders {
		rh.applyOption(o)
	}
	s.serverHeader(h, &rh)
	wh := w.Header()
	wh["Content-Type"] = nil // never sniff; real value set below when present
	for _, e := range rh {
		ck := http.CanonicalHeaderKey(e.k)
		if ck == "Content-Type" && wh[ck] == nil {
			wh[ck] = []string{e.v}
			continue
		}
		wh[ck] = append(wh[ck], e.v)
	}
	w.WriteHeader(resp.StatusCode)

	// Stream the body, flushing after every write so server-sent events
	// reach the client as they are produced (Envoy never buffers a
	// streamed response body).
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	buf := make([]byte, 32*1024)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if timer != nil {
				timer.touch()
			}
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
		if rerr == io.EOF {
			return
		}
		if rerr != nil {
			// Upstream reset or a timeout after headers: Envoy resets the
			// downstream stream.
			panic(http.ErrAbortHandler)
		}
	}
}

// idleTimer fires when no body bytes moved in either direction for d.
type idleTimer struct {
	mu sync.Mutex
	t  *time.Timer
	d  time.Duration
}

func newIdleTimer(d time.Duration, f func()) *idleTimer {
	return &idleTimer{t: time.AfterFunc(d, f), d: d}
}

func (t *idleTimer) touch() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.t.Reset(t.d)
}

func (t *idleTimer) stop() { t.t.Stop() }

// activityReader resets the idle timer on request body reads
// and reports the end of the request body (where the route timeout starts).
type activityReader struct {
	rc  io.ReadCloser
	t   *idleTimer
	eof func()
}

func (a *activityReader) Read(p []byte) (int, error) {
	n, err := a.rc.Read(p)
	if n > 0 && a.t != nil {
		a.t.touch()
	}
	if err == io.EOF {
		a.eof()
	}
	return n, err
}

func (a *activityReader) Close() error { return a.rc.Close() }

// rewriteQuery applies OkHttpResponse query_parameters_to_set and
// query_parameters_to_remove to a :path value.
func rewriteQuery(p string, ok *authv3.OkHttpResponse) string {
	path, q := splitPathQuery(p)
	vals, _ := url.ParseQuery(strings.TrimPrefix(q, "?"))
	if vals == nil {
		vals = url.Values{}
	}
	for _, kv := range ok.GetQueryParametersToSet() {
		vals.Set(kv.GetKey(), kv.GetValue())
	}
	for _, k := range ok.GetQueryParametersToRemove() {
		vals.Del(k)
	}
	if len(vals) == 0 {
		return path
	}
	return path + "?" + vals.Encode()
}
