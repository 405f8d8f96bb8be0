package xds

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"mcpgw/domain/addrpolicy"
	"mcpgw/store"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// Fixture ids and keys (valid UUIDs and 32-char base64url keys).
const (
	cfgExact    = "00000000-0000-4000-8000-000000000001"
	cfgRootPass = "00000000-0000-4000-8000-000000000002"
	cfgPass     = "00000000-0000-4000-8000-000000000003"
	cfgPrivate  = "00000000-0000-4000-8000-000000000004"
	cfgLoopback = "00000000-0000-4000-8000-000000000005"
	cfgBadURL   = "00000000-0000-4000-8000-000000000006"
	cfgIPHost   = "00000000-0000-4000-8000-000000000007"
	userA       = "10000000-0000-4000-8000-00000000000a"
	orgB        = "20000000-0000-4000-8000-00000000000b"
	keyA        = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	keyB        = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
)

// goldenFixture is the config set the golden files describe: every route
// shape (exact, path-separated prefix with prefix and regex rewrite), a
// non-public upstream, an allowlisted plain-http loopback upstream, an
// unroutable URL and an IP-literal https host.
func goldenFixture() ([]store.RoutableConfig, *fakeResolver, Options) {
	rcs := []store.RoutableConfig{
		routable(cfgExact, store.ScopeUser, userA, "https://mcp.example.com/v1/mcp", keyA, false),
		routable(cfgRootPass, store.ScopeOrg, orgB, "https://api.example.org:8443/", keyB, true),
		routable(cfgPass, store.ScopeUser, userA, "https://tools.example.net/mcp", keyB, true),
		routable(cfgPrivate, store.ScopeOrg, orgB, "https://internal.example.com/mcp", keyA, false),
		routable(cfgLoopback, store.ScopeUser, userA, "http://127.0.0.1:9000/mcp", keyA, false),
		routable(cfgBadURL, store.ScopeUser, userA, "ftp://files.example.com/", keyA, false),
		routable(cfgIPHost, store.ScopeUser, userA, "https://[2606:4700::1111]/mcp/", keyB, false),
	}
	r := newFakeResolver()
	r.set("mcp.example.com", time.Minute, "1.1.1.1", "2606:4700:4700::1111")
	r.set("api.example.org", time.Minute, "8.8.4.4", "8.8.8.8")
	r.set("tools.example.net", time.Minute, "2606:4700:4700::1001")   // AAAA only
	r.set("internal.example.com", time.Minute, "9.9.9.9", "10.0.0.5") // mixed: one private
	opts := Options{
		Store:           newFakeStore(rcs...),
		Resolver:        r,
		Allowlist:       addrpolicy.Allowlist{Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
		OAuthServerAddr: "127.0.0.1:8081",
		PublicBaseURL:   "https://mcp.gw.example",
		Now:             func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) },
	}
	return rcs, r, opts
}

// buildFixture builds the snapshot of the fixture without a server.
func buildFixture(t testing.TB, rcs []store.RoutableConfig, opts Options) *cache.Snapshot {
	t.Helper()
	o, err := opts.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	st := newState(&builder{opts: o})
	res := newResolver(o, newMetrics(nil))
	for _, rc := range rcs {
		st.upsert(rc)
	}
	var hosts []string
	for h := range st.hosts() {
		hosts = append(hosts, h)
	}
	res.ensure(context.Background(), hosts)
	st.refreshEndpoints(res, nil, nil)
	snap, err := st.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

type validator interface{ ValidateAll() error }

// roundTrip returns the message as a receiver decodes it from the wire.
func roundTrip(t testing.TB, m types.Resource) types.Resource {
	t.Helper()
	b, err := deterministic.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	out := m.ProtoReflect().New().Interface()
	if err := proto.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	return out.(types.Resource)
}

var kindDirs = map[string]string{
	resourcev3.ListenerType: "listeners",
	resourcev3.RouteType:    "routes",
	resourcev3.ClusterType:  "clusters",
	resourcev3.EndpointType: "endpoints",
}

// TestGolden compares every generated resource with its protojson golden
// file (protocmp, so field order and formatting do not matter) and runs
// Envoy's generated ValidateAll on it. Run with -update to rewrite.
func TestGolden(t *testing.T) {
	rcs, _, opts := goldenFixture()
	snap := buildFixture(t, rcs, opts)
	marshal := protojson.MarshalOptions{}
	for typeURL, dir := range kindDirs {
		dir := filepath.Join("testdata", "golden", dir)
		if *update {
			_ = os.RemoveAll(dir)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		got := snap.GetResources(typeURL)
		if len(got) == 0 {
			t.Fatalf("%s: no resources", typeURL)
		}
		var names []string
		for name, r := range got {
			names = append(names, name)
			// Compare and validate what goes on the wire (the route
			// configuration is served pre-encoded).
			r = roundTrip(t, r)
			if err := r.(validator).ValidateAll(); err != nil {
				t.Errorf("%s %q fails Envoy validation: %v", typeURL, name, err)
			}
			file := filepath.Join(dir, name+".json")
			if *update {
				b, err := marshal.Marshal(r)
				if err != nil {
					t.Fatal(err)
				}
				// protojson randomizes whitespace; re-indent so -update
				// produces stable, reviewable diffs.
				var compact, pretty bytes.Buffer
				if err := json.Compact(&compact, b); err != nil {
					t.Fatal(err)
				}
				if err := json.Indent(&pretty, compact.Bytes(), "", "  "); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, append(pretty.Bytes(), '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			b, err := os.ReadFile(file)
			if err != nil {
				t.Errorf("%s %q: missing golden file (run go test ./xds -run TestGolden -update): %v", typeURL, name, err)
				continue
			}
			want := r.ProtoReflect().New().Interface()
			if err := protojson.Unmarshal(b, want); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if d := cmp.Diff(want, proto.Message(r), protocmp.Transform()); d != "" {
				t.Errorf("%s %q differs from %s (-want +got):\n%s", typeURL, name, file, d)
			}
		}
		// No stale golden files for resources we no longer generate.
		files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		for _, f := range files {
			if !slices.Contains(names, strings.TrimSuffix(filepath.Base(f), ".json")) {
				t.Errorf("stale golden file %s", f)
			}
		}
	}
}

// TestDeterministicVersions: two independent builds of the same database
// (two replicas) produce identical versions, and a rotation changes only
// the route version.
func TestDeterministicVersions(t *testing.T) {
	rcs, _, opts := goldenFixture()
	a := buildFixture(t, rcs, opts)
	shuffled := slices.Clone(rcs)
	slices.Reverse(shuffled)
	_, _, opts2 := goldenFixture()
	b := buildFixture(t, shuffled, opts2)
	for typeURL := range kindDirs {
		if a.GetVersion(typeURL) != b.GetVersion(typeURL) || a.GetVersion(typeURL) == "" {
			t.Errorf("%s: versions differ between replicas: %q vs %q", typeURL, a.GetVersion(typeURL), b.GetVersion(typeURL))
		}
	}
	rotated := slices.Clone(rcs)
	rotated[0].Route.Key = "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC"
	_, _, opts3 := goldenFixture()
	c := buildFixture(t, rotated, opts3)
	for typeURL := range kindDirs {
		changed := a.GetVersion(typeURL) != c.GetVersion(typeURL)
		if changed != (typeURL == resourcev3.RouteType) {
			t.Errorf("%s: version changed=%v after a rotation, want change only for routes", typeURL, changed)
		}
	}
}
