package xds

import (
	"net/netip"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
)

func lbEndpoint(addr string, port uint32) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Protocol:      corev3.SocketAddress_TCP,
			Address:       addr,
			PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
		}}},
	}}}
}

// loadAssignment is a config's EDS resource: exactly the addresses that
// passed the public-address policy at the last resolution, in sorted order
// (deterministic versions). No addresses → an empty assignment: Envoy
// answers 503 "no healthy upstream", which is the fail-closed outcome we
// want for a host that resolved to something non-public or not at all.
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/endpoint/v3/endpoint.proto
func loadAssignment(configID string, addrs []netip.Addr, port uint32) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: clusterName(configID)}
	if len(addrs) == 0 {
		return cla
	}
	eps := make([]*endpointv3.LbEndpoint, 0, len(addrs))
	for _, a := range addrs {
		eps = append(eps, lbEndpoint(a.Unmap().String(), port))
	}
	cla.Endpoints = []*endpointv3.LocalityLbEndpoints{{LbEndpoints: eps}}
	return cla
}
