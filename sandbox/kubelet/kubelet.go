// Package kubelet is the sandbox's node agent: a process kubelet. In each sandbox cluster it
// registers one Node, binds the Pods nobody schedules (no kube-scheduler runs) to it, and runs
// the containers of the images it knows as local processes, each pod in a network namespace of
// its own behind a pod address on the loopback interface (127.<cluster>.<128+n>.<h>, pod IP
// 10.<240+cluster>.<128+n>.<h>; package network maps one to the other). It gives the containers
// their environment (values, fieldRef, configMapKeyRef, secretKeyRef), restarts them as their
// restartPolicy says, runs their readiness probes, keeps the Pod's status, and stops them when
// the Pod is deleted. A container of an image it does not know, or that asks for what it cannot
// give (a command of its own, volume mounts), is reported Waiting with the reason, and its Pod
// is never Ready.
package kubelet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

const nodeNameField = "spec.nodeName"

// Image is how the node runs the containers of one image: the binary that stands for it.
type Image struct {
	// Path is the binary; Args come before the container's own args.
	Path string
	Args []string
	// HostNetwork runs the process in the node's network namespace (it reaches the API server,
	// the controller's xDS server and other pods); it must then bind only the pod's address,
	// which it gets as PodAddressEnv. Such a container may mount ConfigMap and Secret volumes:
	// the node writes them under the pod's directory and, having no mount namespace, tells the
	// process where each mountPath is with MountsEnv.
	HostNetwork bool
}

// The environment the node gives a HostNetwork container besides its own.
const (
	// PodAddressEnv is the pod's loopback address (the pod IP stands for it).
	PodAddressEnv = "SANDBOX_POD_ADDRESS"
	// MountsEnv lists the container's volume mounts as mountPath=directory, separated by ";".
	MountsEnv = "SANDBOX_MOUNTS"
)

// Options configure the node agent of one cluster.
type Options struct {
	// Node is the Node's name; ClusterIndex the cluster's position in the set (its pod
	// addresses are 127.<ClusterIndex>.<128+n>.<h>).
	Node         string
	ClusterIndex int
	Config       *rest.Config
	// Images are the images the node can run, by repository (the image reference without its
	// tag or digest).
	Images map[string]Image
	// LogDir receives each container's output, as <namespace>_<pod>_<container>.log.
	LogDir string
	// Period is how often containers are probed and restarted (500ms when zero).
	Period time.Duration
	Log    *slog.Logger
}

// Run registers the Node and runs the node agent until ctx ends; the containers it started stop
// with it.
func Run(ctx context.Context, o Options) error {
	if o.Period == 0 {
		o.Period = 500 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	kube, err := kubernetes.NewForConfig(o.Config)
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(o.Config, manager.Options{
		Scheme:     clientgoscheme.Scheme,
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
		Logger:     logr.FromSlogHandler(o.Log.Handler()),
	})
	if err != nil {
		return err
	}
	k := &Kubelet{o: o, c: mgr.GetClient(), kube: kube, pods: map[string]*pod{}, used: map[string]bool{}}
	err = mgr.GetFieldIndexer().IndexField(ctx, &corev1.Pod{}, nodeNameField, func(o client.Object) []string {
		return []string{o.(*corev1.Pod).Spec.NodeName}
	})
	if err != nil {
		return err
	}
	if k.logsPort, err = k.serveLogs(ctx); err != nil {
		return err
	}
	if err := k.registerNode(ctx); err != nil {
		return fmt.Errorf("registering Node %s: %w", o.Node, err)
	}
	err = ctrl.NewControllerManagedBy(mgr).Named("sandbox-kubelet").For(&corev1.Pod{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: 4}).Complete(k)
	if err != nil {
		return err
	}
	err = mgr.Start(ctx)
	k.stopAll()
	return err
}

// Kubelet is a running node agent.
type Kubelet struct {
	o    Options
	c    client.Client
	kube kubernetes.Interface
	mu   sync.Mutex
	pods map[string]*pod // by namespace/name
	used map[string]bool // pod addresses taken
	// logsPort serves the containers' logs (serveLogs).
	logsPort int
}

// registerNode creates the Node (or refreshes it), Ready, with the labels a scheduler matches.
func (k *Kubelet) registerNode(ctx context.Context) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: k.o.Node, Labels: k.nodeLabels()}}
	if err := k.c.Create(ctx, node); err != nil {
		if !apierrors.IsAlreadyExists(err) {
			return err
		}
		if err := k.c.Get(ctx, client.ObjectKeyFromObject(node), node); err != nil {
			return err
		}
	}
	now := metav1.Now()
	node.Status = corev1.NodeStatus{
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: ReasonNodeReady,
			Message: "the sandbox node runs pods as local processes", LastHeartbeatTime: now, LastTransitionTime: now,
		}},
		// No Hostname address: the API server would try to resolve it first to reach the logs.
		Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(k.logsPort)}},
		Capacity:        corev1.ResourceList{corev1.ResourcePods: resource.MustParse("250")},
		NodeInfo:        corev1.NodeSystemInfo{OperatingSystem: runtime.GOOS, Architecture: runtime.GOARCH, KubeletVersion: "sandbox", ContainerRuntimeVersion: "sandbox://processes"},
	}
	node.Status.Allocatable = node.Status.Capacity
	return k.c.Status().Update(ctx, node)
}

func (k *Kubelet) nodeLabels() map[string]string {
	return map[string]string{corev1.LabelHostname: k.o.Node, corev1.LabelOSStable: runtime.GOOS, corev1.LabelArchStable: runtime.GOARCH}
}

// Reconcile binds an unscheduled Pod to the node, and starts or stops the pod worker of a Pod
// of the node.
func (k *Kubelet) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	key := req.String()
	var p corev1.Pod
	if err := k.c.Get(ctx, req.NamespacedName, &p); err != nil {
		if apierrors.IsNotFound(err) {
			k.forget(key, "") // deleted at once (grace 0): its processes go too
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	if p.Spec.NodeName == "" {
		return reconcile.Result{}, k.bind(ctx, &p)
	}
	if p.Spec.NodeName != k.o.Node {
		return reconcile.Result{}, nil
	}
	k.mu.Lock()
	w := k.pods[key]
	if w != nil && w.uid != p.UID {
		k.mu.Unlock()
		k.forget(key, w.uid) // a new Pod of the same name: the old one's processes go first
		k.mu.Lock()
		w = nil
	}
	if !p.DeletionTimestamp.IsZero() {
		k.mu.Unlock()
		if w == nil {
			return reconcile.Result{}, k.confirmDeletion(ctx, &p)
		}
		w.terminate(ptr.Deref(p.DeletionGracePeriodSeconds, 30), true)
		return reconcile.Result{}, nil
	}
	if w == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
		w = k.newPod(&p)
		k.pods[key] = w
		go w.run()
	}
	k.mu.Unlock()
	if w != nil {
		w.update(&p)
	}
	return reconcile.Result{}, nil
}

// bind does what kube-scheduler would: the Pod goes to this node when the node can take it
// (default scheduler, node selector matching); otherwise its PodScheduled condition says why.
func (k *Kubelet) bind(ctx context.Context, p *corev1.Pod) error {
	if name := p.Spec.SchedulerName; name != "" && name != corev1.DefaultSchedulerName {
		return nil // another scheduler's
	}
	if !labels.SelectorFromSet(p.Spec.NodeSelector).Matches(labels.Set(k.nodeLabels())) {
		orig := p.DeepCopy()
		setCondition(&p.Status, corev1.PodScheduled, false, corev1.PodReasonUnschedulable,
			fmt.Sprintf("0/1 nodes are available: the sandbox node %s (labels %v) does not match the Pod's nodeSelector %v", k.o.Node, k.nodeLabels(), p.Spec.NodeSelector))
		return client.IgnoreNotFound(k.c.Status().Patch(ctx, p, client.MergeFrom(orig)))
	}
	b := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, UID: p.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: k.o.Node},
	}
	err := k.kube.CoreV1().Pods(p.Namespace).Bind(ctx, b, metav1.CreateOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone, or bound meanwhile
	}
	return err
}

// confirmDeletion completes a Pod's deletion once nothing of it runs, as kubelet does (the API
// server keeps a Pod with a grace period until its node confirms).
func (k *Kubelet) confirmDeletion(ctx context.Context, p *corev1.Pod) error {
	err := k.c.Delete(ctx, p, client.GracePeriodSeconds(0), client.Preconditions{UID: &p.UID})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// forget stops the worker of key (of that uid, or any when empty) at once.
func (k *Kubelet) forget(key string, uid types.UID) {
	k.mu.Lock()
	w := k.pods[key]
	if w == nil || (uid != "" && w.uid != uid) {
		k.mu.Unlock()
		return
	}
	delete(k.pods, key)
	k.mu.Unlock()
	w.terminate(0, false)
	<-w.done
}

// stopAll stops every container the node runs (the node agent is stopping).
func (k *Kubelet) stopAll() {
	k.mu.Lock()
	ws := slices.Collect(maps.Values(k.pods))
	k.pods = map[string]*pod{}
	k.mu.Unlock()
	for _, w := range ws {
		w.terminate(0, false)
	}
	for _, w := range ws {
		<-w.done
	}
}

// workerDone removes a finished worker and frees its address.
func (k *Kubelet) workerDone(w *pod) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.pods[w.key] == w {
		delete(k.pods, w.key)
	}
	if w.addr != "" {
		delete(k.used, w.addr)
	}
}

// allocate takes a free pod address, preferring the one the Pod had (the node agent restarted).
func (k *Kubelet) allocate(had string) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if had != "" && !k.used[had] && podNetwork(k.o.ClusterIndex, had) {
		k.used[had] = true
		return had, nil
	}
	for n := 128; n < 255; n++ {
		for h := 1; h < 255; h++ {
			ip := fmt.Sprintf("10.%d.%d.%d", 240+k.o.ClusterIndex, n, h)
			if !k.used[ip] {
				k.used[ip] = true
				return ip, nil
			}
		}
	}
	return "", errors.New("no free pod address on the sandbox node")
}

// podNetwork reports whether ip is one of the node's pod addresses.
func podNetwork(clusterIndex int, ip string) bool {
	a := net.ParseIP(ip).To4()
	return a != nil && a[0] == 10 && int(a[1]) == 240+clusterIndex && a[2] >= 128 && a[2] < 255 && a[3] > 0 && a[3] < 255
}

// repository is an image reference without its tag or digest.
func repository(image string) string {
	if i := strings.Index(image, "@"); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		image = image[:i]
	}
	return image
}
