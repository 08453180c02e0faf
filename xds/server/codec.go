package server

import (
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// GRPCOptions are the options of the gRPC server Register is given: the codec below.
func GRPCOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ForceServerCodecV2(codec{encoding.GetCodecV2(protoenc.Name)})}
}

// codec is gRPC's proto codec, except that a delta request's repeated names and its map of
// initial resource versions are decoded into a slice and a map made at their final size. A
// fleet reconnecting at once sends tens of thousands of each per stream; grown entry by entry
// (as protobuf-go does), the map alone cost most of the server's time in B10.
type codec struct{ encoding.CodecV2 }

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
		req.InitialResourceVersions = make(map[string]string, versions)
	}
	// Merging into the empty message keeps what was made above; protobuf-go copies strings out
	// of b, so the pooled buffer may be reused after.
	return proto.UnmarshalOptions{Merge: true}.Unmarshal(b, req)
}

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
