package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/crossgate-io/crossgate/controllers"
	"github.com/crossgate-io/crossgate/translator"
	"github.com/crossgate-io/crossgate/translator/ir"
	"github.com/crossgate-io/crossgate/wellknown"
	"github.com/crossgate-io/crossgate/xds/translate"
)

// RunB2e is B2 end to end: B1's world loaded into a real kube-apiserver and synced by the real
// controller (app.Run, in this process); then EndpointSlice updates, one at a time (changes) and
// then batch at once, each moving one endpoint of another service; the time from the write to
// the API server until delta xDS clients subscribed to that service's EDS resource hold the new
// endpoint: a sidecar of an identity that may call the service, and the gateway (every changed
// service is behind an HTTPRoute). The lines carry the process's CPU seconds and RSS over the
// phase: the controller's, with this benchmark's clients (the API server and etcd are other
// processes). The world's pods are one per service (every endpoint of a service points to it):
// the identities are the world's, with a tenth of its Pod objects.
func RunB2e(size Size, changes, batch int) ([]*Line, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sb, err := oneCluster(ctx, "cluster-0", false)
	if err != nil {
		return nil, err
	}
	defer sb.Stop()
	c := sb.Clusters[0].Client
	in := World(size)
	// The services changed: behind an HTTPRoute (so the gateway routes to them), and callable
	// by a source of a TrafficTarget (World's service i is served by identity ns-i/sa-i); its
	// slice is in.EndpointSlices[i].
	type target struct {
		svc, slice client.ObjectKey
		caller     ir.Identity
	}
	var targets []target
	for i := 0; i < size.HTTPRoutes && len(targets) < 1+changes+batch; i++ {
		sa := in.Pods[i*size.EndpointsPerSvc].Spec.ServiceAccountName
		for _, tt := range in.TrafficTargets {
			if d := tt.Spec.Destination; d.Namespace == in.Services[i].Namespace && d.Name == sa {
				targets = append(targets, target{
					svc: client.ObjectKeyFromObject(&in.Services[i]), slice: client.ObjectKey{Namespace: in.EndpointSlices[i].Namespace, Name: in.EndpointSlices[i].Name},
					caller: ir.Identity{Namespace: tt.Spec.Sources[0].Namespace, ServiceAccount: tt.Spec.Sources[0].Name},
				})
				break
			}
		}
	}
	if len(targets) < 1+changes+batch {
		return nil, fmt.Errorf("B2e: %d services behind an HTTPRoute have a caller, %d changes need as many", len(targets), 1+changes+batch)
	}
	mesh := types.NamespacedName{Namespace: in.MeshConfig.Namespace, Name: in.MeshConfig.Name}
	t0 := time.Now()
	if err := load(ctx, c, in); err != nil {
		return nil, fmt.Errorf("loading the world: %w", err)
	}
	loaded := time.Since(t0)
	in = nil // what this process holds from here is the controller's (and its clients')
	runtime.GC()
	debug.FreeOSMemory()

	cpu0 := cpuSeconds()
	t0 = time.Now()
	run, err := startMember(ctx, sb.Clusters[0].Config, controllers.Options{
		Name:       "cluster-0",
		MeshConfig: mesh,
	})
	if err != nil {
		return nil, err
	}
	for !run.Supervisor.Ready() {
		if time.Since(t0) > 10*time.Minute {
			return nil, fmt.Errorf("B2e: nothing published within 10 minutes")
		}
		time.Sleep(50 * time.Millisecond)
	}
	firstPublish := time.Since(t0)
	// The controller's own writes after its first publish (the HTTPRoutes' statuses) are
	// published too; the measurement starts once it is idle for 5 s.
	for since := time.Now(); time.Since(since) < 5*time.Second; time.Sleep(200 * time.Millisecond) {
		if !run.Supervisor.Current().Publisher.Idle() {
			since = time.Now()
		}
		if time.Since(t0) > 20*time.Minute {
			return nil, fmt.Errorf("B2e: the controller did not settle within 20 minutes (publishes %v)", run.Supervisor.Current().Publisher.Publishes())
		}
	}
	settled := time.Since(t0) - 5*time.Second
	synced := &Line{
		Name: "B2e sync: the controller starts on B1's world in a kube-apiserver and publishes it",
		Params: map[string]any{
			"services": size.Services, "endpoints_per_service": size.EndpointsPerSvc, "clusters": size.Clusters, "load_s": loaded.Seconds(),
			"settled_s": settled.Seconds(), "publishes": run.Supervisor.Current().Publisher.Publishes(),
		},
		CoreS: cpuSeconds() - cpu0, HeapInuseMiB: heapInuseMiB(), RSSMiB: rssMiB(),
	}
	synced.percentiles([]time.Duration{firstPublish}) // to the first publish; settled_s: until the controller's own writes are published

	gwConn, gw, err := dialGateway(run)
	if err != nil {
		return nil, err
	}
	defer gwConn.Close()

	watch := func(ctx context.Context, k int) (*edsWatch, error) {
		ns, name := targets[k].svc.Namespace, targets[k].svc.Name
		caller := struct{ Namespace, Name string }{targets[k].caller.Namespace, targets[k].caller.ServiceAccount}
		conn, err := dialXDS(run, caller.Namespace, caller.Name)
		if err != nil {
			return nil, err
		}
		w := &edsWatch{conns: []*grpc.ClientConn{conn}}
		svcKey := ns + "/" + name + ":8080"
		if err := w.open(ctx, conn, wellknown.Sidecar(caller.Namespace, caller.Name).String(), translate.OutboundClusterName(svcKey)); err != nil {
			return nil, err
		}
		if err := w.open(ctx, gwConn, gw.String(), translate.GatewayClusterName(svcKey)); err != nil {
			return nil, err
		}
		return w, nil
	}
	move := func(ctx context.Context, k, n int) ([]byte, error) {
		s := &discoveryv1.EndpointSlice{}
		if err := c.Get(ctx, targets[k].slice, s); err != nil {
			return nil, err
		}
		addr := fmt.Sprintf("10.250.%d.%d", n>>8&255, n&255)
		s.Endpoints[0].Addresses = []string{addr}
		return []byte(addr), c.Update(ctx, s)
	}

	var lines []*Line
	lines = append(lines, synced)
	// One at a time. Change 0 warms up (the client's first update of a kind discovers its REST
	// mapping): it is not counted.
	var lat []time.Duration
	cpu0 = cpuSeconds()
	for n := range 1 + changes {
		w, err := watch(ctx, n)
		if err != nil {
			return nil, err
		}
		start := time.Now()
		marker, err := move(ctx, n, n)
		if err != nil {
			return nil, err
		}
		d, err := w.until(marker, start, 30*time.Second)
		w.close()
		if err != nil {
			return nil, fmt.Errorf("B2e change %d: %w", n, err)
		}
		if n > 0 {
			lat = append(lat, d)
		}
	}
	one := &Line{
		Name:   "B2e one EndpointSlice update through kube-apiserver -> delta xDS (sidecar and gateway)",
		Params: map[string]any{"services": size.Services, "endpoints_per_service": size.EndpointsPerSvc, "clusters": size.Clusters, "identities": size.Namespaces * size.AccountsPerNS, "permissive": size.Permissive, "changes": changes},
		CoreS:  cpuSeconds() - cpu0, HeapInuseMiB: heapInuseMiB(), RSSMiB: rssMiB(),
	}
	one.percentiles(lat)
	lines = append(lines, one)

	// A batch at once: the time from the first write until the last client holds its change.
	watches := make([]*edsWatch, batch)
	for k := range batch {
		if watches[k], err = watch(ctx, 1+changes+k); err != nil {
			return nil, err
		}
	}
	cpu0 = cpuSeconds()
	start := time.Now()
	markers := make([][]byte, batch)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for k := range batch {
		g.Go(func() error {
			var err error
			markers[k], err = move(gctx, 1+changes+k, 1<<15+k)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var last time.Duration
	for k, w := range watches {
		d, err := w.until(markers[k], start, 30*time.Second)
		w.close()
		if err != nil {
			return nil, fmt.Errorf("B2e batch change %d: %w", k, err)
		}
		last = max(last, d)
	}
	b := &Line{
		Name:   fmt.Sprintf("B2e %d EndpointSlice updates at once through kube-apiserver -> delta xDS (sidecar and gateway)", batch),
		Params: map[string]any{"services": size.Services, "endpoints_per_service": size.EndpointsPerSvc, "identities": size.Namespaces * size.AccountsPerNS, "permissive": size.Permissive, "batch": batch, "publishes": run.Supervisor.Current().Publisher.Publishes()},
		CoreS:  cpuSeconds() - cpu0, HeapInuseMiB: heapInuseMiB(), RSSMiB: rssMiB(),
	}
	b.percentiles([]time.Duration{last})
	lines = append(lines, b)
	if f := os.Getenv(B2eHeapProfileEnv); f != "" {
		if err := writeHeapProfile(f); err != nil {
			return nil, err
		}
	}
	return lines, nil
}

// B2eHeapProfileEnv names a file for the heap profile of B2e's process after its updates (the
// controller and the clients running, the loaded world freed).
const B2eHeapProfileEnv = "CROSSGATE_B2E_HEAPPROFILE"

func writeHeapProfile(name string) error {
	runtime.GC()
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// edsWatch is delta EDS streams, each subscribed to one resource, reporting when every one holds
// a version containing a marker.
type edsWatch struct {
	conns   []*grpc.ClientConn
	cancels []context.CancelFunc
	got     []chan []byte
}

func (w *edsWatch) open(ctx context.Context, conn *grpc.ClientConn, node, resource string) error {
	ctx, cancel := context.WithCancel(ctx)
	w.cancels = append(w.cancels, cancel)
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return err
	}
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: node}, TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{resource}}); err != nil {
		return err
	}
	first, err := st.Recv() // the current version
	if err != nil {
		return fmt.Errorf("%s subscribing to %s: %w", node, resource, err)
	}
	if len(first.GetResources()) == 0 {
		return fmt.Errorf("%s: %s is not served", node, resource)
	}
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResponseNonce: first.GetNonce()}); err != nil {
		return err
	}
	ch := make(chan []byte, 16)
	w.got = append(w.got, ch)
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				return
			}
			_ = st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResponseNonce: r.GetNonce()})
			for _, res := range r.GetResources() {
				select {
				case ch <- res.GetResource().GetValue():
				default:
				}
			}
		}
	}()
	return nil
}

// until waits until every stream holds a version containing marker, and returns the time since
// start.
func (w *edsWatch) until(marker []byte, start time.Time, within time.Duration) (time.Duration, error) {
	deadline := time.After(within)
	var last time.Duration
	for i, ch := range w.got {
		for done := false; !done; {
			select {
			case b := <-ch:
				if bytes.Contains(b, marker) {
					done = true
					last = max(last, time.Since(start))
				}
			case <-deadline:
				return 0, fmt.Errorf("stream %d did not get %s within %v", i, marker, within)
			}
		}
	}
	return last, nil
}

func (w *edsWatch) close() {
	for _, c := range w.cancels {
		c()
	}
	for _, c := range w.conns {
		_ = c.Close()
	}
}

// load writes a world into an API server, each object as given; the Pods are one per service
// (its slice's endpoints all point to it).
func load(ctx context.Context, c client.Client, in *translator.Input) error {
	var first, rest []client.Object
	first = append(first, &corev1.Namespace{})
	first[0].SetName(wellknown.SystemNamespace)
	for i := range in.Namespaces {
		first = append(first, &in.Namespaces[i])
	}
	second := []client.Object{in.MeshConfig}
	for i := range in.ServiceAccounts {
		second = append(second, &in.ServiceAccounts[i])
	}
	for i := range in.GatewayClasses {
		rest = append(rest, &in.GatewayClasses[i])
	}
	for i := range in.Gateways {
		rest = append(rest, &in.Gateways[i])
	}
	for i := range in.Services {
		s := &in.Services[i]
		s.Spec.ClusterIP, s.Spec.ClusterIPs = "", nil // the API server's to allocate (10.96.0.1 is its own)
		rest = append(rest, s)
	}
	for i := range in.EndpointSlices {
		s := in.EndpointSlices[i].Object()
		pod := s.Endpoints[0].TargetRef.Name
		for e := range s.Endpoints {
			s.Endpoints[e].TargetRef.Name = pod
		}
		rest = append(rest, s)
	}
	seen := map[string]bool{}
	for i := range in.Pods {
		p := &in.Pods[i]
		svc := p.Name[:strings.LastIndexByte(p.Name, '-')]
		if seen[p.Namespace+"/"+svc] {
			continue
		}
		seen[p.Namespace+"/"+svc] = true
		p.Spec.Containers = []corev1.Container{{Name: "app", Image: "app"}}
		rest = append(rest, p)
	}
	for i := range in.GlobalTrafficPolicies {
		rest = append(rest, &in.GlobalTrafficPolicies[i])
	}
	for i := range in.HTTPRouteGroups {
		rest = append(rest, &in.HTTPRouteGroups[i])
	}
	for i := range in.TrafficTargets {
		rest = append(rest, &in.TrafficTargets[i])
	}
	for i := range in.HTTPRoutes {
		rest = append(rest, &in.HTTPRoutes[i])
	}
	create := func(objs []client.Object, created func(client.Object)) error {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(16)
		for _, o := range objs {
			g.Go(func() error {
				o := o.DeepCopyObject().(client.Object)
				if err := c.Create(gctx, o); err != nil {
					return fmt.Errorf("%T %s/%s: %w", o, o.GetNamespace(), o.GetName(), err)
				}
				created(o)
				return nil
			})
		}
		return g.Wait()
	}
	var mu sync.Mutex
	ips := map[string][]string{}
	for _, objs := range [][]client.Object{first, second, rest} {
		err := create(objs, func(o client.Object) {
			if s, ok := o.(*corev1.Service); ok {
				mu.Lock()
				ips[s.Namespace+"/"+s.Name] = s.Spec.ClusterIPs
				mu.Unlock()
			}
		})
		if err != nil {
			return err
		}
	}
	// The imports as the member's import controller leaves them (spec.ips: the local Service's
	// ClusterIPs), so that it has nothing to write: B2e measures a settled cluster.
	var imports []client.Object
	for i := range in.ServiceImports {
		imp := &in.ServiceImports[i]
		imp.Spec.IPs = ips[imp.Namespace+"/"+imp.Name]
		imports = append(imports, imp)
	}
	return create(imports, func(client.Object) {})
}
