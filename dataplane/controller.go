package dataplane

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/wellknown"
	"github.com/crossgate-io/crossgate/xds/identity"
)

const fieldOwner = client.FieldOwner(wellknown.FieldOwner)

// Reconciler keeps, for every Gateway of a GatewayClass of crossgate's controller, the Envoy
// Deployment and LoadBalancer Service it runs as, its ServiceAccount, its identity Secret (the
// certificate its Envoy presents to the xDS server, renewed before expiry) and the bootstrap
// ConfigMap of its namespace. Gateway and route statuses are the publish loop's.
type Reconciler struct {
	Client   client.Client
	Recorder events.EventRecorder
	Render   RenderOptions
	// CA issues the identity Secrets; XDSHost and XDSPort are where proxies reach the xDS server.
	CA      identity.Issuer
	CertTTL time.Duration
	XDSHost string
	XDSPort uint32
	// Unserved says why a Gateway of crossgate's class (of that class) gets no proxy and no
	// identity, empty when it gets them (untrusted, InvalidParameters: the translator writes
	// the matching Accepted=False condition). Nil serves all.
	Unserved  func(ctx context.Context, gw *gatewayv1.Gateway, class *gatewayv1.GatewayClass) (reason, message string)
	bootstrap map[string]string
}

// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=gateways;gatewayclasses,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;delete
// +kubebuilder:rbac:groups="",resources=services;serviceaccounts;configmaps;secrets,verbs=get;list;watch;create;update;delete

// SetupWithManager registers the controller.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	b, err := Bootstrap(r.XDSHost, r.XDSPort)
	if err != nil {
		return err
	}
	r.bootstrap = b
	if r.CertTTL == 0 {
		r.CertTTL = 24 * time.Hour
	}
	byLabel := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		if name := wellknown.RenderedFor(o.GetLabels()); name != "" {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
		}
		return nil
	})
	allOfClass := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		var l gatewayv1.GatewayList
		if err := r.Client.List(ctx, &l); err != nil {
			return nil
		}
		var out []reconcile.Request
		for _, g := range l.Items {
			if string(g.Spec.GatewayClassName) == o.GetName() {
				out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&g)})
			}
		}
		return out
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("gateway").
		For(&gatewayv1.Gateway{}).
		Watches(&gatewayv1.GatewayClass{}, allOfClass).
		Watches(&appsv1.Deployment{}, byLabel).
		Watches(&corev1.Service{}, byLabel).
		Complete(r)
}

// ours reports whether the Gateway's class is handled by crossgate.
func (r *Reconciler) ours(ctx context.Context, gw *gatewayv1.Gateway) (*gatewayv1.GatewayClass, error) {
	gc := &gatewayv1.GatewayClass{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: string(gw.Spec.GatewayClassName)}, gc); err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	if gc.Spec.ControllerName != wellknown.ControllerName {
		return nil, nil
	}
	return gc, nil
}

// Reconcile renders the Gateway's objects, or removes them when it is gone or not ours.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	gw := &gatewayv1.Gateway{}
	if err := r.Client.Get(ctx, req.NamespacedName, gw); err != nil {
		if apierrors.IsNotFound(err) {
			return reconcile.Result{}, r.remove(ctx, req.NamespacedName)
		}
		return reconcile.Result{}, err
	}
	class, err := r.ours(ctx, gw)
	if err != nil {
		return reconcile.Result{}, err
	}
	if class == nil || !gw.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, r.remove(ctx, req.NamespacedName)
	}
	if r.Unserved != nil {
		if reason, msg := r.Unserved(ctx, gw, class); reason != "" {
			r.Recorder.Eventf(gw, nil, corev1.EventTypeWarning, reason, "Render", "%s", msg)
			return reconcile.Result{}, r.remove(ctx, req.NamespacedName)
		}
	}
	out, err := Render(gw, r.Render)
	if err != nil {
		r.Recorder.Eventf(gw, nil, corev1.EventTypeWarning, flomeshv1alpha1.ReasonInvalidGateway, "Render", "%v", err)
		return reconcile.Result{}, nil // the user must fix the Gateway; its next change retries
	}
	for _, o := range []client.Object{out.ServiceAccount, out.Deployment, out.Service} {
		if err := controllerutil.SetControllerReference(gw, o, r.Client.Scheme()); err != nil {
			return reconcile.Result{}, err
		}
		if err := r.apply(ctx, o); err != nil {
			return reconcile.Result{}, err
		}
	}
	if err := EnsureBootstrap(ctx, r.Client, gw.Namespace, r.bootstrap); err != nil {
		return reconcile.Result{}, err
	}
	renew, err := EnsureIdentity(ctx, r.Client, r.CA, gw.Namespace, out.ServiceAccount.Name, r.CertTTL, time.Now())
	if err != nil {
		return reconcile.Result{}, err
	}
	return reconcile.Result{RequeueAfter: time.Until(renew)}, nil
}

// apply creates o or updates the fields crossgate renders (labels, owners, spec).
func (r *Reconciler) apply(ctx context.Context, want client.Object) error {
	have := want.DeepCopyObject().(client.Object)
	if err := r.Client.Get(ctx, client.ObjectKeyFromObject(want), have); err != nil {
		if !apierrors.IsNotFound(err) {
			return err
		}
		a, _ := mergeAnnotations(nil, want.GetAnnotations())
		want.SetAnnotations(a)
		if d, ok := want.(*appsv1.Deployment); ok {
			d.Spec.Template.Annotations, _ = mergeAnnotations(nil, d.Spec.Template.Annotations)
		}
		return client.IgnoreAlreadyExists(r.Client.Create(ctx, want, fieldOwner))
	}
	changed := !maps.Equal(have.GetLabels(), want.GetLabels()) || !equality.Semantic.DeepEqual(have.GetOwnerReferences(), want.GetOwnerReferences())
	have.SetLabels(want.GetLabels())
	have.SetOwnerReferences(want.GetOwnerReferences())
	if a, ok := mergeAnnotations(have.GetAnnotations(), want.GetAnnotations()); ok {
		have.SetAnnotations(a)
		changed = true
	}
	switch h := have.(type) {
	case *appsv1.Deployment:
		w := want.(*appsv1.Deployment)
		// The pod template's annotations as the object's: ours set, others' kept (a restart's).
		ta, taChanged := mergeAnnotations(h.Spec.Template.Annotations, w.Spec.Template.Annotations)
		w.Spec.Template.Annotations = ta
		// Compare what we render against what the server holds, defaults aside.
		if taChanged || !equality.Semantic.DeepDerivative(w.Spec, h.Spec) {
			h.Spec = w.Spec
			changed = true
		}
	case *corev1.Service:
		w := want.(*corev1.Service)
		if !equality.Semantic.DeepDerivative(w.Spec.Ports, h.Spec.Ports) || len(w.Spec.Ports) != len(h.Spec.Ports) ||
			!equality.Semantic.DeepEqual(w.Spec.Selector, h.Spec.Selector) || h.Spec.Type != w.Spec.Type {
			h.Spec.Ports, h.Spec.Selector, h.Spec.Type = w.Spec.Ports, w.Spec.Selector, w.Spec.Type
			changed = true
		}
	}
	if !changed {
		return nil
	}
	return r.Client.Update(ctx, have, fieldOwner)
}

// renderedAnnotations lists, on a rendered object, the annotations crossgate put there (the
// Gateway's infrastructure annotations), so that one removed from the Gateway is removed from the
// object while annotations others set (the Deployment controller's revision) stay.
const renderedAnnotations = "crossgate.io/rendered-annotations"

// mergeAnnotations sets want's annotations on have's, removes those crossgate set before that
// want no longer has, and says whether anything changed.
func mergeAnnotations(have, want map[string]string) (map[string]string, bool) {
	out := maps.Clone(have)
	if out == nil {
		out = map[string]string{}
	}
	for k := range strings.SplitSeq(out[renderedAnnotations], ",") {
		if _, keep := want[k]; k != "" && !keep {
			delete(out, k)
		}
	}
	delete(out, renderedAnnotations)
	maps.Copy(out, want)
	if len(want) > 0 {
		out[renderedAnnotations] = strings.Join(slices.Sorted(maps.Keys(want)), ",")
	}
	if len(out) == 0 {
		out = nil
	}
	return out, !maps.Equal(out, have)
}

// remove deletes what was rendered for a Gateway. Deletion is explicit so that it also happens
// where no garbage collector runs.
func (r *Reconciler) remove(ctx context.Context, gw types.NamespacedName) error {
	sel := client.MatchingLabels{wellknown.GatewayLabel: gw.Name, wellknown.ManagedByLabel: wellknown.ManagedByValue}
	lists := []client.ObjectList{&appsv1.DeploymentList{}, &corev1.ServiceList{}, &corev1.ServiceAccountList{}}
	for _, l := range lists {
		if err := r.Client.List(ctx, l, client.InNamespace(gw.Namespace), sel); err != nil {
			return err
		}
		items, err := apimeta.ExtractList(l)
		if err != nil {
			return err
		}
		for _, o := range items {
			if err := r.Client.Delete(ctx, o.(client.Object)); client.IgnoreNotFound(err) != nil {
				return err
			}
		}
	}
	return client.IgnoreNotFound(r.Client.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
		Namespace: gw.Namespace, Name: IdentitySecretName(wellknown.GatewayServiceAccount(gw.Name)),
	}}))
}

// EnsureBootstrap keeps the namespace's bootstrap ConfigMap: files, by name.
func EnsureBootstrap(ctx context.Context, c client.Client, namespace string, files map[string]string) error {
	cm := &corev1.ConfigMap{}
	err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: BootstrapConfigMap}, cm)
	if apierrors.IsNotFound(err) {
		cm = &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: BootstrapConfigMap, Labels: map[string]string{wellknown.ManagedByLabel: wellknown.ManagedByValue}},
			Data:       maps.Clone(files),
		}
		return client.IgnoreAlreadyExists(c.Create(ctx, cm, fieldOwner))
	}
	if err != nil {
		return err
	}
	if maps.Equal(cm.Data, files) {
		return nil
	}
	cm.Data = maps.Clone(files)
	return c.Update(ctx, cm, fieldOwner)
}

// EnsureIdentity keeps the identity Secret of namespace/serviceAccount (tls.crt, tls.key,
// ca.crt): issued when missing, re-issued when due for renewal or issued by another root. It
// returns when to look again.
func EnsureIdentity(ctx context.Context, c client.Client, ca identity.Issuer, namespace, serviceAccount string, ttl time.Duration, now time.Time) (time.Time, error) {
	name := IdentitySecretName(serviceAccount)
	s := &corev1.Secret{}
	err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, s)
	if err != nil && !apierrors.IsNotFound(err) {
		return time.Time{}, err
	}
	exists := err == nil
	root := ca.Root()
	if exists && bytes.Equal(s.Data[IdentityCAFile], root) {
		if renew, ok := renewAt(s.Data[IdentityCertFile]); ok && now.Before(renew) {
			return renew, nil
		}
	}
	cert, err := ca.Issue(namespace, serviceAccount, ttl)
	if err != nil {
		return time.Time{}, err
	}
	data := map[string][]byte{IdentityCertFile: cert.CertPEM, IdentityKeyFile: cert.KeyPEM, IdentityCAFile: cert.RootPEM}
	if !exists {
		s = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: map[string]string{wellknown.ManagedByLabel: wellknown.ManagedByValue}},
			Type:       corev1.SecretTypeTLS,
			Data:       data,
		}
		if err := c.Create(ctx, s, fieldOwner); err != nil {
			return time.Time{}, fmt.Errorf("creating Secret %s/%s: %w", namespace, name, err)
		}
		return cert.RenewAt(), nil
	}
	s.Data = data
	if err := c.Update(ctx, s, fieldOwner); err != nil {
		return time.Time{}, fmt.Errorf("renewing Secret %s/%s: %w", namespace, name, err)
	}
	return cert.RenewAt(), nil
}

// renewAt reads when a PEM certificate is due for renewal: two thirds into its lifetime.
func renewAt(certPEM []byte) (time.Time, bool) {
	blk, _ := pem.Decode(certPEM)
	if blk == nil {
		return time.Time{}, false
	}
	crt, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return time.Time{}, false
	}
	return crt.NotBefore.Add(crt.NotAfter.Sub(crt.NotBefore) * 2 / 3), true
}
