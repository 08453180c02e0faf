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
	if before["a"].version != va {
		t.Error("the previous map was changed in place")
	}
	if err := c.Set("k", &resources.Resources{Clusters: []*clusterv3.Cluster{{Name: "a", AltStatName: "y"}, {Name: "b"}}}); err != nil {
		t.Fatal(err)
	}
	if v := c.keys["k"][resourcev3.ClusterType]["a"].version; v == after["a"].version {
		t.Error("Set after Upsert reused a version")
	}
}
