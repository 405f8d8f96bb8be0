package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"

	"mcpgw/e2e/envoystandin"
)

const bootstrap = `
node: { id: from-file, cluster: edge }
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services: [{ envoy_grpc: { cluster_name: xds } }]
  cds_config: { ads: {}, resource_api_version: V3 }
static_resources:
  listeners:
    - name: http
      address: { socket_address: { address: 127.0.0.1, port_value: %d } }
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: http
                rds: { route_config_name: routes, config_source: { ads: {}, resource_api_version: V3 } }
                http_filters:
                  - name: envoy.filters.http.router
                    typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
    - name: xds
      type: STATIC
      connect_timeout: 1s
      http2_protocol_options: {}
      load_assignment:
        cluster_name: xds
        endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: %d } } } }] }]
`

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestRun starts the command from an Envoy bootstrap with Envoy's flags and
// checks it serves on the static listener's own address with the node id
// given on the command line.
func TestRun(t *testing.T) {
	snap := cache.NewSnapshotCache(true, cache.IDHash{}, nil)
	gs := grpc.NewServer()
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(gs, server.NewServer(context.Background(), snap, nil))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	defer gs.Stop()
	s, err := cache.NewSnapshot("v1", map[resourcev3.Type][]types.Resource{
		resourcev3.ClusterType: {},
		resourcev3.RouteType: {&routev3.RouteConfiguration{Name: "routes", VirtualHosts: []*routev3.VirtualHost{{
			Name: "all", Domains: []string{"*"},
			Routes: []*routev3.Route{{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/ok"}},
				Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 204}}}},
		}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.SetSnapshot(context.Background(), "cli-node", s); err != nil {
		t.Fatal(err)
	}

	port := freePort(t)
	path := filepath.Join(t.TempDir(), "bootstrap.yaml")
	if err := os.WriteFile(path, fmt.Appendf(nil, bootstrap, port, ln.Addr().(*net.TCPAddr).Port), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	got := make(chan *envoystandin.StandIn, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-c", path, "--service-node", "cli-node", "--log-level", "warn",
			"--base-id", "7", "--disable-hot-restart"}, io.Discard, func(si *envoystandin.StandIn) { got <- si })
	}()
	var si *envoystandin.StandIn
	select {
	case si = <-got:
	case err := <-done:
		t.Fatalf("run: %v", err)
	}
	if err := si.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("127.0.0.1:%d", port)
	if si.Addr() != want {
		t.Fatalf("serving on %q, want the listener address %q", si.Addr(), want)
	}
	resp, err := http.Get("http://" + want + "/ok")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run returned %v", err)
	}
}

func TestRunFlags(t *testing.T) {
	for _, args := range [][]string{{}, {"-c", "/does/not/exist"}, {"--cluster-addr", "novalue"}} {
		if err := run(context.Background(), args, io.Discard, nil); err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
	}
}
