package xds

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"sync"
	"sync/atomic"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the default "proto" codec
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
)

// leanCodec is the benchmark clients' gRPC codec. The clients stand in for
// Envoys that would run on their own machines; here they share the two
// cores with the server, so once lean is set they read only the envelope of
// a DiscoveryResponse (version, type, nonce, and how many resources) and
// skip the resource bytes without copying them. Requests and everything
// before lean is set use the normal proto codec.
type leanCodec struct {
	lean atomic.Bool
	base encoding.CodecV2
}

func newLeanCodec() *leanCodec { return &leanCodec{base: encoding.GetCodecV2("proto")} }

func (c *leanCodec) Name() string { return "proto" }

func (c *leanCodec) Marshal(v any) (mem.BufferSlice, error) { return c.base.Marshal(v) }

func (c *leanCodec) Unmarshal(data mem.BufferSlice, v any) error {
	resp, ok := v.(*discoveryv3.DiscoveryResponse)
	if !ok || !c.lean.Load() {
		return c.base.Unmarshal(data, v)
	}
	r := data.Reader()
	defer r.Close()
	for r.Remaining() > 0 {
		tag, err := binary.ReadUvarint(r)
		if err != nil {
			return err
		}
		num, typ := protowire.Number(tag>>3), protowire.Type(tag&7)
		if typ != protowire.BytesType {
			return fmt.Errorf("lean codec: unexpected wire type %d for field %d", typ, num)
		}
		n, err := binary.ReadUvarint(r)
		if err != nil {
			return err
		}
		switch num {
		case 1, 4, 5: // version_info, type_url, nonce
			b := make([]byte, n)
			if _, err := io.ReadFull(r, b); err != nil {
				return err
			}
			switch num {
			case 1:
				resp.VersionInfo = string(b)
			case 4:
				resp.TypeUrl = string(b)
			case 5:
				resp.Nonce = string(b)
			}
		default: // resources (2) and anything else: skipped, not copied
			if num == 2 {
				resp.Resources = append(resp.Resources, &anypb.Any{})
			}
			if _, err := r.Discard(int(n)); err != nil {
				return err
			}
		}
	}
	return nil
}

// dirtyPool is the benchmark clients' gRPC buffer pool: size-classed like
// gRPC's default pool, but buffers are not zeroed on reuse. gRPC's default
// pool clears every buffer it hands out, so each client paid a full clear
// of every multi-MB push it received — one more pass over the route
// configuration per client per rotation, on the two cores the server
// needs. The clients stand in for Envoys on other machines (see leanCodec);
// the server keeps gRPC's default pool.
type dirtyPool struct{ classes [23]sync.Pool } // 1 B … 4 MiB

func newDirtyPool() *dirtyPool { return &dirtyPool{} }

func (p *dirtyPool) class(n int) int { return bits.Len(uint(n - 1)) }

func (p *dirtyPool) Get(length int) *[]byte {
	c := p.class(length)
	if length <= 0 || c >= len(p.classes) {
		b := make([]byte, length)
		return &b
	}
	if b, ok := p.classes[c].Get().(*[]byte); ok {
		*b = (*b)[:length]
		return b
	}
	b := make([]byte, length, 1<<c)
	return &b
}

func (p *dirtyPool) Put(b *[]byte) {
	n := cap(*b)
	if n == 0 || n&(n-1) != 0 { // not a buffer of ours
		return
	}
	if c := p.class(n); c < len(p.classes) {
		p.classes[c].Put(b)
	}
}
