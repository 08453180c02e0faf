//go:build integration

package member

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/sandbox/walkthrough"
	"github.com/crossgate-io/crossgate/translator"
	"github.com/crossgate-io/crossgate/wellknown"
)

func condition(conds []metav1.Condition, typ string) (*metav1.Condition, error) {
	c := meta.FindStatusCondition(conds, typ)
	if c == nil {
		return nil, fmt.Errorf("no %s condition in %v", typ, conds)
	}
	return c, nil
}

func exportValid(ctx context.Context, c client.Client, key types.NamespacedName, want metav1.ConditionStatus) (*metav1.Condition, error) {
	e := &flomeshv1alpha1.ServiceExport{}
	if err := c.Get(ctx, key, e); err != nil {
		return nil, err
	}
	v, err := condition(e.Status.Conditions, flomeshv1alpha1.ConditionValid)
	if err != nil {
		return nil, err
	}
	if v.Status != want || v.ObservedGeneration != e.Generation {
		return v, fmt.Errorf("Valid is %s (%s: %s) at generation %d, want %s at %d", v.Status, v.Reason, v.Message, v.ObservedGeneration, want, e.Generation)
	}
	return v, nil
}

// exportRoutes lists the routes of an export: its HTTPRoutes and its TLSRoutes.
func exportRoutes(ctx context.Context, c client.Client, ns, export string) ([]gatewayv1.HTTPRoute, []gatewayv1.TLSRoute, error) {
	var hl gatewayv1.HTTPRouteList
	if err := c.List(ctx, &hl, client.InNamespace(ns), client.MatchingLabels{wellknown.ExportLabel: export}); err != nil {
		return nil, nil, err
	}
	var tl gatewayv1.TLSRouteList
	err := c.List(ctx, &tl, client.InNamespace(ns), client.MatchingLabels{wellknown.ExportLabel: export})
	return hl.Items, tl.Items, err
}

// routeCount is how many routes an export has.
func routeCount(ctx context.Context, c client.Client, ns, export string) (int, error) {
	h, tl, err := exportRoutes(ctx, c, ns, export)
	return len(h) + len(tl), err
}

// TestWalkthroughExport applies the walkthrough's ServiceExports in cluster-1 and checks the
// routes, conditions and Gateway API statuses that follow; httpbin-cluster-1's Service is created
// only later, to see its export turn valid.
func TestWalkthroughExport(t *testing.T) {
	ctx := context.Background()
	c := sb.Cluster("cluster-1").Client
	kubectl(t, "cluster-1", "", "create", "namespace", "httpbin")
	services, err := walkthrough.Render("httpbin-services.yaml", map[string]string{"CLUSTER_NAME": "cluster-1"}, "")
	if err != nil {
		t.Fatal(err)
	}
	svcDocs := strings.SplitN(services, "\n---\n", 2)
	// Only the first Service of the walkthrough for now.
	kubectl(t, "cluster-1", svcDocs[0], "apply", "-n", "httpbin", "-f", "-")
	exports, err := walkthrough.Render("serviceexport-httpbin.yaml", map[string]string{"NAMESPACE_MESH": "httpbin", "CLUSTER_NAME": "cluster-1"}, "")
	if err != nil {
		t.Fatal(err)
	}
	kubectl(t, "cluster-1", exports, "apply", "-f", "-")

	httpbin := types.NamespacedName{Namespace: "httpbin", Name: "httpbin"}
	eventually(t, 5*time.Second, "export httpbin Valid", func() error {
		_, err := exportValid(ctx, c, httpbin, metav1.ConditionTrue)
		return err
	})
	var routes []gatewayv1.HTTPRoute
	var tlsRoutes []gatewayv1.TLSRoute
	eventually(t, 5*time.Second, "the export's routes", func() error {
		routes, tlsRoutes, err = exportRoutes(ctx, c, "httpbin", "httpbin")
		if err == nil && (len(routes) != 1 || len(tlsRoutes) != 1) {
			err = fmt.Errorf("%d HTTPRoutes, %d TLSRoutes", len(routes), len(tlsRoutes))
		}
		return err
	})
	type route struct {
		metav1.Object
		parents  []gatewayv1.ParentReference
		backends []gatewayv1.BackendRef
	}
	var all []route
	for i := range routes {
		r := &routes[i]
		var refs []gatewayv1.BackendRef
		for _, rule := range r.Spec.Rules {
			if len(rule.BackendRefs) != 1 {
				t.Errorf("%s: backendRefs %+v, want one", r.Name, rule.BackendRefs)
			}
			for _, b := range rule.BackendRefs {
				refs = append(refs, b.BackendRef)
			}
		}
		all = append(all, route{r, r.Spec.ParentRefs, refs})
	}
	for i := range tlsRoutes {
		r := &tlsRoutes[i]
		var refs []gatewayv1.BackendRef
		for _, rule := range r.Spec.Rules {
			refs = append(refs, rule.BackendRefs...)
		}
		all = append(all, route{r, r.Spec.ParentRefs, refs})
	}
	for _, r := range all {
		if len(r.parents) != 1 || r.parents[0].Name != "crossgate-gateway" || r.parents[0].Namespace == nil || *r.parents[0].Namespace != "crossgate-system" {
			t.Errorf("%s: parentRefs %+v, want crossgate-system/crossgate-gateway", r.GetName(), r.parents)
		}
		if o := metav1.GetControllerOfNoCopy(r); o == nil || o.Kind != "ServiceExport" || o.Name != "httpbin" {
			t.Errorf("%s: controller %+v, want the ServiceExport", r.GetName(), o)
		}
		for _, b := range r.backends {
			if b.Name != "httpbin" || b.Port == nil || *b.Port != 8080 {
				t.Errorf("%s: backendRef %+v, want httpbin:8080", r.GetName(), b)
			}
		}
	}
	mesh, direct := tlsRoutes[0], routes[0]
	if mesh.Name != "httpbin.mesh-8080" || direct.Name != "httpbin.direct" {
		t.Errorf("routes %s and %s, want httpbin.mesh-8080 and httpbin.direct", mesh.Name, direct.Name)
	}
	if want := []gatewayv1.Hostname{gatewayv1.Hostname(wellknown.MeshSNI("httpbin", "httpbin", 8080))}; !slices.Equal(mesh.Spec.Hostnames, want) {
		t.Errorf("%s hostnames %v, want %v", mesh.Name, mesh.Spec.Hostnames, want)
	}
	if len(direct.Spec.Rules) != 1 || len(direct.Spec.Rules[0].Matches) != 1 {
		t.Fatalf("httpbin.direct rules: %+v", direct.Spec.Rules)
	}
	if p := direct.Spec.Rules[0].Matches[0].Path; p == nil || *p.Type != gatewayv1.PathMatchPathPrefix || *p.Value != "/cluster-1/httpbin-mesh" {
		t.Errorf("httpbin.direct path match %+v, want PathPrefix /cluster-1/httpbin-mesh", p)
	}
	if len(direct.Spec.Hostnames) != 0 {
		t.Errorf("httpbin.direct hostnames %v: direct access must match any Host", direct.Spec.Hostnames)
	}
	// Gateway API status, written for our controller.
	tlsRoute, httpRoute := &gatewayv1.TLSRoute{}, &gatewayv1.HTTPRoute{}
	for _, r := range []struct {
		name    string
		obj     client.Object
		parents func() []gatewayv1.RouteParentStatus
	}{
		{"httpbin.mesh-8080", tlsRoute, func() []gatewayv1.RouteParentStatus { return tlsRoute.Status.Parents }},
		{"httpbin.direct", httpRoute, func() []gatewayv1.RouteParentStatus { return httpRoute.Status.Parents }},
	} {
		eventually(t, 5*time.Second, r.name+" parent status", func() error {
			if err := c.Get(ctx, types.NamespacedName{Namespace: "httpbin", Name: r.name}, r.obj); err != nil {
				return err
			}
			parents := r.parents()
			for _, p := range parents {
				if p.ControllerName != translator.ControllerName {
					continue
				}
				for _, typ := range []string{"Accepted", "ResolvedRefs"} {
					c, err := condition(p.Conditions, typ)
					if err != nil {
						return err
					}
					if c.Status != metav1.ConditionTrue || c.LastTransitionTime.IsZero() {
						return fmt.Errorf("%s %s: %s", typ, c.Status, c.Message)
					}
				}
				return nil
			}
			return fmt.Errorf("no parent status of %s: %+v", translator.ControllerName, parents)
		})
	}

	// The second export names a Service that does not exist yet.
	other := types.NamespacedName{Namespace: "httpbin", Name: "httpbin-cluster-1"}
	eventually(t, 5*time.Second, "export httpbin-cluster-1 not Valid", func() error {
		v, err := exportValid(ctx, c, other, metav1.ConditionFalse)
		if err == nil && v.Reason != "ServiceNotFound" {
			err = fmt.Errorf("reason %s", v.Reason)
		}
		return err
	})
	if n, _ := routeCount(ctx, c, "httpbin", "httpbin-cluster-1"); n != 0 {
		t.Errorf("an export without its Service has %d routes", n)
	}
	kubectl(t, "cluster-1", svcDocs[1], "apply", "-n", "httpbin", "-f", "-")
	took := eventually(t, 2*time.Second, "export httpbin-cluster-1 Valid after its Service", func() error {
		if _, err := exportValid(ctx, c, other, metav1.ConditionTrue); err != nil {
			return err
		}
		n, err := routeCount(ctx, c, "httpbin", "httpbin-cluster-1")
		if err == nil && n != 2 {
			err = fmt.Errorf("%d routes", n)
		}
		return err
	})
	t.Logf("Service created -> export Valid with its routes in %v", took)

	// Deleting the export deletes its routes.
	if err := c.Delete(ctx, &flomeshv1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "httpbin", Name: "httpbin-cluster-1"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "routes of a deleted export", func() error {
		n, err := routeCount(ctx, c, "httpbin", "httpbin-cluster-1")
		if err == nil && n != 0 {
			err = fmt.Errorf("%d routes left", n)
		}
		return err
	})
}

// TestPortNotFound: a rule whose port the Service lacks makes the export invalid, naming the port.
func TestPortNotFound(t *testing.T) {
	ctx := context.Background()
	c := sb.Cluster("cluster-1").Client
	ns := "port-not-found"
	mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	mustCreate(t, c, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	})
	mustCreate(t, c, &flomeshv1alpha1.ServiceExport{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec:       flomeshv1alpha1.ServiceExportSpec{Rules: []flomeshv1alpha1.ServiceExportRule{{PortNumber: 8080, Path: "/web", PathType: flomeshv1alpha1.PathMatchPrefix}}},
	})
	eventually(t, 5*time.Second, "Valid=False PortNotFound", func() error {
		v, err := exportValid(ctx, c, types.NamespacedName{Namespace: ns, Name: "web"}, metav1.ConditionFalse)
		if err == nil && v.Reason != "PortNotFound" {
			err = fmt.Errorf("reason %s", v.Reason)
		}
		return err
	})
	if n, _ := routeCount(ctx, c, ns, "web"); n != 0 {
		t.Errorf("an invalid export has %d routes", n)
	}
}

// TestOtherClassLeftAlone: a Gateway of another class, and a route attached only to it, get no
// status from crossgate.
func TestOtherClassLeftAlone(t *testing.T) {
	ctx := context.Background()
	c := sb.Cluster("cluster-1").Client
	ns := "other-class"
	mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	mustCreate(t, c, &gatewayv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "someone-else"}, Spec: gatewayv1.GatewayClassSpec{ControllerName: "example.com/other"}})
	mustCreate(t, c, &gatewayv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "theirs"},
		Spec:       gatewayv1.GatewaySpec{GatewayClassName: "someone-else", Listeners: []gatewayv1.Listener{{Name: "http", Port: 80, Protocol: gatewayv1.HTTPProtocolType}}},
	})
	mustCreate(t, c, &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "to-theirs"},
		Spec:       gatewayv1.HTTPRouteSpec{CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "theirs"}}}},
	})
	// A Gateway of our class created after them proves the loop has run since.
	mustCreate(t, c, &gatewayv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ours"},
		Spec:       gatewayv1.GatewaySpec{GatewayClassName: "crossgate", Listeners: []gatewayv1.Listener{{Name: "http", Port: 80, Protocol: gatewayv1.HTTPProtocolType}}},
	})
	eventually(t, 5*time.Second, "our Gateway's status", func() error {
		g := &gatewayv1.Gateway{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "ours"}, g); err != nil {
			return err
		}
		_, err := condition(g.Status.Conditions, "Accepted")
		return err
	})
	time.Sleep(300 * time.Millisecond) // a few more debounce periods
	g := &gatewayv1.Gateway{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "theirs"}, g); err != nil {
		t.Fatal(err)
	}
	for _, cd := range g.Status.Conditions {
		if cd.Reason != "Pending" { // the CRD's default conditions say Pending
			t.Errorf("crossgate wrote a condition on another class's Gateway: %+v", cd)
		}
	}
	gc := &gatewayv1.GatewayClass{}
	if err := c.Get(ctx, types.NamespacedName{Name: "someone-else"}, gc); err != nil {
		t.Fatal(err)
	}
	for _, cd := range gc.Status.Conditions {
		if cd.Reason != "Pending" && cd.Reason != "Waiting" {
			t.Errorf("crossgate wrote a condition on another controller's GatewayClass: %+v", cd)
		}
	}
	r := &gatewayv1.HTTPRoute{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "to-theirs"}, r); err != nil {
		t.Fatal(err)
	}
	if len(r.Status.Parents) != 0 {
		t.Errorf("crossgate wrote a parent status on a route of another class: %+v", r.Status.Parents)
	}
}

func mustCreate(t *testing.T, c client.Client, o client.Object) {
	t.Helper()
	if err := c.Create(context.Background(), o); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}
