package envoystandin

import (
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

func response(t *testing.T, typeURL, version string, ms ...proto.Message) *discoveryv3.DiscoveryResponse {
	r := &discoveryv3.DiscoveryResponse{TypeUrl: typeURL, VersionInfo: version}
	for _, m := range ms {
		a, err := anypb.New(m)
		if err != nil {
			t.Fatal(err)
		}
		r.Resources = append(r.Resources, a)
	}
	return r
}

func routesNamed(name, path string) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{{
		Name: "all", Domains: []string{"*"}, Routes: []*routev3.Route{e2eDirect(path)}}}}
}

// TestListenerWarming: a listener update that names a new route
// configuration replaces the serving one only once that configuration has
// arrived; until then the old listener and routes keep serving.
func TestListenerWarming(t *testing.T) {
	// Nothing listens on the ADS address: the test drives the apply
	// functions directly, as the ADS loop would.
	si := startStandIn(t, Options{ADSAddr: "127.0.0.1:1"})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(si.applyListeners(response(t, resourcev3.ListenerType, "l1", hcmListener(t, "rc-a", routerFilter(t, true)))))
	if si.Status().Serving() {
		t.Fatal("serving before any route configuration")
	}
	if got := rdsNames(si.cur.Load()); len(got) != 1 || got[0] != "rc-a" {
		t.Fatalf("rds names = %v", got)
	}
	must(si.applyRoutes(response(t, resourcev3.RouteType, "r1", routesNamed("rc-a", "/a")), []string{"rc-a"}))
	if st := si.Status(); !st.Serving() || !routesDirect(st, "/a") {
		t.Fatal("rc-a not served")
	}

	// The listener now wants rc-b: rc-a keeps serving while rc-b warms,
	// and both stay subscribed.
	must(si.applyListeners(response(t, resourcev3.ListenerType, "l2", hcmListener(t, "rc-b", routerFilter(t, true)))))
	if st := si.Status(); !st.Serving() || !routesDirect(st, "/a") {
		t.Fatal("old listener stopped serving while the new one warms")
	}
	if got := rdsNames(si.cur.Load()); len(got) != 2 {
		t.Fatalf("rds names while warming = %v, want rc-a and rc-b", got)
	}
	must(si.applyRoutes(response(t, resourcev3.RouteType, "r2", routesNamed("rc-a", "/a"), routesNamed("rc-b", "/b")), []string{"rc-a", "rc-b"}))
	if st := si.Status(); !routesDirect(st, "/b") || routesDirect(st, "/a") {
		t.Fatal("warmed listener not promoted")
	}
	if got := rdsNames(si.cur.Load()); len(got) != 1 || got[0] != "rc-b" {
		t.Fatalf("rds names after warming = %v", got)
	}

	// Removing every listener stops serving at once.
	must(si.applyListeners(response(t, resourcev3.ListenerType, "l3")))
	if si.Status().Serving() {
		t.Fatal("still serving without a listener")
	}
}

func routesDirect(st Status, path string) bool {
	_, rt := st.st.activeRoutes()
	if rt == nil {
		return false
	}
	_, r := rt.match("x", path)
	return r != nil && r.direct != nil
}
