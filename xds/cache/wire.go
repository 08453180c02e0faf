package cache

import (
	"sync"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// wires maps each entry's shared delta Resource to its encoding as an element of
// DeltaDiscoveryResponse.resources (tag, length and message), so that the server's codec can
// hand gRPC those bytes instead of marshaling the same resource once per client. An entry's
// Resource is registered when first sent and unregistered when the entry is replaced or
// removed; a response still holding it then has it marshaled as usual. Each Cache has its own;
// the server's codec is handed the cache whose responses it encodes (server.GRPCOptions).
type wires struct{ m sync.Map } // *discoveryv3.Resource -> []byte

// resourcesField is DeltaDiscoveryResponse.resources.
const resourcesField = 2

// DeltaWire is the encoding of r as an element of DeltaDiscoveryResponse.resources, when r is
// a resource the cache shares between responses.
func (c *Cache) DeltaWire(r *discoveryv3.Resource) ([]byte, bool) {
	b, ok := c.wires.m.Load(r)
	if !ok {
		return nil, false
	}
	return b.([]byte), true
}

// AppendDeltaResource appends r's encoding as an element of DeltaDiscoveryResponse.resources.
func AppendDeltaResource(dst []byte, r *discoveryv3.Resource) ([]byte, error) {
	m, err := (proto.MarshalOptions{Deterministic: true}).Marshal(r)
	if err != nil {
		return dst, err
	}
	return protowire.AppendBytes(protowire.AppendTag(dst, resourcesField, protowire.BytesType), m), nil
}

// deltaResource is e as delta responses carry it, made on first use (under the cache's lock)
// and then shared by every delta response, like any.
func (e *entry) deltaResource(w *wires, name string) *discoveryv3.Resource {
	if e.delta == nil {
		r := &discoveryv3.Resource{Name: name, Version: e.version, Resource: e.any}
		if b, err := AppendDeltaResource(nil, r); err == nil {
			w.m.Store(r, b)
		}
		e.delta = r
	}
	return e.delta
}

// retire unregisters e's delta Resource: e is no longer the current version of its resource.
func (e *entry) retire(w *wires) {
	if e != nil && e.delta != nil {
		w.m.Delete(e.delta)
	}
}

// deltaWireCount is the number of delta encodings the cache holds.
func (c *Cache) deltaWireCount() int {
	n := 0
	c.wires.m.Range(func(any, any) bool { n++; return true })
	return n
}
