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

func exportRoutes(ctx context.Context, c client.Client, ns, export string) ([]gatewayv1.HTTPRoute, error) {
	var l gatewayv1.HTTPRouteList
	err := c.List(ctx, &l, client.InNamespace(ns), client.MatchingLabels{wellknown.ExportLabel: export})
	return l.Items, err
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
	eventually(t, 5*time.Second, "the export's HTTPRoutes", func() error {
		routes, err = exportRoutes(ctx, c, "httpbin", "httpbin")
		if err == nil && len(routes) != 2 {
			err = fmt.Errorf("%d routes", len(routes))
		}
		return err
	})
	byName := map[string]gatewayv1.HTTPRoute{}
	for _, r := range routes {
		byName[r.Name] = r
		if len(r.Spec.ParentRefs) != 1 || r.Spec.ParentRefs[0].Name != "crossgate-gateway" || r.Spec.ParentRefs[0].Namespace == nil || *r.Spec.ParentRefs[0].Namespace != "crossgate-system" {
			t.Errorf("%s: parentRefs %+v, want crossgate-system/crossgate-gateway", r.Name, r.Spec.ParentRefs)
		}
		if o := metav1.GetControllerOf(&r); o == nil || o.Kind != "ServiceExport" || o.Name != "httpbin" {
			t.Errorf("%s: controller %+v, want the ServiceExport", r.Name, o)
		}
		for _, rule := range r.Spec.Rules {
			if len(rule.BackendRefs) != 1 || rule.BackendRefs[0].Name != "httpbin" || rule.BackendRefs[0].Port == nil || *rule.BackendRefs[0].Port != 8080 {
				t.Errorf("%s: backendRefs %+v, want httpbin:8080", r.Name, rule.BackendRefs)
			}
		}
	}
	mesh, direct := byName["httpbin.mesh"], byName["httpbin.direct"]
	if want := []gatewayv1.Hostname{"httpbin.httpbin", "httpbin.httpbin.svc", "httpbin.httpbin.svc.cluster.local"}; !slices.Equal(mesh.Spec.Hostnames, want) {
		t.Errorf("httpbin.mesh hostnames %v, want %v", mesh.Spec.Hostnames, want)
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
	for _, name := range []string{"httpbin.mesh", "httpbin.direct"} {
		eventually(t, 5*time.Second, name+" parent status", func() error {
			r := &gatewayv1.HTTPRoute{}
			if err := c.Get(ctx, types.NamespacedName{Namespace: "httpbin", Name: name}, r); err != nil {
				return err
			}
			for _, p := range r.Status.Parents {
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
			return fmt.Errorf("no parent status of %s: %+v", translator.ControllerName, r.Status.Parents)
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
	if r, _ := exportRoutes(ctx, c, "httpbin", "httpbin-cluster-1"); len(r) != 0 {
		t.Errorf("an export without its Service has routes: %v", r)
	}
	kubectl(t, "cluster-1", svcDocs[1], "apply", "-n", "httpbin", "-f", "-")
	took := eventually(t, 2*time.Second, "export httpbin-cluster-1 Valid after its Service", func() error {
		if _, err := exportValid(ctx, c, other, metav1.ConditionTrue); err != nil {
			return err
		}
		r, err := exportRoutes(ctx, c, "httpbin", "httpbin-cluster-1")
		if err == nil && len(r) != 2 {
			err = fmt.Errorf("%d routes", len(r))
		}
		return err
	})
	t.Logf("Service created -> export Valid with its routes in %v", took)

	// Deleting the export deletes its routes.
	if err := c.Delete(ctx, &flomeshv1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "httpbin", Name: "httpbin-cluster-1"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "routes of a deleted export", func() error {
		r, err := exportRoutes(ctx, c, "httpbin", "httpbin-cluster-1")
		if err == nil && len(r) != 0 {
			err = fmt.Errorf("%d routes left", len(r))
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
	if r, _ := exportRoutes(ctx, c, ns, "web"); len(r) != 0 {
		t.Errorf("an invalid export has routes: %v", r)
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
