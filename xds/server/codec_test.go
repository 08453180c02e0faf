package server

import (
	"fmt"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/crossgate-io/crossgate/xds/cache"
)

func reconnectRequest(n int) *discoveryv3.DeltaDiscoveryRequest {
	req := &discoveryv3.DeltaDiscoveryRequest{
		Node: &corev3.Node{Id: "ns/sa"}, TypeUrl: "t", ResponseNonce: "7",
		ResourceNamesUnsubscribe: []string{"gone"}, InitialResourceVersions: map[string]string{},
		ErrorDetail: &status.Status{Message: "m"},
	}
	for i := range n {
		name := fmt.Sprintf("outbound/ns-%d/svc-%d:8080", i%100, i)
		req.ResourceNamesSubscribe = append(req.ResourceNamesSubscribe, name)
		req.InitialResourceVersions[name] = fmt.Sprint(i)
	}
	return req
}

// TestCodecDecodesAsProto: the codec decodes delta requests exactly as gRPC's proto codec does
// (and other messages through it), rejects what it rejects, and builds the big map and slice
// at their final size (fewer allocations than growing them).
func TestCodecDecodesAsProto(t *testing.T) {
	ours, base := codec{CodecV2: encoding.GetCodecV2(protoenc.Name), cache: cache.New(cache.NodeIDResolver, nil)}, encoding.GetCodecV2(protoenc.Name)
	decode := func(c encoding.CodecV2, b []byte, m proto.Message) error {
		return c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, m)
	}
	big, err := proto.Marshal(reconnectRequest(10000))
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"empty":          nil,
		"reconnect":      big,
		"unknown fields": append(append([]byte{}, big...), protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 5)...),
		"first subscribe": func() []byte {
			b, _ := proto.Marshal(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: "t", ResourceNamesSubscribe: []string{"a", "b"}})
			return b
		}(),
		"duplicate map keys": func() []byte {
			b, _ := proto.Marshal(&discoveryv3.DeltaDiscoveryRequest{InitialResourceVersions: map[string]string{"a": "1"}})
			c, _ := proto.Marshal(&discoveryv3.DeltaDiscoveryRequest{InitialResourceVersions: map[string]string{"a": "2"}})
			return append(b, c...)
		}(),
	}
	for name, b := range cases {
		got, want := &discoveryv3.DeltaDiscoveryRequest{}, &discoveryv3.DeltaDiscoveryRequest{}
		if err := decode(ours, b, got); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if err := decode(base, b, want); err != nil {
			t.Fatalf("%s: proto: %v", name, err)
		}
		if !proto.Equal(got, want) {
			t.Errorf("%s: decoded differently from proto", name)
		}
	}
	for name, b := range map[string][]byte{
		"truncated":    big[:len(big)-3],
		"invalid utf8": protowire.AppendString(protowire.AppendTag(nil, 3, protowire.BytesType), "\xff"),
	} {
		if err := decode(ours, b, &discoveryv3.DeltaDiscoveryRequest{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Other messages pass through.
	sotw, _ := proto.Marshal(&discoveryv3.DiscoveryRequest{VersionInfo: "1", ResourceNames: []string{"a"}})
	got := &discoveryv3.DiscoveryRequest{}
	if err := decode(ours, sotw, got); err != nil || got.GetVersionInfo() != "1" {
		t.Errorf("a state-of-the-world request: %v %v", got, err)
	}

	allocs := func(c encoding.CodecV2) float64 {
		return testing.AllocsPerRun(3, func() { _ = decode(c, big, &discoveryv3.DeltaDiscoveryRequest{}) })
	}
	o, p := allocs(ours), allocs(base)
	t.Logf("decoding a 10k-name reconnect: %.0f allocations, proto's codec %.0f", o, p)
	if o >= p {
		t.Errorf("decoding a 10k-name reconnect took %.0f allocations, proto's codec %.0f: the map and slice were not made at their final size", o, p)
	}
}

// TestCodecSendsSharedResources: a delta response of many resources reaches a client exactly
// as the cache holds them (sent as the cache's shared encodings), after a change too (the
// replaced resources' encodings retired), and the codec's output for resources the cache does
// not share equals proto's.
func TestCodecSendsSharedResources(t *testing.T) {
	world := map[string]int64{}
	for i := range 40 {
		world[fmt.Sprintf("c%02d", i)] = 1
	}
	c := cache.New(cache.NodeIDResolver, nil)
	if err := c.Set("a/a", clusters(world)); err != nil {
		t.Fatal(err)
	}
	send, next, _ := openClusterStream(t, c, "a/a")
	send(&discoveryv3.DeltaDiscoveryRequest{})
	check := func(r *discoveryv3.DeltaDiscoveryResponse, want map[string]int64) {
		t.Helper()
		if len(r.GetResources()) != len(want) || r.GetNonce() == "" || r.GetTypeUrl() != resourcev3.ClusterType {
			t.Fatalf("%d resources (want %d), nonce %q, type %q", len(r.GetResources()), len(want), r.GetNonce(), r.GetTypeUrl())
		}
		for _, x := range r.GetResources() {
			cl := &clusterv3.Cluster{}
			if err := x.GetResource().UnmarshalTo(cl); err != nil {
				t.Fatal(err)
			}
			if cl.GetName() != x.GetName() || x.GetVersion() == "" || cl.GetConnectTimeout().GetSeconds() != want[x.GetName()] {
				t.Errorf("%s: got %v version %q", x.GetName(), cl, x.GetVersion())
			}
		}
	}
	r := next()
	check(r, world)
	send(&discoveryv3.DeltaDiscoveryRequest{ResponseNonce: r.GetNonce()})
	changed := map[string]int64{}
	for i := range 20 {
		name := fmt.Sprintf("c%02d", i)
		world[name] = 2
		changed[name] = 2
	}
	if err := c.Set("a/a", clusters(world)); err != nil {
		t.Fatal(err)
	}
	r = next()
	check(r, changed)

	// Resources the cache does not share (those just received are new objects), a removal
	// and unknown fields: the same as proto.
	r.RemovedResources = []string{"gone"}
	r.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1))
	ours := codec{CodecV2: encoding.GetCodecV2(protoenc.Name), cache: c}
	data, err := ours.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	got := &discoveryv3.DeltaDiscoveryResponse{}
	if err := proto.Unmarshal(data.Materialize(), got); err != nil || !proto.Equal(got, r) {
		t.Errorf("the codec's response differs from proto's: %v", err)
	}
}

// FuzzCodecDecodesAsProto: for any bytes, the codec accepts a delta request exactly when
// proto does, and decodes it to the same message.
func FuzzCodecDecodesAsProto(f *testing.F) {
	small, _ := proto.Marshal(reconnectRequest(3))
	f.Add(small)
	f.Add([]byte{})
	entry := func(fields ...[]byte) []byte {
		var e []byte
		for _, x := range fields {
			e = append(e, x...)
		}
		return protowire.AppendBytes(protowire.AppendTag(nil, 5, protowire.BytesType), e)
	}
	str := func(num protowire.Number, s string) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), s)
	}
	f.Add(entry(str(1, "k"), str(2, "v"), str(1, "k2")))                                                    // a repeated key field: last wins
	f.Add(entry(str(2, "only value")))                                                                      // no key
	f.Add(entry(str(1, "k"), protowire.AppendVarint(protowire.AppendTag(nil, 7, protowire.VarintType), 3))) // an unknown field
	f.Add(entry(protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 3)))              // a key of the wrong type
	f.Add(entry(str(1, "\xff")))                                                                            // invalid UTF-8
	f.Add(append(entry(str(1, "a"), str(2, "1")), entry(str(1, "a"), str(2, "2"))...))                      // a repeated key
	f.Add(protowire.AppendVarint(protowire.AppendTag(nil, 5, protowire.VarintType), 1))                     // the map field with the wrong type
	ours := codec{CodecV2: encoding.GetCodecV2(protoenc.Name), cache: cache.New(cache.NodeIDResolver, nil)}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, want := &discoveryv3.DeltaDiscoveryRequest{}, &discoveryv3.DeltaDiscoveryRequest{}
		errGot := ours.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, got)
		errWant := proto.Unmarshal(b, want)
		if (errGot == nil) != (errWant == nil) {
			t.Fatalf("codec error %v, proto error %v", errGot, errWant)
		}
		if errWant == nil && !proto.Equal(got, want) {
			t.Fatalf("decoded %v, proto %v", got, want)
		}
	})
}
