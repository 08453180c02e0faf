package server

import (
	"fmt"
	"unicode/utf8"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/crossgate-io/crossgate/xds/cache"
)

// GRPCOptions are the options of the gRPC server Register is given with c: the codec below,
// which sends c's shared encodings of the resources c's delta responses carry.
func GRPCOptions(c *cache.Cache) []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ForceServerCodecV2(codec{CodecV2: encoding.GetCodecV2(protoenc.Name), cache: c})}
}

// codec is gRPC's proto codec, except that delta responses are sent as the cache's shared
// encodings of their resources (Marshal), and a delta request's repeated names and its map of
// initial resource versions are decoded into a slice and a map made at their final size. A
// fleet reconnecting at once sends tens of thousands of each per stream; grown entry by entry
// (as protobuf-go does), the map alone cost most of the server's time in B10.
type codec struct {
	encoding.CodecV2
	cache *cache.Cache
}

// Marshal hands gRPC a delta response as its fields followed by the cache's shared encoding
// of each resource: the resources (most of the bytes: a first sync sends all of them to every
// client) are neither marshaled again nor copied into a buffer of the response's size. A
// resource the cache does not share (or no longer does) is marshaled as usual.
func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	resp, ok := v.(*discoveryv3.DeltaDiscoveryResponse)
	if !ok || len(resp.GetResources()) < sharedResourcesAtLeast {
		return c.CodecV2.Marshal(v)
	}
	// Every field but the resources, through proto.
	rest := &discoveryv3.DeltaDiscoveryResponse{}
	dst := rest.ProtoReflect()
	resp.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Name() != "resources" {
			dst.Set(fd, v)
		}
		return true
	})
	dst.SetUnknown(resp.ProtoReflect().GetUnknown())
	head, err := proto.Marshal(rest)
	if err != nil {
		return nil, err
	}
	out := make(mem.BufferSlice, 0, len(resp.Resources)+1)
	out = append(out, mem.SliceBuffer(head))
	var own []byte // the encodings of resources the cache does not share
	for _, r := range resp.Resources {
		if b, ok := c.cache.DeltaWire(r); ok {
			out = append(out, mem.SliceBuffer(b))
			continue
		}
		start := len(own)
		var err error
		if own, err = cache.AppendDeltaResource(own, r); err != nil {
			return nil, err
		}
		out = append(out, mem.SliceBuffer(own[start:len(own):len(own)]))
	}
	return out, nil
}

// sharedResourcesAtLeast is the number of resources from which a response is sent as shared
// encodings; a small one costs less marshaled into one buffer.
const sharedResourcesAtLeast = 16

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	req, ok := v.(*discoveryv3.DeltaDiscoveryRequest)
	if !ok {
		return c.CodecV2.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	b := buf.ReadOnlyData()
	proto.Reset(req)
	sub, unsub, versions := countDeltaRequest(b)
	if sub > 0 {
		req.ResourceNamesSubscribe = make([]string, 0, sub)
	}
	if unsub > 0 {
		req.ResourceNamesUnsubscribe = make([]string, 0, unsub)
	}
	if versions > 0 {
		// The map is decoded here, the rest by proto.
		m := make(map[string]string, versions)
		rest, err := decodeVersions(b, m)
		if err != nil {
			return err
		}
		b = rest
		defer func() { req.InitialResourceVersions = m }()
	}
	// Merging into the empty message keeps what was made above; protobuf-go copies strings out
	// of b, so the pooled buffer may be reused after.
	return proto.UnmarshalOptions{Merge: true}.Unmarshal(b, req)
}

// decodeVersions decodes the initial_resource_versions entries of a DeltaDiscoveryRequest into
// m, as protobuf-go does (later entries win, keys and values must be UTF-8, other fields of an
// entry are skipped), and returns the request's other fields. protobuf-go decodes map entries
// through reflection; a reconnecting client sends tens of thousands of them.
func decodeVersions(b []byte, m map[string]string) ([]byte, error) {
	rest := make([]byte, 0, len(b)/2)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		l := protowire.ConsumeFieldValue(num, typ, b[n:])
		if l < 0 {
			return nil, protowire.ParseError(l)
		}
		field := b[:n+l]
		b = b[n+l:]
		if num != initialResourceVersionsField || typ != protowire.BytesType {
			rest = append(rest, field...)
			continue
		}
		entry, _ := protowire.ConsumeBytes(field[n:])
		var key, value []byte
		for len(entry) > 0 {
			num, typ, n := protowire.ConsumeTag(entry)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			entry = entry[n:]
			if (num == 1 || num == 2) && typ == protowire.BytesType {
				v, n := protowire.ConsumeBytes(entry)
				if n < 0 {
					return nil, protowire.ParseError(n)
				}
				if !utf8.Valid(v) {
					return nil, fmt.Errorf("initial_resource_versions: invalid UTF-8 in a %s", map[protowire.Number]string{1: "key", 2: "value"}[num])
				}
				if num == 1 {
					key = v
				} else {
					value = v
				}
				entry = entry[n:]
				continue
			}
			n = protowire.ConsumeFieldValue(num, typ, entry)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			entry = entry[n:]
		}
		m[string(key)] = string(value)
	}
	return rest, nil
}

// initialResourceVersionsField is DeltaDiscoveryRequest.initial_resource_versions.
const initialResourceVersionsField = 5

// countDeltaRequest counts the top-level occurrences of DeltaDiscoveryRequest's
// resource_names_subscribe (3), resource_names_unsubscribe (4) and initial_resource_versions
// (5). Malformed input stops the count; proto.Unmarshal then reports it.
func countDeltaRequest(b []byte) (sub, unsub, versions int) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return
		}
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return
		}
		b = b[m:]
		if typ != protowire.BytesType {
			continue
		}
		switch num {
		case 3:
			sub++
		case 4:
			unsub++
		case 5:
			versions++
		}
	}
	return
}
