package envoystandin

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// TestOperatorListenerBootstrap runs the stand-in from a bootstrap with a
// static listener: only RDS, CDS and EDS come over ADS, and the bootstrap's
// static ext_authz cluster is used.
func TestOperatorListenerBootstrap(t *testing.T) {
	ads := newADSServer(t, "127.0.0.1:0")
	authz := newFakeAuthz(t)
	up := newEchoServer(t, "op")
	data, err := os.ReadFile("testdata/bootstrap-operator.yaml")
	if err != nil {
		t.Fatal(err)
	}
	opts, err := OptionsFromBootstrap(data, map[string]string{"xds": ads.addr, "authz": authz.addr})
	if err != nil {
		t.Fatal(err)
	}
	if opts.NodeID != testNode || opts.ADSAddr != ads.addr || opts.BootstrapClusters["authz"] != authz.addr || opts.Listener == nil {
		t.Fatalf("options = %+v", opts)
	}
	si := startStandIn(t, opts)

	ads.set("v1", map[resourcev3.Type][]types.Resource{
		resourcev3.ClusterType:  {edsCluster(t, "up", nil)},
		resourcev3.EndpointType: {cla(t, "up", up)},
		resourcev3.RouteType: {&routev3.RouteConfiguration{Name: "routes", VirtualHosts: []*routev3.VirtualHost{{
			Name: "all", Domains: []string{"*"},
			Routes: []*routev3.Route{{Name: "r", Match: sepPrefixMatch("/mcp"), Action: forward("up")}},
		}}}},
	})
	if err := si.WaitForRoutes(waitCtx(t), "/mcp"); err != nil {
		t.Fatal(err)
	}
	for _, r := range ads.requests() {
		if r.GetTypeUrl() == resourcev3.ListenerType {
			t.Fatal("LDS subscribed although the listener is static")
		}
	}
	client := noRedirectClient()
	req, _ := newRequest(t, si.URL()+"/mcp/x", map[string]string{"X-Envoy-Retry-On": "5xx", "X-Request-Id": "client-chosen"})
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != 200 || resp.Header.Get("Server") != "operator" {
		t.Fatalf("status %d server %q body %q", resp.StatusCode, resp.Header.Get("Server"), body)
	}
	ec := decodeEcho(t, body)
	h := ec.Header
	// use_remote_address: the loopback peer is external (no internal
	// address config), so Envoy sets x-envoy-external-address, strips
	// reserved x-envoy-* request headers and regenerates x-request-id.
	if got := h["X-Envoy-External-Address"]; len(got) != 1 || got[0] != "127.0.0.1" {
		t.Errorf("x-envoy-external-address = %v", got)
	}
	if got := h["X-Forwarded-For"]; len(got) != 1 || got[0] != "127.0.0.1" {
		t.Errorf("x-forwarded-for = %v", got)
	}
	if _, ok := h["X-Envoy-Retry-On"]; ok {
		t.Error("x-envoy-retry-on from an external client was forwarded")
	}
	if got := h["X-Request-Id"]; len(got) != 1 || got[0] == "client-chosen" {
		t.Errorf("x-request-id = %v, want regenerated", got)
	}
	if n := len(authz.requests()); n != 1 {
		t.Fatalf("ext_authz calls = %d", n)
	}
	// The check is on the static bootstrap cluster; CDS may not replace it.
	authz.setDecide(func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return allowResponse(), nil
	})
	ads.set("v2", map[resourcev3.Type][]types.Resource{
		resourcev3.ClusterType:  {edsCluster(t, "up", nil), staticH2Cluster(t, "authz", "127.0.0.1:1")},
		resourcev3.EndpointType: {cla(t, "up", up)},
	})
	if err := si.WaitFor(waitCtx(t), func(s Status) bool { return len(s.NACKs) > 0 }); err != nil {
		t.Fatal(err)
	}
	if n := si.Status().NACKs[0]; n.TypeURL != resourcev3.ClusterType || !strings.Contains(n.Error, "static bootstrap cluster") {
		t.Fatalf("NACK = %+v", n)
	}
}

func TestOptionsFromBootstrapRejects(t *testing.T) {
	base, err := os.ReadFile("testdata/bootstrap-operator.yaml")
	if err != nil {
		t.Fatal(err)
	}
	addrs := map[string]string{"xds": "127.0.0.1:1", "authz": "127.0.0.1:2"}
	cases := []struct {
		name, from, to, want string
	}{
		{"unresolvable bootstrap host", "", "", "resolve \"authz.invalid\""},
		{"rest api", "api_type: GRPC", "api_type: REST", "ads_config must be GRPC"},
		{"no http2", "explicit_http_config: { http2_protocol_options: {} }", "explicit_http_config: { http_protocol_options: {} }", "HTTP/2"},
		{"unsupported filter field", "status_on_error: { code: ServiceUnavailable }", "status_on_error: { code: ServiceUnavailable }\n                      with_request_body: { max_request_bytes: 10 }", "with_request_body"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := strings.Replace(string(base), c.from, c.to, 1)
			a := addrs
			if c.name == "unresolvable bootstrap host" {
				a = map[string]string{"xds": "127.0.0.1:1"}
			}
			opts, err := OptionsFromBootstrap([]byte(data), a)
			if err == nil && opts.Listener != nil {
				_, err = translateListener(opts.Listener)
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want containing %q", err, c.want)
			}
		})
	}
}

// TestUseListenerAddress: with UseListenerAddress the stand-in binds the
// LDS listener's own address once the listener arrives, as Envoy does.
func TestUseListenerAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ads := newADSServer(t, "127.0.0.1:0")
	si := startStandIn(t, Options{ADSAddr: ads.addr, UseListenerAddress: true})
	if si.Addr() != "" {
		t.Fatalf("bound %q before any listener", si.Addr())
	}
	l := hcmListener(t, "routes", routerFilter(t, true))
	l.Address = sockAddr(t, addr)
	ads.set("v1", map[resourcev3.Type][]types.Resource{
		resourcev3.ClusterType:  {},
		resourcev3.ListenerType: {l},
		resourcev3.RouteType: {&routev3.RouteConfiguration{Name: "routes", VirtualHosts: []*routev3.VirtualHost{{
			Name: "all", Domains: []string{"*"}, Routes: []*routev3.Route{e2eDirect("/ok")}}}}},
	})
	if err := si.Ready(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	if si.Addr() != addr {
		t.Fatalf("Addr = %q, want %q", si.Addr(), addr)
	}
	resp, err := noRedirectClient().Get("http://" + addr + "/ok")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status = %d", resp.StatusCode)
	}
}
