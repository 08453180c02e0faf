package translator

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/wellknown"
)

func TestExportRoutesRewrite(t *testing.T) {
	type rule struct{ match, rewrite string }
	for _, tc := range []struct {
		name    string
		path    string
		exact   bool
		rewrite *flomeshv1alpha1.PathRewrite
		want    []rule
	}{
		{"no rewrite", "/cluster-1/httpbin-mesh", false, nil, []rule{{"/cluster-1/httpbin-mesh", ""}}},
		{"from is the path", "/cluster-1/httpbin-mesh", false, &flomeshv1alpha1.PathRewrite{From: "/cluster-1/httpbin-mesh", To: "/"}, []rule{{"/cluster-1/httpbin-mesh", "prefix:/"}}},
		{"from above the path", "/cluster-1/httpbin-mesh", false, &flomeshv1alpha1.PathRewrite{From: "/cluster-1", To: "/api"}, []rule{{"/cluster-1/httpbin-mesh", "prefix:/api/httpbin-mesh"}}},
		{"from below the path", "/a", false, &flomeshv1alpha1.PathRewrite{From: "/a/b", To: "/c"}, []rule{{"/a/b", "prefix:/c"}, {"/a", ""}}},
		{"exact", "/a/b", true, &flomeshv1alpha1.PathRewrite{From: "/a", To: "/x"}, []rule{{"/a/b", "full:/x/b"}}},
		{"unrelated", "/a", false, &flomeshv1alpha1.PathRewrite{From: "/ab", To: "/x"}, []rule{{"/a", ""}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pt := flomeshv1alpha1.PathMatchPrefix
			if tc.exact {
				pt = flomeshv1alpha1.PathMatchExact
			}
			e := &flomeshv1alpha1.ServiceExport{
				ObjectMeta: metav1.ObjectMeta{Namespace: "httpbin", Name: "httpbin"},
				Spec:       flomeshv1alpha1.ServiceExportSpec{PathRewrite: tc.rewrite, Rules: []flomeshv1alpha1.ServiceExportRule{{PortNumber: 8080, Path: tc.path, PathType: pt}}},
			}
			routes := ExportRoutes(e, "crossgate-system", "crossgate-gateway")
			if len(routes.TLS) != 1 || routes.TLS[0].Name != "httpbin.mesh-8080" || len(routes.HTTP) != 1 || routes.HTTP[0].Name != "httpbin.direct" {
				t.Fatalf("routes %+v", routes)
			}
			var got []rule
			for _, r := range routes.HTTP[0].Spec.Rules {
				g := rule{match: *r.Matches[0].Path.Value}
				if tc.exact != (*r.Matches[0].Path.Type == gatewayv1.PathMatchExact) {
					t.Errorf("match type %s", *r.Matches[0].Path.Type)
				}
				for _, f := range r.Filters {
					switch p := f.URLRewrite.Path; p.Type {
					case gatewayv1.PrefixMatchHTTPPathModifier:
						g.rewrite = "prefix:" + *p.ReplacePrefixMatch
					case gatewayv1.FullPathHTTPPathModifier:
						g.rewrite = "full:" + *p.ReplaceFullPath
					}
				}
				got = append(got, g)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("rules %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("rule %d: %+v, want %+v", i, got[i], tc.want[i])
				}
			}
			for _, pr := range []gatewayv1.ParentReference{routes.TLS[0].Spec.ParentRefs[0], routes.HTTP[0].Spec.ParentRefs[0]} {
				if pr.Namespace == nil || *pr.Namespace != "crossgate-system" || pr.Name != "crossgate-gateway" {
					t.Errorf("parent %+v", pr)
				}
			}
		})
	}
}

// Each exported port gets a TLSRoute of its own: its mesh server name passed through to that port
// of the Service (a TLSRoute has one rule, and the server name carries the port).
func TestExportRoutesTLSPerPort(t *testing.T) {
	e := &flomeshv1alpha1.ServiceExport{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"},
		Spec: flomeshv1alpha1.ServiceExportSpec{Rules: []flomeshv1alpha1.ServiceExportRule{
			{PortNumber: 8080, Path: "/a", PathType: flomeshv1alpha1.PathMatchPrefix},
			{PortNumber: 9090, Path: "/b", PathType: flomeshv1alpha1.PathMatchPrefix},
			{PortNumber: 8080, Path: "/c", PathType: flomeshv1alpha1.PathMatchPrefix},
		}},
	}
	routes := ExportRoutes(e, "shop", "gw")
	if len(routes.TLS) != 2 {
		t.Fatalf("TLS routes %+v, want one per port", routes.TLS)
	}
	for i, port := range []int32{8080, 9090} {
		r := routes.TLS[i]
		if r.Name != MeshRouteName("cart", port) || r.Labels[wellknown.ExportLabel] != "cart" {
			t.Errorf("route %d: %s %v", i, r.Name, r.Labels)
		}
		if want := wellknown.MeshSNI("shop", "cart", port); len(r.Spec.Hostnames) != 1 || string(r.Spec.Hostnames[0]) != want {
			t.Errorf("route %s hostnames %v, want %s", r.Name, r.Spec.Hostnames, want)
		}
		ref := r.Spec.Rules[0].BackendRefs[0]
		if ref.Name != "cart" || ref.Port == nil || int32(*ref.Port) != port {
			t.Errorf("route %s backend %+v", r.Name, ref)
		}
		if r.Spec.ParentRefs[0].Namespace != nil { // same namespace as the Gateway
			t.Errorf("route %s parent %+v", r.Name, r.Spec.ParentRefs[0])
		}
	}
	if len(routes.HTTP) != 1 || len(routes.HTTP[0].Spec.Rules) != 3 {
		t.Errorf("direct route %+v", routes.HTTP)
	}
}

// A ServiceExport of crossgate's placeholder for an import is not valid: the placeholder has no
// endpoints in this cluster (issue 16, defect 4). A Service the user took over (labels removed)
// is theirs and exportable.
func TestExportConditionPlaceholder(t *testing.T) {
	e := &flomeshv1alpha1.ServiceExport{
		ObjectMeta: metav1.ObjectMeta{Namespace: "httpbin", Name: "httpbin", Generation: 2},
		Spec:       flomeshv1alpha1.ServiceExportSpec{Rules: []flomeshv1alpha1.ServiceExportRule{{PortNumber: 8080, Path: "/x", PathType: flomeshv1alpha1.PathMatchPrefix}}},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "httpbin", Name: "httpbin",
			Labels: map[string]string{wellknown.ManagedByLabel: wellknown.ManagedByValue, wellknown.ImportLabel: "httpbin"},
		},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 8080}}},
	}
	c := ExportCondition(e, svc)
	if c.Status != metav1.ConditionFalse || c.Reason != "ServiceNotFound" || c.ObservedGeneration != 2 {
		t.Errorf("export of a placeholder: %+v", c)
	}
	svc.Labels = map[string]string{"app": "httpbin"}
	if c := ExportCondition(e, svc); c.Status != metav1.ConditionTrue {
		t.Errorf("export of the user's Service: %+v", c)
	}
	if c := ExportCondition(e, nil); c.Status != metav1.ConditionFalse || c.Reason != "ServiceNotFound" {
		t.Errorf("export of no Service: %+v", c)
	}
}

func TestExportConditionSystemNamespace(t *testing.T) {
	for _, ns := range wellknown.SystemNamespaces {
		e := &flomeshv1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "kube-dns", Generation: 1}}
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "kube-dns"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 53}}}}
		c := ExportCondition(e, svc)
		if c.Status != metav1.ConditionFalse || c.Reason != "NamespaceNotAllowed" || !strings.Contains(c.Message, "metadata.namespace "+ns) {
			t.Errorf("export in %s: %+v", ns, c)
		}
	}
}
