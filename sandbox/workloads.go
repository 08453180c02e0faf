package sandbox

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// AppAnnotation marks a Pod that a sandbox app process stands behind; its value is the
// address (ip:port) the workloads controller probes for readiness.
const AppAnnotation = "crossgate.io/sandbox-app"

// sliceManager labels the EndpointSlices the workloads controller keeps.
const sliceManager = "sandbox.crossgate.io"

// RunWorkloads does in one cluster what kubelet and kube-controller-manager would do for the
// sandbox's process workloads, which the API server alone does not: it probes every sandbox
// Pod's address and keeps its Ready condition (a killed app is unready within a probe period),
// and keeps one EndpointSlice per Service with a selector, listing the matching Pods. It runs
// until ctx ends.
func RunWorkloads(ctx context.Context, cfg *rest.Config, period time.Duration, log *slog.Logger) error {
	mgr, err := ctrl.NewManager(cfg, manager.Options{
		Scheme:     Scheme,
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
		Logger:     logr.FromSlogHandler(log.Handler()),
	})
	if err != nil {
		return err
	}
	r := &workloads{c: mgr.GetClient()}
	inNamespace := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		var svcs corev1.ServiceList
		if err := r.c.List(ctx, &svcs, client.InNamespace(o.GetNamespace())); err != nil {
			return nil
		}
		var out []reconcile.Request
		for _, s := range svcs.Items {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&s)})
		}
		return out
	})
	err = ctrl.NewControllerManagedBy(mgr).Named("sandbox-endpointslices").
		For(&corev1.Service{}).
		Watches(&corev1.Pod{}, inNamespace).
		Owns(&discoveryv1.EndpointSlice{}).
		Complete(r)
	if err != nil {
		return err
	}
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error { return r.probe(ctx, period) })); err != nil {
		return err
	}
	return mgr.Start(ctx)
}

type workloads struct{ c client.Client }

// probe dials every sandbox Pod's address each period and writes its Ready condition when it
// changes (never Ready without a Pod IP), and completes the deletion of a Pod whose app has
// stopped.
func (r *workloads) probe(ctx context.Context, period time.Duration) error {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		var pods corev1.PodList
		if err := r.c.List(ctx, &pods); err != nil {
			continue
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			addr := p.Annotations[AppAnnotation]
			if addr == "" {
				continue
			}
			conn, err := net.DialTimeout("tcp", addr, period/2)
			answers := err == nil
			if conn != nil {
				_ = conn.Close()
			}
			if !p.DeletionTimestamp.IsZero() {
				// Being deleted: once its app no longer answers, confirm the deletion as kubelet
				// does when the containers have stopped (nothing else would: it stays Terminating).
				if !answers {
					_ = client.IgnoreNotFound(r.c.Delete(ctx, p, client.GracePeriodSeconds(0), client.Preconditions{UID: &p.UID}))
				}
				continue
			}
			// A Pod without an address serves nothing, whatever answers at its annotation.
			ready := answers && p.Status.PodIP != ""
			if podReady(p) == ready {
				continue
			}
			// A patch of the conditions alone: no conflict with the app's own status write.
			orig := p.DeepCopy()
			SetPodReady(p, ready)
			_ = r.c.Status().Patch(ctx, p, client.MergeFrom(orig))
		}
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// SetPodReady sets a Pod's Ready and ContainersReady conditions.
func SetPodReady(p *corev1.Pod, ready bool) {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	now := metav1.Now()
	for _, typ := range []corev1.PodConditionType{corev1.PodReady, corev1.ContainersReady} {
		found := false
		for i := range p.Status.Conditions {
			if c := &p.Status.Conditions[i]; c.Type == typ {
				found = true
				if c.Status != status {
					c.Status, c.LastTransitionTime = status, now
				}
			}
		}
		if !found {
			p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: typ, Status: status, LastTransitionTime: now})
		}
	}
	for i := range p.Status.ContainerStatuses {
		p.Status.ContainerStatuses[i].Ready = ready
	}
}

// Reconcile keeps the Service's EndpointSlice: the Pods its selector matches, ready or not.
func (r *workloads) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	name := req.Name + "-sandbox"
	var svc corev1.Service
	if err := r.c.Get(ctx, req.NamespacedName, &svc); err != nil {
		if apierrors.IsNotFound(err) {
			// No garbage collector runs in the sandbox: the slice goes with its Service here.
			err = r.c.Delete(ctx, &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: req.Namespace, Name: name}})
		}
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if len(svc.Spec.Selector) == 0 {
		err := r.c.Delete(ctx, &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: svc.Namespace, Name: name}})
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	var pods corev1.PodList
	if err := r.c.List(ctx, &pods, client.InNamespace(svc.Namespace), client.MatchingLabelsSelector{Selector: labels.SelectorFromSet(svc.Spec.Selector)}); err != nil {
		return reconcile.Result{}, err
	}
	want := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: svc.Namespace, Name: name, Labels: map[string]string{
			discoveryv1.LabelServiceName: svc.Name, discoveryv1.LabelManagedBy: sliceManager,
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for _, sp := range svc.Spec.Ports {
		port := sp.Port
		if sp.TargetPort.IntVal != 0 {
			port = sp.TargetPort.IntVal
		}
		want.Ports = append(want.Ports, discoveryv1.EndpointPort{Name: ptr.To(sp.Name), Protocol: ptr.To(sp.Protocol), Port: ptr.To(port), AppProtocol: sp.AppProtocol})
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Status.PodIP == "" || !p.DeletionTimestamp.IsZero() {
			continue
		}
		ready := podReady(p)
		want.Endpoints = append(want.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{p.Status.PodIP},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &ready, Terminating: ptr.To(false)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID},
			NodeName:   ptr.To(p.Spec.NodeName),
		})
	}
	if err := ctrl.SetControllerReference(&svc, want, Scheme); err != nil {
		return reconcile.Result{}, err
	}
	var have discoveryv1.EndpointSlice
	err := r.c.Get(ctx, client.ObjectKeyFromObject(want), &have)
	switch {
	case apierrors.IsNotFound(err):
		return reconcile.Result{}, r.c.Create(ctx, want)
	case err != nil:
		return reconcile.Result{}, err
	case equality.Semantic.DeepEqual(have.Endpoints, want.Endpoints) && equality.Semantic.DeepEqual(have.Ports, want.Ports):
		return reconcile.Result{}, nil
	}
	have.Endpoints, have.Ports = want.Endpoints, want.Ports
	return reconcile.Result{}, r.c.Update(ctx, &have)
}
