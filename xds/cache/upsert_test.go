package cache

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/crossgate-io/crossgate/xds/resources"
)

func TestUpsert(t *testing.T) {
	c := New(NodeIDResolver, nil)
	if err := c.Upsert("k", resourcev3.ClusterType, "a", &clusterv3.Cluster{Name: "a"}); err == nil {
		t.Error("upsert into a key never set was accepted")
	}
	if err := c.Set("k", &resources.Resources{Clusters: []*clusterv3.Cluster{{Name: "a"}, {Name: "b"}}}); err != nil {
		t.Fatal(err)
	}
	before := c.keys["k"].own[resourcev3.ClusterType]
	va, vb := before["a"].version, before["b"].version
	if err := c.Upsert("k", resourcev3.ClusterType, "a", &clusterv3.Cluster{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	if c.keys["k"].get(resourcev3.ClusterType, "a").version != va {
		t.Error("an unchanged resource got a new version")
	}
	if err := c.Upsert("k", resourcev3.ClusterType, "a", &clusterv3.Cluster{Name: "a", AltStatName: "x"}); err != nil {
		t.Fatal(err)
	}
	after := c.keys["k"].own[resourcev3.ClusterType]
	if after["a"].version == va || after["b"].version != vb {
		t.Errorf("versions a %s→%s, b %s→%s: want a new, b kept", va, after["a"].version, vb, after["b"].version)
	}
	if err := c.Set("k", &resources.Resources{Clusters: []*clusterv3.Cluster{{Name: "a", AltStatName: "y"}, {Name: "b"}}}); err != nil {
		t.Fatal(err)
	}
	if v := c.keys["k"].get(resourcev3.ClusterType, "a").version; v == after["a"].version {
		t.Error("Set after Upsert reused a version")
	}
}

func TestPatchSharesOneEntry(t *testing.T) {
	c := New(NodeIDResolver, nil)
	for _, k := range []string{"k1", "k2", "k3"} {
		if err := c.Set(k, &resources.Resources{Clusters: []*clusterv3.Cluster{{Name: "a"}, {Name: "b"}}}); err != nil {
			t.Fatal(err)
		}
	}
	kept := c.keys["k3"].get(resourcev3.ClusterType, "a")
	nu := &clusterv3.Cluster{Name: "a", AltStatName: "x"}
	err := c.Patch([]Replacement{{Keys: []string{"k1", "k2", "nope"}, TypeURL: resourcev3.ClusterType, Name: "a", Resource: nu}})
	if err == nil {
		t.Error("a patch of a key never set was accepted")
	}
	e1, e2 := c.keys["k1"].get(resourcev3.ClusterType, "a"), c.keys["k2"].get(resourcev3.ClusterType, "a")
	if e1 != e2 || e1 == kept || e1.refs != 2 {
		t.Errorf("the patched keys hold %p and %p (refs %d), the other %p: want one new entry held twice", e1, e2, e1.refs, kept)
	}
	if c.keys["k3"].get(resourcev3.ClusterType, "a") != kept || kept.refs != 1 {
		t.Errorf("the key left out of the patch changed, or its entry's references did (%d)", kept.refs)
	}
	if got, want := c.internedBytes, len(kept.any.Value)+len(e1.any.Value)+len(c.keys["k1"].get(resourcev3.ClusterType, "b").any.Value); got != want {
		t.Errorf("interned bytes %d, want %d (each distinct resource once)", got, want)
	}
	if g := c.gen["k1"][resourcev3.ClusterType]; g != 2 {
		t.Errorf("k1's cluster generation %d after a Set and a Patch, want 2", g)
	}
	if g := c.gen["k3"][resourcev3.ClusterType]; g != 1 {
		t.Errorf("k3's cluster generation %d, want 1 (not patched)", g)
	}
}

// TestPatchSharedLayer: a replacement of a shared part's resource for every key that has the
// part changes the layer once; for some of its keys only, those keys stop sharing it and the
// others keep what they had.
func TestPatchSharedLayer(t *testing.T) {
	c := New(NodeIDResolver, nil)
	shared := &resources.Resources{Clusters: []*clusterv3.Cluster{{Name: "a"}, {Name: "b"}}}
	for _, k := range []string{"k1", "k2", "k3"} {
		if err := c.Set(k, &resources.Resources{Listeners: []*listenerv3.Listener{{Name: "own-" + k}}, Shared: shared}); err != nil {
			t.Fatal(err)
		}
	}
	l := c.keys["k1"].shared
	old := l.t[resourcev3.ClusterType]["a"]
	nu := &clusterv3.Cluster{Name: "a", AltStatName: "x"}
	if err := c.Patch([]Replacement{{Keys: []string{"k1", "k2", "k3"}, TypeURL: resourcev3.ClusterType, Name: "a", Resource: nu}}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"k1", "k2", "k3"} {
		v := c.keys[k]
		if v.shared != l || v.get(resourcev3.ClusterType, "a") == old || v.get(resourcev3.ClusterType, "a").refs != 1 {
			t.Errorf("%s: the layer was not patched in place, once", k)
		}
		if g := c.gen[k][resourcev3.ClusterType]; g != 2 {
			t.Errorf("%s: cluster generation %d, want 2", k, g)
		}
	}
	if _, ok := c.interned[old.key]; ok {
		t.Error("the replaced entry is still interned")
	}
	// k1 alone: it stops sharing; k2 and k3 keep the layer as it was.
	before := c.keys["k2"].get(resourcev3.ClusterType, "a")
	nu2 := &clusterv3.Cluster{Name: "a", AltStatName: "y"}
	if err := c.Patch([]Replacement{{Keys: []string{"k1"}, TypeURL: resourcev3.ClusterType, Name: "a", Resource: nu2}}); err != nil {
		t.Fatal(err)
	}
	v1 := c.keys["k1"]
	if v1.shared != nil || v1.get(resourcev3.ClusterType, "a") == before || v1.get(resourcev3.ClusterType, "b") != c.keys["k2"].get(resourcev3.ClusterType, "b") {
		t.Error("k1 did not get its own copy of the layer with the replacement")
	}
	if v1.get(resourcev3.ListenerType, "own-k1") == nil || v1.count(resourcev3.ClusterType) != 2 {
		t.Error("k1 lost resources when it stopped sharing")
	}
	for _, k := range []string{"k2", "k3"} {
		if c.keys[k].get(resourcev3.ClusterType, "a") != before || c.gen[k][resourcev3.ClusterType] != 2 {
			t.Errorf("%s changed with a patch of k1 alone", k)
		}
	}
	if len(l.holders) != 2 {
		t.Errorf("the layer has %d holders, want 2", len(l.holders))
	}
	// Every key lets go: nothing is held.
	for _, k := range []string{"k1", "k2", "k3"} {
		if err := c.Set(k, &resources.Resources{}); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.interned) != 0 || c.internedBytes != 0 || len(c.layers) != 0 {
		t.Errorf("%d entries, %d bytes, %d layers held after every key emptied, want none", len(c.interned), c.internedBytes, len(c.layers))
	}
}
