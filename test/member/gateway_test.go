//go:build integration

package member

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/crossgate-io/crossgate/dataplane"
)

// TestGatewayRendered: the installation's Gateway runs as an Envoy Deployment behind a
// LoadBalancer Service on its LB port, with its identity Secret and the bootstrap; deleting the
// Gateway removes them. A Gateway of another class gets nothing.
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
