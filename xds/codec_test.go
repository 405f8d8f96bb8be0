package xds

import (
	"bytes"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"
)

// TestDiscoveryCodec: a response with large resources encodes to bytes
// that decode to the same message, with the large values referenced, not
// copied; small responses take the standard path.
func TestDiscoveryCodec(t *testing.T) {
	big := bytes.Repeat([]byte{0x0a, 0x01, 'x'}, zeroCopyThreshold) // any bytes: Any.value is opaque here
	resp := &discoveryv3.DiscoveryResponse{
		VersionInfo: "v1", TypeUrl: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", Nonce: "7",
		ControlPlane: &corev3.ControlPlane{Identifier: "mcpgw"},
		Resources: []*anypb.Any{
			{TypeUrl: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", Value: big},
			{TypeUrl: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", Value: []byte{0x0a, 0x01, 'y'}},
			{TypeUrl: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"},
		},
	}
	c := newDiscoveryCodec()
	data, err := c.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	shared := false
	for _, b := range data {
		if d := b.ReadOnlyData(); len(d) == len(big) && &d[0] == &big[0] {
			shared = true
		}
	}
	if !shared {
		t.Error("large resource value was copied")
	}
	got := &discoveryv3.DiscoveryResponse{}
	if err := proto.Unmarshal(data.Materialize(), got); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(resp, got, protocmp.Transform()); d != "" {
		t.Fatalf("round trip differs:\n%s", d)
	}
	small := &discoveryv3.DiscoveryResponse{VersionInfo: "v2", Resources: []*anypb.Any{{TypeUrl: "t", Value: []byte{1}}}}
	data, err = c.Marshal(small)
	if err != nil {
		t.Fatal(err)
	}
	got = &discoveryv3.DiscoveryResponse{}
	if err := c.Unmarshal(data, got); err != nil || !proto.Equal(small, got) {
		t.Fatalf("small response round trip: %v %v", got, err)
	}
}
