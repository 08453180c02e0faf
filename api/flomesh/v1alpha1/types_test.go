package v1alpha1

import (
	"strings"
	"testing"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestClusterKey(t *testing.T) {
	c := &Cluster{ObjectMeta: metav1.ObjectMeta{Name: "cluster-1"}}
	if got := c.Key(); got != "default/default/default/cluster-1" {
		t.Errorf("key with defaults = %s", got)
	}
	c.Spec.Region, c.Spec.Zone, c.Spec.Group = "eu", "eu-1a", "blue"
	if got := c.Key(); got != "eu/eu-1a/blue/cluster-1" {
		t.Errorf("key = %s", got)
	}
	r, z, g, n, ok := c.Key().Parts()
	if !ok || r != "eu" || z != "eu-1a" || g != "blue" || n != "cluster-1" {
		t.Errorf("Parts() = %q %q %q %q %v", r, z, g, n, ok)
	}
	for _, bad := range []ClusterKey{"", "cluster-1", "a/b/c", "a/b/c/d/e", "a//c/d"} {
		if _, _, _, _, ok := bad.Parts(); ok {
			t.Errorf("%q parsed as a cluster key", bad)
		}
	}
}

func TestPermissiveMode(t *testing.T) {
	m := &MeshConfig{}
	if !m.PermissiveMode() {
		t.Error("an unset mode must be permissive, as the CRD default is")
	}
	f := false
	m.Spec.Traffic.EnablePermissiveTrafficPolicyMode = &f
	if m.PermissiveMode() {
		t.Error("false must turn policy mode on")
	}
}

func TestConditionMessageFits(t *testing.T) {
	long := strings.Repeat("é", MaxConditionMessage) // 2 bytes a character
	got := ConditionMessage(long)
	if len(got) > MaxConditionMessage || !utf8.ValidString(got) || !strings.HasSuffix(got, "(cut)") {
		t.Errorf("cut message: %d bytes, valid UTF-8 %v", len(got), utf8.ValidString(got))
	}
	if ConditionMessage("short") != "short" {
		t.Error("a short message changed")
	}
}
