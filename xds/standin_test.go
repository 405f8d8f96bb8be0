package xds

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"

	"mcpgw/domain"
	"mcpgw/domain/addrpolicy"
	"mcpgw/e2e/envoystandin"
	"mcpgw/store"
)

// allowAuthz is an ext_authz server that allows everything and records the
// context extensions Envoy passed.
type allowAuthz struct {
	mu   sync.Mutex
	seen []map[string]string
}

func (a *allowAuthz) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	a.mu.Lock()
	a.seen = append(a.seen, req.GetAttributes().GetContextExtensions())
	a.mu.Unlock()
	return &authv3.CheckResponse{Status: &status.Status{Code: 0},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}}, nil
}

func (a *allowAuthz) last() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.seen) == 0 {
		return nil
	}
	return a.seen[len(a.seen)-1]
}

// TestThroughStandIn feeds our real ADS to the e2e Envoy stand-in (which
// NACKs anything it does not implement exactly as Envoy) and sends HTTP
// through it: a config route reaches the upstream with the path and host
// rewritten and ext_authz seeing the route's context extensions; control
// plane paths reach oauthserver; unknown connect routes get the generic
// 404; after a rotation the old path is 404 and the new one routes.
func TestThroughStandIn(t *testing.T) {
	var upMu sync.Mutex
	var upPath, upHost string
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upMu.Lock()
		upPath, upHost = r.URL.RequestURI(), r.Host
		upMu.Unlock()
		io.WriteString(w, "upstream ok")
	}))
	defer upstream.Close()
	oauth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "oauth "+r.URL.Path)
	}))
	defer oauth.Close()

	authz := &allowAuthz{}
	ag := grpc.NewServer()
	authv3.RegisterAuthorizationServer(ag, authz)
	alis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go ag.Serve(alis)
	defer ag.Stop()

	upHostPort := strings.TrimPrefix(upstream.URL, "http://")
	a := routable(cfgExact, store.ScopeUser, userA, upstream.URL+"/v1/mcp", keyA, false)
	b := routable(cfgPass, store.ScopeOrg, orgB, upstream.URL+"/base", keyB, true)
	env := startEnv(t, func(e *testEnv, o *Options) {
		o.OAuthServerAddr = strings.TrimPrefix(oauth.URL, "http://")
		o.Allowlist = addrpolicy.Allowlist{Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	}, a, b)
	env.waitReady(t)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	si, err := envoystandin.Start(ctx, envoystandin.Options{
		ADSAddr: env.addr, NodeID: "standin-1", Cluster: "e2e",
		BootstrapClusters: map[string]string{DefaultExtAuthzCluster: alis.Addr().String()},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer si.Close()
	if err := si.WaitForRoutes(ctx, routePath(a), routePath(b)+"/x"); err != nil {
		t.Fatal(err)
	}
	if n := si.Status().NACKs; len(n) != 0 {
		t.Fatalf("stand-in NACKed our config: %+v", n)
	}

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(si.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	upstreamSaw := func() (string, string) {
		upMu.Lock()
		defer upMu.Unlock()
		return upPath, upHost
	}

	if code, body := get(routePath(a) + "?q=1"); code != 200 || body != "upstream ok" {
		t.Fatalf("config route: %d %q", code, body)
	}
	if p, h := upstreamSaw(); p != "/v1/mcp?q=1" || h != upHostPort {
		t.Errorf("upstream saw path %q host %q, want /v1/mcp?q=1 and %s", p, h, upHostPort)
	}
	if ce := authz.last(); ce[CtxRouteKey] != keyA || ce[CtxConfigID] != cfgExact || ce[CtxOwnerScope] != "user" || ce[CtxOwnerID] != userA {
		t.Errorf("ext_authz context extensions %v", ce)
	}
	if code, _ := get(routePath(b) + "/tools/list"); code != 200 {
		t.Fatalf("passthrough route: %d", code)
	}
	if p, _ := upstreamSaw(); p != "/base/tools/list" {
		t.Errorf("passthrough upstream path %q, want /base/tools/list", p)
	}
	if code, _ := get(routePath(a) + "/extra"); code != 404 {
		t.Errorf("descendant of an exact route: %d, want 404", code)
	}
	if code, body := get("/health"); code != 200 || body != "oauth /health" {
		t.Errorf("/health: %d %q", code, body)
	}
	if code, body := get("/mcp-connect/user/" + userA + "/" + cfgExact + "/" + keyB); code != 404 || body != notFoundBody {
		t.Errorf("unknown connect route: %d %q", code, body)
	}

	// Rotate a's key: the old path stops routing, the new one routes.
	old := routePath(a)
	newKey := domain.NewRouteKey()
	env.store.rotate(a.Config.ID, newKey)
	a.Route.Key = newKey
	if err := si.WaitForRoutes(ctx, routePath(a)); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(old); code != 404 {
		t.Errorf("old route after rotation: %d, want 404", code)
	}
	if code, _ := get(routePath(a)); code != 200 {
		t.Errorf("new route after rotation: %d", code)
	}
	if n := si.Status().NACKs; len(n) != 0 {
		t.Fatalf("stand-in NACKed our config: %+v", n)
	}
}
