package bench

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/crossgate-io/crossgate/controllers"
	"github.com/crossgate-io/crossgate/wellknown"
)

// RunB5 is B5: routes HTTPRoutes attached to the cluster's Gateway (backed by 100 Services) in a
// real kube-apiserver, the real controller (app.Run, in this process) and the gateway's delta RDS
// client; then steady churn, perSecond edits of random routes' paths for duration. It reports
// the time from each edit's write until the gateway client holds the edited route (B4 under
// churn), and this process's RSS over the churn: sampled every few seconds, its last value, and
// its slope by least squares (MiB per minute; flat is near zero).
func RunB5(routes int, perSecond float64, duration time.Duration) (*Line, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sb, err := oneCluster(ctx, "cluster-1", false)
	if err != nil {
		return nil, err
	}
	defer sb.Stop()
	c := sb.Clusters[0].Client
	objs := append(gatewayObjects(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}})
	const services = 100
	for s := range services {
		objs = append(objs, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: fmt.Sprintf("svc-%d", s)},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}},
		})
	}
	gwNS := gatewayv1.Namespace(wellknown.SystemNamespace)
	for r := range routes {
		objs = append(objs, &gatewayv1.HTTPRoute{
			ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: fmt.Sprintf("route-%d", r)},
			Spec: gatewayv1.HTTPRouteSpec{
				CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: wellknown.DefaultGatewayName, Namespace: &gwNS}}},
				Rules: []gatewayv1.HTTPRouteRule{{
					Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: ptr(gatewayv1.PathMatchPathPrefix), Value: ptr(fmt.Sprintf("/route-%d/start", r))}}},
					BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{
						Name: gatewayv1.ObjectName(fmt.Sprintf("svc-%d", r%services)), Port: ptr(gatewayv1.PortNumber(8080)),
					}}}},
				}},
			},
		})
	}
	for _, group := range [][]client.Object{{objs[0], objs[3]}, objs[1:3], objs[4:]} {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(16)
		for _, o := range group {
			g.Go(func() error { return c.Create(gctx, o) })
		}
		if err := g.Wait(); err != nil {
			return nil, err
		}
	}
	run, err := startMember(ctx, sb.Clusters[0].Config, controllers.Options{Name: "cluster-1"})
	if err != nil {
		return nil, err
	}
	conn, gw, err := dialGateway(run)
	if err != nil {
		return nil, err
	}
	defer conn.Close()

	// The client: every route configuration it receives is searched for the edits in flight.
	var mu sync.Mutex
	type edit struct {
		marker []byte
		at     time.Time
	}
	inFlight := map[int]edit{} // route -> its latest edit not yet seen (an edit of a route still in flight supersedes it: the controller may publish only the latest)
	superseded := 0
	var lat []time.Duration
	synced := make(chan struct{})
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: gw.String()}, TypeUrl: resourcev3.RouteType}); err != nil {
		return nil, err
	}
	last := []byte(fmt.Sprintf("/route-%d/start", routes-1))
	go func() {
		once := sync.Once{}
		for {
			r, err := st.Recv()
			if err != nil {
				return
			}
			_ = st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.RouteType, ResponseNonce: r.GetNonce()})
			now := time.Now()
			mu.Lock()
			for _, res := range r.GetResources() {
				b := res.GetResource().GetValue()
				if bytes.Contains(b, last) {
					once.Do(func() { close(synced) })
				}
				for r, e := range inFlight {
					if bytes.Contains(b, e.marker) {
						lat = append(lat, now.Sub(e.at))
						delete(inFlight, r)
					}
				}
			}
			mu.Unlock()
		}
	}()
	select {
	case <-synced:
	case <-time.After(5 * time.Minute):
		return nil, fmt.Errorf("B5: the gateway client did not get all %d routes within 5 minutes", routes)
	}

	// The controller's first publish is followed by every route's status write; the churn
	// starts once they are written (each route's status observed its generation).
	for wait := time.Now(); ; time.Sleep(500 * time.Millisecond) {
		var list gatewayv1.HTTPRouteList
		if err := c.List(ctx, &list); err != nil {
			return nil, err
		}
		done := 0
		for _, r := range list.Items {
			if len(r.Status.Parents) > 0 && len(r.Status.Parents[0].Conditions) > 0 && r.Status.Parents[0].Conditions[0].ObservedGeneration == r.Generation {
				done++
			}
		}
		if done == routes {
			break
		}
		if time.Since(wait) > 5*time.Minute {
			return nil, fmt.Errorf("B5: %d of %d routes have their status after 5 minutes", done, routes)
		}
	}
	rng := rand.New(rand.NewPCG(5, 5))
	var rss []float64
	var rssAt []time.Duration
	sample := time.NewTicker(5 * time.Second)
	defer sample.Stop()
	tick := time.NewTicker(time.Duration(float64(time.Second) / perSecond))
	defer tick.Stop()
	cpu0 := cpuSeconds()
	start := time.Now()
	edits := 0
	runtime.GC()
	rss, rssAt = append(rss, rssMiB()), append(rssAt, 0)
	for time.Since(start) < duration {
		select {
		case <-sample.C:
			rss, rssAt = append(rss, rssMiB()), append(rssAt, time.Since(start))
			continue
		case <-tick.C:
		}
		r := rng.IntN(routes)
		path := fmt.Sprintf("/route-%d/e%de", r, edits) // e..e: no edit's marker is a prefix of another's
		route := &gatewayv1.HTTPRoute{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: "bench", Name: fmt.Sprintf("route-%d", r)}, route); err != nil {
			return nil, err
		}
		orig := route.DeepCopy()
		route.Spec.Rules[0].Matches[0].Path.Value = &path
		mu.Lock()
		if _, ok := inFlight[r]; ok {
			superseded++
		}
		inFlight[r] = edit{[]byte(path), time.Now()}
		mu.Unlock()
		// A merge patch of the spec, without the resourceVersion: the controller writes the
		// route's status meanwhile, and an update would conflict with that.
		if err := c.Patch(ctx, route, client.MergeFrom(orig)); err != nil {
			return nil, err
		}
		edits++
	}
	// The last edits arrive.
	for wait := time.Now(); time.Since(wait) < 30*time.Second; time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		n := len(inFlight)
		mu.Unlock()
		if n == 0 {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(inFlight) > 0 {
		return nil, fmt.Errorf("B5: %d of %d edits never reached the gateway client", len(inFlight), edits)
	}
	l := &Line{
		Name: "B5 HTTPRoutes on the Gateway under steady churn: edit -> gateway client, and RSS over time",
		Params: map[string]any{
			"routes": routes, "edits_per_s": perSecond, "duration_s": duration.Seconds(), "edits": edits, "superseded_in_flight": superseded,
			"rss_slope_mib_per_min": slope(rssAt, rss), "rss_first_mib": rss[0], "rss_max_mib": maxOf(rss),
			"publishes": run.Supervisor.Current().Publisher.Publishes(),
		},
		CoreS: cpuSeconds() - cpu0, HeapInuseMiB: heapInuseMiB(), RSSMiB: rssMiB(),
	}
	l.percentiles(lat)
	return l, nil
}

// slope is the least-squares slope of ys over xs, in units of y per minute.
func slope(xs []time.Duration, ys []float64) float64 {
	n := float64(len(xs))
	if n < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for i := range xs {
		x := xs[i].Minutes()
		sx, sy, sxx, sxy = sx+x, sy+ys[i], sxx+x*x, sxy+x*ys[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}

func maxOf(ys []float64) float64 {
	m := 0.0
	for _, y := range ys {
		m = max(m, y)
	}
	return m
}
