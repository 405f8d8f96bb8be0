package envoystandin

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
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
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const testNode = "standin-test"

func mustAny(t testing.TB, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// adsServer is a go-control-plane ADS server over a snapshot cache.
type adsServer struct {
	t     testing.TB
	cache cache.SnapshotCache
	addr  string
	gs    *grpc.Server

	mu      sync.Mutex
	reqs    []*discoverygrpc.DiscoveryRequest
	changed chan struct{}
}

// waitRequest waits until the server has received a request matching pred.
func (a *adsServer) waitRequest(t testing.TB, pred func(*discoverygrpc.DiscoveryRequest) bool) *discoverygrpc.DiscoveryRequest {
	t.Helper()
	ctx := waitCtx(t)
	for {
		a.mu.Lock()
		ch := a.changed
		for _, r := range a.reqs {
			if pred(r) {
				a.mu.Unlock()
				return r
			}
		}
		a.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("xDS server never received the expected request")
			return nil
		}
	}
}

func newADSServer(t testing.TB, addr string) *adsServer {
	t.Helper()
	a := &adsServer{t: t, cache: cache.NewSnapshotCache(true, cache.IDHash{}, nil), changed: make(chan struct{})}
	a.start(addr)
	return a
}

func (a *adsServer) start(addr string) {
	a.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cb := server.CallbackFuncs{StreamRequestFunc: func(_ int64, r *discoverygrpc.DiscoveryRequest) error {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.reqs = append(a.reqs, proto.Clone(r).(*discoverygrpc.DiscoveryRequest))
		close(a.changed)
		a.changed = make(chan struct{})
		return nil
	}}
	srv := server.NewServer(ctx, a.cache, cb)
	gs := grpc.NewServer()
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(gs, srv)
	var ln net.Listener
	var err error
	// Rebinding the same port after a stop can briefly fail; retry until a
	// deadline rather than sleeping a fixed time.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ln, err = net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		cancel()
		a.t.Fatalf("ads listen: %v", err)
	}
	a.addr = ln.Addr().String()
	a.gs = gs
	go gs.Serve(ln)
	a.t.Cleanup(func() { gs.Stop(); cancel() })
	_ = ctx
}

func (a *adsServer) stop() { a.gs.Stop() }

func (a *adsServer) requests() []*discoverygrpc.DiscoveryRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*discoverygrpc.DiscoveryRequest(nil), a.reqs...)
}

// set publishes a snapshot. Consistency is not required: tests also push
// deliberately broken resources.
func (a *adsServer) set(version string, res map[resourcev3.Type][]types.Resource) {
	a.t.Helper()
	snap, err := cache.NewSnapshot(version, res)
	if err != nil {
		a.t.Fatal(err)
	}
	if err := a.cache.SetSnapshot(context.Background(), testNode, snap); err != nil {
		a.t.Fatal(err)
	}
}

// fakeAuthz is an ext_authz gRPC server whose decision is a function.
type fakeAuthz struct {
	authv3.UnimplementedAuthorizationServer
	mu     sync.Mutex
	decide func(ctx context.Context, r *authv3.CheckRequest) (*authv3.CheckResponse, error)
	reqs   []*authv3.CheckRequest
	addr   string
	gs     *grpc.Server
}

func (f *fakeAuthz) Check(ctx context.Context, r *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, r)
	d := f.decide
	f.mu.Unlock()
	if d == nil {
		return allowResponse(), nil
	}
	return d(ctx, r)
}

func (f *fakeAuthz) setDecide(d func(ctx context.Context, r *authv3.CheckRequest) (*authv3.CheckResponse, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.decide = d
}

func (f *fakeAuthz) requests() []*authv3.CheckRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*authv3.CheckRequest(nil), f.reqs...)
}

func newFakeAuthz(t testing.TB) *fakeAuthz {
	t.Helper()
	f := &fakeAuthz{}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, f)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	f.gs = gs
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	return f
}

func allowResponse(opts ...*corev3.HeaderValueOption) *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status:       okStatus(),
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{Headers: opts}},
	}
}

// echo is what the echo upstream reports about the request it received.
type echo struct {
	Method string              `json:"method"`
	URI    string              `json:"uri"`
	Host   string              `json:"host"`
	Header map[string][]string `json:"header"`
}

func echoHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Upstream", name)
		w.Header().Set("Server", "upstream-"+name)
		json.NewEncoder(w).Encode(echo{Method: r.Method, URI: r.RequestURI, Host: r.Host, Header: r.Header})
	})
}

func hostPort(t testing.TB, addr string) (string, uint32) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return h, uint32(n)
}

func sockAddr(t testing.TB, addr string) *corev3.Address {
	h, p := hostPort(t, addr)
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: h, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: p}}}}
}

func cla(t testing.TB, name string, addrs ...string) *endpointv3.ClusterLoadAssignment {
	var lbs []*endpointv3.LbEndpoint
	for _, a := range addrs {
		lbs = append(lbs, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
			Endpoint: &endpointv3.Endpoint{Address: sockAddr(t, a)}}})
	}
	return &endpointv3.ClusterLoadAssignment{ClusterName: name,
		Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}}}
}

func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{ResourceApiVersion: corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}
}

func edsCluster(t testing.TB, name string, utc *tlsv3.UpstreamTlsContext) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource()},
		ConnectTimeout:       durationpb.New(2 * time.Second),
	}
	if utc != nil {
		c.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls",
			ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(t, utc)}}
	}
	return c
}

// staticH2Cluster is the ext_authz cluster as xds serves it: STATIC, HTTP/2.
func staticH2Cluster(t testing.TB, name, addr string) *clusterv3.Cluster {
	po := &upstreamhttpv3.HttpProtocolOptions{UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
		ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
				Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}}}}
	return &clusterv3.Cluster{
		Name:                          name,
		ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:                durationpb.New(time.Second),
		LoadAssignment:                cla(t, name, addr),
		TypedExtensionProtocolOptions: map[string]*anypb.Any{httpProtocolOptionsKey: mustAny(t, po)},
	}
}

func extAuthzFilter(t testing.TB, cluster string, timeout time.Duration, statusOnError typev3.StatusCode) *hcmv3.HttpFilter {
	a := &extauthzv3.ExtAuthz{
		TransportApiVersion: corev3.ApiVersion_V3,
		Services: &extauthzv3.ExtAuthz_GrpcService{GrpcService: &corev3.GrpcService{
			TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: cluster}},
			Timeout:         durationpb.New(timeout),
		}},
		FailureModeAllow: false,
		StatusOnError:    &typev3.HttpStatus{Code: statusOnError},
	}
	return &hcmv3.HttpFilter{Name: "envoy.filters.http.ext_authz",
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, a)}}
}

func routerFilter(t testing.TB, suppress bool) *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: "envoy.filters.http.router",
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{SuppressEnvoyHeaders: suppress})}}
}

// hcmListener is the listener shape mcpgw's xds builds (DESIGN §8).
func hcmListener(t testing.TB, rds string, filters ...*hcmv3.HttpFilter) *listenerv3.Listener {
	h := &hcmv3.HttpConnectionManager{
		StatPrefix: "ingress",
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource: adsSource(), RouteConfigName: rds}},
		HttpFilters:                  filters,
		NormalizePath:                wrapperspb.Bool(true),
		MergeSlashes:                 true,
		PathWithEscapedSlashesAction: hcmv3.HttpConnectionManager_REJECT_REQUEST,
		StreamIdleTimeout:            durationpb.New(5 * time.Minute),
	}
	return &listenerv3.Listener{
		Name:    "mcpgw",
		Address: sockAddr(t, "0.0.0.0:10000"),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, h)}}}}},
	}
}

func authzPerRouteDisabled(t testing.TB) map[string]*anypb.Any {
	return map[string]*anypb.Any{"envoy.filters.http.ext_authz": mustAny(t, &extauthzv3.ExtAuthzPerRoute{
		Override: &extauthzv3.ExtAuthzPerRoute_Disabled{Disabled: true}})}
}

func authzPerRouteExt(t testing.TB, kv map[string]string) map[string]*anypb.Any {
	return map[string]*anypb.Any{"envoy.filters.http.ext_authz": mustAny(t, &extauthzv3.ExtAuthzPerRoute{
		Override: &extauthzv3.ExtAuthzPerRoute_CheckSettings{CheckSettings: &extauthzv3.CheckSettings{ContextExtensions: kv}}})}
}

func forward(cluster string) *routev3.Route_Route {
	return &routev3.Route_Route{Route: &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
		Timeout:          durationpb.New(0),
		IdleTimeout:      durationpb.New(time.Minute),
	}}
}

func exactSAN(name string) *tlsv3.SubjectAltNameMatcher {
	return &tlsv3.SubjectAltNameMatcher{SanType: tlsv3.SubjectAltNameMatcher_DNS,
		Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: name}}}
}

func upstreamTLS(sni string, caPEM []byte, sans ...*tlsv3.SubjectAltNameMatcher) *tlsv3.UpstreamTlsContext {
	return &tlsv3.UpstreamTlsContext{
		Sni: sni,
		CommonTlsContext: &tlsv3.CommonTlsContext{ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{
			ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa:                 &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: caPEM}},
				MatchTypedSubjectAltNames: sans,
			}}},
	}
}

// testCA is a throwaway certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "standin test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca *testCA) leaf(t testing.TB, dnsNames ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: dnsNames[0]},
		DNSNames:     dnsNames,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// tlsUpstream starts an HTTPS echo server with a certificate from ca and
// records the SNI of each handshake.
func tlsUpstream(t testing.TB, ca *testCA, name string, dnsNames ...string) (*httptest.Server, *sniLog) {
	t.Helper()
	sl := &sniLog{}
	srv := httptest.NewUnstartedServer(echoHandler(name))
	cert := ca.leaf(t, dnsNames...)
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{cert},
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			sl.add(h.ServerName)
			return nil, nil
		},
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, sl
}

type sniLog struct {
	mu    sync.Mutex
	names []string
}

func (s *sniLog) add(n string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.names = append(s.names, n)
}

func (s *sniLog) get() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.names...)
}

func startStandIn(t testing.TB, opts Options) *StandIn {
	t.Helper()
	if opts.NodeID == "" {
		opts.NodeID = testNode
	}
	if opts.Cluster == "" {
		opts.Cluster = "standin-cluster"
	}
	si, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { si.Close() })
	return si
}

func waitCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// noRedirectClient never follows redirects and never reuses a proxy.
func noRedirectClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{Proxy: nil, DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
		Timeout: 15 * time.Second,
	}
}

func okStatus() *statuspb.Status { return &statuspb.Status{Code: 0} }

// rawGet sends a request line exactly as given (no client-side cleaning)
// and returns the response.
func rawGet(t testing.TB, addr, target string, extra ...string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := "GET " + target + " HTTP/1.1\r\nHost: " + addr + "\r\nConnection: close\r\n"
	for _, h := range extra {
		req += h + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func newEchoServer(t testing.TB, name string) string {
	srv := httptest.NewServer(echoHandler(name))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func newRequest(t testing.TB, url string, hdr map[string]string) (*http.Request, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return req, nil
}

func readAll(t testing.TB, resp *http.Response) string {
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
