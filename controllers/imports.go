package controllers

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/wellknown"
)

// ImportReconciler gives every ServiceImport a local Service of its name so that its mesh
// hostname (httpbin.httpbin) resolves: a placeholder (no selector, labelled as crossgate's) when
// the cluster has no Service of that name. A placeholder is given up, never overwritten, once
// someone else writes it (kubectl apply of the user's own Service); it is deleted with its
// import. The import's spec.ips carries the local Service's ClusterIPs.
type ImportReconciler struct {
	Client   client.Client
	Recorder events.EventRecorder
}

// +kubebuilder:rbac:groups=flomesh.io,resources=serviceimports,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;update;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// SetupWithManager registers the controller.
func (r *ImportReconciler) SetupWithManager(mgr ctrl.Manager) error {
	sameName := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: client.ObjectKeyFromObject(o)}}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("serviceimport").
		For(&flomeshv1alpha1.ServiceImport{}).
		Watches(&corev1.Service{}, sameName).
		Complete(r)
}

// IsPlaceholder reports whether svc is crossgate's placeholder for the import of its name.
func IsPlaceholder(svc *corev1.Service) bool {
	return wellknown.IsPlaceholder(svc.Name, svc.Labels)
}

// TakenOver reports whether someone other than crossgate wrote a placeholder: a selector, kubectl's
// last-applied annotation, or another field manager's write to it.
func TakenOver(svc *corev1.Service) bool {
	if len(svc.Spec.Selector) > 0 {
		return true
	}
	if _, ok := svc.Annotations[corev1.LastAppliedConfigAnnotation]; ok {
		return true
	}
	for _, f := range svc.ManagedFields {
		if f.Manager != string(FieldOwner) && f.Subresource == "" {
			return true
		}
	}
	return false
}

// Reconcile keeps the import's local Service and spec.ips.
func (r *ImportReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	imp := &flomeshv1alpha1.ServiceImport{}
	if err := r.Client.Get(ctx, req.NamespacedName, imp); err != nil {
		if !apierrors.IsNotFound(err) {
			return reconcile.Result{}, err
		}
		imp = nil
	}
	svc := &corev1.Service{}
	if err := r.Client.Get(ctx, req.NamespacedName, svc); err != nil {
		if !apierrors.IsNotFound(err) {
			return reconcile.Result{}, err
		}
		svc = nil
	}
	if imp == nil || !imp.DeletionTimestamp.IsZero() {
		if svc != nil && IsPlaceholder(svc) && !TakenOver(svc) {
			return reconcile.Result{}, client.IgnoreNotFound(r.Client.Delete(ctx, svc, client.Preconditions{UID: &svc.UID}))
		}
		return reconcile.Result{}, nil
	}
	switch {
	case svc == nil:
		svc = placeholder(imp)
		if err := controllerutil.SetOwnerReference(imp, svc, r.Client.Scheme()); err != nil {
			return reconcile.Result{}, err
		}
		if err := r.Client.Create(ctx, svc, FieldOwner); err != nil {
			if apierrors.IsAlreadyExists(err) {
				return reconcile.Result{RequeueAfter: time.Second}, nil // the cache has not seen it yet
			}
			return reconcile.Result{}, fmt.Errorf("creating the placeholder Service %s: %w", req, err)
		}
		r.Recorder.Eventf(imp, svc, corev1.EventTypeNormal, flomeshv1alpha1.ReasonPlaceholderCreated, "Create",
			"Service %s created so that %s.%s resolves; applying your own Service of this name replaces it", svc.Name, svc.Name, svc.Namespace)
	case IsPlaceholder(svc) && TakenOver(svc):
		if err := r.release(ctx, imp, svc); err != nil {
			return reconcile.Result{}, err
		}
	case IsPlaceholder(svc):
		want := placeholder(imp)
		if !equality.Semantic.DeepEqual(svc.Spec.Ports, want.Spec.Ports) {
			svc.Spec.Ports = want.Spec.Ports
			if err := r.Client.Update(ctx, svc, FieldOwner); err != nil {
				return reconcile.Result{}, fmt.Errorf("updating the placeholder Service %s: %w", req, err)
			}
		}
	}
	return reconcile.Result{}, r.setIPs(ctx, imp, svc)
}

// release hands a placeholder over to whoever wrote it: crossgate's label and owner reference
// are removed, and crossgate never touches the Service again.
func (r *ImportReconciler) release(ctx context.Context, imp *flomeshv1alpha1.ServiceImport, svc *corev1.Service) error {
	patch := client.MergeFrom(svc.DeepCopy())
	delete(svc.Labels, wellknown.ImportLabel)
	if svc.Labels[wellknown.ManagedByLabel] == wellknown.ManagedByValue {
		delete(svc.Labels, wellknown.ManagedByLabel)
	}
	svc.OwnerReferences = slices.DeleteFunc(svc.OwnerReferences, func(o metav1.OwnerReference) bool { return o.UID == imp.UID })
	if err := r.Client.Patch(ctx, svc, patch, FieldOwner); err != nil {
		return fmt.Errorf("releasing Service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	r.Recorder.Eventf(imp, svc, corev1.EventTypeNormal, flomeshv1alpha1.ReasonPlaceholderReleased, "Release",
		"Service %s was written by someone else; crossgate no longer manages it", svc.Name)
	return nil
}

// setIPs records the local Service's ClusterIPs in the import.
func (r *ImportReconciler) setIPs(ctx context.Context, imp *flomeshv1alpha1.ServiceImport, svc *corev1.Service) error {
	var ips []string
	if svc != nil && svc.Spec.ClusterIP != corev1.ClusterIPNone {
		ips = svc.Spec.ClusterIPs
	}
	if slices.Equal(ips, imp.Spec.IPs) {
		return nil
	}
	patch := client.MergeFrom(imp.DeepCopy())
	imp.Spec.IPs = ips
	return client.IgnoreNotFound(r.Client.Patch(ctx, imp, patch, FieldOwner))
}

// placeholder is the Service standing for an import: no selector, the import's ports.
func placeholder(imp *flomeshv1alpha1.ServiceImport) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: imp.Namespace, Name: imp.Name,
			Labels: map[string]string{wellknown.ManagedByLabel: wellknown.ManagedByValue, wellknown.ImportLabel: imp.Name},
		},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP},
	}
	if imp.Spec.Type == flomeshv1alpha1.Headless {
		svc.Spec.ClusterIP = corev1.ClusterIPNone
	}
	for i, p := range imp.Spec.Ports {
		proto := corev1.Protocol(p.Protocol)
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		name := p.Name
		if name == "" && len(imp.Spec.Ports) > 1 {
			name = fmt.Sprintf("port-%d", i)
		}
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{
			Name: name, Port: p.Port, Protocol: proto, TargetPort: intstr.FromInt32(p.Port),
		})
	}
	return svc
}
