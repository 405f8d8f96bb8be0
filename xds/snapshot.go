package xds

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"net/netip"
	"reflect"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"mcpgw/store"
)

// builder holds the typed resource builders (one file per kind:
// listener.go, routes.go, clusters.go, endpoints.go).
type builder struct{ opts Options }

// digest is the SHA-256 of a resource's deterministic wire form. Versions
// are built from digests, so equal databases give equal versions on every
// replica (DESIGN §8) and an unchanged resource type keeps its version (no
// push).
type digest [sha256.Size]byte

var deterministic = proto.MarshalOptions{Deterministic: true}

// mustMarshal encodes m deterministically; it only fails on a programming
// error.
func mustMarshal(m proto.Message) []byte {
	b, err := deterministic.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("xds: marshal %T: %v", m, err))
	}
	return b
}

func digestOf(m proto.Message) digest { return sha256.Sum256(mustMarshal(m)) }

func versionOf(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)[:12]) }

// version is the per-resource version of the resource with digest d (the
// delta protocol's resource version).
func (d digest) version() string { return hex.EncodeToString(d[:12]) }

// entry is the built state of one routable config.
type entry struct {
	rc store.RoutableConfig
	up upstream
	// unroutable is set when the remote URL cannot be routed; the config
	// then has no route, cluster or endpoints (404).
	unroutable bool

	// routeBytes is the deterministic wire form of the config's Route.
	// The typed Route is not kept: only these bytes are served, and 10k
	// pointer-rich Route trees would be marked by every GC cycle.
	routeBytes  []byte
	routeDigest digest
	cluster     *clusterv3.Cluster
	clusterDig  digest
	cla         *endpointv3.ClusterLoadAssignment
	claDigest   digest
	claAddrs    []netip.Addr // endpoints the CLA was built from, to skip rebuilds
	problem     string       // why the config has no endpoints ("" if it has)
}

// sameInput reports whether two routable configs produce the same
// resources: only these fields reach Envoy.
func sameInput(a, b store.RoutableConfig) bool {
	return a.Config.ID == b.Config.ID && a.Config.OwnerScope == b.Config.OwnerScope &&
		a.Config.OwnerID == b.Config.OwnerID && a.Config.RemoteURL == b.Config.RemoteURL &&
		a.Config.PathPassthrough == b.Config.PathPassthrough && a.Route.Key == b.Route.Key
}

// state is the whole generated configuration: the static resources, one
// entry per config, and the last published resource groups (reused when a
// type did not change, so a route rotation does not rebuild 10k clusters).
type state struct {
	b       *builder
	entries map[string]*entry
	ids     []string // sorted config ids of entries
	// order[i] is entries[ids[i]]: the per-type loops of snapshot walk it
	// instead of looking 10k ids up in the map on every rotation.
	order []*entry

	listenerRes     cache.Resources
	oauthCluster    *clusterv3.Cluster
	oauthClusterDig digest
	routeSkeleton   digest // route config without config routes
	routes          *routeEncoder

	res                                  [types.UnknownType]cache.Resources
	routesDirty, clustersDirty, epsDirty bool
	// versions is the per-resource version map of each served type, for
	// delta xDS (Snapshot.VersionMap), rebuilt with its type's group.
	// Left nil, go-control-plane would fill it on every SetSnapshot that
	// has delta watches by marshaling and hashing every resource of every
	// type again — ~100 ms per route rotation at 10k configs — although
	// the digests computed here already say which resources changed.
	versions [types.UnknownType]map[string]string
	// checked is the last snapshot that passed Consistent(); namesDirty
	// says whether a resource name set changed since (see snapshot).
	checked    *cache.Snapshot
	namesDirty bool
	// routeWire is the wire form of the current route configuration.
	routeWire preEncoded
	// problemsDirty says whether some entry's problem may have changed
	// since problemCounts last counted (counting walks every entry, which
	// a route rotation need not do).
	problemsDirty bool
}

// preEncoded pairs a served resource with its exact wire bytes.
type preEncoded struct {
	res  types.Resource
	wire []byte
}

func newState(b *builder) *state {
	st := &state{b: b, entries: map[string]*entry{}}
	l := b.buildListener()
	h := sha256.New()
	d := digestOf(l)
	h.Write(d[:])
	st.listenerRes = cache.NewResources(versionOf(h), []types.Resource{l})
	st.versions[types.Listener] = map[string]string{l.GetName(): d.version()}
	st.oauthCluster = b.oauthCluster()
	st.oauthClusterDig = digestOf(st.oauthCluster)
	st.routeSkeleton = digestOf(b.buildRouteConfig(nil))
	st.routes = b.newRouteEncoder()
	st.routesDirty, st.clustersDirty, st.epsDirty = true, true, true
	st.problemsDirty = true
	return st
}

// upsert (re)builds the route and cluster of rc if its input changed and
// reports whether anything changed. Only the resource types whose content
// changed are marked dirty: a route rotation touches RDS alone, so CDS/EDS
// versions stay and nothing else is pushed. Endpoints are refreshed
// separately (refreshEndpoints) once hosts are resolved.
func (st *state) upsert(rc store.RoutableConfig) bool {
	id := rc.Config.ID
	old, ok := st.entries[id]
	if ok && sameInput(old.rc, rc) {
		old.rc = rc
		return false
	}
	e := &entry{rc: rc}
	up, err := parseUpstream(rc.Config.RemoteURL)
	if err != nil {
		e.unroutable = true
		e.problem = problemBadURL
	} else {
		e.up = up
		e.routeBytes = mustMarshal(st.b.configRoute(rc, up))
		e.routeDigest = sha256.Sum256(e.routeBytes)
		if ok && !old.unroutable && old.up == up {
			e.cluster, e.clusterDig = old.cluster, old.clusterDig // depends on id and upstream only
		} else {
			e.cluster = st.b.upstreamCluster(id, up)
			e.clusterDig = digestOf(e.cluster)
		}
	}
	if !ok {
		i, _ := slices.BinarySearch(st.ids, id)
		st.ids = slices.Insert(st.ids, i, id)
		st.order = slices.Insert(st.order, i, e)
		st.routesDirty, st.clustersDirty, st.epsDirty, st.namesDirty = true, true, true, true
		st.problemsDirty = true
		st.entries[id] = e
		return true
	}
	if e.unroutable != old.unroutable {
		st.namesDirty = true
	}
	// Keep what the previous build knew about endpoints so an unchanged
	// host neither looks like a new problem nor rebuilds the CLA.
	if !e.unroutable && !old.unroutable && old.up == e.up {
		e.cla, e.claDigest, e.claAddrs, e.problem = old.cla, old.claDigest, old.claAddrs, old.problem
	} else {
		st.epsDirty = true
		if !e.unroutable {
			e.problem = old.problem
		}
	}
	if e.problem != old.problem {
		st.problemsDirty = true
	}
	if e.unroutable != old.unroutable || e.routeDigest != old.routeDigest {
		st.routesDirty = true
	}
	if e.unroutable != old.unroutable || e.clusterDig != old.clusterDig {
		st.clustersDirty = true
	}
	st.entries[id] = e
	if i, found := slices.BinarySearch(st.ids, id); found {
		st.order[i] = e
	}
	return true
}

// remove drops a config (disabled, deleted or gone) and reports whether it
// was present.
func (st *state) remove(id string) bool {
	if _, ok := st.entries[id]; !ok {
		return false
	}
	delete(st.entries, id)
	if i, found := slices.BinarySearch(st.ids, id); found {
		st.ids = slices.Delete(st.ids, i, i+1)
		st.order = slices.Delete(st.order, i, i+1)
	}
	st.routesDirty, st.clustersDirty, st.epsDirty, st.namesDirty = true, true, true, true
	st.problemsDirty = true
	return true
}

// hosts returns the reference count of every routable upstream host.
func (st *state) hosts() map[string]int {
	used := make(map[string]int, len(st.entries))
	for _, e := range st.entries {
		if !e.unroutable {
			used[e.up.Host]++
		}
	}
	return used
}

// transition is a change of a config's endpoint problem, for audit.
type transition struct {
	rc     store.RoutableConfig
	host   string
	from   string
	to     string
	detail string
}

// refreshEndpoints rebuilds, from the resolver's current state, the
// endpoint set of every config whose host is in onlyHosts or whose id is in
// onlyIDs (every config when both are nil), and returns the problem
// transitions.
func (st *state) refreshEndpoints(r *resolver, onlyHosts, onlyIDs []string) []transition {
	var out []transition
	ids := st.ids
	if onlyHosts == nil && onlyIDs != nil {
		ids = onlyIDs
	}
	// A set, not slices.Contains per entry: when a DNS outage (or its
	// end) flips every host in one resolution pass, onlyHosts holds all of
	// them, and a list scan per entry is quadratic (~0.3 s at 10k configs,
	// spent on the build loop that route rotations wait behind).
	var hostSet map[string]bool
	if onlyHosts != nil {
		hostSet = make(map[string]bool, len(onlyHosts))
		for _, h := range onlyHosts {
			hostSet[h] = true
		}
	}
	for _, id := range ids {
		e, ok := st.entries[id]
		if !ok {
			continue // removed
		}
		if e.unroutable {
			if e.cla == nil { // first time seen
				out = append(out, transition{rc: e.rc, to: problemBadURL})
				e.cla = &endpointv3.ClusterLoadAssignment{} // marker only, never published
			}
			continue
		}
		if hostSet != nil && e.cla != nil && !hostSet[e.up.Host] && !slices.Contains(onlyIDs, id) {
			continue
		}
		hs, known := r.state(e.up.Host)
		addrs, problem, detail := hs.addrs, hs.problem, hs.detail
		switch {
		case !known:
			addrs, problem = nil, problemResolve
		case problem == "" && !e.up.TLS && !hs.plainOK:
			addrs, problem = nil, problemPlainHTTP
		}
		if problem != "" {
			addrs = nil
		}
		if e.cla == nil || !slices.Equal(addrs, e.claAddrs) {
			e.cla = loadAssignment(id, addrs, e.up.Port)
			e.claDigest = digestOf(e.cla)
			e.claAddrs = addrs
			st.epsDirty = true
		}
		if problem != e.problem {
			out = append(out, transition{rc: e.rc, host: e.up.Host, from: e.problem, to: problem, detail: detail})
			e.problem = problem
			st.problemsDirty = true
		}
	}
	return out
}

// problemCounts returns the number of configs per endpoint problem (every
// known problem present, zero or not) and true, or nil and false when no
// entry's problem can have changed since the last call.
func (st *state) problemCounts() (map[string]int, bool) {
	if !st.problemsDirty {
		return nil, false
	}
	down := map[string]int{problemNonPublic: 0, problemResolve: 0, problemPlainHTTP: 0, problemBadURL: 0, problemPending: 0}
	for _, e := range st.entries {
		if e.problem != "" {
			down[e.problem]++
		}
	}
	st.problemsDirty = false
	return down, true
}

// snapshot assembles the snapshot, reusing unchanged resource groups. Each
// type's version is a hash of its resources' digests in name order.
func (st *state) snapshot() (*cache.Snapshot, error) {
	if st.routesDirty {
		h := sha256.New()
		h.Write(st.routeSkeleton[:])
		routes := make([][]byte, 0, len(st.order))
		for _, e := range st.order {
			if !e.unroutable {
				routes = append(routes, e.routeBytes)
				h.Write(e.routeDigest[:])
			}
		}
		rc, wire := st.routes.encode(routes)
		st.routeWire = preEncoded{res: rc, wire: wire}
		st.res[types.Route] = cache.NewResources(versionOf(h), []types.Resource{rc})
		st.versions[types.Route] = map[string]string{rc.GetName(): st.res[types.Route].Version}
		st.routesDirty = false
	}
	if st.clustersDirty {
		h := sha256.New()
		h.Write(st.oauthClusterDig[:])
		items := make([]types.Resource, 0, len(st.order)+1)
		items = append(items, st.oauthCluster)
		vers := make(map[string]string, len(st.order)+1)
		vers[st.oauthCluster.GetName()] = st.oauthClusterDig.version()
		for _, e := range st.order {
			if !e.unroutable {
				items = append(items, e.cluster)
				h.Write(e.clusterDig[:])
				vers[e.cluster.GetName()] = e.clusterDig.version()
			}
		}
		st.res[types.Cluster] = cache.NewResources(versionOf(h), items)
		st.versions[types.Cluster] = vers
		st.clustersDirty = false
	}
	if st.epsDirty {
		h := sha256.New()
		items := make([]types.Resource, 0, len(st.order))
		vers := make(map[string]string, len(st.order))
		for _, e := range st.order {
			if !e.unroutable && e.cla != nil {
				items = append(items, e.cla)
				h.Write(e.claDigest[:])
				vers[e.cla.GetClusterName()] = e.claDigest.version()
			}
		}
		st.res[types.Endpoint] = cache.NewResources(versionOf(h), items)
		st.versions[types.Endpoint] = vers
		st.epsDirty = false
	}
	snap := &cache.Snapshot{}
	snap.Resources[types.Listener] = st.listenerRes
	snap.Resources[types.Route] = st.res[types.Route]
	snap.Resources[types.Cluster] = st.res[types.Cluster]
	snap.Resources[types.Endpoint] = st.res[types.Endpoint]
	// The maps are never written after this point (a dirty type gets a
	// new one), so snapshots may share them; go-control-plane only reads
	// a VersionMap that is already set.
	snap.VersionMap = map[string]map[string]string{
		resourcev3.ListenerType: st.versions[types.Listener],
		resourcev3.RouteType:    st.versions[types.Route],
		resourcev3.ClusterType:  st.versions[types.Cluster],
		resourcev3.EndpointType: st.versions[types.Endpoint],
	}
	// Every EDS cluster must have its endpoints and every RDS name the
	// listener uses must exist, or an Envoy would wait forever
	// (go-control-plane's contract for ADS snapshots): Consistent() checks
	// exactly these name references. It walks every cluster (~15 ms of CPU
	// at 10k configs), so when nothing but resource *contents* changed
	// since the last checked snapshot — the same listener, cluster and
	// endpoint groups (identical objects) and the same route names, which
	// is the case for a route-key rotation — its inputs are identical to
	// that snapshot's and the result is reused. Any name change runs it.
	if st.namesDirty || !st.sameRefs(snap) {
		if err := snap.Consistent(); err != nil {
			return nil, fmt.Errorf("xds: inconsistent snapshot: %w", err)
		}
		st.namesDirty = false
	}
	st.checked = snap
	return snap, nil
}

// sameRefs reports whether snap has the reference structure of the last
// checked snapshot: the listener, cluster and endpoint groups are the very
// same objects (so the same names and references) and the route group has
// the same names.
func (st *state) sameRefs(snap *cache.Snapshot) bool {
	c := st.checked
	if c == nil {
		return false
	}
	for _, t := range []types.ResponseType{types.Listener, types.Cluster, types.Endpoint} {
		if !sameGroup(c.Resources[t], snap.Resources[t]) {
			return false
		}
	}
	a, b := c.Resources[types.Route].Items, snap.Resources[types.Route].Items
	if len(a) != len(b) {
		return false
	}
	for name := range a {
		if _, ok := b[name]; !ok {
			return false
		}
	}
	return true
}

// sameGroup reports whether two resource groups are the same object (same
// version and the same items map).
func sameGroup(a, b cache.Resources) bool {
	if a.Version != b.Version || len(a.Items) != len(b.Items) {
		return false
	}
	if a.Items == nil || b.Items == nil {
		return a.Items == nil && b.Items == nil
	}
	return reflect.ValueOf(a.Items).UnsafePointer() == reflect.ValueOf(b.Items).UnsafePointer()
}
