//go:build integration

// Package crds checks the controller on a cluster whose Gateway API CRDs are older than the
// ones crossgate ships (no TLSRoute or ReferenceGrant of v1).
package crds

// The mesh is served, exports get their HTTPRoutes, and the GatewayClass says what is missing,
// on a cluster whose Gateway API CRDs serve no TLSRoute or ReferenceGrant of v1 (as before
// v1.5, which Helm does not upgrade). Before, the controller waited for those kinds forever and
// configured no proxy.
import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/controllers"
	"github.com/crossgate-io/crossgate/internal/app"
	"github.com/crossgate-io/crossgate/test/internal/apptest"
	"github.com/crossgate-io/crossgate/test/internal/poll"
	"github.com/crossgate-io/crossgate/test/internal/sbtest"
	"github.com/crossgate-io/crossgate/translator"
	"github.com/crossgate-io/crossgate/wellknown"
	"github.com/crossgate-io/crossgate/xds/identity"
)

func TestOlderGatewayAPICRDs(t *testing.T) {
	s := sbtest.Start(t, "cluster-1")
	c := s.Clusters[0].Client
	ctx := context.Background()
	for _, name := range []string{"tlsroutes.gateway.networking.k8s.io", "referencegrants.gateway.networking.k8s.io"} {
		if err := c.Delete(ctx, &apiextensionsv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
			t.Fatal(err)
		}
	}
	ca, err := identity.NewCA("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "crossgate-system"}}))
	must(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{wellknown.MeshNamespaceLabel: wellknown.MeshNamespaceValue}}}))
	must(c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "default"}}))
	must(c.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "web"}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Name: "http", Port: 8080}},
	}}))
	must(c.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "web-0", Labels: map[string]string{"app": "web"}}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: "app", Image: "app"}},
	}}))
	must(c.Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "web", Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(8080))}},
		Endpoints: []discoveryv1.Endpoint{{
			Addresses: []string{"10.1.0.5"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "web", Name: "web-0"},
		}},
	}))
	must(c.Create(ctx, &gatewayv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "crossgate"}, Spec: gatewayv1.GatewayClassSpec{ControllerName: translator.ControllerName}}))
	must(c.Create(ctx, &gatewayv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Namespace: "crossgate-system", Name: "crossgate-gateway"},
		Spec:       gatewayv1.GatewaySpec{GatewayClassName: "crossgate", Listeners: []gatewayv1.Listener{{Name: "http", Port: 80, Protocol: gatewayv1.HTTPProtocolType}}},
	}))
	must(c.Create(ctx, &flomeshv1alpha1.ServiceExport{
		ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "web"},
		Spec:       flomeshv1alpha1.ServiceExportSpec{Rules: []flomeshv1alpha1.ServiceExportRule{{PortNumber: 8080, Path: "/web", PathType: flomeshv1alpha1.PathMatchPrefix}}},
	}))
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	r, done, err := apptest.Start(runCtx, s.Clusters[0].Config, app.Config{
		Member: controllers.Options{Name: "cluster-1", MeshConfig: types.NamespacedName{Namespace: "crossgate-system", Name: "mesh"}},
		CA:     ca, XDSAddress: "127.0.0.1:0", Federation: "off", Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	must(err)
	poll.Eventually(t, 30*time.Second, "web's sidecar configured", func() error {
		if res, _, _ := r.Cache.Dump(wellknown.Sidecar("web", "default").String()); len(res) == 0 {
			return os.ErrNotExist
		}
		return nil
	})
	poll.Eventually(t, 30*time.Second, "the export's direct HTTPRoute", func() error {
		return c.Get(ctx, types.NamespacedName{Namespace: "web", Name: "web.direct"}, &gatewayv1.HTTPRoute{})
	})
	poll.Eventually(t, 30*time.Second, "the GatewayClass's SupportedVersion", func() error {
		gc := &gatewayv1.GatewayClass{}
		if err := c.Get(ctx, types.NamespacedName{Name: "crossgate"}, gc); err != nil {
			return err
		}
		cond := meta.FindStatusCondition(gc.Status.Conditions, "SupportedVersion")
		if cond == nil || cond.Status != metav1.ConditionFalse || cond.Reason != "UnsupportedVersion" || !strings.Contains(cond.Message, "TLSRoute.gateway.networking.k8s.io/v1") {
			return fmt.Errorf("SupportedVersion %+v", cond)
		}
		for _, f := range gc.Status.SupportedFeatures {
			if f.Name == "TLSRoute" {
				return errors.New("TLSRoute claimed as supported")
			}
		}
		return nil
	})
	select {
	case err := <-done:
		t.Fatalf("the controller ended: %v", err)
	default:
	}
	stop()
	if err := <-done; err != nil {
		t.Errorf("the controller: %v", err)
	}
}
