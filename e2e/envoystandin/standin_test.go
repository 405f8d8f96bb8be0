package envoystandin

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// env is a full data-plane setup: ADS server, fake ext_authz, upstreams,
// and the stand-in, configured like mcpgw's xds configures Envoy.
type env struct {
	t       *testing.T
	ads     *adsServer
	authz   *fakeAuthz
	si      *StandIn
	client  *http.Client
	echoA   *httptest.Server
	echoB   *httptest.Server
	victim  *httptest.Server
	victimN atomic.Int32
	sni     *sniLog
	sseGate chan struct{}
	ca      *testCA
	otherCA *testCA
	tlsUp   *httptest.Server
	redir   *httptest.Server
	sse     *httptest.Server
	slow    *httptest.Server
	duplex  *httptest.Server
}

func newEnv(t *testing.T) *env {
	e := &env{t: t, client: noRedirectClient(), sseGate: make(chan struct{})}
	e.ads = newADSServer(t, "127.0.0.1:0")
	e.authz = newFakeAuthz(t)
	e.echoA = httptest.NewServer(echoHandler("a"))
	t.Cleanup(e.echoA.Close)
	e.echoB = httptest.NewServer(echoHandler("b"))
	t.Cleanup(e.echoB.Close)
	e.victim = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.victimN.Add(1)
		w.WriteHeader(200)
	}))
	t.Cleanup(e.victim.Close)
	e.redir = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, e.victim.URL+"/stolen", http.StatusFound)
	}))
	t.Cleanup(e.redir.Close)
	e.sse = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		// The last event is produced only after the client saw the first.
		select {
		case <-e.sseGate:
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, "data: last\n\n")
	}))
	t.Cleanup(e.sse.Close)
	e.slow = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	t.Cleanup(e.slow.Close)
	e.duplex = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Answers each request body line as soon as it arrives.
		http.NewResponseController(w).EnableFullDuplex()
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		br := bufio.NewReader(r.Body)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			fmt.Fprint(w, "echo: "+line)
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(e.duplex.Close)
	e.ca, e.otherCA = newTestCA(t), newTestCA(t)
	e.tlsUp, e.sni = tlsUpstream(t, e.ca, "tls", "upstream.test")
	e.si = startStandIn(t, Options{ADSAddr: e.ads.addr})
	return e
}

func (e *env) route(name string, m *routev3.RouteMatch, action any, perFilter map[string]*anypb.Any) *routev3.Route {
	r := &routev3.Route{Name: name, Match: m, TypedPerFilterConfig: perFilter}
	switch a := action.(type) {
	case *routev3.Route_Route:
		r.Action = a
	case *routev3.Route_DirectResponse:
		r.Action = a
	}
	return r
}

func pathMatch(p string) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: p}}
}

func prefixMatch(p string) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: p}}
}

func sepPrefixMatch(p string) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: p}}
}

// resources is the baseline configuration (version v1 unless changed).
func (e *env) resources(mut func(*routev3.RouteConfiguration)) map[resourcev3.Type][]types.Resource {
	t := e.t
	mcp := forward("upstream")
	mcp.Route.PrefixRewrite = "/base/mcp"
	mcp.Route.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: "remote.example"}
	exact := forward("upstream")
	exact.Route.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{
		Pattern: &matcherv3.RegexMatcher{Regex: "^/(ex)act$"}, Substitution: "/re/\\1"}
	tlsGood := forward("tls-good")
	tlsGood.Route.PrefixRewrite = "/"
	idle := forward("slow")
	idle.Route.IdleTimeout = durationpb.New(150 * time.Millisecond)
	timeout := forward("slow")
	timeout.Route.Timeout = durationpb.New(150 * time.Millisecond)
	timeout.Route.IdleTimeout = nil
	caseless := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/caseless"}, CaseSensitive: wrapperspb.Bool(false)}

	rc := &routev3.RouteConfiguration{
		Name: "mcpgw-routes",
		VirtualHosts: []*routev3.VirtualHost{{
			Name:                 "all",
			Domains:              []string{"*"},
			TypedPerFilterConfig: authzPerRouteExt(t, map[string]string{"vh": "1", "k": "vhost"}),
			Routes: []*routev3.Route{
				e.route("health", pathMatch("/health"), &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
					Status: 200, Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: `{"status":"ok"}`}}}},
					authzPerRouteDisabled(t)),
				e.route("mcp", sepPrefixMatch("/mcp-connect/user/u1/c1/key1"), mcp,
					authzPerRouteExt(t, map[string]string{"config_id": "c1", "k": "route"})),
				e.route("exact", pathMatch("/exact"), exact, nil),
				e.route("tls-good", prefixMatch("/tls-good"), tlsGood, nil),
				e.route("tls-badsan", prefixMatch("/tls-badsan"), forward("tls-badsan"), nil),
				e.route("tls-wrongca", prefixMatch("/tls-wrongca"), forward("tls-wrongca"), nil),
				e.route("redirect", prefixMatch("/redirect"), forward("redirector"), nil),
				e.route("sse", prefixMatch("/sse"), forward("sse"), nil),
				e.route("idle", prefixMatch("/idle"), idle, nil),
				e.route("timeout", prefixMatch("/timeout"), timeout, nil),
				e.route("empty", prefixMatch("/empty"), forward("empty"), nil),
				e.route("nocluster", prefixMatch("/nocluster"), forward("does-not-exist"), nil),
				e.route("caseless", caseless, forward("upstream"), nil),
				e.route("duplex", prefixMatch("/duplex"), forward("duplex"), nil),
			},
		}},
	}
	if mut != nil {
		mut(rc)
	}
	return map[resourcev3.Type][]types.Resource{
		resourcev3.ClusterType: {
			edsCluster(t, "upstream", nil),
			edsCluster(t, "tls-good", upstreamTLS("upstream.test", e.ca.pem, exactSAN("upstream.test"))),
			edsCluster(t, "tls-badsan", upstreamTLS("upstream.test", e.ca.pem, exactSAN("other.test"))),
			edsCluster(t, "tls-wrongca", upstreamTLS("upstream.test", e.otherCA.pem, exactSAN("upstream.test"))),
			edsCluster(t, "redirector", nil),
			edsCluster(t, "sse", nil),
			edsCluster(t, "slow", nil),
			edsCluster(t, "empty", nil),
			edsCluster(t, "duplex", nil),
			staticH2Cluster(t, "extauthz", e.authz.addr),
		},
		resourcev3.EndpointType: {
			cla(t, "upstream", e.echoA.Listener.Addr().String()),
			cla(t, "tls-good", e.tlsUp.Listener.Addr().String()),
			cla(t, "tls-badsan", e.tlsUp.Listener.Addr().String()),
			cla(t, "tls-wrongca", e.tlsUp.Listener.Addr().String()),
			cla(t, "redirector", e.redir.Listener.Addr().String()),
			cla(t, "sse", e.sse.Listener.Addr().String()),
			cla(t, "slow", e.slow.Listener.Addr().String()),
			cla(t, "empty"),
			cla(t, "duplex", e.duplex.Listener.Addr().String()),
		},
		resourcev3.ListenerType: {hcmListener(t, "mcpgw-routes",
			extAuthzFilter(t, "extauthz", time.Second, typev3.StatusCode_ServiceUnavailable),
			routerFilter(t, true))},
		resourcev3.RouteType: {rc},
	}
}

func (e *env) do(method, path string, hdr map[string]string) (*http.Response, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.si.URL()+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range hdr {
		if strings.EqualFold(k, "host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (e *env) ready(version string) {
	e.t.Helper()
	if err := e.si.WaitFor(waitCtx(e.t), func(s Status) bool {
		return s.Serving() && s.Versions[resourcev3.RouteType] == version && s.Versions[resourcev3.EndpointType] == version
	}); err != nil {
		e.t.Fatal(err)
	}
}

func decodeEcho(t *testing.T, body string) echo {
	t.Helper()
	var ec echo
	if err := json.Unmarshal([]byte(body), &ec); err != nil {
		t.Fatalf("upstream body %q: %v", body, err)
	}
	return ec
}

func TestStandIn(t *testing.T) {
	e := newEnv(t)
	e.ads.set("v1", e.resources(nil))
	e.ready("v1")

	t.Run("ADS order, node identity and ACKs", func(t *testing.T) {
		e.ads.waitRequest(t, func(r *discoveryv3.DiscoveryRequest) bool {
			return r.GetTypeUrl() == resourcev3.RouteType && r.GetVersionInfo() == "v1"
		})
		reqs := e.ads.requests()
		var order []string
		for _, r := range reqs {
			if r.GetNode().GetId() != testNode || r.GetNode().GetCluster() != "standin-cluster" {
				t.Errorf("request without node identity: %v", r.GetNode())
			}
			if r.GetErrorDetail() != nil {
				t.Errorf("unexpected NACK: %v", r.GetErrorDetail())
			}
			short := r.GetTypeUrl()[strings.LastIndex(r.GetTypeUrl(), ".")+1:]
			if len(order) == 0 || order[len(order)-1] != short {
				order = append(order, short)
			}
		}
		// First subscriptions in Envoy's order.
		want := []string{"Cluster", "ClusterLoadAssignment", "Listener", "RouteConfiguration"}
		var first []string
		for _, o := range order {
			if !slices.Contains(first, o) {
				first = append(first, o)
			}
		}
		if !slices.Equal(first, want) {
			t.Errorf("subscription order = %v, want %v", first, want)
		}
		// Every response was ACKed with its version and nonce.
		acked := 0
		for _, r := range reqs {
			if r.GetVersionInfo() == "v1" && r.GetResponseNonce() != "" {
				acked++
			}
		}
		if acked < 4 {
			t.Errorf("ACKs with version v1 and a nonce = %d, want ≥ 4 (requests: %v)", acked, reqs)
		}
	})

	t.Run("direct response, ext_authz disabled per route", func(t *testing.T) {
		before := len(e.authz.requests())
		resp, body := e.do("GET", "/health", nil)
		if resp.StatusCode != 200 || body != `{"status":"ok"}` {
			t.Fatalf("GET /health = %d %q", resp.StatusCode, body)
		}
		if got := resp.Header.Get("Server"); got != "envoy" {
			t.Errorf("server header = %q, want envoy", got)
		}
		if n := len(e.authz.requests()); n != before {
			t.Errorf("ext_authz called %d times for a disabled route", n-before)
		}
	})

	t.Run("allow: CheckRequest, header mutations, rewrites", func(t *testing.T) {
		e.authz.setDecide(func(_ context.Context, r *authv3.CheckRequest) (*authv3.CheckResponse, error) {
			return &authv3.CheckResponse{Status: okStatus(), HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				Headers: []*corev3.HeaderValueOption{
					{Header: &corev3.HeaderValue{Key: "authorization", Value: "Bearer upstream-secret"}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD},
					{Header: &corev3.HeaderValue{Key: "x-added", Value: "one"}},
					{Header: &corev3.HeaderValue{Key: "x-added", Value: "two"}},
					{Header: &corev3.HeaderValue{Key: "accept", Value: "ignored"}, AppendAction: corev3.HeaderValueOption_ADD_IF_ABSENT},
					{Header: &corev3.HeaderValue{Key: "x-missing", Value: "ignored"}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS},
					{Header: &corev3.HeaderValue{Key: "x-legacy", Value: "b"}, Append: wrapperspb.Bool(true)},
				},
				HeadersToRemove:      []string{"cookie", "x-api-key", ":path", "host"},
				ResponseHeadersToAdd: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-resp", Value: "r"}}},
			}}}, nil
		})
		defer e.authz.setDecide(nil)
		before := len(e.authz.requests())
		resp, body := e.do("POST", "/mcp-connect/user/u1/c1/key1/tools?x=1&y=2", map[string]string{
			"Authorization": "Bearer client-token", "Cookie": "sid=1", "X-Api-Key": "k",
			"Accept": "application/json", "X-Legacy": "a", "Mcp-Session-Id": "s1",
			"User-Agent": "client/1", "Keep-Alive": "timeout=5",
		})
		if resp.StatusCode != 200 {
			t.Fatalf("status = %d body %q", resp.StatusCode, body)
		}
		ec := decodeEcho(t, body)
		if ec.URI != "/base/mcp/tools?x=1&y=2" {
			t.Errorf("upstream URI = %q", ec.URI)
		}
		if ec.Host != "remote.example" {
			t.Errorf("upstream host = %q", ec.Host)
		}
		h := http.Header(ec.Header)
		checks := map[string][]string{
			"Authorization":  {"Bearer upstream-secret"},
			"X-Added":        {"one", "two"},
			"Accept":         {"application/json"},
			"X-Legacy":       {"a,b"},
			"Mcp-Session-Id": {"s1"},
		}
		for k, want := range checks {
			if got := h.Values(k); !slices.Equal(got, want) {
				t.Errorf("upstream %s = %q, want %q", k, got, want)
			}
		}
		if ua := h.Values("User-Agent"); len(ua) != 1 || ua[0] != "client/1" {
			t.Errorf("upstream user-agent = %q, want the client's only", ua)
		}
		for _, k := range []string{"Cookie", "X-Api-Key", "X-Missing", "X-Envoy-Expected-Rq-Timeout-Ms", "X-Envoy-Original-Path", "Connection", "Keep-Alive"} {
			if v := h.Values(k); len(v) > 0 {
				t.Errorf("upstream received %s = %q", k, v)
			}
		}
		if h.Get("X-Request-Id") == "" || h.Get("X-Forwarded-Proto") != "http" {
			t.Errorf("x-request-id %q / x-forwarded-proto %q", h.Get("X-Request-Id"), h.Get("X-Forwarded-Proto"))
		}
		if resp.Header.Get("X-Resp") != "r" {
			t.Errorf("response_headers_to_add not applied: %v", resp.Header)
		}
		if resp.Header.Get("X-Envoy-Upstream-Service-Time") != "" {
			t.Errorf("x-envoy header present with suppress_envoy_headers")
		}
		if resp.Header.Get("Server") != "envoy" || resp.Header.Get("X-Upstream") != "a" {
			t.Errorf("server %q x-upstream %q", resp.Header.Get("Server"), resp.Header.Get("X-Upstream"))
		}

		reqs := e.authz.requests()
		if len(reqs) != before+1 {
			t.Fatalf("ext_authz calls = %d, want 1", len(reqs)-before)
		}
		a := reqs[len(reqs)-1].GetAttributes()
		hr := a.GetRequest().GetHttp()
		if hr.GetPath() != "/mcp-connect/user/u1/c1/key1/tools?x=1&y=2" || hr.GetMethod() != "POST" ||
			hr.GetHost() != e.si.Addr() || hr.GetScheme() != "http" || hr.GetProtocol() != "HTTP/1.1" || hr.GetId() == "" {
			t.Errorf("http request attributes = %v", hr)
		}
		for k, want := range map[string]string{
			":path": "/mcp-connect/user/u1/c1/key1/tools?x=1&y=2", ":method": "POST", ":authority": e.si.Addr(),
			":scheme": "http", "authorization": "Bearer client-token", "cookie": "sid=1", "mcp-session-id": "s1",
			"x-request-id": h.Get("X-Request-Id"), "x-forwarded-proto": "http",
		} {
			if got := hr.GetHeaders()[k]; got != want {
				t.Errorf("CheckRequest header %q = %q, want %q", k, got, want)
			}
		}
		for k := range hr.GetHeaders() {
			if k != strings.ToLower(k) {
				t.Errorf("CheckRequest header %q not lower-case", k)
			}
		}
		wantExt := map[string]string{"vh": "1", "k": "route", "config_id": "c1"}
		if got := a.GetContextExtensions(); len(got) != len(wantExt) || got["k"] != "route" || got["vh"] != "1" || got["config_id"] != "c1" {
			t.Errorf("context_extensions = %v, want %v", got, wantExt)
		}
		if a.GetSource().GetAddress().GetSocketAddress().GetAddress() != "127.0.0.1" ||
			a.GetDestination().GetAddress().GetSocketAddress().GetPortValue() == 0 {
			t.Errorf("source/destination = %v / %v", a.GetSource(), a.GetDestination())
		}
	})

	t.Run("deny: status, headers, body", func(t *testing.T) {
		e.authz.setDecide(func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
			return &authv3.CheckResponse{
				Status: &statuspb.Status{Code: int32(codes.Unauthenticated)},
				HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
					Status:  &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
					Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "WWW-Authenticate", Value: `Bearer resource_metadata="x"`}}},
					Body:    "nope",
				}}}, nil
		})
		defer e.authz.setDecide(nil)
		resp, body := e.do("GET", "/mcp-connect/user/u1/c1/key1", nil)
		if resp.StatusCode != 401 || body != "nope" || resp.Header.Get("Www-Authenticate") != `Bearer resource_metadata="x"` {
			t.Fatalf("deny = %d %q %v", resp.StatusCode, body, resp.Header)
		}
		// Denied without a denied_response: plain 403.
		e.authz.setDecide(func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
			return &authv3.CheckResponse{Status: &statuspb.Status{Code: int32(codes.PermissionDenied)}}, nil
		})
		if resp, _ := e.do("GET", "/mcp-connect/user/u1/c1/key1", nil); resp.StatusCode != 403 {
			t.Fatalf("bare deny = %d, want 403", resp.StatusCode)
		}
	})

	t.Run("ext_authz error and timeout give status_on_error", func(t *testing.T) {
		e.authz.setDecide(func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
			return nil, status.Error(codes.Unavailable, "db down")
		})
		defer e.authz.setDecide(nil)
		if resp, body := e.do("GET", "/mcp-connect/user/u1/c1/key1", nil); resp.StatusCode != 503 {
			t.Fatalf("error = %d %q, want 503", resp.StatusCode, body)
		}
	})

	t.Run("ext_authz error_response", func(t *testing.T) {
		e.authz.setDecide(func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
			return &authv3.CheckResponse{
				Status: &statuspb.Status{Code: int32(codes.Unavailable)},
				HttpResponse: &authv3.CheckResponse_ErrorResponse{ErrorResponse: &authv3.DeniedHttpResponse{
					Status: &typev3.HttpStatus{Code: typev3.StatusCode_BadGateway}, Body: "db"}},
			}, nil
		})
		defer e.authz.setDecide(nil)
		if resp, body := e.do("GET", "/mcp-connect/user/u1/c1/key1", nil); resp.StatusCode != 502 || body != "db" {
			t.Fatalf("error_response = %d %q, want 502 db", resp.StatusCode, body)
		}
	})

	t.Run("ext_authz timeout gives status_on_error", func(t *testing.T) {
		e.authz.setDecide(func(ctx context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
			<-ctx.Done() // never answers within the 1s filter timeout
			return nil, ctx.Err()
		})
		defer e.authz.setDecide(nil)
		if resp, body := e.do("GET", "/mcp-connect/user/u1/c1/key1", nil); resp.StatusCode != 503 {
			t.Fatalf("timeout = %d %q, want 503", resp.StatusCode, body)
		}
	})

	t.Run("request and response bodies stream concurrently", func(t *testing.T) {
		pr, pw := io.Pipe()
		req, _ := http.NewRequest("POST", e.si.URL()+"/duplex", pr)
		req.ContentLength = -1
		type result struct {
			resp *http.Response
			err  error
		}
		done := make(chan result, 1)
		go func() {
			resp, err := e.client.Do(req)
			done <- result{resp, err}
		}()
		if _, err := io.WriteString(pw, "one\n"); err != nil {
			t.Fatal(err)
		}
		res := <-done
		if res.err != nil {
			t.Fatal(res.err)
		}
		defer res.resp.Body.Close()
		br := bufio.NewReader(res.resp.Body)
		// The first answer arrives while the request body is still open.
		if line, err := br.ReadString('\n'); err != nil || line != "echo: one\n" {
			t.Fatalf("first = %q, %v", line, err)
		}
		io.WriteString(pw, "two\n")
		if line, err := br.ReadString('\n'); err != nil || line != "echo: two\n" {
			t.Fatalf("second = %q, %v", line, err)
		}
		pw.Close()
	})

	t.Run("HTTP/2 prior knowledge downstream", func(t *testing.T) {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		c := &http.Client{Transport: &http.Transport{Protocols: &p}}
		before := len(e.authz.requests())
		resp, err := c.Get(e.si.URL() + "/mcp-connect/user/u1/c1/key1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
			t.Fatalf("h2c = %d %s", resp.StatusCode, resp.Proto)
		}
		reqs := e.authz.requests()
		if len(reqs) != before+1 || reqs[len(reqs)-1].GetAttributes().GetRequest().GetHttp().GetProtocol() != "HTTP/2" {
			t.Fatalf("CheckRequest protocol = %q", reqs[len(reqs)-1].GetAttributes().GetRequest().GetHttp().GetProtocol())
		}
	})

	t.Run("no route: 404 without ext_authz", func(t *testing.T) {
		before := len(e.authz.requests())
		resp, _ := e.do("GET", "/mcp-connect/user/u1/c1/otherkey", nil)
		if resp.StatusCode != 404 {
			t.Fatalf("status = %d, want 404", resp.StatusCode)
		}
		if len(e.authz.requests()) != before {
			t.Error("ext_authz was called for an unrouted request")
		}
	})

	t.Run("path handling", func(t *testing.T) {
		cases := []struct {
			target string
			status int
			uri    string // upstream URI when forwarded
		}{
			{"/mcp-connect/user/u1/c1/key1", 200, "/base/mcp"},
			{"/mcp-connect/user/u1/c1/key1/a/b", 200, "/base/mcp/a/b"},
			{"/mcp-connect/user/u1/c1/key1x", 404, ""},                         // path_separated_prefix needs a separator
			{"/mcp-connect/user/u1/c1/x/../key1/t", 200, "/base/mcp/t"},        // dot segments removed first
			{"/mcp-connect/user/u1/c1/key1/%2e%2e/x", 404, ""},                 // %2e%2e is a dot segment: leaves the route
			{"//mcp-connect//user/u1/c1/key1///t", 200, "/base/mcp/t"},         // merge_slashes
			{"/mcp-connect/user/u1/c1/key1/..%2f..%2fadmin", 400, ""},          // escaped slash rejected
			{"/mcp-connect/user/u1/c1/key1/a%5cb", 400, ""},                    // escaped backslash rejected
			{"/mcp-connect/user/u1/c1/key1/%41%7e%3f", 200, "/base/mcp/A~%3f"}, // unreserved decoded, reserved kept upper-case
			{"/exact", 200, "/re/ex"},                                          // regex_rewrite
			{"/exact?q=1", 200, "/re/ex?q=1"},                                  // query kept, not matched
			{"/exact/", 404, ""},
			{"/CASELESS/x", 200, "/CASELESS/x"},
			{"/a#frag", 400, ""},
		}
		for _, c := range cases {
			resp, body := rawGet(t, e.si.Addr(), c.target)
			if resp.StatusCode != c.status {
				t.Errorf("GET %s = %d, want %d (%q)", c.target, resp.StatusCode, c.status, body)
				continue
			}
			if c.uri != "" {
				ec := decodeEcho(t, body)
				if ec.URI != c.uri {
					t.Errorf("GET %s reached upstream as %q, want %q", c.target, ec.URI, c.uri)
				}
				if ua, ok := ec.Header["User-Agent"]; ok {
					t.Errorf("upstream got user-agent %q the client never sent", ua)
				}
			}
		}
	})

	t.Run("upstream TLS: SNI and SAN validation", func(t *testing.T) {
		resp, body := e.do("GET", "/tls-good/x", nil)
		if resp.StatusCode != 200 || decodeEcho(t, body).URI != "//x" && decodeEcho(t, body).URI != "/x" {
			t.Fatalf("tls-good = %d %q", resp.StatusCode, body)
		}
		if names := e.sni.get(); len(names) == 0 || names[len(names)-1] != "upstream.test" {
			t.Errorf("SNI seen by upstream = %v", names)
		}
		for _, p := range []string{"/tls-badsan", "/tls-wrongca"} {
			if resp, body := e.do("GET", p, nil); resp.StatusCode != 503 {
				t.Errorf("%s = %d %q, want 503", p, resp.StatusCode, body)
			}
		}
	})

	t.Run("upstream redirect is returned, not followed", func(t *testing.T) {
		resp, _ := e.do("GET", "/redirect", map[string]string{"Authorization": "Bearer x"})
		if resp.StatusCode != 302 || !strings.HasPrefix(resp.Header.Get("Location"), e.victim.URL) {
			t.Fatalf("redirect = %d %v", resp.StatusCode, resp.Header)
		}
		if n := e.victimN.Load(); n != 0 {
			t.Fatalf("redirect target received %d requests", n)
		}
	})

	t.Run("SSE streams without buffering", func(t *testing.T) {
		resp, err := e.client.Get(e.si.URL() + "/sse")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		line, err := br.ReadString('\n')
		if err != nil || line != "data: first\n" {
			t.Fatalf("first event = %q, %v", line, err)
		}
		// Only now does the upstream produce the last event.
		close(e.sseGate)
		rest, _ := io.ReadAll(br)
		if !strings.Contains(string(rest), "data: last") {
			t.Fatalf("rest = %q", rest)
		}
	})

	t.Run("idle timeout 408, route timeout 504", func(t *testing.T) {
		if resp, body := e.do("GET", "/idle", nil); resp.StatusCode != 408 {
			t.Errorf("/idle = %d %q, want 408", resp.StatusCode, body)
		}
		if resp, body := e.do("GET", "/timeout", nil); resp.StatusCode != 504 {
			t.Errorf("/timeout = %d %q, want 504", resp.StatusCode, body)
		}
	})

	t.Run("no endpoints 503, unknown cluster 503", func(t *testing.T) {
		for _, p := range []string{"/empty", "/nocluster"} {
			if resp, body := e.do("GET", p, nil); resp.StatusCode != 503 {
				t.Errorf("%s = %d %q, want 503", p, resp.StatusCode, body)
			}
		}
	})

	t.Run("EDS update moves traffic", func(t *testing.T) {
		res := e.resources(nil)
		res[resourcev3.EndpointType][0] = cla(t, "upstream", e.echoB.Listener.Addr().String())
		e.ads.set("v2", res)
		e.ready("v2")
		resp, _ := e.do("GET", "/mcp-connect/user/u1/c1/key1", nil)
		if resp.Header.Get("X-Upstream") != "b" {
			t.Fatalf("after EDS update upstream = %q, want b", resp.Header.Get("X-Upstream"))
		}
	})

	t.Run("LDS update: envoy headers and server name", func(t *testing.T) {
		res := e.resources(nil)
		res[resourcev3.EndpointType][0] = cla(t, "upstream", e.echoB.Listener.Addr().String())
		l := withHCM(t, func(h *hcmv3.HttpConnectionManager) {
			h.ServerName = "mcpgw"
			h.HttpFilters = []*hcmv3.HttpFilter{
				extAuthzFilter(t, "extauthz", time.Second, typev3.StatusCode_ServiceUnavailable),
				routerFilter(t, false)}
			h.RouteSpecifier = &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: adsSource(), RouteConfigName: "mcpgw-routes"}}
		})
		res[resourcev3.ListenerType] = []types.Resource{l}
		e.ads.set("v2b", res)
		if err := e.si.WaitFor(waitCtx(t), func(s Status) bool { return s.Versions[resourcev3.ListenerType] == "v2b" && s.Serving() }); err != nil {
			t.Fatal(err)
		}
		resp, body := e.do("GET", "/mcp-connect/user/u1/c1/key1?a=b", nil)
		if resp.Header.Get("Server") != "mcpgw" || resp.Header.Get("X-Envoy-Upstream-Service-Time") == "" {
			t.Fatalf("headers = %v", resp.Header)
		}
		if got := http.Header(decodeEcho(t, body).Header).Get("X-Envoy-Original-Path"); got != "/mcp-connect/user/u1/c1/key1?a=b" {
			t.Fatalf("x-envoy-original-path = %q", got)
		}
		if resp, _ := e.do("GET", "/timeout", nil); resp.StatusCode != 504 {
			t.Fatalf("/timeout = %d", resp.StatusCode)
		}
	})

	t.Run("NACK keeps the last good config", func(t *testing.T) {
		bad := e.resources(func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[1].Match = &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{
				SafeRegex: &matcherv3.RegexMatcher{Regex: "^/mcp-connect/.*"}}}
		})
		res := e.resources(nil)
		res[resourcev3.EndpointType][0] = cla(t, "upstream", e.echoB.Listener.Addr().String())
		res[resourcev3.RouteType] = bad[resourcev3.RouteType]
		e.ads.set("v3", res)
		if err := e.si.WaitFor(waitCtx(t), func(s Status) bool { return len(s.NACKs) > 0 }); err != nil {
			t.Fatal(err)
		}
		st := e.si.Status()
		n := st.NACKs[len(st.NACKs)-1]
		if n.TypeURL != resourcev3.RouteType || n.Version != "v3" || !strings.Contains(n.Error, "safe_regex") {
			t.Errorf("NACK = %+v", n)
		}
		if st.Versions[resourcev3.RouteType] != "v2b" {
			t.Errorf("route version after NACK = %q, want v2b", st.Versions[resourcev3.RouteType])
		}
		// The server saw a NACK: last accepted version, the nonce, and error_detail.
		nack := e.ads.waitRequest(t, func(r *discoveryv3.DiscoveryRequest) bool {
			return r.GetErrorDetail() != nil && r.GetTypeUrl() == resourcev3.RouteType
		})
		if nack == nil || nack.GetVersionInfo() != "v2b" || nack.GetResponseNonce() == "" || nack.GetErrorDetail().GetCode() != int32(codes.InvalidArgument) {
			t.Fatalf("NACK request = %v", nack)
		}
		if resp, _ := e.do("GET", "/mcp-connect/user/u1/c1/key1", nil); resp.StatusCode != 200 {
			t.Fatalf("last good route not served after NACK: %d", resp.StatusCode)
		}
		// A fixed config is accepted again.
		e.ads.set("v4", e.resources(nil))
		e.ready("v4")
	})

	t.Run("reconnect keeps serving and resyncs", func(t *testing.T) {
		addr := e.ads.addr
		streams := e.si.Status().Streams
		e.ads.stop()
		if err := e.si.WaitFor(waitCtx(t), func(s Status) bool { return !s.Connected }); err != nil {
			t.Fatal(err)
		}
		if resp, _ := e.do("GET", "/health", nil); resp.StatusCode != 200 {
			t.Fatalf("not serving while xDS is down: %d", resp.StatusCode)
		}
		// A new xDS server on the same address with a newer config: the
		// stand-in reconnects and takes the new routes.
		e.ads = newADSServer(t, addr)
		e.ads.set("v5", e.resources(func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[1].Match = sepPrefixMatch("/mcp-connect/user/u1/c1/key2")
		}))
		e.ready("v5")
		if s := e.si.Status(); s.Streams <= streams {
			t.Errorf("streams = %d, want > %d", s.Streams, streams)
		}
		if resp, _ := e.do("GET", "/mcp-connect/user/u1/c1/key1", nil); resp.StatusCode != 404 {
			t.Errorf("rotated route = %d, want 404", resp.StatusCode)
		}
		if resp, _ := e.do("GET", "/mcp-connect/user/u1/c1/key2", nil); resp.StatusCode != 200 {
			t.Errorf("new route = %d, want 200", resp.StatusCode)
		}
	})

	t.Run("ext_authz down: fail closed", func(t *testing.T) {
		e.authz.gs.Stop()
		for _, p := range []string{"/mcp-connect/user/u1/c1/key2", "/sse"} {
			if resp, body := e.do("GET", p, nil); resp.StatusCode != 503 {
				t.Errorf("%s with ext_authz down = %d %q, want 503", p, resp.StatusCode, body)
			}
		}
		// Routes with ext_authz disabled keep working.
		if resp, _ := e.do("GET", "/health", nil); resp.StatusCode != 200 {
			t.Errorf("/health = %d", resp.StatusCode)
		}
	})
}

// TestNoListener: before any listener is configured (or while its routes
// are warming) connections are closed without an HTTP answer, as on a port
// with no Envoy listener.
func TestNoListener(t *testing.T) {
	ads := newADSServer(t, "127.0.0.1:0")
	si := startStandIn(t, Options{ADSAddr: ads.addr})
	if err := si.WaitFor(waitCtx(t), func(s Status) bool { return s.Connected }); err != nil {
		t.Fatal(err)
	}
	resp, err := noRedirectClient().Get(si.URL() + "/health")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got HTTP %d without a listener", resp.StatusCode)
	}
	// A listener whose RDS has not arrived is still warming.
	ads.set("v1", map[resourcev3.Type][]types.Resource{
		resourcev3.ClusterType:  {},
		resourcev3.ListenerType: {hcmListener(t, "missing", routerFilter(t, true))},
	})
	if err := si.WaitFor(waitCtx(t), func(s Status) bool { return s.Versions[resourcev3.ListenerType] == "v1" }); err != nil {
		t.Fatal(err)
	}
	if si.Status().Serving() {
		t.Fatal("serving without route configuration")
	}
	if resp, err := noRedirectClient().Get(si.URL() + "/health"); err == nil {
		resp.Body.Close()
		t.Fatalf("got HTTP %d while warming", resp.StatusCode)
	}
}

// TestListenerSelection: several LDS listeners need Options.ListenerName.
func TestListenerSelection(t *testing.T) {
	two := func(t *testing.T) map[resourcev3.Type][]types.Resource {
		a := hcmListener(t, "routes", routerFilter(t, true))
		b := hcmListener(t, "routes", routerFilter(t, false))
		b.Name = "other"
		return map[resourcev3.Type][]types.Resource{
			resourcev3.ClusterType:  {},
			resourcev3.ListenerType: {a, b},
			resourcev3.RouteType: {&routev3.RouteConfiguration{Name: "routes", VirtualHosts: []*routev3.VirtualHost{{
				Name: "all", Domains: []string{"*"},
				Routes: []*routev3.Route{e2eDirect("/ok")},
			}}}},
		}
	}
	t.Run("ambiguous", func(t *testing.T) {
		ads := newADSServer(t, "127.0.0.1:0")
		si := startStandIn(t, Options{ADSAddr: ads.addr})
		ads.set("v1", two(t))
		if err := si.WaitFor(waitCtx(t), func(s Status) bool { return len(s.NACKs) > 0 }); err != nil {
			t.Fatal(err)
		}
		if n := si.Status().NACKs[0]; n.TypeURL != resourcev3.ListenerType || !strings.Contains(n.Error, "ListenerName") {
			t.Fatalf("NACK = %+v", n)
		}
	})
	t.Run("named", func(t *testing.T) {
		ads := newADSServer(t, "127.0.0.1:0")
		si := startStandIn(t, Options{ADSAddr: ads.addr, ListenerName: "other"})
		ads.set("v1", two(t))
		if err := si.Ready(waitCtx(t)); err != nil {
			t.Fatal(err)
		}
		resp, err := noRedirectClient().Get(si.URL() + "/ok")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status = %d", resp.StatusCode)
		}
	})
}

func e2eDirect(path string) *routev3.Route {
	return &routev3.Route{Name: "direct", Match: pathMatch(path), Action: &routev3.Route_DirectResponse{
		DirectResponse: &routev3.DirectResponseAction{Status: 200}}}
}
