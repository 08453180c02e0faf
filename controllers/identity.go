package controllers

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/crossgate-io/crossgate/dataplane"
	"github.com/crossgate-io/crossgate/inject"
)

// IdentityReconciler gives every ServiceAccount of an injected namespace what its sidecars
// mount: an identity Secret (its certificate for the xDS connection, renewed before expiry) and
// the namespace's bootstrap ConfigMap.
type IdentityReconciler struct {
	Client    client.Client
	Opts      *Options
	bootstrap map[string]string
}

// +kubebuilder:rbac:groups="",resources=namespaces;serviceaccounts,verbs=get;list;watch

// SetupWithManager registers the controller.
func (r *IdentityReconciler) SetupWithManager(mgr ctrl.Manager) error {
	b, err := dataplane.Bootstrap(r.Opts.XDSHost, r.Opts.XDSPort)
	if err != nil {
		return err
	}
	r.bootstrap = b
	accounts := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, ns client.Object) []reconcile.Request {
		var l corev1.ServiceAccountList
		if err := r.Client.List(ctx, &l, client.InNamespace(ns.GetName())); err != nil {
			return nil
		}
		out := make([]reconcile.Request, 0, len(l.Items))
		for _, sa := range l.Items {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&sa)})
		}
		return out
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("identity").
		For(&corev1.ServiceAccount{}).
		Watches(&corev1.Namespace{}, accounts).
		Complete(r)
}

// Reconcile keeps one ServiceAccount's identity Secret.
func (r *IdentityReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	ns := &corev1.Namespace{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: req.Namespace}, ns); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if ns.Labels[inject.NamespaceLabel] != inject.NamespaceLabelValue || !ns.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, nil
	}
	sa := &corev1.ServiceAccount{}
	if err := r.Client.Get(ctx, req.NamespacedName, sa); err != nil {
		if apierrors.IsNotFound(err) {
			err = client.IgnoreNotFound(r.Client.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: req.Namespace, Name: dataplane.IdentitySecretName(req.Name)}}))
		}
		return reconcile.Result{}, err
	}
	if err := dataplane.EnsureBootstrap(ctx, r.Client, req.Namespace, r.bootstrap); err != nil {
		return reconcile.Result{}, err
	}
	renew, err := dataplane.EnsureIdentity(ctx, r.Client, r.Opts.CA, req.Namespace, req.Name, r.Opts.CertTTL, time.Now())
	if err != nil {
		return reconcile.Result{}, err
	}
	return reconcile.Result{RequeueAfter: time.Until(renew)}, nil
}
