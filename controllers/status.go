package controllers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	accessv1alpha3 "github.com/crossgate-io/crossgate/api/smi/access/v1alpha3"
	"github.com/crossgate-io/crossgate/translator"
)

// StatusWriter writes the statuses the translator computed, only where they differ from what
// the object holds, keeping the transition time of conditions whose status did not change, and
// retrying on conflicts with a fresh read. It writes only once this replica leads.
type StatusWriter struct {
	client  client.Client // writes
	api     client.Reader // fresh reads after a conflict
	elected <-chan struct{}
	log     *slog.Logger
	now     func() time.Time
	// recorder reports the translation's warnings as Events; warned holds those reported.
	recorder events.EventRecorder
	warned   map[translator.ObjectWarning]bool
}

// warn reports each warning once, as a Warning Event on its object, while it lasts: one that
// goes away and comes back is reported again.
func (w *StatusWriter) warn(ctx context.Context, ws []translator.ObjectWarning) {
	if w.recorder == nil {
		return
	}
	now := map[translator.ObjectWarning]bool{}
	for _, x := range ws {
		now[x] = true
		if w.warned[x] {
			continue
		}
		var obj client.Object
		switch x.Kind {
		case "Service":
			obj = &corev1.Service{}
		case "ServiceImport":
			obj = &flomeshv1alpha1.ServiceImport{}
		case "Pod":
			obj = &corev1.Pod{}
		case "TrafficTarget":
			obj = &accessv1alpha3.TrafficTarget{}
		default:
			continue
		}
		if err := w.client.Get(ctx, types.NamespacedName{Namespace: x.Namespace, Name: x.Name}, obj); err != nil {
			now[x] = false // not reported: try again next time
			continue
		}
		w.recorder.Eventf(obj, nil, corev1.EventTypeWarning, x.Reason, "Translate", "%s", x.Message)
	}
	for x, ok := range now {
		if !ok {
			delete(now, x)
		}
	}
	w.warned = now
}

func (w *StatusWriter) leading() bool {
	if w.elected == nil {
		return true
	}
	select {
	case <-w.elected:
		return true
	default:
		return false
	}
}

// The statuses the writer keeps.
// +kubebuilder:rbac:groups=flomesh.io,resources=serviceexports/status;globaltrafficpolicies/status,verbs=get;update
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=gatewayclasses/status;gateways/status;httproutes/status;tlsroutes/status,verbs=get;update

// Write applies every status of st; in is what the statuses were computed from.
func (w *StatusWriter) Write(ctx context.Context, in *translator.Input, st *translator.Statuses) error {
	if !w.leading() {
		return nil
	}
	w.warn(ctx, st.Warnings)
	var errs []error
	exports := byKey(in.ServiceExports)
	for _, s := range st.ServiceExports {
		if cur := exports[nsKey(s.Namespace, s.Name)]; cur != nil {
			errs = append(errs, w.conditions(ctx, cur, func(o client.Object) *[]metav1.Condition {
				return &o.(*flomeshv1alpha1.ServiceExport).Status.Conditions
			}, s.Conditions))
		}
	}
	gtps := byKey(in.GlobalTrafficPolicies)
	for _, s := range st.GlobalTrafficPolicies {
		if cur := gtps[nsKey(s.Namespace, s.Name)]; cur != nil {
			errs = append(errs, w.conditions(ctx, cur, func(o client.Object) *[]metav1.Condition {
				return &o.(*flomeshv1alpha1.GlobalTrafficPolicy).Status.Conditions
			}, s.Conditions))
		}
	}
	classes := byKey(in.GatewayClasses)
	for _, s := range st.GatewayClasses {
		if cur := classes[nsKey("", s.Name)]; cur != nil {
			errs = append(errs, w.gatewayClass(ctx, cur, s))
		}
	}
	gateways := byKey(in.Gateways)
	for _, s := range st.Gateways {
		if cur := gateways[nsKey(s.Namespace, s.Name)]; cur != nil {
			errs = append(errs, w.gateway(ctx, cur, s.Status))
		}
	}
	routes := byKey(in.HTTPRoutes)
	for _, s := range st.HTTPRoutes {
		if cur := routes[nsKey(s.Namespace, s.Name)]; cur != nil {
			errs = append(errs, w.route(ctx, cur, func(o client.Object) *gatewayv1.RouteStatus {
				return &o.(*gatewayv1.HTTPRoute).Status.RouteStatus
			}, s.Parents))
		}
	}
	tlsRoutes := byKey(in.TLSRoutes)
	for _, s := range st.TLSRoutes {
		if cur := tlsRoutes[nsKey(s.Namespace, s.Name)]; cur != nil {
			errs = append(errs, w.route(ctx, cur, func(o client.Object) *gatewayv1.RouteStatus {
				return &o.(*gatewayv1.TLSRoute).Status.RouteStatus
			}, s.Parents))
		}
	}
	return errors.Join(errs...)
}

func nsKey(ns, name string) types.NamespacedName {
	return types.NamespacedName{Namespace: ns, Name: name}
}

// byKey indexes objects by namespace/name, pointing into items.
func byKey[T any, P interface {
	*T
	client.Object
}](items []T) map[types.NamespacedName]P {
	out := make(map[types.NamespacedName]P, len(items))
	for i := range items {
		p := P(&items[i])
		out[nsKey(p.GetNamespace(), p.GetName())] = p
	}
	return out
}

// mergeConditions sets want into have, keeping LastTransitionTime where the status is
// unchanged, and reports whether anything changed.
func mergeConditions(have *[]metav1.Condition, want []metav1.Condition, now time.Time) bool {
	changed := false
	for _, c := range want {
		old := meta.FindStatusCondition(*have, c.Type)
		if old != nil && old.Status == c.Status && old.Reason == c.Reason && old.Message == c.Message && old.ObservedGeneration == c.ObservedGeneration {
			continue
		}
		if c.LastTransitionTime.IsZero() {
			c.LastTransitionTime = metav1.NewTime(now)
		}
		meta.SetStatusCondition(have, c)
		changed = true
	}
	return changed
}

// update runs mutate on obj and writes its status when mutate reports a change; on a conflict
// it reads the object afresh and tries again. A deleted object is not an error.
func (w *StatusWriter) update(ctx context.Context, obj client.Object, mutate func(client.Object) bool) error {
	first := true
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if !first {
			if err := w.api.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
				return err
			}
		}
		first = false
		if !mutate(obj) {
			return nil
		}
		return w.client.Status().Update(ctx, obj)
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("status of %T %s: %w", obj, client.ObjectKeyFromObject(obj), err)
	}
	return nil
}

// conditions, gateway and route write an object's status when it differs from what the
// translation wants. cur is the informer's object, shared and never modified: the decision is
// made on it first, and only an object that needs a write is copied (most publishes change no
// status, and a copy of every route on every publish was a tenth of a full publish's time).
func (w *StatusWriter) conditions(ctx context.Context, cur client.Object, get func(client.Object) *[]metav1.Condition, want []metav1.Condition) error {
	now := w.now()
	if have := slices.Clone(*get(cur)); !mergeConditions(&have, want, now) {
		return nil
	}
	return w.update(ctx, cur.DeepCopyObject().(client.Object), func(o client.Object) bool { return mergeConditions(get(o), want, now) })
}

// settle returns want with each condition's LastTransitionTime taken from old when its status
// did not change, and now otherwise. Conditions of old that want lacks are dropped: the set is
// all ours.
func settle(old, want []metav1.Condition, now time.Time) []metav1.Condition {
	out := make([]metav1.Condition, 0, len(want))
	for _, c := range want {
		c.LastTransitionTime = metav1.NewTime(now)
		if o := meta.FindStatusCondition(old, c.Type); o != nil && o.Status == c.Status {
			c.LastTransitionTime = o.LastTransitionTime
		}
		out = append(out, c)
	}
	return out
}

// gatewayClass writes a class's conditions and supported features.
func (w *StatusWriter) gatewayClass(ctx context.Context, cur *gatewayv1.GatewayClass, want translator.GatewayClassStatus) error {
	now := w.now()
	mutate := func(o client.Object) bool {
		c := o.(*gatewayv1.GatewayClass)
		changed := mergeConditions(&c.Status.Conditions, want.Conditions, now)
		if !equality.Semantic.DeepEqual(c.Status.SupportedFeatures, want.SupportedFeatures) {
			c.Status.SupportedFeatures = slices.Clone(want.SupportedFeatures)
			changed = true
		}
		return changed
	}
	if !mutate(cur.DeepCopy()) { // decided on a copy: cur is the informer's
		return nil
	}
	return w.update(ctx, cur.DeepCopy(), mutate)
}

func (w *StatusWriter) gateway(ctx context.Context, cur *gatewayv1.Gateway, want gatewayv1.GatewayStatus) error {
	now := w.now()
	next := func(g *gatewayv1.Gateway) (gatewayv1.GatewayStatus, bool) {
		next := *want.DeepCopy()
		next.Conditions = settle(g.Status.Conditions, want.Conditions, now)
		for i := range next.Listeners {
			var old []metav1.Condition
			for _, l := range g.Status.Listeners {
				if l.Name == next.Listeners[i].Name {
					old = l.Conditions
				}
			}
			next.Listeners[i].Conditions = settle(old, next.Listeners[i].Conditions, now)
		}
		return next, !equality.Semantic.DeepEqual(next, g.Status)
	}
	if _, changed := next(cur); !changed {
		return nil
	}
	return w.update(ctx, cur.DeepCopy(), func(o client.Object) bool {
		g := o.(*gatewayv1.Gateway)
		status, changed := next(g)
		g.Status = status
		return changed
	})
}

func (w *StatusWriter) route(ctx context.Context, cur client.Object, routeStatus func(client.Object) *gatewayv1.RouteStatus, want []gatewayv1.RouteParentStatus) error {
	now := w.now()
	next := func(r *gatewayv1.RouteStatus) ([]gatewayv1.RouteParentStatus, bool) {
		var parents []gatewayv1.RouteParentStatus
		for _, p := range r.Parents {
			if p.ControllerName != translator.ControllerName {
				parents = append(parents, p) // another controller's
			}
		}
		for _, p := range want {
			p = *p.DeepCopy()
			var old []metav1.Condition
			for _, o := range r.Parents {
				if o.ControllerName == p.ControllerName && equality.Semantic.DeepEqual(o.ParentRef, p.ParentRef) {
					old = o.Conditions
				}
			}
			p.Conditions = settle(old, p.Conditions, now)
			parents = append(parents, p)
		}
		return parents, !equality.Semantic.DeepEqual(parents, r.Parents)
	}
	if _, changed := next(routeStatus(cur)); !changed {
		return nil
	}
	return w.update(ctx, cur.DeepCopyObject().(client.Object), func(o client.Object) bool {
		st := routeStatus(o)
		parents, changed := next(st)
		st.Parents = parents
		return changed
	})
}
