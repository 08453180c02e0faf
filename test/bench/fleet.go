package bench

import (
	"errors"

	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// B3's client fleet runs on the same two cores as the server it measures, where a real fleet
// runs on machines of its own. So that the fleet's own work does not dominate what is measured,
// its clients do the least a delta client must: they read each response's resource names,
// versions, removals and nonce (not the resources themselves: the Any stays undecoded), and
// they marshal a reconnect request before the reconnect is timed. What reaches the server, and
// what the server must do, is unchanged.

// rawRequest is a request the fleet marshaled in advance.
type rawRequest []byte

// deltaSummary is what a fleet client reads of a DeltaDiscoveryResponse.
type deltaSummary struct {
	size      int
	resources [][2]string // name, version
	removed   []string
	nonce     string
}

// fleetCodec sends rawRequests as they are and reads responses into deltaSummary; anything
// else goes through gRPC's proto codec.
type fleetCodec struct{ encoding.CodecV2 }

func newFleetCodec() fleetCodec { return fleetCodec{encoding.GetCodecV2(protoenc.Name)} }

func (c fleetCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(rawRequest); ok {
		return mem.BufferSlice{mem.SliceBuffer(r)}, nil
	}
	return c.CodecV2.Marshal(v)
}

func (c fleetCodec) Unmarshal(data mem.BufferSlice, v any) error {
	s, ok := v.(*deltaSummary)
	if !ok {
		return c.CodecV2.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	b := buf.ReadOnlyData()
	*s = deltaSummary{size: len(b)}
	return walk(b, func(num protowire.Number, v []byte) error {
		switch num {
		case 2: // resources
			var r [2]string
			err := walk(v, func(num protowire.Number, v []byte) error {
				switch num {
				case 3:
					r[0] = string(v)
				case 1:
					r[1] = string(v)
				}
				return nil
			})
			s.resources = append(s.resources, r)
			return err
		case 6:
			s.removed = append(s.removed, string(v))
		case 5:
			s.nonce = string(v)
		}
		return nil
	})
}

// walk calls f with the number and contents of each length-delimited field of b.
func walk(b []byte, f func(protowire.Number, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errors.New("bad tag")
		}
		b = b[n:]
		if typ != protowire.BytesType {
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return errors.New("bad field")
			}
			b = b[m:]
			continue
		}
		v, m := protowire.ConsumeBytes(b)
		if m < 0 {
			return errors.New("bad length")
		}
		b = b[m:]
		if err := f(num, v); err != nil {
			return err
		}
	}
	return nil
}
