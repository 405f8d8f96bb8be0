package xds

import (
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // the default "proto" codec we delegate to
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Field numbers of the wire encoding written by discoveryCodec
// (envoy/service/discovery/v3/discovery.proto, google/protobuf/any.proto).
const (
	fieldDiscoveryResources protowire.Number = 2 // DiscoveryResponse.resources
	fieldAnyTypeURL         protowire.Number = 1 // Any.type_url
	fieldAnyValue           protowire.Number = 2 // Any.value
)

// zeroCopyThreshold is the resource size from which discoveryCodec hands
// the resource's bytes to the transport without copying them.
const zeroCopyThreshold = 64 << 10

// discoveryCodec is the xds gRPC server's codec. It is the standard proto
// codec except for DiscoveryResponses carrying large resources: their
// (shared, immutable) resource bytes are passed to the transport as their
// own buffers instead of being copied into one message buffer per stream.
// With a multi-MB route configuration pushed to many Envoys, that copy was
// one full pass over the configuration per Envoy per rotation.
type discoveryCodec struct{ base encoding.CodecV2 }

func newDiscoveryCodec() discoveryCodec { return discoveryCodec{base: encoding.GetCodecV2("proto")} }

func (discoveryCodec) Name() string { return "proto" }

func (c discoveryCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return c.base.Unmarshal(data, v)
}

func (c discoveryCodec) Marshal(v any) (mem.BufferSlice, error) {
	resp, ok := v.(*discoveryv3.DiscoveryResponse)
	if !ok || !hasLargeResource(resp) {
		return c.base.Marshal(v)
	}
	// Everything but the resources, marshaled normally (small)...
	head := &discoveryv3.DiscoveryResponse{
		VersionInfo:  resp.GetVersionInfo(),
		Canary:       resp.GetCanary(),
		TypeUrl:      resp.GetTypeUrl(),
		Nonce:        resp.GetNonce(),
		ControlPlane: resp.GetControlPlane(),
	}
	b, err := proto.Marshal(head)
	if err != nil {
		return nil, err
	}
	out := mem.BufferSlice{mem.SliceBuffer(b)}
	// ...then each resource as an Any: its small header copied, its value
	// referenced. Field order on the wire does not matter to a parser; the
	// resources keep their relative order.
	for _, a := range resp.GetResources() {
		val := a.GetValue()
		anyLen := protowire.SizeTag(fieldAnyTypeURL) + protowire.SizeBytes(len(a.GetTypeUrl())) +
			protowire.SizeTag(fieldAnyValue) + protowire.SizeBytes(len(val))
		var h []byte
		h = protowire.AppendTag(h, fieldDiscoveryResources, protowire.BytesType)
		h = protowire.AppendVarint(h, uint64(anyLen))
		h = protowire.AppendTag(h, fieldAnyTypeURL, protowire.BytesType)
		h = protowire.AppendString(h, a.GetTypeUrl())
		h = protowire.AppendTag(h, fieldAnyValue, protowire.BytesType)
		h = protowire.AppendVarint(h, uint64(len(val)))
		out = append(out, mem.SliceBuffer(h))
		if len(val) > 0 {
			out = append(out, mem.SliceBuffer(val))
		}
	}
	return out, nil
}

func hasLargeResource(r *discoveryv3.DiscoveryResponse) bool {
	for _, a := range r.GetResources() {
		if len(a.GetValue()) >= zeroCopyThreshold {
			return true
		}
	}
	return false
}
