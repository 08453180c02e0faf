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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/controllers"
	"github.com/crossgate-io/crossgate/sandbox/walkthrough"
	"github.com/crossgate-io/crossgate/wellknown"
)

func importOf(ns, name string) *flomeshv1alpha1.ServiceImport {
	return &flomeshv1alpha1.ServiceImport{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: flomeshv1alpha1.ServiceImportSpec{
			ServiceAccountName: "httpbin",
			Ports: []flomeshv1alpha1.ServicePort{{Port: 8080, Protocol: "TCP", Endpoints: []flomeshv1alpha1.Endpoint{{
				ClusterKey: "default/default/default/cluster-1",
				Target:     flomeshv1alpha1.Target{Host: "127.0.0.1", IP: "127.0.0.1", Port: 81, Path: "/cluster-1/httpbin-mesh"},
			}}}},
		},
	}
}

// TestPlaceholder: an import with no local Service gets a placeholder and the import's spec.ips;
// kubectl apply of the walkthrough's own Service takes it over, after which crossgate no longer
// manages it, and deleting the import leaves it.
func TestPlaceholder(t *testing.T) {
	ctx := context.Background()
	c := sb.Cluster("cluster-2").Client
	kubectl(t, "cluster-2", "", "create", "namespace", "httpbin")
	mustCreate(t, c, importOf("httpbin", "httpbin"))
	key := types.NamespacedName{Namespace: "httpbin", Name: "httpbin"}
	svc := &corev1.Service{}
	eventually(t, 5*time.Second, "placeholder Service", func() error {
		if err := c.Get(ctx, key, svc); err != nil {
			return err
		}
		imp := &flomeshv1alpha1.ServiceImport{}
		if err := c.Get(ctx, key, imp); err != nil {
			return err
		}
		if len(svc.Spec.ClusterIPs) == 0 || !slices.Equal(imp.Spec.IPs, svc.Spec.ClusterIPs) {
			return fmt.Errorf("import ips %v, Service ClusterIPs %v", imp.Spec.IPs, svc.Spec.ClusterIPs)
		}
		return nil
	})
	if !controllers.IsPlaceholder(svc) || len(svc.Spec.Selector) != 0 {
		t.Fatalf("placeholder: labels %v selector %v", svc.Labels, svc.Spec.Selector)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 8080 {
		t.Errorf("placeholder ports %+v, want the import's 8080", svc.Spec.Ports)
	}

	// The walkthrough's own Service, applied with kubectl as the walkthrough does.
	services, err := walkthrough.Render("httpbin-services.yaml", map[string]string{"CLUSTER_NAME": "cluster-2"}, "")
	if err != nil {
		t.Fatal(err)
	}
	kubectl(t, "cluster-2", strings.SplitN(services, "\n---\n", 2)[0], "apply", "-n", "httpbin", "-f", "-")
	eventually(t, 5*time.Second, "placeholder given up", func() error {
		if err := c.Get(ctx, key, svc); err != nil {
			return err
		}
		if svc.Labels[wellknown.ImportLabel] != "" || svc.Labels[wellknown.ManagedByLabel] == wellknown.ManagedByValue || len(svc.OwnerReferences) != 0 {
			return fmt.Errorf("still crossgate's: labels %v owners %v", svc.Labels, svc.OwnerReferences)
		}
		return nil
	})
	if svc.Spec.Selector["app"] != "pipy" {
		t.Errorf("the user's selector is lost: %v", svc.Spec.Selector)
	}
	// Given up for good: a change of the import's ports does not touch the Service, and deleting
	// the import leaves it.
	imp := &flomeshv1alpha1.ServiceImport{}
	if err := c.Get(ctx, key, imp); err != nil {
		t.Fatal(err)
	}
	imp.Spec.Ports[0].Port = 9090
	if err := c.Update(ctx, imp); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, imp); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if err := c.Get(ctx, key, svc); err != nil {
		t.Fatalf("the user's Service was deleted with the import: %v", err)
	}
	if svc.Spec.Ports[0].Port != 8080 {
		t.Errorf("crossgate changed the user's Service: ports %+v", svc.Spec.Ports)
	}
}

// TestPlaceholderRemovedWithImport: a placeholder nobody took over goes with its import, and a
// Service of the user's that existed first is never touched.
func TestPlaceholderRemovedWithImport(t *testing.T) {
	ctx := context.Background()
	c := sb.Cluster("cluster-2").Client
	ns := "imports-removed"
	mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	mustCreate(t, c, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mine"},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "mine"}, Ports: []corev1.ServicePort{{Port: 80}}},
	})
	mustCreate(t, c, importOf(ns, "mine"))
	mustCreate(t, c, importOf(ns, "remote"))
	key := types.NamespacedName{Namespace: ns, Name: "remote"}
	eventually(t, 5*time.Second, "placeholder", func() error { return c.Get(ctx, key, &corev1.Service{}) })
	eventually(t, 5*time.Second, "ips of the import of the user's Service", func() error {
		imp := &flomeshv1alpha1.ServiceImport{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "mine"}, imp); err != nil {
			return err
		}
		if len(imp.Spec.IPs) == 0 {
			return fmt.Errorf("no ips")
		}
		return nil
	})
	mine := &corev1.Service{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "mine"}, mine); err != nil {
		t.Fatal(err)
	}
	if controllers.IsPlaceholder(mine) || len(mine.OwnerReferences) != 0 || mine.Spec.Ports[0].Port != 80 {
		t.Errorf("crossgate touched the user's Service: %+v", mine)
	}
	for _, name := range []string{"remote", "mine"} {
		if err := c.Delete(ctx, &flomeshv1alpha1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "placeholder deleted with its import", func() error {
		err := c.Get(ctx, key, &corev1.Service{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%w)", err)
	})
	time.Sleep(200 * time.Millisecond)
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "mine"}, &corev1.Service{}); err != nil {
		t.Errorf("the user's Service went with the import: %v", err)
	}
}

// TestExportOfDeletedServiceWithImport: deleting the exported Service of a cluster that also
// imports it leaves a placeholder in its place, which is not this cluster's Service: the export
// turns invalid and its routes go (issue 16, defect 4; the federation then drops the cluster
// from the import, test/federation TestPlaceholderIsNotExported).
func TestExportOfDeletedServiceWithImport(t *testing.T) {
	ctx := context.Background()
	c := sb.Cluster("cluster-2").Client
	ns := "exported-and-imported"
	mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "both"},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "both"}, Ports: []corev1.ServicePort{{Port: 8080}}},
	}
	mustCreate(t, c, svc)
	mustCreate(t, c, &flomeshv1alpha1.ServiceExport{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "both"},
		Spec:       flomeshv1alpha1.ServiceExportSpec{Rules: []flomeshv1alpha1.ServiceExportRule{{PortNumber: 8080, Path: "/cluster-2/both", PathType: flomeshv1alpha1.PathMatchPrefix}}},
	})
	mustCreate(t, c, importOf(ns, "both"))
	key := types.NamespacedName{Namespace: ns, Name: "both"}
	eventually(t, 5*time.Second, "export Valid with its routes", func() error {
		if _, err := exportValid(ctx, c, key, metav1.ConditionTrue); err != nil {
			return err
		}
		if n, err := routeCount(ctx, c, ns, "both"); err != nil || n != 2 {
			return fmt.Errorf("%d routes (%w)", n, err)
		}
		return nil
	})

	if err := c.Delete(ctx, svc); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "placeholder in place of the deleted Service", func() error {
		got := &corev1.Service{}
		if err := c.Get(ctx, key, got); err != nil {
			return err
		}
		if !controllers.IsPlaceholder(got) {
			return fmt.Errorf("not a placeholder: %v", got.Labels)
		}
		return nil
	})
	eventually(t, 5*time.Second, "export not Valid, routes gone", func() error {
		v, err := exportValid(ctx, c, key, metav1.ConditionFalse)
		if err != nil {
			return err
		}
		if v.Reason != "ServiceNotFound" || !strings.Contains(v.Message, "placeholder") {
			return fmt.Errorf("Valid: %s %s", v.Reason, v.Message)
		}
		if n, err := routeCount(ctx, c, ns, "both"); err != nil || n != 0 {
			return fmt.Errorf("%d routes left (%w)", n, err)
		}
		return nil
	})
}
