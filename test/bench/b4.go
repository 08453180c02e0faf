package bench

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/controllers"
	"github.com/crossgate-io/crossgate/translator"
)

// RunB4 measures an edit through a real kube-apiserver until every one of clients delta-xDS
// clients (the gateway's) holds the new route: one line for an HTTPRoute edit, one for a
// ServiceExport edit (which goes through the generated HTTPRoute: one more API round trip).
func RunB4(clients, edits int, quiet time.Duration) ([]*Line, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sb, err := oneCluster(ctx, "cluster-1", false)
	if err != nil {
		return nil, err
	}
	defer sb.Stop()
	c := sb.Clusters[0].Client
	port := gatewayv1.PortNumber(8080)
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "crossgate-system"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}},
		&gatewayv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "crossgate"}, Spec: gatewayv1.GatewayClassSpec{ControllerName: translator.ControllerName}},
		&gatewayv1.Gateway{
			ObjectMeta: metav1.ObjectMeta{Namespace: "crossgate-system", Name: "crossgate-gateway"},
			Spec:       gatewayv1.GatewaySpec{GatewayClassName: "crossgate", Listeners: translator.GatewayListeners(80)},
		},
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "web"},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 8080, TargetPort: intstr.FromInt32(8080)}}},
		},
		&flomeshv1alpha1.ServiceExport{
			ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "web"},
			Spec:       flomeshv1alpha1.ServiceExportSpec{Rules: []flomeshv1alpha1.ServiceExportRule{{PortNumber: 8080, Path: "/export-0-end", PathType: flomeshv1alpha1.PathMatchPrefix}}},
		},
		&gatewayv1.HTTPRoute{
			ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "edited"},
			Spec: gatewayv1.HTTPRouteSpec{
				CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "crossgate-gateway", Namespace: ptr(gatewayv1.Namespace("crossgate-system"))}}},
				Rules: []gatewayv1.HTTPRouteRule{{
					Matches:     []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: ptr(gatewayv1.PathMatchPathPrefix), Value: ptr("/route-0-end")}}},
					BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: "web", Port: &port}}}},
				}},
			},
		},
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			return nil, err
		}
	}
	run, err := startMember(ctx, sb.Clusters[0].Config, controllers.Options{Name: "cluster-1", Quiet: quiet})
	if err != nil {
		return nil, err
	}
	conn, gw, err := dialGateway(run)
	if err != nil {
		return nil, err
	}
	defer conn.Close()

	// Each client reports when it first holds a route configuration containing the marker.
	var mu sync.Mutex
	marker := []byte("\x00 nothing yet")
	var editAt time.Time
	seen := make([]bool, clients)
	arrivals := make(chan time.Duration, clients)
	ready := make(chan struct{}, clients)
	for i := range clients {
		st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
		if err != nil {
			return nil, err
		}
		node := &corev3.Node{Id: gw.String()}
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.RouteType}); err != nil {
			return nil, err
		}
		go func() {
			first := true
			for {
				r, err := st.Recv()
				if err != nil {
					return
				}
				_ = st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.RouteType, ResponseNonce: r.GetNonce()})
				if first {
					first = false
					ready <- struct{}{}
				}
				mu.Lock()
				for _, res := range r.GetResources() {
					if !seen[i] && bytes.Contains(res.GetResource().GetValue(), marker) {
						seen[i] = true
						arrivals <- time.Since(editAt)
					}
				}
				mu.Unlock()
			}
		}()
	}
	for range clients {
		select {
		case <-ready:
		case <-time.After(30 * time.Second):
			return nil, fmt.Errorf("B4: the clients did not receive the gateway's routes")
		}
	}
	var out []*Line
	for _, kind := range []string{"HTTPRoute", "ServiceExport"} {
		var lat []time.Duration
		cpu0 := cpuSeconds()
		// Edit 0 warms up (the bench client's first request of a kind discovers its REST
		// mapping, and the first edit of a kind takes ~60 ms): it is not counted.
		for i := 0; i <= edits; i++ {
			var path string
			mu.Lock()
			if kind == "HTTPRoute" {
				path = "/route-" + strconv.Itoa(i) + "-edit"
			} else {
				path = "/export-" + strconv.Itoa(i) + "-edit"
			}
			marker = []byte(path)
			clear(seen)
			editAt = time.Now()
			mu.Unlock()
			var err error
			if kind == "HTTPRoute" {
				err = editRoute(ctx, c, path)
			} else {
				err = editExport(ctx, c, path)
			}
			if err != nil {
				return nil, err
			}
			for range clients {
				select {
				case d := <-arrivals:
					if i > 0 {
						lat = append(lat, d)
					}
				case <-time.After(10 * time.Second):
					return nil, fmt.Errorf("B4: %s edit %d did not reach every client within 10s", kind, i)
				}
			}
			time.Sleep(50 * time.Millisecond) // idle between edits
		}
		l := &Line{Name: "B4 " + kind + " edit through kube-apiserver -> xDS at clients", Params: map[string]any{
			"clients": clients, "edits": edits, "debounce_quiet_ms": 10,
		}}
		l.percentiles(lat)
		l.CoreS = cpuSeconds() - cpu0
		l.HeapInuseMiB, l.RSSMiB = heapInuseMiB(), rssMiB()
		out = append(out, l)
	}
	return out, nil
}

// editRoute and editExport edit as a user's client does: the controller writes the object's
// status after each edit, which may land between the Get and the Update, so a conflict is
// read again and retried (the time counts from before the first try).
func editRoute(ctx context.Context, c client.Client, path string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		r := &gatewayv1.HTTPRoute{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: "bench", Name: "edited"}, r); err != nil {
			return err
		}
		r.Spec.Rules[0].Matches[0].Path.Value = &path
		return c.Update(ctx, r)
	})
}

func editExport(ctx context.Context, c client.Client, path string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		e := &flomeshv1alpha1.ServiceExport{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: "bench", Name: "web"}, e); err != nil {
			return err
		}
		e.Spec.Rules[0].Path = path
		return c.Update(ctx, e)
	})
}
