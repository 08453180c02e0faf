package bench

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/go-logr/logr"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/controllers"
	"github.com/crossgate-io/crossgate/sandbox"
	"github.com/crossgate-io/crossgate/wellknown"
	"github.com/crossgate-io/crossgate/xds/identity"
	"github.com/crossgate-io/crossgate/xds/translate"
)

// RunB9 measures a new export in cluster-1 until (a) its ServiceImport is in cluster-2 and (b) a
// caller's delta-xDS client in cluster-2 (sidecar curl/curl, ActiveActive policy) holds the
// endpoint of cluster-1's gateway. Four real API servers: the federation runs on the control
// plane, cluster-2's member controllers in this process.
func RunB9(exports int) ([]*Line, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sctx, scancel := context.WithTimeout(ctx, 3*time.Minute)
	sb, err := sandbox.Start(sctx, sandbox.Options{Clusters: []string{"control-plane", "cluster-1", "cluster-2", "cluster-3"}})
	scancel()
	if err != nil {
		return nil, err
	}
	defer sb.Stop()
	log := quietLog()
	ctrl.SetLogger(logr.FromSlogHandler(log.Handler()))
	c1, c2 := sb.Cluster("cluster-1").Client, sb.Cluster("cluster-2").Client

	// The control plane's controller (the federation on), with the three members joined.
	ca, err := identity.NewCA("cluster.local")
	if err != nil {
		return nil, err
	}
	if _, err := startController(ctx, sb.Cluster("control-plane").Config, controllers.Options{Name: "control-plane"}, ca, log, "on"); err != nil {
		return nil, err
	}
	for i, name := range []string{"cluster-1", "cluster-2", "cluster-3"} {
		kc, err := os.ReadFile(sb.Cluster(name).Kubeconfig)
		if err != nil {
			return nil, err
		}
		if _, err := clientcmd.Load(kc); err != nil {
			return nil, err
		}
		cl := &flomeshv1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: flomeshv1alpha1.ClusterSpec{
			GatewayHost: "127.0.0.1", GatewayPort: int32(81 + i), Kubeconfig: string(kc),
		}}
		if err := sb.Cluster("control-plane").Client.Create(ctx, cl); err != nil {
			return nil, err
		}
	}

	// cluster-2: the caller curl/curl, an ActiveActive policy for every service to come, and
	// its member controllers serving xDS.
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "curl"}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "curl", Name: "curl"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}},
	}
	for i := range exports {
		objs = append(objs, &flomeshv1alpha1.GlobalTrafficPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: fmt.Sprintf("svc-%d", i)},
			Spec:       flomeshv1alpha1.GlobalTrafficPolicySpec{LbType: flomeshv1alpha1.ActiveActive},
		})
	}
	for _, o := range objs {
		if err := c2.Create(ctx, o); err != nil {
			return nil, err
		}
	}
	if err := c1.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}}); err != nil {
		return nil, err
	}
	run, err := startController(ctx, sb.Cluster("cluster-2").Config, controllers.Options{Name: "cluster-2"}, ca, log, "off")
	if err != nil {
		return nil, err
	}
	conn, err := dialXDS(run, "curl", "curl")
	if err != nil {
		return nil, err
	}
	defer conn.Close()

	// When each service's import and endpoint first show in cluster-2.
	var mu sync.Mutex
	importAt, endpointAt := map[string]time.Time{}, map[string]time.Time{}
	wc, err := client.NewWithWatch(sb.Cluster("cluster-2").Config, client.Options{Scheme: sandbox.Scheme})
	if err != nil {
		return nil, err
	}
	w, err := wc.Watch(ctx, &flomeshv1alpha1.ServiceImportList{}, client.InNamespace("bench"))
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	go func() {
		for ev := range w.ResultChan() {
			if imp, ok := ev.Object.(*flomeshv1alpha1.ServiceImport); ok && ev.Type != watch.Deleted {
				mu.Lock()
				if _, seen := importAt[imp.Name]; !seen {
					importAt[imp.Name] = time.Now()
				}
				mu.Unlock()
			}
		}
	}()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: wellknown.Sidecar("curl", "curl").String()}, TypeUrl: resourcev3.EndpointType}); err != nil {
		return nil, err
	}
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				return
			}
			_ = st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResponseNonce: r.GetNonce()})
			now := time.Now()
			for _, res := range r.GetResources() {
				var cla endpointv3.ClusterLoadAssignment
				if proto.Unmarshal(res.GetResource().GetValue(), &cla) != nil {
					continue
				}
				for _, loc := range cla.GetEndpoints() {
					for _, ep := range loc.GetLbEndpoints() {
						if ep.GetEndpoint().GetAddress().GetSocketAddress().GetPortValue() == 81 {
							mu.Lock()
							if _, seen := endpointAt[cla.ClusterName]; !seen {
								endpointAt[cla.ClusterName] = now
							}
							mu.Unlock()
						}
					}
				}
			}
		}
	}()

	// Wait for the set to be connected.
	deadline := time.Now().Add(time.Minute)
	for {
		var list flomeshv1alpha1.ClusterList
		if err := sb.Cluster("control-plane").Client.List(ctx, &list); err != nil {
			return nil, err
		}
		n := 0
		for _, c := range list.Items {
			for _, cond := range c.Status.Conditions {
				if cond.Type == flomeshv1alpha1.ConditionManaged && cond.Status == metav1.ConditionTrue {
					n++
				}
			}
		}
		if n == 3 && run.Supervisor.Ready() {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("B9: the members did not become Managed, or cluster-2's publisher ready, within a minute")
		}
		time.Sleep(50 * time.Millisecond)
	}

	var toImport, toEndpoint []time.Duration
	cpu0 := cpuSeconds()
	for i := range exports {
		name := fmt.Sprintf("svc-%d", i)
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: name},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 8080, TargetPort: intstr.FromInt32(8080)}}},
		}
		if err := c1.Create(ctx, svc); err != nil {
			return nil, err
		}
		exp := &flomeshv1alpha1.ServiceExport{
			ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: name},
			Spec:       flomeshv1alpha1.ServiceExportSpec{Rules: []flomeshv1alpha1.ServiceExportRule{{PortNumber: 8080, Path: "/" + name, PathType: flomeshv1alpha1.PathMatchPrefix}}},
		}
		start := time.Now()
		if err := c1.Create(ctx, exp); err != nil {
			return nil, err
		}
		cluster := translate.OutboundClusterName("bench/" + name + ":8080")
		for {
			mu.Lock()
			ia, iok := importAt[name]
			ea, eok := endpointAt[cluster]
			mu.Unlock()
			if iok && eok {
				toImport = append(toImport, ia.Sub(start))
				toEndpoint = append(toEndpoint, ea.Sub(start))
				if os.Getenv("CROSSGATE_BENCH_DEBUG") != "" {
					fmt.Fprintln(os.Stderr, name, ia.Sub(start), ea.Sub(start))
				}
				break
			}
			if time.Since(start) > 10*time.Second {
				return nil, fmt.Errorf("B9: export %s: import seen %v, endpoint seen %v after 10s", name, iok, eok)
			}
			time.Sleep(2 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond) // idle between exports
	}
	core := cpuSeconds() - cpu0
	var out []*Line
	for _, m := range []struct {
		what string
		lat  []time.Duration
	}{{"ServiceImport in cluster-2", toImport}, {"endpoint at an xDS client in cluster-2", toEndpoint}} {
		l := &Line{Name: "B9 new export in cluster-1 -> " + m.what, Params: map[string]any{
			"clusters": 4, "exports": exports, "debounce_quiet_ms": 10,
		}}
		l.percentiles(m.lat)
		l.CoreS = core
		l.HeapInuseMiB, l.RSSMiB = heapInuseMiB(), rssMiB()
		out = append(out, l)
	}
	return out, nil
}
