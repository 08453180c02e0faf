//go:build integration

package member

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/crossgate-io/crossgate/controllers"
	"github.com/crossgate-io/crossgate/dataplane"
	"github.com/crossgate-io/crossgate/translator"
)

// TestGatewayRendered: the installation's Gateway runs as an Envoy Deployment behind a
// LoadBalancer Service on its LB port, with its identity Secret and the bootstrap; its status
// holds the load balancer's addresses, and it is Programmed while the Deployment has an
// available replica; the class publishes its supported features. Deleting the Gateway removes
// its objects. A Gateway of another class gets nothing.
func TestGatewayRendered(t *testing.T) {
	ctx := context.Background()
	c := sb.Cluster("cluster-1").Client
	key := types.NamespacedName{Namespace: "crossgate-system", Name: "crossgate-gateway"}
	svc := &corev1.Service{}
	eventually(t, 5*time.Second, "gateway Service", func() error { return c.Get(ctx, key, svc) })
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 81 || svc.Spec.Ports[0].TargetPort.IntVal != 80 {
		t.Errorf("gateway Service %+v: want LoadBalancer 81 -> 80", svc.Spec)
	}
	d := &appsv1.Deployment{}
	if err := c.Get(ctx, key, d); err != nil {
		t.Fatal(err)
	}
	if o := metav1.GetControllerOf(d); o == nil || o.Kind != "Gateway" {
		t.Errorf("Deployment owner %+v", o)
	}
	sec := &corev1.Secret{}
	eventually(t, 5*time.Second, "identity Secret", func() error {
		return c.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: dataplane.IdentitySecretPrefix + d.Spec.Template.Spec.ServiceAccountName}, sec)
	})
	blk, _ := pem.Decode(sec.Data["tls.crt"])
	if blk == nil {
		t.Fatal("no certificate in the identity Secret")
	}
	crt, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if want := "spiffe://cluster.local/ns/crossgate-system/sa/crossgate-gateway"; len(crt.URIs) != 1 || crt.URIs[0].String() != want {
		t.Errorf("certificate URIs %v, want %s", crt.URIs, want)
	}
	cm := &corev1.ConfigMap{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: dataplane.BootstrapConfigMap}, cm); err != nil {
		t.Fatal(err)
	}
	if _, err := dataplane.ParseBootstrap([]byte(cm.Data[dataplane.BootstrapFile])); err != nil {
		t.Errorf("bootstrap: %v", err)
	}

	// What the cluster does for the rendered objects, the controller reads into the Gateway's
	// status: the load balancer's address, then the Deployment's available replicas (here
	// written as a cloud controller and kube-controller-manager would).
	programmed := func(what string, status metav1.ConditionStatus, reason string, addrs ...string) {
		t.Helper()
		eventually(t, 10*time.Second, what, func() error {
			g := &gatewayv1.Gateway{}
			if err := c.Get(ctx, key, g); err != nil {
				return err
			}
			var got []string
			for _, a := range g.Status.Addresses {
				got = append(got, string(ptr.Deref(a.Type, ""))+"="+a.Value)
			}
			if p := meta.FindStatusCondition(g.Status.Conditions, string(gatewayv1.GatewayConditionProgrammed)); p == nil || p.Status != status || p.Reason != reason || !slices.Equal(got, addrs) {
				return fmt.Errorf("Programmed %+v, addresses %v", p, got)
			}
			return nil
		})
	}
	programmed("Programmed=False AddressNotAssigned before the load balancer", metav1.ConditionFalse, string(gatewayv1.GatewayReasonAddressNotAssigned))
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.7"}, {Hostname: "gw.example.com"}}
	if err := c.Status().Update(ctx, svc); err != nil {
		t.Fatal(err)
	}
	programmed("Programmed=False NoResources with an address", metav1.ConditionFalse, string(gatewayv1.GatewayReasonNoResources), "IPAddress=203.0.113.7", "Hostname=gw.example.com")
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1}
	if err := c.Status().Update(ctx, d); err != nil {
		t.Fatal(err)
	}
	programmed("Programmed=True with a replica available", metav1.ConditionTrue, string(gatewayv1.GatewayReasonProgrammed), "IPAddress=203.0.113.7", "Hostname=gw.example.com")
	eventually(t, 10*time.Second, "the GatewayClass's supported features", func() error {
		gc := &gatewayv1.GatewayClass{}
		if err := c.Get(ctx, types.NamespacedName{Name: "crossgate"}, gc); err != nil {
			return err
		}
		if !equality.Semantic.DeepEqual(gc.Status.SupportedFeatures, translator.SupportedFeatures()) {
			return fmt.Errorf("supportedFeatures %v", gc.Status.SupportedFeatures)
		}
		return nil
	})
	// Another Deployment of the cluster, and its status changing, publish nothing: only the
	// gateways' Deployments are read.
	full := func() int {
		return running["cluster-1"].Supervisor.Current().Publisher.Publishes()[controllers.PathFull]
	}
	before := full()
	web := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "crossgate-system", Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "web"}}}},
		},
	}
	mustCreate(t, c, web)
	web.Status = appsv1.DeploymentStatus{Replicas: 1, ReadyReplicas: 1, AvailableReplicas: 1}
	if err := c.Status().Update(ctx, web); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the debouncer publishes within 200 ms of an event
	if after := full(); after != before {
		t.Errorf("a Deployment that is not a gateway's caused %d full publishes", after-before)
	}

	// The replica goes away: not Programmed any more.
	if err := c.Get(ctx, key, d); err != nil {
		t.Fatal(err)
	}
	d.Status.AvailableReplicas, d.Status.ReadyReplicas = 0, 0
	if err := c.Status().Update(ctx, d); err != nil {
		t.Fatal(err)
	}
	programmed("Programmed=False NoResources when no replica is available", metav1.ConditionFalse, string(gatewayv1.GatewayReasonNoResources), "IPAddress=203.0.113.7", "Hostname=gw.example.com")

	// A second Gateway of our class in the controller's namespace, then deleted; one in a user's
	// namespace, which is not trusted; one of another class.
	ns := "gateway-lifecycle"
	mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	mustCreate(t, c, &gatewayv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "not-ours"}, Spec: gatewayv1.GatewayClassSpec{ControllerName: "example.com/other"}})
	listeners := []gatewayv1.Listener{{Name: "http", Port: 80, Protocol: gatewayv1.HTTPProtocolType}}
	mustCreate(t, c, &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "crossgate-system", Name: "second"}, Spec: gatewayv1.GatewaySpec{GatewayClassName: "crossgate", Listeners: listeners}})
	mustCreate(t, c, &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "rogue"}, Spec: gatewayv1.GatewaySpec{GatewayClassName: "crossgate", Listeners: listeners}})
	mustCreate(t, c, &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "theirs"}, Spec: gatewayv1.GatewaySpec{GatewayClassName: "not-ours", Listeners: listeners}})
	ours := types.NamespacedName{Namespace: "crossgate-system", Name: "second"}
	eventually(t, 5*time.Second, "second gateway's Deployment", func() error { return c.Get(ctx, ours, &appsv1.Deployment{}) })
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "theirs"}, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
		t.Errorf("a Gateway of another class got a Deployment (%v)", err)
	}
	// The user's Gateway of our class: Accepted=False NotTrusted, and no proxy or identity.
	rogue := types.NamespacedName{Namespace: ns, Name: "rogue"}
	eventually(t, 5*time.Second, "the untrusted Gateway's Accepted=False NotTrusted", func() error {
		g := &gatewayv1.Gateway{}
		if err := c.Get(ctx, rogue, g); err != nil {
			return err
		}
		if a := meta.FindStatusCondition(g.Status.Conditions, string(gatewayv1.GatewayConditionAccepted)); a == nil || a.Status != metav1.ConditionFalse || a.Reason != "NotTrusted" {
			return fmt.Errorf("Accepted %+v", a)
		}
		return nil
	})
	if err := c.Get(ctx, rogue, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
		t.Errorf("an untrusted Gateway got a Deployment (%v)", err)
	}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: dataplane.IdentitySecretPrefix + "rogue"}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Errorf("an untrusted Gateway got an identity (%v)", err)
	}
	if err := c.Delete(ctx, &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "crossgate-system", Name: "second"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "objects of a deleted Gateway", func() error {
		if err := c.Get(ctx, ours, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("Deployment still there (%w)", err)
		}
		if err := c.Get(ctx, ours, &corev1.Service{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("Service still there (%w)", err)
		}
		if err := c.Get(ctx, ours, &corev1.ServiceAccount{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("ServiceAccount still there (%w)", err)
		}
		return nil
	})
}
