// Package federation is the control plane of a cluster set: for every Cluster object it connects
// to the member's API server, watches its ServiceExports and their Services, and writes into
// every member the ServiceImports that the members' exports add up to (plan.Aggregate), with the
// exports' Conflict conditions. It runs in crossgate-controller on the control-plane cluster.
package federation

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	crossgateevents "github.com/crossgate-io/crossgate/controllers/events"
	"github.com/crossgate-io/crossgate/controllers/federation/plan"
	"github.com/crossgate-io/crossgate/wellknown"
)

const (
	// Finalizer keeps a Cluster until its imports are deleted from the member and its endpoints
	// from the others.
	Finalizer = "crossgate.io/federation"
	// FieldManager is the federation's field manager in members.
	FieldManager = "crossgate-federation"
	// secretRefIndex indexes Clusters by the Secret their kubeconfigSecretRef names.
	secretRefIndex = "crossgate.io/kubeconfigSecretRef"
)

// Options configure the federation controller.
type Options struct {
	// ID names this control plane in the members' claim Lease; the UID of the control-plane
	// cluster's kube-system namespace when empty.
	ID string
	// Quiet and MaxDelay bound the debounce of the aggregation loop (10ms and 200ms when zero).
	Quiet, MaxDelay time.Duration
	// HealthInterval is how often each member's claim is renewed, which doubles as the check
	// that the member is reachable and accepts the credentials (10s when zero).
	HealthInterval time.Duration
	// ConnectTimeout bounds each request made while connecting (5s when zero).
	ConnectTimeout time.Duration
	// LeaseDuration is how long a claim holds without renewal (4 health intervals when zero).
	LeaseDuration time.Duration
	// LeaveTimeout is how long a deleted Cluster waits for its member to be reachable, to delete
	// its imports there, before it goes anyway with a Warning event (2m when zero).
	LeaveTimeout time.Duration
	// SecretNamespace is the one namespace whose Secrets a Cluster's kubeconfigSecretRef may
	// name: the controller's (crossgate-system when empty). The controller reads Secrets in
	// every namespace (the proxies' identities), so without this a Cluster's author could have
	// any Secret of the control plane sent as credentials to a server the Cluster names.
	SecretNamespace string
	// ProbeInterval is how often, at most, a Cluster's status.lastProbeTime is written while its
	// member is reachable (30s, or the health interval when longer, when zero).
	ProbeInterval time.Duration
	Log           *slog.Logger
}

func (o *Options) defaults() {
	o.Quiet = cmp.Or(o.Quiet, 10*time.Millisecond)
	o.MaxDelay = cmp.Or(o.MaxDelay, 200*time.Millisecond)
	o.HealthInterval = cmp.Or(o.HealthInterval, 10*time.Second)
	o.ConnectTimeout = cmp.Or(o.ConnectTimeout, 5*time.Second)
	o.LeaseDuration = cmp.Or(o.LeaseDuration, 4*o.HealthInterval)
	o.LeaveTimeout = cmp.Or(o.LeaveTimeout, 2*time.Minute)
	o.SecretNamespace = cmp.Or(o.SecretNamespace, "crossgate-system")
	o.ProbeInterval = cmp.Or(o.ProbeInterval, max(30*time.Second, o.HealthInterval))
	if o.Log == nil {
		o.Log = slog.Default()
	}
}

// Federation is the federation controller.
type Federation struct {
	opts     Options
	cp       client.Client // the control plane, cached
	api      client.Reader // the control plane, uncached (Secrets)
	recorder events.EventRecorder
	scheme   *runtime.Scheme

	base    context.Context // lives as long as the manager; member watches run under it
	kick    chan struct{}
	retry   chan event.GenericEvent
	mu      sync.Mutex
	members map[string]*member // by Cluster name

	// Connects counts connections made to members.
	Connects atomic.Int64
}

// member is the federation's state for one Cluster object.
type member struct {
	name        string
	fingerprint string       // of the kubeconfig the connection uses
	conn        *connection  // nil while not connected
	last        *plan.Source // what was last read from the member (kept across disconnections)
	failures    int
	leaving     bool
	writeMu     sync.Mutex // held while writing to the member
	probedAt    time.Time  // when status.lastProbeTime was last written
}

// Setup registers the federation controller and its aggregation loop on mgr, the control-plane
// cluster's manager.
func Setup(mgr manager.Manager, opts Options) (*Federation, error) {
	opts.defaults()
	f := &Federation{
		opts: opts, cp: mgr.GetClient(), api: mgr.GetAPIReader(),
		recorder: crossgateevents.Bounded(mgr.GetEventRecorder("crossgate-federation")), scheme: memberScheme(),
		kick: make(chan struct{}, 1), retry: make(chan event.GenericEvent, 64), members: map[string]*member{},
	}
	if f.opts.ID == "" {
		var ns corev1.Namespace
		if err := mgr.GetAPIReader().Get(context.Background(), client.ObjectKey{Name: metav1.NamespaceSystem}, &ns); err != nil {
			return nil, fmt.Errorf("reading kube-system to name this control plane: %w", err)
		}
		f.opts.ID = string(ns.UID)
	}
	var cancel context.CancelFunc
	f.base, cancel = context.WithCancel(context.Background())
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &flomeshv1alpha1.Cluster{}, secretRefIndex, func(o client.Object) []string {
		if r := o.(*flomeshv1alpha1.Cluster).Spec.KubeconfigSecretRef; r != nil {
			return []string{r.Namespace + "/" + r.Name}
		}
		return nil
	}); err != nil {
		cancel()
		return nil, err
	}
	bySecret := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		var list flomeshv1alpha1.ClusterList
		if err := f.cp.List(ctx, &list, client.MatchingFields{secretRefIndex: o.GetNamespace() + "/" + o.GetName()}); err != nil {
			return nil
		}
		var out []reconcile.Request
		for _, c := range list.Items {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: c.Name}})
		}
		return out
	})
	err := ctrl.NewControllerManagedBy(mgr).
		Named("federation").
		// A heartbeat (status.lastProbeTime) alone changes nothing the federation reads.
		For(&flomeshv1alpha1.Cluster{}, builder.WithPredicates(predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
			return !onlyProbed(e.ObjectOld.(*flomeshv1alpha1.Cluster), e.ObjectNew.(*flomeshv1alpha1.Cluster))
		}})).
		WatchesMetadata(&corev1.Secret{}, bySecret).
		WatchesRawSource(source.Channel(f.retry, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: 4}).
		Complete(f)
	if err != nil {
		cancel()
		return nil, err
	}
	if err := mgr.Add(&loop{f: f, cancel: cancel}); err != nil {
		cancel()
		return nil, err
	}
	return f, nil
}

func memberScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, flomeshv1alpha1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}

// +kubebuilder:rbac:groups=flomesh.io,resources=clusters,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=flomesh.io,resources=clusters/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=flomesh.io,resources=clusters/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get

// Reconcile connects to the Cluster's member, or reconnects when its kubeconfig changed, and
// reports the outcome in the Managed condition. A change of anything else (the gateway address,
// the status) only re-runs the aggregation. It runs the phases below in order (Cluster API's
// style); a phase that is done ends the reconcile with its result.
func (f *Federation) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var c flomeshv1alpha1.Cluster
	if err := f.cp.Get(ctx, req.NamespacedName, &c); err != nil {
		if apierrors.IsNotFound(err) {
			f.forget(req.Name)
			f.trigger()
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	if !c.DeletionTimestamp.IsZero() {
		return f.leave(ctx, &c)
	}
	f.opts.Log.Debug("reconciling", "cluster", c.Name)
	s := &clusterScope{cluster: &c}
	for _, phase := range []clusterPhase{f.readKubeconfig, f.keepConnection, f.connectMember, f.reportConnected} {
		if res, done, err := phase(ctx, s); done || err != nil {
			return res, err
		}
	}
	return reconcile.Result{}, nil
}

// clusterScope is one reconcile of a Cluster: the object and what its phases learn.
type clusterScope struct {
	cluster     *flomeshv1alpha1.Cluster
	kubeconfig  []byte
	fingerprint string // of the kubeconfig
	member      *member
	conn        *connection
}

// clusterPhase is one step of a Cluster's reconcile; done ends the reconcile with the result.
type clusterPhase func(ctx context.Context, s *clusterScope) (res reconcile.Result, done bool, err error)

// readKubeconfig reads the member's kubeconfig, or reports in Managed why there is none.
func (f *Federation) readKubeconfig(ctx context.Context, s *clusterScope) (reconcile.Result, bool, error) {
	raw, err := f.kubeconfig(ctx, s.cluster)
	if p := (*flomeshv1alpha1.ConditionError)(nil); errors.As(err, &p) {
		f.disconnect(s.cluster.Name, "")
		return reconcile.Result{}, true, f.setManaged(ctx, s.cluster.Name, false, p.Reason, p.Message)
	} else if err != nil {
		return reconcile.Result{}, true, err
	}
	sum := sha256.Sum256(raw)
	s.kubeconfig, s.fingerprint = raw, hex.EncodeToString(sum[:])
	return reconcile.Result{}, false, nil
}

// keepConnection keeps a connection made with the same kubeconfig: only the aggregation runs
// again (the gateway address may have changed).
func (f *Federation) keepConnection(_ context.Context, s *clusterScope) (reconcile.Result, bool, error) {
	f.mu.Lock()
	m := f.members[s.cluster.Name]
	if m == nil {
		m = &member{name: s.cluster.Name}
		f.members[s.cluster.Name] = m
	}
	s.member = m
	same := m.fingerprint == s.fingerprint && m.conn != nil
	f.mu.Unlock()
	if same {
		f.trigger()
		return reconcile.Result{}, true, nil
	}
	return reconcile.Result{}, false, nil
}

// connectMember connects afresh; a failure the Cluster's author must fix is reported in Managed
// and retried with a backoff.
func (f *Federation) connectMember(ctx context.Context, s *clusterScope) (reconcile.Result, bool, error) {
	c := s.cluster
	f.disconnect(c.Name, s.fingerprint)
	// The finalizer goes on just before the first write to the member (its claim): a Cluster that
	// never connected has nothing to clean up there, and is deleted at once.
	conn, err := f.connect(ctx, c, s.kubeconfig, func(ctx context.Context) error {
		if controllerutil.AddFinalizer(c, Finalizer) {
			return f.cp.Update(ctx, c)
		}
		return nil
	})
	var p *flomeshv1alpha1.ConditionError
	problem := errors.As(err, &p)
	if err != nil && !problem {
		f.disconnect(c.Name, "")
		return reconcile.Result{}, true, fmt.Errorf("adding finalizer %s to Cluster %s: %w", Finalizer, c.Name, err)
	}
	f.mu.Lock()
	if problem {
		s.member.failures++
	} else {
		s.member.conn, s.member.failures = conn, 0
	}
	failures := s.member.failures
	f.mu.Unlock()
	if problem {
		if err := f.setManaged(ctx, c.Name, false, p.Reason, p.Message); err != nil {
			return reconcile.Result{}, true, err
		}
		return reconcile.Result{RequeueAfter: backoff(failures)}, true, nil
	}
	s.conn = conn
	return reconcile.Result{}, false, nil
}

// reportConnected runs the aggregation with the new member and reports Managed=True.
func (f *Federation) reportConnected(ctx context.Context, s *clusterScope) (reconcile.Result, bool, error) {
	c := s.cluster
	f.Connects.Add(1)
	f.opts.Log.Info("connected to member", "cluster", c.Name, "key", c.Key(), "server", s.conn.server)
	f.trigger()
	f.probed(ctx, c.Name, time.Now())
	return reconcile.Result{}, true, f.setManaged(ctx, c.Name, true, flomeshv1alpha1.ReasonConnected,
		fmt.Sprintf("Connected to %s; crossgate is installed there and this control plane holds its claim.", s.conn.server))
}

// backoff is the wait before connecting again after n failures in a row: 1s doubling to 30s.
func backoff(n int) time.Duration {
	return min(time.Second<<min(n-1, 5), 30*time.Second)
}

// kubeconfig returns the Cluster's kubeconfig, or a *ConditionError saying why there is none.
func (f *Federation) kubeconfig(ctx context.Context, c *flomeshv1alpha1.Cluster) ([]byte, error) {
	ref := c.Spec.KubeconfigSecretRef
	if ref == nil {
		return []byte(c.Spec.Kubeconfig), nil
	}
	if ref.Namespace != f.opts.SecretNamespace {
		return nil, flomeshv1alpha1.Problem(flomeshv1alpha1.ReasonKubeconfigSecretNotAllowed, "spec.kubeconfigSecretRef.namespace %q: a Cluster's kubeconfig Secret must be in %s, the controller's namespace (where crossgate cluster join puts it); Secrets elsewhere are not read.", ref.Namespace, f.opts.SecretNamespace)
	}
	var s corev1.Secret
	if err := f.api.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, flomeshv1alpha1.Problem(flomeshv1alpha1.ReasonKubeconfigSecretNotFound, "spec.kubeconfigSecretRef names Secret %s/%s, which does not exist. Create it with the member's kubeconfig under key %q (crossgate cluster join does).", ref.Namespace, ref.Name, keyOf(ref))
		}
		return nil, flomeshv1alpha1.Problem(flomeshv1alpha1.ReasonKubeconfigSecretNotFound, "Reading Secret %s/%s named by spec.kubeconfigSecretRef failed: %v", ref.Namespace, ref.Name, err)
	}
	raw, ok := s.Data[keyOf(ref)]
	if !ok {
		// The Secret's other keys are not listed: they are not this Cluster's author's to see.
		return nil, flomeshv1alpha1.Problem(flomeshv1alpha1.ReasonKubeconfigSecretNotFound, "Secret %s/%s has no key %q (spec.kubeconfigSecretRef.key).", ref.Namespace, ref.Name, keyOf(ref))
	}
	return raw, nil
}

func keyOf(r *flomeshv1alpha1.SecretKeyReference) string { return cmp.Or(r.Key, "kubeconfig") }

// disconnect stops the member's connection, keeping what was last read from it; fp becomes the
// fingerprint of the kubeconfig the next connection uses.
func (f *Federation) disconnect(name, fp string) {
	f.mu.Lock()
	m := f.members[name]
	var conn *connection
	if m != nil {
		conn, m.conn, m.fingerprint = m.conn, nil, fp
	}
	f.mu.Unlock()
	if conn != nil {
		conn.stop()
	}
}

// forget drops every trace of a member whose Cluster is gone.
func (f *Federation) forget(name string) {
	f.disconnect(name, "")
	f.mu.Lock()
	delete(f.members, name)
	f.mu.Unlock()
}

// leave handles a deleted Cluster: it stops importing into and from the member, deletes the
// federation's imports there and its claim, and releases the finalizer. An unreachable member is
// waited for up to LeaveTimeout, then left with a Warning event.
func (f *Federation) leave(ctx context.Context, c *flomeshv1alpha1.Cluster) (reconcile.Result, error) {
	if !controllerutil.ContainsFinalizer(c, Finalizer) {
		f.forget(c.Name)
		f.trigger()
		return reconcile.Result{}, nil
	}
	f.mu.Lock()
	m := f.members[c.Name]
	if m == nil {
		m = &member{name: c.Name}
		f.members[c.Name] = m
	}
	m.leaving = true
	conn := m.conn
	f.mu.Unlock()
	f.trigger() // the others drop its endpoints

	m.writeMu.Lock() // no write to the member is in flight after this
	defer m.writeMu.Unlock()
	var cl client.Client
	if conn != nil {
		cl = conn.client
	} else if raw, err := f.kubeconfig(ctx, c); err != nil {
		return f.leaveFailed(ctx, c, err)
	} else if cfg, err := restConfig(raw, f.opts.ConnectTimeout); err != nil {
		return f.leaveFailed(ctx, c, err)
	} else if cl, err = client.New(cfg, client.Options{Scheme: f.scheme}); err != nil {
		return f.leaveFailed(ctx, c, err)
	}
	if err := f.cleanMember(ctx, cl, c.Name); err != nil {
		return f.leaveFailed(ctx, c, err)
	}
	return f.release(ctx, c)
}

func (f *Federation) leaveFailed(ctx context.Context, c *flomeshv1alpha1.Cluster, err error) (reconcile.Result, error) {
	deadline := c.DeletionTimestamp.Add(f.opts.LeaveTimeout)
	if time.Now().Before(deadline) {
		_ = f.setManaged(ctx, c.Name, false, flomeshv1alpha1.ReasonLeaving, fmt.Sprintf("Deleting the member's imports failed (%v); retrying until %s, then the Cluster goes and leaves them.", err, deadline.UTC().Format(time.RFC3339)))
		return reconcile.Result{RequeueAfter: 2 * time.Second}, nil
	}
	f.recorder.Eventf(c, nil, corev1.EventTypeWarning, flomeshv1alpha1.ReasonImportsLeftBehind, "Leave",
		"The member could not be reached within %v of the Cluster's deletion (%v): the ServiceImports crossgate wrote there (label %s=true) are left behind; delete them by hand.", f.opts.LeaveTimeout, err, wellknown.FederatedLabel)
	return f.release(ctx, c)
}

func (f *Federation) release(ctx context.Context, c *flomeshv1alpha1.Cluster) (reconcile.Result, error) {
	f.forget(c.Name)
	f.trigger()
	patch := client.MergeFrom(c.DeepCopy())
	controllerutil.RemoveFinalizer(c, Finalizer)
	if err := f.cp.Patch(ctx, c, patch); err != nil && !apierrors.IsNotFound(err) {
		return reconcile.Result{}, err
	}
	return reconcile.Result{}, nil
}

// cleanMember deletes the federation's imports and claim from a member that leaves the set. A
// member claimed by someone else (another control plane, or this one under another Cluster) is
// left untouched: those imports are not this Cluster's.
func (f *Federation) cleanMember(ctx context.Context, cl client.Client, name string) error {
	var l coordinationv1.Lease
	if err := cl.Get(ctx, client.ObjectKey{Namespace: claimNamespace, Name: claimName}, &l); err != nil {
		return client.IgnoreNotFound(err)
	}
	if ptr.Deref(l.Spec.HolderIdentity, "") != f.holder(name) {
		return nil
	}
	var list flomeshv1alpha1.ServiceImportList
	if err := cl.List(ctx, &list, client.MatchingLabels{wellknown.FederatedLabel: "true"}); err != nil {
		return err
	}
	for i := range list.Items {
		if err := cl.Delete(ctx, &list.Items[i]); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return f.unclaim(ctx, cl, name)
}

// trigger asks the aggregation loop for a pass.
func (f *Federation) trigger() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// requeue asks the reconciler to look at a Cluster again (from a member's health check).
func (f *Federation) requeue(name string) {
	select {
	case f.retry <- event.GenericEvent{Object: &flomeshv1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name}}}:
	default:
	}
}
