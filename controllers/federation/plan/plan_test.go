package plan

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/sandbox/walkthrough"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func key(n int) flomeshv1alpha1.ClusterKey {
	return flomeshv1alpha1.NewClusterKey("default", "default", "default", fmt.Sprintf("cluster-%d", n))
}

// newSource is cluster-n with the walkthrough's gateway address (192.168.1.110:80+n).
func newSource(n int) *Source {
	return &Source{
		Key: key(n), Known: true, Services: map[types.NamespacedName]*corev1.Service{},
		Gateway: flomeshv1alpha1.Target{Host: "192.168.1.110", IP: "192.168.1.110", Port: int32(80 + n)},
	}
}

// applyWalkthrough adds to s the walkthrough's Services and the exports of file, rendered for s,
// created at the given time.
func applyWalkthrough(t *testing.T, s *Source, file string, created time.Time) {
	t.Helper()
	name := strings.TrimPrefix(string(s.Key), "default/default/default/")
	vars := map[string]string{"CLUSTER_NAME": name, "NAMESPACE_MESH": "httpbin"}
	for _, f := range []string{"httpbin-services.yaml", file} {
		text, err := walkthrough.Render(f, vars, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range strings.Split(text, "\n---\n") {
			var probe metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &probe); err != nil {
				t.Fatal(err)
			}
			switch probe.Kind {
			case "Service":
				var svc corev1.Service
				if err := yaml.Unmarshal([]byte(doc), &svc); err != nil {
					t.Fatal(err)
				}
				svc.Namespace = "httpbin"
				s.Services[types.NamespacedName{Namespace: "httpbin", Name: svc.Name}] = &svc
			case "ServiceExport":
				var e flomeshv1alpha1.ServiceExport
				if err := yaml.Unmarshal([]byte(doc), &e); err != nil {
					t.Fatal(err)
				}
				e.CreationTimestamp = metav1.NewTime(created)
				e.Generation = 1
				s.Exports = append(s.Exports, &e)
			default:
				t.Fatalf("unexpected kind %q in %s", probe.Kind, f)
			}
		}
	}
}

func importOf(p *Plan, k flomeshv1alpha1.ClusterKey, name string) *flomeshv1alpha1.ServiceImport {
	for _, imp := range p.Imports[k] {
		if imp.Namespace == "httpbin" && imp.Name == name {
			return imp
		}
	}
	return nil
}

func names(p *Plan, k flomeshv1alpha1.ClusterKey) []string {
	var out []string
	for _, imp := range p.Imports[k] {
		out = append(out, imp.Namespace+"/"+imp.Name)
	}
	return out
}

func conflictOf(p *Plan, k flomeshv1alpha1.ClusterKey, name string) metav1.Condition {
	for _, s := range p.Exports[k] {
		if s.Namespace == "httpbin" && s.Name == name {
			return s.Condition
		}
	}
	return metav1.Condition{}
}

func endpointKeys(imp *flomeshv1alpha1.ServiceImport) []string {
	var out []string
	for _, p := range imp.Spec.Ports {
		for _, e := range p.Endpoints {
			out = append(out, fmt.Sprintf("%d:%s", p.Port, e.ClusterKey))
		}
	}
	return out
}

func walkthroughSet(t *testing.T) (c1, c2, c3 *Source) {
	t.Helper()
	c1, c2, c3 = newSource(1), newSource(2), newSource(3)
	applyWalkthrough(t, c1, "serviceexport-any.yaml", t0)
	applyWalkthrough(t, c3, "serviceexport-any.yaml", t0.Add(time.Second))
	return c1, c2, c3
}

func TestWalkthroughImports(t *testing.T) {
	c1, c2, c3 := walkthroughSet(t)
	p := Aggregate([]*Source{c3, c2, c1})

	if got, want := names(p, c2.Key), []string{"httpbin/httpbin", "httpbin/httpbin-cluster-1", "httpbin/httpbin-cluster-3"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("cluster-2 imports %v, want %v", got, want)
	}
	// Field for field the walkthrough's `kubectl get serviceimports httpbin -o jsonpath='{.spec}'`.
	want, err := walkthrough.Manifests.ReadFile("manifests/serviceimport-httpbin.json")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(importOf(p, c2.Key, "httpbin").Spec)
	if !jsonEqual(t, got, want) {
		t.Errorf("cluster-2's httpbin import spec:\n%s\nwant the walkthrough's\n%s", got, want)
	}
	if got := importOf(p, c2.Key, "httpbin").Status.Clusters; len(got) != 2 || got[0].Cluster != string(c1.Key) || got[1].Cluster != string(c3.Key) {
		t.Errorf("status.clusters %v", got)
	}
	// An exporting member imports what the others export, never its own endpoints.
	if got, want := names(p, c1.Key), []string{"httpbin/httpbin", "httpbin/httpbin-cluster-3"}; !reflect.DeepEqual(got, want) {
		t.Errorf("cluster-1 imports %v, want %v", got, want)
	}
	if got := endpointKeys(importOf(p, c1.Key, "httpbin")); !reflect.DeepEqual(got, []string{"8080:" + string(c3.Key)}) {
		t.Errorf("cluster-1's httpbin endpoints %v", got)
	}
	for _, k := range []flomeshv1alpha1.ClusterKey{c1.Key, c3.Key} {
		for _, s := range p.Exports[k] {
			if s.Condition.Status != metav1.ConditionFalse || s.Condition.Reason != flomeshv1alpha1.ReasonNoConflict || s.Condition.ObservedGeneration != 1 {
				t.Errorf("%s %s: %+v", k, s.Name, s.Condition)
			}
		}
	}
	// Pure: the same input gives the same plan.
	if again := Aggregate([]*Source{c1, c2, c3}); !reflect.DeepEqual(again, p) {
		t.Error("two runs on the same sources differ")
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(x, y)
}

func TestConflicts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(e *flomeshv1alpha1.ServiceExport, svc *corev1.Service)
		reason string
		says   []string
	}{
		{"port", func(e *flomeshv1alpha1.ServiceExport, svc *corev1.Service) {
			e.Spec.Rules[0].PortNumber = 9090
			svc.Spec.Ports[0].Port = 9090
		}, flomeshv1alpha1.ReasonPortConflict, []string{"port 9090", "port 8080", "cluster-1"}},
		{"protocol", func(_ *flomeshv1alpha1.ServiceExport, svc *corev1.Service) {
			svc.Spec.Ports[0].Protocol = corev1.ProtocolUDP
		}, flomeshv1alpha1.ReasonProtocolConflict, []string{"8080/UDP", "8080/TCP"}},
		{"type", func(_ *flomeshv1alpha1.ServiceExport, svc *corev1.Service) {
			svc.Spec.ClusterIP = corev1.ClusterIPNone
		}, flomeshv1alpha1.ReasonTypeConflict, []string{"Headless", "ClusterSetIP"}},
		{"serviceAccountName", func(e *flomeshv1alpha1.ServiceExport, _ *corev1.Service) {
			e.Spec.ServiceAccountName = "httpbin"
		}, flomeshv1alpha1.ReasonServiceAccountNameConflict, []string{`"httpbin"`, `"*"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c1, c2, c3 := walkthroughSet(t)
			tc.change(c3.Exports[0], c3.Services[types.NamespacedName{Namespace: "httpbin", Name: "httpbin"}])
			p := Aggregate([]*Source{c1, c2, c3})
			c := conflictOf(p, c3.Key, "httpbin")
			if c.Status != metav1.ConditionTrue || c.Reason != tc.reason {
				t.Fatalf("cluster-3's export: %+v, want Conflict=True %s", c, tc.reason)
			}
			for _, s := range tc.says {
				if !strings.Contains(c.Message, s) {
					t.Errorf("message %q does not say %q", c.Message, s)
				}
			}
			if c := conflictOf(p, c1.Key, "httpbin"); c.Status != metav1.ConditionFalse {
				t.Errorf("the oldest export: %+v", c)
			}
			// The import keeps the winner's endpoint only, and the winner's ports.
			imp := importOf(p, c2.Key, "httpbin")
			if got := endpointKeys(imp); !reflect.DeepEqual(got, []string{"8080:" + string(c1.Key)}) {
				t.Errorf("cluster-2's endpoints %v", got)
			}
			if imp.Spec.Ports[0].Protocol != "TCP" || imp.Spec.Type != flomeshv1alpha1.ClusterSetIP || imp.Spec.ServiceAccountName != "*" {
				t.Errorf("the import follows the loser: %+v", imp.Spec)
			}
			// cluster-1 gets no import of the losing export.
			if imp := importOf(p, c1.Key, "httpbin"); imp != nil {
				t.Errorf("cluster-1 imports the conflicting export: %v", endpointKeys(imp))
			}
		})
	}
}

func TestOldestWinsAndTies(t *testing.T) {
	c1, c2, c3 := newSource(1), newSource(2), newSource(3)
	applyWalkthrough(t, c1, "serviceexport-any.yaml", t0.Add(time.Second))
	applyWalkthrough(t, c3, "serviceexport-httpbin.yaml", t0)
	p := Aggregate([]*Source{c1, c2, c3})
	if c := conflictOf(p, c1.Key, "httpbin"); c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "cluster-3") {
		t.Errorf("the younger export in cluster-1: %+v", c)
	}
	if imp := importOf(p, c2.Key, "httpbin"); imp.Spec.ServiceAccountName != "httpbin" {
		t.Errorf("the import follows cluster-1, the younger: %+v", imp.Spec)
	}
	// Same second: the lower cluster key wins, whatever the order of the sources.
	c3.Exports[0].CreationTimestamp = c1.Exports[0].CreationTimestamp
	for _, order := range [][]*Source{{c1, c2, c3}, {c3, c2, c1}} {
		p := Aggregate(order)
		if c := conflictOf(p, c3.Key, "httpbin"); c.Status != metav1.ConditionTrue {
			t.Errorf("a tie goes to cluster-1: cluster-3's %+v", c)
		}
	}
}

func TestTargetClusters(t *testing.T) {
	c1, c2, c3 := walkthroughSet(t)
	c1.Exports[0].Spec.TargetClusters = []flomeshv1alpha1.ClusterKey{c2.Key}
	p := Aggregate([]*Source{c1, c2, c3})
	if got := endpointKeys(importOf(p, c2.Key, "httpbin")); len(got) != 2 {
		t.Errorf("cluster-2, a target: %v", got)
	}
	// cluster-3 is not a target of cluster-1's export: it imports nothing of httpbin.
	if imp := importOf(p, c3.Key, "httpbin"); imp != nil {
		t.Errorf("cluster-3 imports %v", endpointKeys(imp))
	}
}

func TestInvalidExportAndMissingService(t *testing.T) {
	c1, c2, c3 := walkthroughSet(t)
	delete(c3.Services, types.NamespacedName{Namespace: "httpbin", Name: "httpbin"})
	p := Aggregate([]*Source{c1, c2, c3})
	if got := endpointKeys(importOf(p, c2.Key, "httpbin")); !reflect.DeepEqual(got, []string{"8080:" + string(c1.Key)}) {
		t.Errorf("a Service deleted before its export leaves its endpoint: %v", got)
	}
	if c := conflictOf(p, c3.Key, "httpbin"); c.Status != metav1.ConditionFalse || c.Reason != flomeshv1alpha1.ReasonNotExported {
		t.Errorf("the invalid export's Conflict: %+v", c)
	}
	if got := names(p, c2.Key); !reflect.DeepEqual(got, []string{"httpbin/httpbin", "httpbin/httpbin-cluster-1", "httpbin/httpbin-cluster-3"}) {
		t.Errorf("cluster-2 imports %v", got)
	}
}

// A member not read since the start keeps its endpoints in the others' imports; once it is gone
// from the set, they go.
func TestUnknownMemberCarriedOver(t *testing.T) {
	c1, c2, c3 := walkthroughSet(t)
	before := Aggregate([]*Source{c1, c2, c3})
	c2.Imports = before.Imports[c2.Key]
	c1.Imports = before.Imports[c1.Key]

	down := &Source{Key: c3.Key, Gateway: c3.Gateway}
	p := Aggregate([]*Source{c1, c2, down})
	if !reflect.DeepEqual(p.Imports[c2.Key], before.Imports[c2.Key]) {
		t.Errorf("cluster-2's imports changed while cluster-3 was unknown:\n%s", diffNames(p.Imports[c2.Key], before.Imports[c2.Key]))
	}
	if _, ok := p.Imports[down.Key]; ok {
		t.Error("a plan for a member never read")
	}
	if _, ok := p.Exports[down.Key]; ok {
		t.Error("export statuses for a member never read")
	}
	// The carried-over endpoint follows the member's gateway when the Cluster object changes.
	down.Gateway.Port = 8443
	p = Aggregate([]*Source{c1, c2, down})
	if ep := importOf(p, c2.Key, "httpbin-cluster-3").Spec.Ports[0].Endpoints[0]; ep.Target.Port != 8443 || ep.Target.Path != "/cluster-3/httpbin-mesh-cluster-3" {
		t.Errorf("carried-over endpoint %+v", ep)
	}
	// cluster-3 leaves the set: its endpoints and the imports only it fed go everywhere.
	p = Aggregate([]*Source{c1, c2})
	if got := names(p, c2.Key); !reflect.DeepEqual(got, []string{"httpbin/httpbin", "httpbin/httpbin-cluster-1"}) {
		t.Errorf("cluster-2 imports %v after cluster-3 left", got)
	}
	if got := endpointKeys(importOf(p, c2.Key, "httpbin")); !reflect.DeepEqual(got, []string{"8080:" + string(c1.Key)}) {
		t.Errorf("cluster-2's httpbin after cluster-3 left: %v", got)
	}
	if got := names(p, c1.Key); len(got) != 0 {
		t.Errorf("cluster-1 imports %v after cluster-3 left", got)
	}
}

func diffNames(a, b []*flomeshv1alpha1.ServiceImport) string {
	ja, _ := json.MarshalIndent(a, "", " ")
	jb, _ := json.MarshalIndent(b, "", " ")
	return string(ja) + "\nwas\n" + string(jb)
}

func TestGatewayTarget(t *testing.T) {
	ip := GatewayTarget(&flomeshv1alpha1.Cluster{Spec: flomeshv1alpha1.ClusterSpec{GatewayHost: "192.168.1.110", GatewayPort: 81}})
	if ip != (flomeshv1alpha1.Target{Host: "192.168.1.110", IP: "192.168.1.110", Port: 81}) {
		t.Errorf("%+v", ip)
	}
	name := GatewayTarget(&flomeshv1alpha1.Cluster{Spec: flomeshv1alpha1.ClusterSpec{GatewayHost: "gw.example.com"}})
	if name != (flomeshv1alpha1.Target{Host: "gw.example.com", Port: 80}) {
		t.Errorf("%+v", name)
	}
}
