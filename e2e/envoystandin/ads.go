package envoystandin

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// adsSubs is the subscription state that survives reconnects: what was
// subscribed and which versions were accepted, so a new stream resumes
// where the old one stopped (Envoy docs: xDS REST and gRPC protocol —
// "ACK/NACK and resource type instance version": the version_info of a
// request is the last successfully applied version).
type adsSubs struct {
	edsNames    []string
	rdsNames    []string
	edsReceived bool
	ldsStarted  bool
}

// runADS keeps one ADS stream open, reconnecting with backoff and keeping
// the last accepted configuration in service meanwhile.
//
// Envoy docs: xDS protocol, "Aggregated Discovery Service" — a single gRPC
// stream carries every resource type; on stream loss Envoy keeps its
// configuration and re-establishes the stream.
func (s *StandIn) runADS(ctx context.Context) {
	subs := &adsSubs{}
	backoff := s.opts.RetryInterval
	for ctx.Err() == nil {
		got, err := s.runStream(ctx, subs)
		if ctx.Err() != nil {
			return
		}
		s.log.Info("envoystandin: ADS stream ended; keeping last configuration", "err", err)
		if got {
			backoff = s.opts.RetryInterval
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// runStream runs one ADS stream. got reports whether any response arrived.
func (s *StandIn) runStream(ctx context.Context, subs *adsSubs) (got bool, err error) {
	conn, err := grpc.NewClient(s.opts.ADSAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return false, err
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx)
	if err != nil {
		return false, err
	}
	node := &corev3.Node{Id: s.opts.NodeID, Cluster: s.opts.Cluster, UserAgentName: "mcpgw-envoy-standin"}
	nonces := map[string]string{}
	send := func(typeURL string, names []string, nack *statuspb.Status) error {
		req := &discoveryv3.DiscoveryRequest{
			Node:          node,
			VersionInfo:   s.cur.Load().versions[typeURL],
			ResourceNames: names,
			TypeUrl:       typeURL,
			ResponseNonce: nonces[typeURL],
			ErrorDetail:   nack,
		}
		return stream.Send(req)
	}

	// Envoy's initialization order: CDS first; EDS for the EDS clusters; LDS
	// once clusters are warm; RDS for the route configurations the listeners
	// name (Envoy docs: xDS protocol, "Eventual consistency considerations",
	// and Initialization). On a reconnect every existing subscription is
	// re-sent with its last accepted version.
	if err := send(resourcev3.ClusterType, nil, nil); err != nil {
		return false, err
	}
	if len(subs.edsNames) > 0 {
		if err := send(resourcev3.EndpointType, subs.edsNames, nil); err != nil {
			return false, err
		}
	}
	if subs.ldsStarted {
		if s.opts.Listener == nil {
			if err := send(resourcev3.ListenerType, nil, nil); err != nil {
				return false, err
			}
		}
		if len(subs.rdsNames) > 0 {
			if err := send(resourcev3.RouteType, subs.rdsNames, nil); err != nil {
				return false, err
			}
		}
	}
	s.setConnected(true)
	defer s.setConnected(false)

	startLDS := func() error {
		if subs.ldsStarted {
			return nil
		}
		subs.ldsStarted = true
		if s.opts.Listener != nil {
			// Static listener: its route configuration is requested once
			// clusters are warm, in place of LDS.
			subs.rdsNames = rdsNames(s.cur.Load())
			if len(subs.rdsNames) == 0 {
				return nil
			}
			return send(resourcev3.RouteType, subs.rdsNames, nil)
		}
		return send(resourcev3.ListenerType, nil, nil)
	}

	for {
		resp, err := stream.Recv()
		if err != nil {
			return got, err
		}
		got = true
		nonces[resp.GetTypeUrl()] = resp.GetNonce()
		var applyErr error
		var names []string
		switch resp.GetTypeUrl() {
		case resourcev3.ClusterType:
			applyErr = s.applyClusters(resp)
		case resourcev3.EndpointType:
			applyErr = s.applyEndpoints(resp, subs.edsNames)
			names = subs.edsNames
		case resourcev3.ListenerType:
			if s.opts.Listener != nil {
				applyErr = errors.New("LDS response, but the listener is static (LDS not subscribed)")
				break
			}
			applyErr = s.applyListeners(resp)
		case resourcev3.RouteType:
			applyErr = s.applyRoutes(resp, subs.rdsNames)
			names = subs.rdsNames
		default:
			applyErr = fmt.Errorf("unsupported resource type %q", resp.GetTypeUrl())
		}
		if applyErr != nil {
			// NACK: version_info stays the last accepted one, the nonce
			// names the rejected response, error_detail says why (Envoy
			// docs: xDS protocol, "ACK and NACK semantics").
			if err := send(resp.GetTypeUrl(), names, &statuspb.Status{Code: int32(codes.InvalidArgument), Message: applyErr.Error()}); err != nil {
				return got, err
			}
			s.recordNACK(NACK{TypeURL: resp.GetTypeUrl(), Version: resp.GetVersionInfo(), Nonce: resp.GetNonce(), Error: applyErr.Error()})
			// A rejected update still completes that step of
			// initialization (Envoy's init targets finish on rejection),
			// so the follow-up subscriptions below run with the unchanged
			// state.
		} else if err := send(resp.GetTypeUrl(), names, nil); err != nil {
			return got, err
		}
		st := s.cur.Load()
		switch resp.GetTypeUrl() {
		case resourcev3.ClusterType:
			eds := edsServiceNames(st)
			if !slices.Equal(eds, subs.edsNames) {
				subs.edsNames = eds
				subs.edsReceived = false
				if err := send(resourcev3.EndpointType, eds, nil); err != nil {
					return got, err
				}
			}
			if len(eds) == 0 || subs.edsReceived {
				if err := startLDS(); err != nil {
					return got, err
				}
			}
		case resourcev3.EndpointType:
			subs.edsReceived = true
			if err := startLDS(); err != nil {
				return got, err
			}
		case resourcev3.ListenerType, resourcev3.RouteType:
			// New listeners may name new route configurations; a listener
			// that finished warming may release an old one.
			if s.opts.Listener != nil && !subs.ldsStarted {
				break
			}
			rds := rdsNames(st)
			if !slices.Equal(rds, subs.rdsNames) {
				subs.rdsNames = rds
				if err := send(resourcev3.RouteType, rds, nil); err != nil {
					return got, err
				}
			}
		}
	}
}

func edsServiceNames(st *state) []string {
	set := map[string]bool{}
	for _, c := range st.clusters {
		if c.eds {
			set[c.serviceName()] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// rdsNames are the route configurations to subscribe: those of every
// listener, plus the one the serving listener uses while its replacement
// warms.
func rdsNames(st *state) []string {
	set := map[string]bool{}
	for _, l := range append(slices.Collect(maps.Values(st.listeners)), st.active) {
		if l != nil && l.hcm.rdsName != "" {
			set[l.hcm.rdsName] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// decodeAll unpacks every resource of a response into fresh messages,
// refusing resources of another type and duplicate names.
func decodeAll[T proto.Message](resp *discoveryv3.DiscoveryResponse, newT func() T, name func(T) string) ([]T, error) {
	out := make([]T, 0, len(resp.GetResources()))
	seen := map[string]bool{}
	for i, a := range resp.GetResources() {
		m, err := decodeOne(a, resp.GetTypeUrl(), newT)
		if err != nil {
			return nil, fmt.Errorf("resource %d: %w", i, err)
		}
		if seen[name(m)] {
			return nil, fmt.Errorf("duplicate resource name %q", name(m))
		}
		seen[name(m)] = true
		out = append(out, m)
	}
	return out, nil
}

func decodeOne[T proto.Message](a *anypb.Any, typeURL string, newT func() T) (T, error) {
	var zero T
	if a.GetTypeUrl() != typeURL {
		return zero, fmt.Errorf("type %q in a %q response", a.GetTypeUrl(), typeURL)
	}
	m := newT()
	if err := proto.Unmarshal(a.GetValue(), m); err != nil {
		return zero, err
	}
	return m, nil
}

// clone copies the state maps for copy-on-write updates.
func (st *state) clone() *state {
	return &state{
		listeners: maps.Clone(st.listeners),
		routes:    maps.Clone(st.routes),
		clusters:  maps.Clone(st.clusters),
		endpoints: maps.Clone(st.endpoints),
		versions:  maps.Clone(st.versions),
		active:    st.active,
		pending:   st.pending,
	}
}

// applyClusters handles a CDS response: the complete set of dynamic
// clusters (state of the world). Bootstrap clusters stay.
//
// Envoy docs: Cluster discovery service (CDS) — clusters absent from the
// response are removed; static bootstrap clusters cannot be changed by CDS.
func (s *StandIn) applyClusters(resp *discoveryv3.DiscoveryResponse) error {
	cs, err := decodeAll(resp, func() *clusterv3.Cluster { return &clusterv3.Cluster{} }, (*clusterv3.Cluster).GetName)
	if err != nil {
		return err
	}
	next := s.cur.Load().clone()
	clusters := map[string]*clusterConfig{}
	for _, c := range next.clusters {
		if c.bootstrap {
			clusters[c.name] = c
		}
	}
	for _, c := range cs {
		if old := clusters[c.GetName()]; old != nil && old.bootstrap {
			return fmt.Errorf("cluster %q: CDS cannot update a static bootstrap cluster", c.GetName())
		}
		tc, err := translateCluster(c)
		if err != nil {
			return err
		}
		clusters[tc.name] = tc
	}
	next.clusters = clusters
	// Drop endpoints no cluster refers to any more.
	keep := map[string]bool{}
	for _, n := range edsServiceNames(next) {
		keep[n] = true
	}
	maps.DeleteFunc(next.endpoints, func(k string, _ []netip.AddrPort) bool { return !keep[k] })
	next.versions[resp.GetTypeUrl()] = resp.GetVersionInfo()
	s.commit(next)
	return nil
}

// applyEndpoints handles an EDS response for the subscribed service names.
func (s *StandIn) applyEndpoints(resp *discoveryv3.DiscoveryResponse, subscribed []string) error {
	ls, err := decodeAll(resp, func() *endpointv3.ClusterLoadAssignment { return &endpointv3.ClusterLoadAssignment{} }, (*endpointv3.ClusterLoadAssignment).GetClusterName)
	if err != nil {
		return err
	}
	next := s.cur.Load().clone()
	for _, cla := range ls {
		eps, err := translateEndpoints(cla)
		if err != nil {
			return err
		}
		if cla.GetClusterName() == "" {
			return errors.New("cluster_load_assignment without cluster_name")
		}
		next.endpoints[cla.GetClusterName()] = eps
	}
	maps.DeleteFunc(next.endpoints, func(k string, _ []netip.AddrPort) bool { return !slices.Contains(subscribed, k) })
	next.versions[resp.GetTypeUrl()] = resp.GetVersionInfo()
	s.commit(next)
	return nil
}

// applyListeners handles an LDS response: the complete set of listeners.
func (s *StandIn) applyListeners(resp *discoveryv3.DiscoveryResponse) error {
	ls, err := decodeAll(resp, func() *listenerv3.Listener { return &listenerv3.Listener{} }, (*listenerv3.Listener).GetName)
	if err != nil {
		return err
	}
	next := s.cur.Load().clone()
	next.listeners = map[string]*listenerConfig{}
	for _, l := range ls {
		tl, err := translateListener(l)
		if err != nil {
			return err
		}
		next.listeners[tl.name] = tl
	}
	var chosen *listenerConfig
	switch {
	case s.opts.ListenerName != "":
		chosen = next.listeners[s.opts.ListenerName]
	case len(next.listeners) == 1:
		for _, l := range next.listeners {
			chosen = l
		}
	case len(next.listeners) == 0:
	default:
		return fmt.Errorf("%d listeners received and Options.ListenerName is empty; the stand-in serves one", len(next.listeners))
	}
	// Envoy docs: Listener discovery service (LDS) — "Listeners are warmed
	// before they receive traffic"; an updated listener replaces the old
	// one only once warm, while the old one keeps serving. A removed
	// listener stops at once.
	next.pending = nil
	switch {
	case chosen == nil:
		next.active = nil
	case chosen.hcm.inline != nil || next.routes[chosen.hcm.rdsName] != nil || next.active == nil:
		next.active = chosen
	default:
		next.pending = chosen
	}
	next.versions[resp.GetTypeUrl()] = resp.GetVersionInfo()
	s.commit(next)
	return nil
}

// applyRoutes handles an RDS response for the subscribed route names.
func (s *StandIn) applyRoutes(resp *discoveryv3.DiscoveryResponse, subscribed []string) error {
	rs, err := decodeAll(resp, func() *routev3.RouteConfiguration { return &routev3.RouteConfiguration{} }, (*routev3.RouteConfiguration).GetName)
	if err != nil {
		return err
	}
	next := s.cur.Load().clone()
	for _, rc := range rs {
		rt, err := translateRouteConfig(rc)
		if err != nil {
			return err
		}
		next.routes[rt.name] = rt
	}
	maps.DeleteFunc(next.routes, func(k string, _ *routeTable) bool { return !slices.Contains(subscribed, k) })
	if p := next.pending; p != nil && next.routes[p.hcm.rdsName] != nil {
		next.active, next.pending = p, nil
	}
	next.versions[resp.GetTypeUrl()] = resp.GetVersionInfo()
	s.commit(next)
	return nil
}
