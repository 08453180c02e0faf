//go:build integration

package member

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	accessv1alpha3 "github.com/crossgate-io/crossgate/api/smi/access/v1alpha3"
	"github.com/crossgate-io/crossgate/wellknown"
)

// TestReservedPortWarning: a Service of the mesh on a port the sidecar listens on itself is not
// routed, and the controller says so with a Warning Event on the Service, once.
func TestReservedPortWarning(t *testing.T) {
	ctx := context.Background()
	c := sb.Cluster("cluster-1").Client
	ns := "reserved-port"
	mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{wellknown.MeshNamespaceLabel: wellknown.MeshNamespaceValue}}})
	mustCreate(t, c, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "proxyish"},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "x"}, Ports: []corev1.ServicePort{{Name: "http", Port: 15001, TargetPort: intstr.FromInt32(8080)}}},
	})
	var ev eventsv1.Event
	eventually(t, 10*time.Second, "a ReservedPort Warning Event on the Service", func() error {
		var l eventsv1.EventList
		if err := c.List(ctx, &l, client.InNamespace(ns)); err != nil {
			return err
		}
		var found []eventsv1.Event
		for _, e := range l.Items {
			if e.Regarding.Name == "proxyish" && e.Regarding.Kind == "Service" && e.Reason == "ReservedPort" && e.Type == corev1.EventTypeWarning {
				found = append(found, e)
			}
		}
		switch {
		case len(found) == 0:
			return fmt.Errorf("events %v", l.Items)
		case len(found) > 1:
			return fmt.Errorf("%d events, want one", len(found))
		}
		ev = found[0]
		return nil
	})
	if !strings.Contains(ev.Note, "15001") {
		t.Errorf("note %q does not name the port", ev.Note)
	}
}

// TestTrafficTargetAllowsNothingWarning: a TrafficTarget whose rules resolve to nothing (here a
// route group that does not exist) allows no request, in this cluster or across clusters, and
// the controller says why with a Warning Event on it (issue 16, defect 3).
func TestTrafficTargetAllowsNothingWarning(t *testing.T) {
	ctx := context.Background()
	c := sb.Cluster("cluster-1").Client
	ns := "tt-allows-nothing"
	mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	mustCreate(t, c, &accessv1alpha3.TrafficTarget{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "dangling"},
		Spec: accessv1alpha3.TrafficTargetSpec{
			Destination: accessv1alpha3.IdentityBindingSubject{Kind: "ServiceAccount", Name: "httpbin", Namespace: ns},
			Sources:     []accessv1alpha3.IdentityBindingSubject{{Kind: "ServiceAccount", Name: "curl", Namespace: "curl"}},
			Rules:       []accessv1alpha3.TrafficTargetRule{{Kind: "HTTPRouteGroup", Name: "no-such-group"}},
		},
	})
	eventually(t, 10*time.Second, "an AllowsNothing Warning Event on the TrafficTarget", func() error {
		var l eventsv1.EventList
		if err := c.List(ctx, &l, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, e := range l.Items {
			if e.Regarding.Name == "dangling" && e.Regarding.Kind == "TrafficTarget" && e.Reason == "AllowsNothing" && e.Type == corev1.EventTypeWarning {
				if !strings.Contains(e.Note, "spec.rules[0]") || !strings.Contains(e.Note, "no-such-group") {
					return fmt.Errorf("note %q names neither the field nor the group", e.Note)
				}
				return nil
			}
		}
		return fmt.Errorf("events %v", l.Items)
	})
}
