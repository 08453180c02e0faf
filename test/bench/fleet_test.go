//go:build integration

package bench

import (
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// TestFleetCodec: what the fleet reads of a response is what the response holds.
func TestFleetCodec(t *testing.T) {
	resp := &discoveryv3.DeltaDiscoveryResponse{
		SystemVersionInfo: "9", TypeUrl: "t", Nonce: "n1",
		RemovedResources: []string{"gone"},
	}
	for i, e := range endpoints(3, 0) {
		a, err := anypb.New(e)
		if err != nil {
			t.Fatal(err)
		}
		resp.Resources = append(resp.Resources, &discoveryv3.Resource{Name: e.ClusterName, Version: string(rune('a' + i)), Resource: a})
	}
	b, err := proto.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	var s deltaSummary
	if err := newFleetCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &s); err != nil {
		t.Fatal(err)
	}
	if s.size != len(b) || s.nonce != "n1" || len(s.removed) != 1 || s.removed[0] != "gone" || len(s.resources) != 3 {
		t.Fatalf("read %+v", s)
	}
	for i, r := range s.resources {
		if r[0] != resp.Resources[i].Name || r[1] != resp.Resources[i].Version {
			t.Errorf("resource %d read as %v", i, r)
		}
	}
	if err := newFleetCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(b[:len(b)-2])}, &s); err == nil {
		t.Error("a truncated response was read")
	}
}
