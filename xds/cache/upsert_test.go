package cache

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
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
	before := c.keys["k"][resourcev3.ClusterType]
	va, vb := before["a"].version, before["b"].version
	if err := c.Upsert("k", resourcev3.ClusterType, "a", &clusterv3.Cluster{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	if c.keys["k"][resourcev3.ClusterType]["a"].version != va {
		t.Error("an unchanged resource got a new version")
	}
	if err := c.Upsert("k", resourcev3.ClusterType, "a", &clusterv3.Cluster{Name: "a", AltStatName: "x"}); err != nil {
		t.Fatal(err)
	}
	after := c.keys["k"][resourcev3.ClusterType]
	if after["a"].version == va || after["b"].version != vb {
		t.Errorf("versions a %s→%s, b %s→%s: want a new, b kept", va, after["a"].version, vb, after["b"].version)
	}
	if err := c.Set("k", &resources.Resources{Clusters: []*clusterv3.Cluster{{Name: "a", AltStatName: "y"}, {Name: "b"}}}); err != nil {
		t.Fatal(err)
	}
	if v := c.keys["k"][resourcev3.ClusterType]["a"].version; v == after["a"].version {
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
	kept := c.keys["k3"][resourcev3.ClusterType]["a"]
	nu := &clusterv3.Cluster{Name: "a", AltStatName: "x"}
	err := c.Patch([]Replacement{{Keys: []string{"k1", "k2", "nope"}, TypeURL: resourcev3.ClusterType, Name: "a", Resource: nu}})
	if err == nil {
		t.Error("a patch of a key never set was accepted")
	}
	e1, e2 := c.keys["k1"][resourcev3.ClusterType]["a"], c.keys["k2"][resourcev3.ClusterType]["a"]
	if e1 != e2 || e1 == kept || e1.refs != 2 {
		t.Errorf("the patched keys hold %p and %p (refs %d), the other %p: want one new entry held twice", e1, e2, e1.refs, kept)
	}
	if c.keys["k3"][resourcev3.ClusterType]["a"] != kept || kept.refs != 1 {
		t.Errorf("the key left out of the patch changed, or its entry's references did (%d)", kept.refs)
	}
	if got, want := c.internedBytes, len(kept.any.Value)+len(e1.any.Value)+len(c.keys["k1"][resourcev3.ClusterType]["b"].any.Value); got != want {
		t.Errorf("interned bytes %d, want %d (each distinct resource once)", got, want)
	}
	if g := c.gen["k1"][resourcev3.ClusterType]; g != 2 {
		t.Errorf("k1's cluster generation %d after a Set and a Patch, want 2", g)
	}
	if g := c.gen["k3"][resourcev3.ClusterType]; g != 1 {
		t.Errorf("k3's cluster generation %d, want 1 (not patched)", g)
	}
}
