package xds

import (
	"sync"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// sharedMarshalCache wraps the snapshot cache so that the route
// configuration pushed to many Envoys is serialized once, not once per
// stream.
//
// go-control-plane builds a fresh response per watch and marshals its
// resources when the stream sends it. For the route configuration (several
// MB at 10k configs) that means every rotation costs streams × size in
// copies and garbage. Here the responses of the chosen
// types are wrapped; their resources' wire bytes are memoized by (type,
// version, name) — within one version a name always denotes the same
// resource — and each stream gets its own DiscoveryResponse (the server
// writes the nonce into it) pointing at the shared bytes.
type sharedMarshalCache struct {
	cache.SnapshotCache

	mu    sync.Mutex
	memo  map[memoKey][]byte
	order []memoKey // insertion order, for bounded eviction
	// known holds wire bytes the builder already produced, by resource
	// identity (the route configuration), so they are never re-marshaled.
	known []preEncoded
	// marshals counts actual serializations (tests).
	marshals int
}

type memoKey struct{ typeURL, version, name string }

// memoLimit bounds the memo: a few recent versions of each shared type.
const memoLimit = 4

// sharedTypes are the types whose responses are shared: the route
// configuration only. Forwarding adds a hop, which can only delay a
// response; RDS is the last type in go-control-plane's ADS push order
// (CDS, EDS, LDS, RDS), so delaying it never reorders a push — a route
// still arrives after the cluster it references. Forwarding CDS as well
// could let endpoints overtake their cluster, so it is not done.
var sharedTypes = map[string]bool{resourcev3.RouteType: true}

func newSharedMarshalCache(c cache.SnapshotCache) *sharedMarshalCache {
	return &sharedMarshalCache{SnapshotCache: c, memo: map[memoKey][]byte{}}
}

// CreateWatch interposes on watches of the shared types: the inner cache
// answers on a private channel and a forwarder hands the wrapped response
// to the stream.
func (c *sharedMarshalCache) CreateWatch(req *cache.Request, sub cache.Subscription, value chan cache.Response) (func(), error) {
	if !sharedTypes[req.GetTypeUrl()] {
		return c.SnapshotCache.CreateWatch(req, sub, value)
	}
	inner := make(chan cache.Response, 1)
	stop := make(chan struct{})
	cancel, err := c.SnapshotCache.CreateWatch(req, sub, inner)
	if err != nil {
		return cancel, err
	}
	go func() {
		select {
		case r := <-inner:
			select {
			case <-stop: // cancelled meanwhile: drop, like a cancelled watch
				return
			default:
			}
			select {
			case value <- &sharedResponse{Response: r, c: c}:
			case <-stop:
			}
		case <-stop:
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(stop) })
		if cancel != nil {
			cancel()
		}
	}, nil
}

// preset registers the wire bytes of a resource about to be published
// (the last few are kept).
func (c *sharedMarshalCache) preset(p preEncoded) {
	if p.res == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range c.known {
		if k.res == p.res {
			return
		}
	}
	c.known = append(c.known, p)
	if len(c.known) > 4 {
		c.known = c.known[1:]
	}
}

// bytesFor returns the memoized wire form of a resource.
func (c *sharedMarshalCache) bytesFor(k memoKey, r types.Resource) ([]byte, error) {
	c.mu.Lock()
	b, ok := c.memo[k]
	if !ok {
		for _, p := range c.known {
			if p.res == r {
				b, ok = p.wire, true
				c.remember(k, b)
				break
			}
		}
	}
	c.mu.Unlock()
	if ok {
		return b, nil
	}
	b, err := cache.MarshalResource(r)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.memo[k]; !ok {
		c.remember(k, b)
		c.marshals++
	}
	return b, nil
}

// remember stores b under k, evicting the oldest entries beyond memoLimit.
// c.mu must be held.
func (c *sharedMarshalCache) remember(k memoKey, b []byte) {
	c.memo[k] = b
	c.order = append(c.order, k)
	for len(c.order) > memoLimit {
		delete(c.memo, c.order[0])
		c.order = c.order[1:]
	}
}

// sharedResponse is a response whose resources come from the memo.
type sharedResponse struct {
	cache.Response
	c *sharedMarshalCache
}

func (r *sharedResponse) GetDiscoveryResponse() (*discoveryv3.DiscoveryResponse, error) {
	raw, ok := r.Response.(*cache.RawResponse)
	if !ok || raw.Heartbeat {
		return r.Response.GetDiscoveryResponse()
	}
	typeURL := raw.GetRequest().GetTypeUrl()
	res := raw.GetRawResources()
	out := &discoveryv3.DiscoveryResponse{VersionInfo: raw.Version, TypeUrl: typeURL, Resources: make([]*anypb.Any, 0, len(res))}
	for _, rt := range res {
		if rt.TTL != nil {
			return r.Response.GetDiscoveryResponse() // TTL wrapping: not shared
		}
		b, err := r.c.bytesFor(memoKey{typeURL, raw.Version, cache.GetResourceName(rt.Resource)}, rt.Resource)
		if err != nil {
			return nil, err
		}
		out.Resources = append(out.Resources, &anypb.Any{TypeUrl: typeURL, Value: b})
	}
	return out, nil
}
