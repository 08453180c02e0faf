package cache

import (
	"runtime"
	"testing"
	"time"
	"weak"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/crossgate-io/crossgate/xds/resources"
)

type sizeObserver struct{ size int }

func (o *sizeObserver) Pushed(string, time.Duration) {}
func (o *sizeObserver) NACKed(string)                {}
func (o *sizeObserver) Size(b int)                   { o.size = b }

// TestSharedPartsHeldOnce: keys whose resources have the same bytes (here a shared part, as
// every identity of an outbound set has) hold one entry, one marshaled copy and one delta
// encoding; the cache's size counts it once; the entry leaves when the last key lets go.
func TestSharedPartsHeldOnce(t *testing.T) {
	obs := &sizeObserver{}
	c := New(NodeIDResolver, nil)
	c.Observer = obs
	shared := &resources.Resources{Clusters: []*clusterv3.Cluster{{Name: "out-a"}, {Name: "out-b"}}}
	own := func(n string) *resources.Resources {
		return &resources.Resources{Listeners: []*listenerv3.Listener{{Name: "in-" + n}}, Shared: shared}
	}
	if err := c.Set("sidecar~ns/a", own("a")); err != nil {
		t.Fatal(err)
	}
	oneKey := obs.size
	if err := c.Set("sidecar~ns/b", own("b")); err != nil {
		t.Fatal(err)
	}
	ea, eb := c.keys["sidecar~ns/a"].get(resourcev3.ClusterType, "out-a"), c.keys["sidecar~ns/b"].get(resourcev3.ClusterType, "out-a")
	if ea == nil || ea != eb || &ea.any.Value[0] != &eb.any.Value[0] {
		t.Fatal("two keys with the same shared part hold distinct entries")
	}
	// The shared part is one layer, held by both keys, holding each entry once.
	if l := c.keys["sidecar~ns/a"].shared; l == nil || l != c.keys["sidecar~ns/b"].shared || len(l.holders) != 2 {
		t.Fatal("the two keys do not share one layer")
	}
	if ea.refs != 1 {
		t.Errorf("refs %d, want 1 (the layer's)", ea.refs)
	}
	if got := c.deltaWireCount(); got != 0 {
		t.Errorf("%d delta encodings before any delta response, want 0", got)
	}
	if ea.deltaResource(&c.wires, "out-a") != eb.deltaResource(&c.wires, "out-a") {
		t.Error("the delta encoding is not shared")
	}
	// Only the second key's own listener was added: the shared clusters are counted once.
	inB := len(c.keys["sidecar~ns/b"].get(resourcev3.ListenerType, "in-b").any.Value)
	if obs.size != oneKey+inB {
		t.Errorf("size %d after the second key, want %d (the first key's %d plus its own listener's %d)", obs.size, oneKey+inB, oneKey, inB)
	}
	c.parts.mu.Lock()
	memo := len(c.parts.m)
	c.parts.mu.Unlock()
	if memo != 1 {
		t.Errorf("%d shared parts remembered, want 1 (marshaled once for both keys)", memo)
	}

	// A change of the shared part reaches both keys with one new entry each.
	shared2 := &resources.Resources{Clusters: []*clusterv3.Cluster{{Name: "out-a", AltStatName: "v2"}, {Name: "out-b"}}}
	for _, k := range []string{"a", "b"} {
		if err := c.Set("sidecar~ns/"+k, &resources.Resources{Listeners: []*listenerv3.Listener{{Name: "in-" + k}}, Shared: shared2}); err != nil {
			t.Fatal(err)
		}
	}
	na := c.keys["sidecar~ns/a"].get(resourcev3.ClusterType, "out-a")
	if na == ea || na != c.keys["sidecar~ns/b"].get(resourcev3.ClusterType, "out-a") || na.refs != 1 {
		t.Error("the changed shared resource is not one new entry held by both keys")
	}
	if c.keys["sidecar~ns/a"].get(resourcev3.ClusterType, "out-b") != c.keys["sidecar~ns/b"].get(resourcev3.ClusterType, "out-b") {
		t.Error("the unchanged shared resource is no longer shared")
	}
	if _, ok := c.interned[ea.key]; ok || ea.refs != 0 {
		t.Error("the replaced entry is still interned")
	}

	// Every key lets go: nothing is held.
	for _, k := range []string{"a", "b"} {
		if err := c.Set("sidecar~ns/"+k, &resources.Resources{}); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.interned) != 0 || obs.size != 0 {
		t.Errorf("%d entries, %d bytes held after every key emptied, want none", len(c.interned), obs.size)
	}

	// The memo of a shared part goes with the part.
	// shared and shared2 are not used below, and every key let go of them: they are garbage.
	waitRemembered(t, c, 0)
}

// waitRemembered collects garbage until the cache remembers want shared parts (their cleanups
// run after a collection), failing after a minute.
func waitRemembered(t *testing.T, c *Cache, want int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		runtime.GC()
		c.parts.mu.Lock()
		n := len(c.parts.m)
		c.parts.mu.Unlock()
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d shared parts remembered after the others were dropped, want %d", n, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEndpointsOfTwoPartsMarshaledOnce: the sidecar and proxyless parts of an outbound set hold
// the same endpoint messages; the second part to be set reuses the first's bytes, and when the
// first part is gone the second keeps serving them.
func TestEndpointsOfTwoPartsMarshaledOnce(t *testing.T) {
	c := New(NodeIDResolver, nil)
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: "outbound/a"}
	first := &resources.Resources{Clusters: []*clusterv3.Cluster{{Name: "outbound/a"}}, Endpoints: []*endpointv3.ClusterLoadAssignment{cla}}
	second := &resources.Resources{Listeners: []*listenerv3.Listener{{Name: "a:80"}}, Endpoints: []*endpointv3.ClusterLoadAssignment{cla}}
	if err := c.Set("sidecar", &resources.Resources{Shared: first}); err != nil {
		t.Fatal(err)
	}
	if err := c.Set("proxyless", &resources.Resources{Shared: second}); err != nil {
		t.Fatal(err)
	}
	bytesOf := func(p *resources.Resources) []byte {
		c.parts.mu.Lock()
		defer c.parts.mu.Unlock()
		for _, m := range c.parts.m[weak.Make(p)] {
			if m.typ == resourcev3.EndpointType {
				return m.b
			}
		}
		return nil
	}
	b1, b2 := bytesOf(first), bytesOf(second)
	if b1 == nil || b2 == nil || &b1[:1][0] != &b2[:1][0] {
		t.Fatal("the endpoint resource of both parts was marshaled twice")
	}
	if c.keys["proxyless"].get(resourcev3.EndpointType, "outbound/a") == nil {
		t.Fatal("the second part does not serve the shared endpoints")
	}
	// The first part goes away: its memo entries go with it, the second's stay.
	if err := c.Set("sidecar", &resources.Resources{}); err != nil {
		t.Fatal(err)
	}
	first = nil //nolint:ineffassign,wastedassign // dropped for the collector
	waitRemembered(t, c, 1)
	c.parts.mu.Lock()
	kept := c.parts.endpoints[cla]
	c.parts.mu.Unlock()
	if kept.part != (weak.Pointer[resources.Resources]{}) && kept.part != weak.Make(second) {
		t.Error("the endpoint memo still names the collected part")
	}
	if c.keys["proxyless"].get(resourcev3.EndpointType, "outbound/a") == nil {
		t.Error("the second part lost its endpoints")
	}
	runtime.KeepAlive(second)
}
