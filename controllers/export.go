package controllers

import (
	"context"
	"fmt"
	"maps"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/translator"
	"github.com/crossgate-io/crossgate/wellknown"
)

// FieldOwner is the field manager of every write of the member controllers.
const FieldOwner = client.FieldOwner(wellknown.FieldOwner)

// DefaultGateway is the Gateway exported services are attached to when neither the options nor
// the MeshConfig name one.
var DefaultGateway = types.NamespacedName{Namespace: wellknown.SystemNamespace, Name: wellknown.DefaultGatewayName}

// ExportReconciler keeps, for each valid ServiceExport, its routes on the cluster's gateway
// (translator.ExportRoutes: a TLSRoute per exported port, an HTTPRoute for direct access), and
// removes them when the export is deleted or becomes invalid. The export's Valid condition is
// written by the publish loop from the same check.
type ExportReconciler struct {
	Client   client.Client
	Opts     *Options
	Recorder events.EventRecorder
	// noTLSRoutes is set when the API server serves no TLSRoute of v1 (older Gateway API
	// CRDs, found at start): exports then get their HTTPRoutes only.
	noTLSRoutes bool
}

// +kubebuilder:rbac:groups=flomesh.io,resources=serviceexports,verbs=get;list;watch
// +kubebuilder:rbac:groups=flomesh.io,resources=serviceexports/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes;tlsroutes,verbs=get;list;watch;create;update;delete
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch

// SetupWithManager registers the controller.
func (r *ExportReconciler) SetupWithManager(mgr ctrl.Manager) error {
	sameName := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: client.ObjectKeyFromObject(o)}}
	})
	byLabel := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		if name := o.GetLabels()[wellknown.ExportLabel]; name != "" {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
		}
		return nil
	})
	allExports := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		var l flomeshv1alpha1.ServiceExportList
		if err := r.Client.List(ctx, &l); err != nil {
			return nil
		}
		out := make([]reconcile.Request, 0, len(l.Items))
		for _, e := range l.Items {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&e)})
		}
		return out
	})
	// An API server that does not answer now (a manager built after a lost leadership) is taken
	// to serve TLSRoutes, as the chart's CRDs do: the controller must start meanwhile.
	unserved, err := unservedKinds(mgr.GetConfig(), []client.Object{&gatewayv1.TLSRoute{}})
	r.noTLSRoutes = err == nil && len(unserved) > 0 // the publisher says what that means
	b := ctrl.NewControllerManagedBy(mgr).
		Named("serviceexport").
		For(&flomeshv1alpha1.ServiceExport{}).
		Watches(&gatewayv1.HTTPRoute{}, byLabel)
	if !r.noTLSRoutes {
		b = b.Watches(&gatewayv1.TLSRoute{}, byLabel)
	}
	return b.Watches(&corev1.Service{}, sameName).
		Watches(&flomeshv1alpha1.MeshConfig{}, allExports).
		Complete(r)
}

// gateway is the Gateway routes attach to.
func (r *ExportReconciler) gateway(ctx context.Context) types.NamespacedName {
	return r.Opts.exportGateway(ctx, r.Client)
}

// exportGateway is the Gateway exported services attach to: the options', the MeshConfig's
// spec.gateway, or DefaultGateway.
func (o *Options) exportGateway(ctx context.Context, c client.Reader) types.NamespacedName {
	if o.Gateway.Name != "" {
		return o.Gateway
	}
	mc := &flomeshv1alpha1.MeshConfig{}
	if err := c.Get(ctx, o.MeshConfig, mc); err == nil && mc.Spec.Gateway.Name != "" {
		return types.NamespacedName{Namespace: mc.Spec.Gateway.Namespace, Name: mc.Spec.Gateway.Name}
	}
	return DefaultGateway
}

// controllerNamespace is the controller's namespace.
func (o *Options) controllerNamespace() string {
	if o.LeaderElectionNamespace != "" {
		return o.LeaderElectionNamespace
	}
	return wellknown.SystemNamespace
}

// trustedGateway applies translator.TrustedGateway with the controller's namespace and export
// Gateway.
func (o *Options) trustedGateway(ctx context.Context, c client.Reader, gw *gatewayv1.Gateway) bool {
	return translator.TrustedGateway(gw.Namespace, gw.Name, o.controllerNamespace(), o.exportGateway(ctx, c).String())
}

// Reconcile brings the export's routes to what the export asks for.
func (r *ExportReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	res, err := r.reconcile(ctx, req)
	if apierrors.IsConflict(err) {
		// The cache held an older route than the API server (the status writer or a user wrote
		// it meanwhile): not a failure, so no error log; try again once the cache has caught up.
		log.FromContext(ctx).V(1).Info("conflict writing a route; retrying", "error", err.Error())
		return reconcile.Result{RequeueAfter: conflictRetry}, nil
	}
	return res, err
}

// conflictRetry is the wait before reconciling again after a write conflict.
const conflictRetry = 200 * time.Millisecond

func (r *ExportReconciler) reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	e := &flomeshv1alpha1.ServiceExport{}
	if err := r.Client.Get(ctx, req.NamespacedName, e); err != nil {
		if apierrors.IsNotFound(err) {
			return reconcile.Result{}, r.prune(ctx, req.NamespacedName, nil)
		}
		return reconcile.Result{}, err
	}
	if !e.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, r.prune(ctx, req.NamespacedName, nil)
	}
	svc := &corev1.Service{}
	if err := r.Client.Get(ctx, req.NamespacedName, svc); err != nil {
		if !apierrors.IsNotFound(err) {
			return reconcile.Result{}, err
		}
		svc = nil
	}
	if c := translator.ExportCondition(e, svc); c.Status != metav1.ConditionTrue {
		// An export that cannot be served has no route; its Valid condition says why.
		return reconcile.Result{}, r.prune(ctx, req.NamespacedName, nil)
	}
	gw := r.gateway(ctx)
	want := translator.ExportRoutes(e, gw.Namespace, gw.Name)
	keep := map[string]bool{}
	if r.noTLSRoutes {
		want.TLS = nil
	}
	for i := range want.TLS {
		route := &want.TLS[i]
		keep["TLSRoute/"+route.Name] = true
		if err := ensureRoute(ctx, r, e, "TLSRoute", route, func(have, want *gatewayv1.TLSRoute) bool { return setSpec(&have.Spec, &want.Spec) }); err != nil {
			return reconcile.Result{}, err
		}
	}
	for i := range want.HTTP {
		route := &want.HTTP[i]
		keep["HTTPRoute/"+route.Name] = true
		if err := ensureRoute(ctx, r, e, "HTTPRoute", route, func(have, want *gatewayv1.HTTPRoute) bool { return setSpec(&have.Spec, &want.Spec) }); err != nil {
			return reconcile.Result{}, err
		}
	}
	return reconcile.Result{}, r.prune(ctx, req.NamespacedName, keep)
}

// setSpec copies want into have and reports whether they were the same.
func setSpec[S any](have, want *S) bool {
	same := equality.Semantic.DeepEqual(*have, *want)
	*have = *want
	return same
}

// ensureRoute creates the route or updates it to want; setSpec copies want's spec into have and
// reports whether it was the same. A route of that name that is not this export's is left alone
// and reported.
func ensureRoute[T any, P interface {
	*T
	client.Object
}](ctx context.Context, r *ExportReconciler, e *flomeshv1alpha1.ServiceExport, kind string, want P, setSpec func(have, want P) bool) error {
	if err := controllerutil.SetControllerReference(e, want, r.Client.Scheme()); err != nil {
		return err
	}
	have := P(new(T))
	err := r.Client.Get(ctx, client.ObjectKeyFromObject(want), have)
	switch {
	case apierrors.IsNotFound(err):
		if err := r.Client.Create(ctx, want, FieldOwner); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating %s %s/%s: %w", kind, want.GetNamespace(), want.GetName(), err)
		}
		r.Recorder.Eventf(e, want, corev1.EventTypeNormal, flomeshv1alpha1.ReasonRouteCreated, "Create", "%s %s attaches the export to the gateway", kind, want.GetName())
		return nil
	case err != nil:
		return err
	}
	if have.GetLabels()[wellknown.ExportLabel] != e.Name {
		r.Recorder.Eventf(e, have, corev1.EventTypeWarning, flomeshv1alpha1.ReasonRouteNameTaken, "Create",
			"%s %s/%s exists and was not made by crossgate for this export; it is left alone", kind, have.GetNamespace(), have.GetName())
		return nil
	}
	sameSpec := setSpec(have, want)
	if sameSpec && maps.Equal(have.GetLabels(), want.GetLabels()) && equality.Semantic.DeepEqual(have.GetOwnerReferences(), want.GetOwnerReferences()) {
		return nil
	}
	have.SetLabels(want.GetLabels())
	have.SetOwnerReferences(want.GetOwnerReferences())
	if err := r.Client.Update(ctx, have, FieldOwner); err != nil {
		return fmt.Errorf("updating %s %s/%s: %w", kind, have.GetNamespace(), have.GetName(), err)
	}
	return nil
}

// prune deletes the export's routes whose kind/name keep lacks. Deletion is explicit, not left
// to the garbage collector, so that it also happens where none runs.
func (r *ExportReconciler) prune(ctx context.Context, export types.NamespacedName, keep map[string]bool) error {
	opts := []client.ListOption{
		client.InNamespace(export.Namespace),
		client.MatchingLabels{wellknown.ExportLabel: export.Name, wellknown.ManagedByLabel: wellknown.ManagedByValue},
	}
	var routes []client.Object
	var hl gatewayv1.HTTPRouteList
	if err := r.Client.List(ctx, &hl, opts...); err != nil {
		return err
	}
	for i := range hl.Items {
		if !keep["HTTPRoute/"+hl.Items[i].Name] {
			routes = append(routes, &hl.Items[i])
		}
	}
	var tl gatewayv1.TLSRouteList
	if r.noTLSRoutes {
		// none to prune
	} else if err := r.Client.List(ctx, &tl, opts...); err != nil {
		return err
	}
	for i := range tl.Items {
		if !keep["TLSRoute/"+tl.Items[i].Name] {
			routes = append(routes, &tl.Items[i])
		}
	}
	for _, o := range routes {
		if err := r.Client.Delete(ctx, o); client.IgnoreNotFound(err) != nil {
			return err
		}
	}
	return nil
}
