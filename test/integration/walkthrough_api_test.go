//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	accessv1alpha3 "github.com/crossgate-io/crossgate/api/smi/access/v1alpha3"
	specsv1alpha4 "github.com/crossgate-io/crossgate/api/smi/specs/v1alpha4"
	"github.com/crossgate-io/crossgate/sandbox/walkthrough"
)

func render(t *testing.T, name string, vars map[string]string, kubeconfig string) string {
	t.Helper()
	out, err := walkthrough.Render(name, vars, kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameJSON(t *testing.T, what, got string, wantFile string) {
	t.Helper()
	want, err := walkthrough.Manifests.ReadFile("manifests/" + wantFile)
	if err != nil {
		t.Fatal(err)
	}
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("%s: %v: %s", what, err, got)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got %s\nwant %s", what, got, want)
	}
}

// TestWalkthroughManifestsApply applies, with kubectl and unchanged, every manifest of the
// walkthrough that uses crossgate's kinds, in the cluster where the walkthrough applies it, and
// reads them back with the defaults applied.
func TestWalkthroughManifestsApply(t *testing.T) {
	ctx := context.Background()
	for _, c := range []string{"cluster-1", "cluster-2", "cluster-3"} {
		kubectl(t, c, "", "create", "namespace", "httpbin")
	}
	kubectl(t, "cluster-2", "", "create", "namespace", "curl")
	kubectl(t, "cluster-2", "", "create", "namespace", "fsm-system")

	// Federate clusters: one Cluster per member on the control plane, its kubeconfig inline.
	for i, name := range []string{"cluster-1", "cluster-2", "cluster-3"} {
		kc, err := os.ReadFile(sb.Cluster(name).Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		vars := map[string]string{"CLUSTER_NAME": name, "HOST_IP": "127.0.0.1", "PORT": strconv.Itoa(81 + i), "FSM_NAMESPACE": "fsm-system"}
		kubectl(t, "control-plane", render(t, "cluster.yaml", vars, string(kc)), "apply", "-f", "-")
	}
	cp := sb.Cluster("control-plane").Client
	for i, name := range []string{"cluster-1", "cluster-2", "cluster-3"} {
		var c flomeshv1alpha1.Cluster
		if err := cp.Get(ctx, client.ObjectKey{Name: name}, &c); err != nil {
			t.Fatal(err)
		}
		if c.Spec.Region != "default" || c.Spec.Zone != "default" || c.Spec.Group != "default" {
			t.Errorf("Cluster %s: region/zone/group = %q/%q/%q, want default/default/default", name, c.Spec.Region, c.Spec.Zone, c.Spec.Group)
		}
		if c.Spec.GatewayPort != int32(81+i) || c.Spec.GatewayHost != "127.0.0.1" || c.Spec.FsmMeshConfigName != "fsm-system" {
			t.Errorf("Cluster %s: spec %+v", name, c.Spec)
		}
		if got := string(c.Key()); got != "default/default/default/"+name {
			t.Errorf("Cluster %s key = %s", name, got)
		}
		kc, _ := os.ReadFile(sb.Cluster(name).Kubeconfig)
		if strings.TrimRight(c.Spec.Kubeconfig, "\n") != strings.TrimRight(string(kc), "\n") {
			t.Errorf("Cluster %s: the inline kubeconfig did not survive the round trip", name)
		}
	}
	// gatewayPort defaults to 80.
	kubectl(t, "control-plane", `
apiVersion: flomesh.io/v1alpha1
kind: Cluster
metadata:
  name: cluster-4
spec:
  gatewayHost: gw.example.com
  kubeconfigSecretRef: {namespace: crossgate-system, name: cluster-4}
`, "apply", "-f", "-")
	var c4 flomeshv1alpha1.Cluster
	if err := cp.Get(ctx, client.ObjectKey{Name: "cluster-4"}, &c4); err != nil {
		t.Fatal(err)
	}
	if c4.Spec.GatewayPort != 80 || c4.Spec.KubeconfigSecretRef.Key != "kubeconfig" || c4.Spec.Region != "default" {
		t.Errorf("cluster-4 defaults: gatewayPort %d, secret key %q, region %q", c4.Spec.GatewayPort, c4.Spec.KubeconfigSecretRef.Key, c4.Spec.Region)
	}

	// Export services in cluster-1 and cluster-3: the discovery guide's exports, the access guide's
	// example, then the access guide's exports (serviceAccountName httpbin) over them.
	for _, name := range []string{"cluster-1", "cluster-3"} {
		vars := map[string]string{"NAMESPACE_MESH": "httpbin", "CLUSTER_NAME": name}
		kubectl(t, name, render(t, "serviceexport-any.yaml", vars, ""), "apply", "-f", "-")
	}
	// The walkthrough prints cluster-3's export spec with its defaults: compare field for field.
	sameJSON(t, "cluster-3 ServiceExport httpbin spec",
		kubectl(t, "cluster-3", "", "get", "serviceexports", "httpbin", "-n", "httpbin", "-o", "jsonpath={.spec}"),
		"serviceexport-spec.json")
	kubectl(t, "cluster-1", render(t, "serviceexport-example.yaml", nil, ""), "apply", "-f", "-")
	for _, name := range []string{"cluster-1", "cluster-3"} {
		vars := map[string]string{"NAMESPACE_MESH": "httpbin", "CLUSTER_NAME": name}
		kubectl(t, name, render(t, "serviceexport-httpbin.yaml", vars, ""), "apply", "-f", "-")
		for _, export := range []string{"httpbin", "httpbin-" + name} {
			var e flomeshv1alpha1.ServiceExport
			if err := sb.Cluster(name).Client.Get(ctx, client.ObjectKey{Namespace: "httpbin", Name: export}, &e); err != nil {
				t.Fatal(err)
			}
			wantPath := "/" + name + "/httpbin-mesh"
			if export != "httpbin" {
				wantPath += "-" + name
			}
			r := e.Spec.Rules
			if e.Spec.ServiceAccountName != "httpbin" || e.Spec.LoadBalancer != flomeshv1alpha1.RoundRobinLoadBalancer ||
				len(r) != 1 || r[0].PortNumber != 8080 || r[0].Path != wantPath || r[0].PathType != flomeshv1alpha1.PathMatchPrefix {
				t.Errorf("%s ServiceExport %s: %+v", name, export, e.Spec)
			}
		}
	}

	// In cluster-2: FailOver, then ActiveActive, as the walkthrough applies them.
	c2 := sb.Cluster("cluster-2").Client
	for _, f := range []string{"gtp-failover.yaml", "gtp-activeactive.yaml"} {
		kubectl(t, "cluster-2", render(t, f, nil, ""), "apply", "-n", "httpbin", "-f", "-")
		var g flomeshv1alpha1.GlobalTrafficPolicy
		if err := c2.Get(ctx, client.ObjectKey{Namespace: "httpbin", Name: "httpbin"}, &g); err != nil {
			t.Fatal(err)
		}
		want := map[string]flomeshv1alpha1.GlobalLoadBalancerType{"gtp-failover.yaml": flomeshv1alpha1.FailOver, "gtp-activeactive.yaml": flomeshv1alpha1.ActiveActive}[f]
		if g.Spec.LbType != want || len(g.Spec.Targets) != 2 ||
			g.Spec.Targets[0].ClusterKey != "default/default/default/cluster-1" || g.Spec.Targets[1].ClusterKey != "default/default/default/cluster-3" {
			t.Fatalf("%s: %+v", f, g.Spec)
		}
		for _, tg := range g.Spec.Targets {
			if tg.Weight == nil || *tg.Weight != flomeshv1alpha1.DefaultTargetWeight {
				t.Errorf("%s: target %s weight %v, want the default %d", f, tg.ClusterKey, tg.Weight, flomeshv1alpha1.DefaultTargetWeight)
			}
		}
	}
	// lbType defaults to Locality.
	kubectl(t, "cluster-2", "apiVersion: flomesh.io/v1alpha1\nkind: GlobalTrafficPolicy\nmetadata: {name: other, namespace: httpbin}\nspec: {}\n", "apply", "-f", "-")
	var other flomeshv1alpha1.GlobalTrafficPolicy
	if err := c2.Get(ctx, client.ObjectKey{Namespace: "httpbin", Name: "other"}, &other); err != nil {
		t.Fatal(err)
	}
	if other.Spec.LbType != flomeshv1alpha1.Locality {
		t.Errorf("lbType omitted: got %q, want Locality", other.Spec.LbType)
	}

	// The install creates the MeshConfig; the walkthrough patches it into policy mode.
	kubectl(t, "cluster-2", "apiVersion: flomesh.io/v1alpha1\nkind: MeshConfig\nmetadata: {name: fsm-mesh-config, namespace: fsm-system}\n", "apply", "-f", "-")
	var mc flomeshv1alpha1.MeshConfig
	key := client.ObjectKey{Namespace: "fsm-system", Name: "fsm-mesh-config"}
	if err := c2.Get(ctx, key, &mc); err != nil {
		t.Fatal(err)
	}
	if !mc.PermissiveMode() || mc.Spec.Traffic.EnablePermissiveTrafficPolicyMode == nil ||
		mc.Spec.Certificate.TrustDomain != "cluster.local" || mc.Spec.ClusterSet.Region != "default" ||
		mc.Spec.Gateway.Namespace != "crossgate-system" || mc.Spec.Gateway.Name != "crossgate-gateway" {
		t.Errorf("MeshConfig defaults: %+v", mc.Spec)
	}
	fsmNamespace := "fsm-system"
	kubectl(t, "cluster-2", "", "patch", "meshconfig", "fsm-mesh-config", "-n", fsmNamespace,
		"-p", `{"spec":{"traffic":{"enablePermissiveTrafficPolicyMode":false}}}`, "--type=merge")
	if err := c2.Get(ctx, key, &mc); err != nil {
		t.Fatal(err)
	}
	if mc.PermissiveMode() {
		t.Errorf("after the walkthrough's patch the mesh is still permissive: %+v", mc.Spec.Traffic)
	}

	// Access control: the route group and both TrafficTargets.
	kubectl(t, "cluster-2", render(t, "curl-to-httpbin.yaml", nil, ""), "apply", "-n", "httpbin", "-f", "-")
	kubectl(t, "cluster-2", render(t, "curl-to-ext-httpbin.yaml", nil, ""), "apply", "-n", "httpbin", "-f", "-")
	var hrg specsv1alpha4.HTTPRouteGroup
	if err := c2.Get(ctx, client.ObjectKey{Namespace: "httpbin", Name: "httpbin-route"}, &hrg); err != nil {
		t.Fatal(err)
	}
	if m := hrg.Spec.Matches; len(m) != 1 || m[0].Name != "all" || m[0].PathRegex != "/" || len(m[0].Methods) != 1 || m[0].Methods[0] != "GET" {
		t.Errorf("HTTPRouteGroup: %+v", hrg.Spec)
	}
	for name, destSA := range map[string]string{"curl-to-httpbin": "default", "curl-to-ext-httpbin": "httpbin"} {
		var tt accessv1alpha3.TrafficTarget
		if err := c2.Get(ctx, client.ObjectKey{Namespace: "httpbin", Name: name}, &tt); err != nil {
			t.Fatal(err)
		}
		s := tt.Spec
		if s.Destination.Name != destSA || s.Destination.Namespace != "httpbin" || len(s.Sources) != 1 ||
			s.Sources[0].Name != "curl" || s.Sources[0].Namespace != "curl" || len(s.Rules) != 1 ||
			s.Rules[0].Name != "httpbin-route" || !reflect.DeepEqual(s.Rules[0].Matches, []string{"all"}) {
			t.Errorf("TrafficTarget %s: %+v", name, s)
		}
	}

	// The ServiceImport JSON the walkthrough prints in cluster-2 is a valid ServiceImport spec,
	// and reads back unchanged.
	spec, _ := walkthrough.Manifests.ReadFile("manifests/serviceimport-httpbin.json")
	simp := &flomeshv1alpha1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: "httpbin", Name: "httpbin"}}
	if err := json.Unmarshal(spec, &simp.Spec); err != nil {
		t.Fatal(err)
	}
	if err := c2.Create(ctx, simp); err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "ServiceImport httpbin spec",
		kubectl(t, "cluster-2", "", "get", "serviceimports", "httpbin", "-n", "httpbin", "-o", "jsonpath={.spec}"),
		"serviceimport-httpbin.json")
}
