//go:build integration

package member

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/crossgate-io/crossgate/translator"
)

// TestReferenceGrant: an HTTPRoute's backend in another namespace is refused (ResolvedRefs False,
// RefNotPermitted) until a ReferenceGrant there allows it, and refused again once the grant is
// deleted: the controller watches ReferenceGrants.
func TestReferenceGrant(t *testing.T) {
	ctx := context.Background()
	c := sb.Cluster("cluster-1").Client
	for _, ns := range []string{"grant-web", "grant-shop"} {
		mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	}
	mustCreate(t, c, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "grant-shop", Name: "cart"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}},
	})
	mustCreate(t, c, &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: "grant-web", Name: "cart"},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{
				Name: "crossgate-gateway", Namespace: ptr.To(gatewayv1.Namespace("crossgate-system")), SectionName: ptr.To(gatewayv1.SectionName("http")),
			}}},
			Rules: []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{
				Name: "cart", Namespace: ptr.To(gatewayv1.Namespace("grant-shop")), Port: ptr.To(gatewayv1.PortNumber(8080)),
			}}}}}},
		},
	})
	resolved := func(want metav1.ConditionStatus, reason string) func() error {
		return func() error {
			r := &gatewayv1.HTTPRoute{}
			if err := c.Get(ctx, types.NamespacedName{Namespace: "grant-web", Name: "cart"}, r); err != nil {
				return err
			}
			for _, p := range r.Status.Parents {
				if p.ControllerName != translator.ControllerName {
					continue
				}
				cond, err := condition(p.Conditions, "ResolvedRefs")
				if err != nil {
					return err
				}
				if cond.Status != want || cond.Reason != reason {
					return fmt.Errorf("ResolvedRefs %s %s: %s", cond.Status, cond.Reason, cond.Message)
				}
				return nil
			}
			return fmt.Errorf("no parent status of ours: %+v", r.Status.Parents)
		}
	}
	eventually(t, 10*time.Second, "RefNotPermitted without a grant", resolved(metav1.ConditionFalse, "RefNotPermitted"))
	grant := &gatewayv1.ReferenceGrant{
		ObjectMeta: metav1.ObjectMeta{Namespace: "grant-shop", Name: "web-to-cart"},
		Spec: gatewayv1.ReferenceGrantSpec{
			From: []gatewayv1.ReferenceGrantFrom{{Group: gatewayv1.GroupName, Kind: "HTTPRoute", Namespace: "grant-web"}},
			To:   []gatewayv1.ReferenceGrantTo{{Group: "", Kind: "Service", Name: ptr.To(gatewayv1.ObjectName("cart"))}},
		},
	}
	mustCreate(t, c, grant)
	eventually(t, 10*time.Second, "ResolvedRefs with the grant", resolved(metav1.ConditionTrue, "ResolvedRefs"))
	if err := c.Delete(ctx, grant); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "RefNotPermitted once the grant is deleted", resolved(metav1.ConditionFalse, "RefNotPermitted"))
}
