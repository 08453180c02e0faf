//go:build integration

package member

import (
	"context"
	"fmt"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/crossgate-io/crossgate/sandbox"
	"github.com/crossgate-io/crossgate/wellknown"
	"github.com/crossgate-io/crossgate/xds/translate"
)

// An HTTPS listener on a real API server: its ResolvedRefs follows its Secret (missing, then
// created, then of another namespace without and with a ReferenceGrant), and once resolved the
// gateway's xDS configuration carries the certificate as an SDS secret.
func TestHTTPSListenerCertificate(t *testing.T) {
	ctx := context.Background()
	c := sb.Cluster("cluster-1").Client
	mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "https-certs"}})
	gw := &gatewayv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Namespace: wellknown.SystemNamespace, Name: "https-test", Annotations: map[string]string{"crossgate.io/lb-port": "8443"}},
		Spec: gatewayv1.GatewaySpec{GatewayClassName: "crossgate", Listeners: []gatewayv1.Listener{{
			Name: "https", Port: 443, Protocol: gatewayv1.HTTPSProtocolType, Hostname: ptr.To(gatewayv1.Hostname("foo.example.com")),
			TLS: &gatewayv1.ListenerTLSConfig{CertificateRefs: []gatewayv1.SecretObjectReference{{Name: "foo-cert"}}},
		}}},
	}
	mustCreate(t, c, gw)
	t.Cleanup(func() { _ = c.Delete(ctx, gw) })
	resolved := func(want metav1.ConditionStatus, reason string) func() error {
		return func() error {
			g := &gatewayv1.Gateway{}
			if err := c.Get(ctx, types.NamespacedName{Namespace: gw.Namespace, Name: gw.Name}, g); err != nil {
				return err
			}
			if len(g.Status.Listeners) != 1 {
				return fmt.Errorf("listener statuses %+v", g.Status.Listeners)
			}
			cond, err := condition(g.Status.Listeners[0].Conditions, "ResolvedRefs")
			if err != nil {
				return err
			}
			if cond.Status != want || cond.Reason != reason || cond.ObservedGeneration != g.Generation {
				return fmt.Errorf("ResolvedRefs %s %s (generation %d of %d): %s", cond.Status, cond.Reason, cond.ObservedGeneration, g.Generation, cond.Message)
			}
			return nil
		}
	}
	served := func(secret string, want bool) func() error {
		return func() error {
			res, _, _ := running["cluster-1"].Cache.Dump(wellknown.Gateway(gw.Namespace, gw.Name).String())
			for _, r := range res {
				if r.Type == resourcev3.SecretType && r.Name == translate.GatewayCertificateName(secret) {
					if !want {
						return fmt.Errorf("secret %s still served", secret)
					}
					return nil
				}
			}
			if want {
				return fmt.Errorf("secret %s not served (%d resources)", secret, len(res))
			}
			return nil
		}
	}
	eventually(t, 10*time.Second, "InvalidCertificateRef while the Secret is missing", resolved(metav1.ConditionFalse, "InvalidCertificateRef"))

	certPEM, keyPEM, err := sandbox.SelfSigned("foo.example.com", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: wellknown.SystemNamespace, Name: "foo-cert"},
		Type:       corev1.SecretTypeTLS, Data: map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM},
	}
	mustCreate(t, c, secret)
	eventually(t, 10*time.Second, "ResolvedRefs once the Secret exists", resolved(metav1.ConditionTrue, "ResolvedRefs"))
	eventually(t, 10*time.Second, "the certificate served to the gateway", served("crossgate-system/foo-cert", true))

	// Another namespace's Secret: refused without a grant, taken with one.
	other := secret.DeepCopy()
	other.ResourceVersion, other.Namespace = "", "https-certs"
	mustCreate(t, c, other)
	if err := c.Get(ctx, types.NamespacedName{Namespace: gw.Namespace, Name: gw.Name}, gw); err != nil {
		t.Fatal(err)
	}
	gw.Spec.Listeners[0].TLS.CertificateRefs[0].Namespace = ptr.To(gatewayv1.Namespace("https-certs"))
	if err := c.Update(ctx, gw); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "RefNotPermitted without a grant", resolved(metav1.ConditionFalse, "RefNotPermitted"))
	eventually(t, 10*time.Second, "no certificate served", served("https-certs/foo-cert", false))
	mustCreate(t, c, &gatewayv1.ReferenceGrant{
		ObjectMeta: metav1.ObjectMeta{Namespace: "https-certs", Name: "gateways"},
		Spec: gatewayv1.ReferenceGrantSpec{
			From: []gatewayv1.ReferenceGrantFrom{{Group: gatewayv1.GroupName, Kind: "Gateway", Namespace: gatewayv1.Namespace(wellknown.SystemNamespace)}},
			To:   []gatewayv1.ReferenceGrantTo{{Group: "", Kind: "Secret"}},
		},
	})
	eventually(t, 10*time.Second, "ResolvedRefs with the grant", resolved(metav1.ConditionTrue, "ResolvedRefs"))
	eventually(t, 10*time.Second, "the other namespace's certificate served", served("https-certs/foo-cert", true))

	// A Secret's change is a change of the listener: one that no longer holds a key pair.
	other.Data[corev1.TLSPrivateKeyKey] = []byte("not a key")
	if err := c.Update(ctx, other); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "InvalidCertificateRef once the Secret holds no key pair", resolved(metav1.ConditionFalse, "InvalidCertificateRef"))
}
