package xds

import (
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	xdsserver "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// errStopping ends streams cut by a control-plane stop. UNAVAILABLE is the
// gRPC status a client treats as transient (retry, reconnect); an OK end
// of a stream that should be endless would look like a server bug in the
// Envoy logs.
var errStopping = status.Error(codes.Unavailable, "xds: control plane stopping")

// endingServer is the go-control-plane server as registered on gRPC: a
// stream handler that returns because the server's context ended (Run
// returned) reports errStopping instead of OK. go-control-plane's stream
// loops return nil in that case.
type endingServer struct {
	xdsserver.Server
	ended <-chan struct{}
}

// result maps a stream handler's nil return after a stop to errStopping.
func (e endingServer) result(err error) error {
	if err != nil {
		return err
	}
	select {
	case <-e.ended:
		return errStopping
	default:
		return nil
	}
}

func (e endingServer) StreamAggregatedResources(s discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return e.result(e.Server.StreamAggregatedResources(s))
}

func (e endingServer) DeltaAggregatedResources(s discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	return e.result(e.Server.DeltaAggregatedResources(s))
}

func (e endingServer) StreamListeners(s listenerservice.ListenerDiscoveryService_StreamListenersServer) error {
	return e.result(e.Server.StreamListeners(s))
}

func (e endingServer) DeltaListeners(s listenerservice.ListenerDiscoveryService_DeltaListenersServer) error {
	return e.result(e.Server.DeltaListeners(s))
}

func (e endingServer) StreamRoutes(s routeservice.RouteDiscoveryService_StreamRoutesServer) error {
	return e.result(e.Server.StreamRoutes(s))
}

func (e endingServer) DeltaRoutes(s routeservice.RouteDiscoveryService_DeltaRoutesServer) error {
	return e.result(e.Server.DeltaRoutes(s))
}

func (e endingServer) StreamClusters(s clusterservice.ClusterDiscoveryService_StreamClustersServer) error {
	return e.result(e.Server.StreamClusters(s))
}

func (e endingServer) DeltaClusters(s clusterservice.ClusterDiscoveryService_DeltaClustersServer) error {
	return e.result(e.Server.DeltaClusters(s))
}

func (e endingServer) StreamEndpoints(s endpointservice.EndpointDiscoveryService_StreamEndpointsServer) error {
	return e.result(e.Server.StreamEndpoints(s))
}

func (e endingServer) DeltaEndpoints(s endpointservice.EndpointDiscoveryService_DeltaEndpointsServer) error {
	return e.result(e.Server.DeltaEndpoints(s))
}
