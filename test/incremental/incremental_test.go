//go:build integration

// Package incremental is the differential test of the controller's publisher: random sequences
// of creates, updates and deletes of every kind the translator reads, across namespaces, written
// to a real kube-apiserver and published by the real controller (app.Run); after each batch what
// the xDS cache serves must equal a full translation and build of the API server's state
// (Publisher.Check), whichever path the publisher took. Batches that change only endpoints must
// take the incremental path.
package incremental

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	accessv1alpha3 "github.com/crossgate-io/crossgate/api/smi/access/v1alpha3"
	specsv1alpha4 "github.com/crossgate-io/crossgate/api/smi/specs/v1alpha4"
	"github.com/crossgate-io/crossgate/controllers"
	"github.com/crossgate-io/crossgate/internal/app"
	"github.com/crossgate-io/crossgate/sandbox"
	"github.com/crossgate-io/crossgate/test/internal/apptest"
	"github.com/crossgate-io/crossgate/test/internal/poll"
	"github.com/crossgate-io/crossgate/translator"
	"github.com/crossgate-io/crossgate/xds/identity"
)

const rounds = 60

var namespaces = []string{"red", "green", "blue"}

func TestPublisherIncrementalEqualsFull(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	startCtx, startCancel := context.WithTimeout(ctx, 3*time.Minute)
	sb, err := sandbox.Start(startCtx, sandbox.Options{Clusters: []string{"cluster-1"}})
	startCancel()
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Stop()
	c := sb.Clusters[0].Client
	for _, o := range baseObjects() {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	ca, err := identity.NewCA("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	run, done, err := apptest.Start(runCtx, sb.Clusters[0].Config, app.Config{
		Member: controllers.Options{
			Name:       "cluster-1",
			MeshConfig: types.NamespacedName{Namespace: "fsm-system", Name: "fsm-mesh-config"},
		},
		CA: ca, XDSAddress: "127.0.0.1:0", Federation: "off",
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("the controller: %v", err)
		}
	}()

	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CROSSGATE_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (CROSSGATE_SEED=%d reruns this sequence)", seed, seed)
	w := &world{c: c, rng: rand.New(rand.NewPCG(seed, 1)), t: t}

	publisher := func() *controllers.Publisher {
		if m := run.Supervisor.Current(); m != nil {
			return m.Publisher
		}
		return nil
	}
	check := func(round int, what string) {
		t.Helper()
		poll.Eventually(t, time.Minute, fmt.Sprintf("round %d (%s): the cache equals a full translation", round, what), func() error {
			p := publisher()
			if p == nil || !p.Ready() {
				return fmt.Errorf("nothing published yet")
			}
			return p.Check(ctx, c)
		})
	}
	check(0, "start")
	endpointRounds, incrementalRounds := 0, 0
	for round := 1; round <= rounds; round++ {
		before := publisher().Publishes()
		endpointOnly := round%2 == 0
		var did []string
		for range 1 + w.rng.IntN(6) {
			if endpointOnly {
				did = append(did, w.endpointChange(ctx))
			} else {
				did = append(did, w.anyChange(ctx))
			}
		}
		check(round, fmt.Sprint(did))
		if !endpointOnly {
			continue
		}
		endpointRounds++
		after := publisher().Publishes()
		if after[controllers.PathIncremental]+after[controllers.PathRebuild] > before[controllers.PathIncremental]+before[controllers.PathRebuild] {
			incrementalRounds++
		}
		if after[controllers.PathFull] != before[controllers.PathFull] {
			t.Logf("round %d: endpoint changes, but a full publish happened too (%d -> %d): a change of the previous round arrived late", round, before[controllers.PathFull], after[controllers.PathFull])
		}
	}
	final := publisher().Publishes()
	t.Logf("publishes: %v; %d of %d endpoint-only rounds published incrementally", final, incrementalRounds, endpointRounds)
	if incrementalRounds < endpointRounds/2 {
		t.Errorf("%d of %d endpoint-only rounds took the incremental path, want most", incrementalRounds, endpointRounds)
	}
}

func baseObjects() []client.Object {
	out := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "crossgate-system"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "fsm-system"}},
		&flomeshv1alpha1.MeshConfig{ObjectMeta: metav1.ObjectMeta{Namespace: "fsm-system", Name: "fsm-mesh-config"}},
		&gatewayv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "crossgate"}, Spec: gatewayv1.GatewayClassSpec{ControllerName: translator.ControllerName}},
		&gatewayv1.Gateway{
			ObjectMeta: metav1.ObjectMeta{Namespace: "crossgate-system", Name: "crossgate-gateway"},
			Spec:       gatewayv1.GatewaySpec{GatewayClassName: "crossgate", Listeners: translator.GatewayListeners(80)},
		},
	}
	for _, ns := range namespaces {
		out = append(out, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"crossgate.io/inject": "enabled"}}})
		for _, sa := range []string{"default", "one", "two"} {
			out = append(out, &corev1.ServiceAccount{ObjectMeta: meta(ns, sa)})
		}
		for _, svc := range []string{"a", "b", "c"} {
			out = append(out, &corev1.Service{ObjectMeta: meta(ns, svc), Spec: corev1.ServiceSpec{Selector: map[string]string{"app": svc}, Ports: []corev1.ServicePort{
				{Name: "http", Port: 8080}, {Name: "grpc", Port: 8081, AppProtocol: ptr.To("grpc")},
			}}})
		}
	}
	return out
}

// world writes random changes. Names come from small pools, so that creates, updates and
// deletes meet the same objects again.
type world struct {
	c   client.Client
	rng *rand.Rand
	t   *testing.T
}

func (w *world) pick(pool ...string) string { return pool[w.rng.IntN(len(pool))] }
func (w *world) ns() string                 { return w.pick(namespaces...) }
func (w *world) svc() string                { return w.pick("a", "b", "c") }
func (w *world) sa() string                 { return w.pick("default", "one", "two") }
func (w *world) pod() string                { return w.pick("p0", "p1", "p2", "p3") }

// put creates obj, or updates it when it exists (keeping its resourceVersion).
func (w *world) put(ctx context.Context, obj client.Object) string {
	w.t.Helper()
	kind := fmt.Sprintf("%T", obj)
	err := w.c.Create(ctx, obj)
	if apierrors.IsAlreadyExists(err) {
		cur := obj.DeepCopyObject().(client.Object)
		if err = w.c.Get(ctx, client.ObjectKeyFromObject(obj), cur); err == nil {
			obj.SetResourceVersion(cur.GetResourceVersion())
			err = w.c.Update(ctx, obj)
		}
	}
	if err != nil {
		w.t.Fatalf("writing %s %s/%s: %v", kind, obj.GetNamespace(), obj.GetName(), err)
	}
	return "put " + kind[1:] + " " + obj.GetNamespace() + "/" + obj.GetName()
}

func (w *world) del(ctx context.Context, obj client.Object) string {
	w.t.Helper()
	if err := w.c.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
		w.t.Fatalf("deleting %T %s/%s: %v", obj, obj.GetNamespace(), obj.GetName(), err)
	}
	return fmt.Sprintf("delete %T %s/%s", obj, obj.GetNamespace(), obj.GetName())
}

func meta(ns, name string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: ns, Name: name} }

// slice is an EndpointSlice of service svc with random endpoints, some behind pods.
func (w *world) slice(ns, svc, name string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(w.pick("http", "grpc")), Port: ptr.To(int32(8080 + w.rng.IntN(2)))}},
	}
	for i := range w.rng.IntN(4) {
		e := discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("10.%d.%d.%d", 1+w.rng.IntN(3), w.rng.IntN(4), 1+i+w.rng.IntN(3))},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(w.rng.IntN(5) > 0)},
		}
		if w.rng.IntN(3) > 0 {
			e.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: w.pod()}
		}
		s.Endpoints = append(s.Endpoints, e)
	}
	return s
}

// endpointChange changes endpoints only: an EndpointSlice, a Pod's readiness, or a Pod of an
// existing ServiceAccount created or deleted (as a rolling update does).
func (w *world) endpointChange(ctx context.Context) string {
	ns, svc := w.ns(), w.svc()
	name := svc + "-" + w.pick("x", "y")
	switch w.rng.IntN(8) {
	case 0:
		return w.del(ctx, &discoveryv1.EndpointSlice{ObjectMeta: meta(ns, name)})
	case 6:
		p := &corev1.Pod{ObjectMeta: meta(ns, w.pod()), Spec: corev1.PodSpec{ServiceAccountName: w.sa(), Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
		if err := w.c.Get(ctx, client.ObjectKeyFromObject(p), &corev1.Pod{}); err == nil {
			return w.del(ctx, p)
		}
		if err := w.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: p.Spec.ServiceAccountName}, &corev1.ServiceAccount{}); err != nil {
			return "no ServiceAccount for a new pod"
		}
		if w.rng.IntN(3) == 0 {
			p.Annotations = map[string]string{"crossgate.io/proxyless": "true"}
		}
		return w.put(ctx, p)
	case 1:
		p := &corev1.Pod{}
		if err := w.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: w.pod()}, p); err != nil {
			return "no pod to turn (un)ready"
		}
		ready := corev1.ConditionTrue
		if w.rng.IntN(2) == 0 {
			ready = corev1.ConditionFalse
		}
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: ready}}
		if err := w.c.Status().Update(ctx, p); err != nil {
			w.t.Fatalf("pod status: %v", err)
		}
		return "pod " + ns + "/" + p.Name + " ready=" + string(ready)
	default:
		return w.put(ctx, w.slice(ns, svc, name))
	}
}

// anyChange changes an object of any kind the translator reads.
func (w *world) anyChange(ctx context.Context) string {
	ns, svc := w.ns(), w.svc()
	switch w.rng.IntN(11) {
	case 0:
		s := &corev1.Service{ObjectMeta: meta(ns, svc), Spec: corev1.ServiceSpec{Selector: map[string]string{"app": svc}, Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}}}
		if w.rng.IntN(2) == 0 {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "grpc", Port: 8081, AppProtocol: ptr.To("grpc")})
		}
		if w.rng.IntN(4) == 0 {
			return w.del(ctx, s)
		}
		if err := w.c.Get(ctx, client.ObjectKeyFromObject(s), &corev1.Service{}); err == nil {
			return w.del(ctx, s) // a Service's ports are replaced by delete and create (clusterIP is immutable)
		}
		return w.put(ctx, s)
	case 1:
		p := &corev1.Pod{ObjectMeta: meta(ns, w.pod()), Spec: corev1.PodSpec{ServiceAccountName: w.sa(), Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
		if w.rng.IntN(3) == 0 {
			p.Annotations = map[string]string{"crossgate.io/proxyless": "true"}
		}
		if w.rng.IntN(3) == 0 {
			return w.del(ctx, p)
		}
		if err := w.c.Get(ctx, client.ObjectKeyFromObject(p), &corev1.Pod{}); err == nil {
			return w.del(ctx, p) // a Pod's ServiceAccount is immutable
		}
		// The API server admits a Pod only with its ServiceAccount.
		if err := w.c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: meta(ns, p.Spec.ServiceAccountName)}); err != nil && !apierrors.IsAlreadyExists(err) {
			w.t.Fatal(err)
		}
		return w.put(ctx, p)
	case 2:
		sa := &corev1.ServiceAccount{ObjectMeta: meta(ns, w.sa())}
		if w.rng.IntN(2) == 0 {
			return w.del(ctx, sa)
		}
		return w.put(ctx, sa)
	case 3:
		e := &flomeshv1alpha1.ServiceExport{ObjectMeta: meta(ns, svc), Spec: flomeshv1alpha1.ServiceExportSpec{
			ServiceAccountName: w.pick("*", "default", "one"),
			Rules:              []flomeshv1alpha1.ServiceExportRule{{PortNumber: int32(8080 + w.rng.IntN(2)), Path: "/" + ns + "/" + svc, PathType: "Prefix"}},
		}}
		if w.rng.IntN(3) == 0 {
			return w.del(ctx, e)
		}
		return w.put(ctx, e)
	case 4:
		g := &flomeshv1alpha1.GlobalTrafficPolicy{ObjectMeta: meta(ns, svc), Spec: flomeshv1alpha1.GlobalTrafficPolicySpec{LbType: flomeshv1alpha1.GlobalLoadBalancerType(w.pick("Locality", "FailOver", "ActiveActive"))}}
		if g.Spec.LbType == "FailOver" {
			g.Spec.Targets = []flomeshv1alpha1.TrafficTarget{{ClusterKey: "default/default/default/cluster-2"}}
		}
		if w.rng.IntN(3) == 0 {
			return w.del(ctx, g)
		}
		return w.put(ctx, g)
	case 5:
		tt := &accessv1alpha3.TrafficTarget{ObjectMeta: meta(ns, "tt-"+w.sa()), Spec: accessv1alpha3.TrafficTargetSpec{
			Destination: accessv1alpha3.IdentityBindingSubject{Kind: "ServiceAccount", Name: w.sa(), Namespace: ns},
			Sources:     []accessv1alpha3.IdentityBindingSubject{{Kind: "ServiceAccount", Name: w.sa(), Namespace: w.ns()}},
			Rules:       []accessv1alpha3.TrafficTargetRule{{Kind: "HTTPRouteGroup", Name: "all", Matches: []string{"all"}}},
		}}
		if w.rng.IntN(3) == 0 {
			return w.del(ctx, tt)
		}
		return w.put(ctx, tt)
	case 6:
		g := &specsv1alpha4.HTTPRouteGroup{ObjectMeta: meta(ns, "all"), Spec: specsv1alpha4.HTTPRouteGroupSpec{Matches: []specsv1alpha4.HTTPMatch{{Name: "all", PathRegex: w.pick("/", "/get"), Methods: []specsv1alpha4.HTTPMethod{"GET"}}}}}
		if w.rng.IntN(4) == 0 {
			return w.del(ctx, g)
		}
		return w.put(ctx, g)
	case 7:
		mc := &flomeshv1alpha1.MeshConfig{}
		if err := w.c.Get(ctx, client.ObjectKey{Namespace: "fsm-system", Name: "fsm-mesh-config"}, mc); err != nil {
			w.t.Fatal(err)
		}
		mc.Spec.Traffic.EnablePermissiveTrafficPolicyMode = ptr.To(w.rng.IntN(2) == 0)
		if err := w.c.Update(ctx, mc); err != nil {
			w.t.Fatal(err)
		}
		return fmt.Sprintf("permissive=%v", *mc.Spec.Traffic.EnablePermissiveTrafficPolicyMode)
	case 8:
		r := &gatewayv1.HTTPRoute{ObjectMeta: meta(ns, "r-"+svc), Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "crossgate-gateway", Namespace: ptr.To(gatewayv1.Namespace("crossgate-system"))}}},
			Rules: []gatewayv1.HTTPRouteRule{{
				Matches:     []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: ptr.To(gatewayv1.PathMatchPathPrefix), Value: ptr.To("/" + ns + "-" + svc)}}},
				BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(svc), Port: ptr.To(gatewayv1.PortNumber(8080))}}}},
			}},
		}}
		if w.rng.IntN(3) == 0 {
			return w.del(ctx, r)
		}
		return w.put(ctx, r)
	case 9:
		n := &corev1.Namespace{}
		if err := w.c.Get(ctx, client.ObjectKey{Name: ns}, n); err != nil {
			w.t.Fatal(err)
		}
		if n.Labels["crossgate.io/inject"] == "enabled" {
			delete(n.Labels, "crossgate.io/inject")
		} else {
			n.Labels["crossgate.io/inject"] = "enabled"
		}
		if err := w.c.Update(ctx, n); err != nil {
			w.t.Fatal(err)
		}
		return "namespace " + ns + " inject=" + n.Labels["crossgate.io/inject"]
	default:
		return w.endpointChange(ctx)
	}
}
