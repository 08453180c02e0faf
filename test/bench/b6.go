package bench

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kptr "k8s.io/utils/ptr"

	"github.com/crossgate-io/crossgate/controllers"
)

// RunB6 measures the member controllers' informer footprint: slices EndpointSlices of 10
// endpoints each in a real kube-apiserver, then the controller's EndpointSlice store (the
// informer the publisher reads them from) lists them. It reports the sync time (p50..max are that
// one figure) and the heap it retains per endpoint.
func RunB6(slices int) (*Line, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sb, err := oneCluster(ctx, "cluster-1", true)
	if err != nil {
		return nil, err
	}
	defer sb.Stop()
	c := sb.Clusters[0].Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}}); err != nil {
		return nil, err
	}
	// Create the slices with a few writers in parallel.
	work := make(chan int)
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := range work {
				s := &discoveryv1.EndpointSlice{
					ObjectMeta: metav1.ObjectMeta{
						Namespace: "bench", Name: fmt.Sprintf("svc-%d-abcde", i),
						Labels: map[string]string{discoveryv1.LabelServiceName: fmt.Sprintf("svc-%d", i), discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"},
					},
					AddressType: discoveryv1.AddressTypeIPv4,
					Ports:       []discoveryv1.EndpointPort{{Name: kptr.To("http"), Port: kptr.To(int32(8080)), Protocol: kptr.To(corev1.ProtocolTCP)}},
				}
				for j := range 10 {
					s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
						Addresses:  []string{fmt.Sprintf("10.%d.%d.%d", 1+(i*10+j)>>16, ((i*10+j)>>8)&255, (i*10+j)&255)},
						Conditions: discoveryv1.EndpointConditions{Ready: kptr.To(true), Serving: kptr.To(true), Terminating: kptr.To(false)},
						TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "bench", Name: fmt.Sprintf("svc-%d-pod-%d", i, j), UID: "0b6f3a52-2c6e-4f4e-9d3c-000000000000"},
						NodeName:   kptr.To(fmt.Sprintf("node-%d", j)),
					})
				}
				if err := c.Create(ctx, s); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for i := range slices {
		select {
		case work <- i:
		case err := <-errs:
			close(work)
			wg.Wait()
			return nil, err
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return nil, err
	default:
	}

	before := heapBytes()
	start := time.Now()
	store := controllers.NewEndpointSliceStore()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- store.Run(runCtx, sb.Clusters[0].Config, logr.Discard()) }()
	defer func() { stop(); <-done }()
	if !store.WaitSynced(ctx) {
		return nil, fmt.Errorf("B6: the store did not sync")
	}
	synced := time.Since(start)
	if n := store.Len(); n != slices {
		return nil, fmt.Errorf("B6: the store holds %d slices, want %d", n, slices)
	}
	retained := heapBytes() - before
	l := &Line{Name: "B6 informer footprint: EndpointSlices x 10 endpoints, in the controller's EndpointSlice store", Params: map[string]any{
		"slices": slices, "endpoints": slices * 10,
		"retained_bytes_per_endpoint": int(retained / float64(slices*10)),
	}}
	l.percentiles([]time.Duration{synced})
	l.HeapInuseMiB, l.RSSMiB = heapInuseMiB(), rssMiB()
	runtime.KeepAlive(store)
	return l, nil
}

// heapBytes is the heap in use after two collections.
func heapBytes() float64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapInuse)
}
