package envoystandin

import (
	"io"
	"net/http"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// BenchmarkProxy measures one request through the stand-in: HCM
// normalization, route match, an ext_authz Check over gRPC (allow with a
// header mutation) and a proxied upstream round trip, all on loopback. It
// tells e2e load tests how much of their budget the stand-in itself uses.
//
//	go test -run '^$' -bench BenchmarkProxy -benchtime 3000x ./e2e/envoystandin
func BenchmarkProxy(b *testing.B) {
	ads := newADSServer(b, "127.0.0.1:0")
	authz := newFakeAuthz(b)
	up := newEchoServer(b, "bench")
	si := startStandIn(b, Options{ADSAddr: ads.addr})
	mcp := forward("up")
	mcp.Route.PrefixRewrite = "/base"
	ads.set("v1", map[resourcev3.Type][]types.Resource{
		resourcev3.ClusterType:  {edsCluster(b, "up", nil), staticH2Cluster(b, "extauthz", authz.addr)},
		resourcev3.EndpointType: {cla(b, "up", up)},
		resourcev3.ListenerType: {hcmListener(b, "routes",
			extAuthzFilter(b, "extauthz", time.Second, typev3.StatusCode_ServiceUnavailable), routerFilter(b, true))},
		resourcev3.RouteType: {&routev3.RouteConfiguration{Name: "routes", VirtualHosts: []*routev3.VirtualHost{{
			Name: "all", Domains: []string{"*"},
			Routes: []*routev3.Route{{Name: "mcp", Match: sepPrefixMatch("/mcp"), Action: mcp,
				TypedPerFilterConfig: authzPerRouteExt(b, map[string]string{"config_id": "c"})}},
		}}}},
	})
	if err := si.WaitForRoutes(waitCtx(b), "/mcp/x"); err != nil {
		b.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	req, _ := http.NewRequest("POST", si.URL()+"/mcp/tools?x=1", nil)
	req.Header.Set("Authorization", "Bearer t")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}
