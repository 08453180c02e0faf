//go:build integration

package sandbox

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/crossgate-io/crossgate/sandbox/network"
)

// The workloads controller lists a sandbox Pod in its Services' EndpointSlices, marks it unready
// once its address stops answering, and deletes a Service's slice with the Service.
func TestWorkloads(t *testing.T) {
	sb := StartForTest(t, "cluster-1")
	c := sb.Clusters[0].Client
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		if err := RunWorkloads(ctx, sb.Clusters[0].Config, 100*time.Millisecond, slog.New(slog.NewTextHandler(os.Stderr, nil))); err != nil {
			t.Error(err)
		}
	}()
	ln, err := net.Listen("tcp", network.AppAddress(1, 2, 0))
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "web"}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "default"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "web"}, Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt(addr.Port)}},
		}},
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "web", Name: "web-2", Labels: map[string]string{"app": "web"},
			Annotations: map[string]string{AppAnnotation: addr.String()},
		},
		Spec: corev1.PodSpec{NodeName: "sandbox", Containers: []corev1.Container{{Name: "app", Image: "app"}}},
	}
	if err := c.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	podIP := network.PodIP(1, 2)
	if network.Loopback(podIP) != addr.IP.String() || network.LoopbackAddr(podIP+":80") != addr.IP.String()+":80" || network.Loopback("10.96.0.1") != "10.96.0.1" {
		t.Fatalf("the sandbox network maps %s to %s", podIP, network.Loopback(podIP))
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: podIP}
	SetPodReady(pod, true)
	if err := c.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	endpoint := func(ready bool) func() error {
		return func() error {
			var s discoveryv1.EndpointSlice
			if err := c.Get(ctx, client.ObjectKey{Namespace: "web", Name: "web-sandbox"}, &s); err != nil {
				return err
			}
			if len(s.Endpoints) != 1 || s.Endpoints[0].Addresses[0] != podIP || *s.Endpoints[0].Conditions.Ready != ready ||
				*s.Ports[0].Port != int32(addr.Port) || s.Endpoints[0].TargetRef.Name != "web-2" {
				return errorf("slice %+v", s.Endpoints)
			}
			return nil
		}
	}
	poll(t, 5*time.Second, "the pod's endpoint, ready", endpoint(true))
	_ = ln.Close()
	poll(t, 2*time.Second, "the endpoint unready once the app stops answering", endpoint(false))
	if err := c.Delete(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "web"}}); err != nil {
		t.Fatal(err)
	}
	poll(t, 5*time.Second, "the slice gone with its Service", func() error {
		err := c.Get(ctx, client.ObjectKey{Namespace: "web", Name: "web-sandbox"}, &discoveryv1.EndpointSlice{})
		if err == nil {
			return errorf("still there")
		}
		return client.IgnoreNotFound(err)
	})

	// A Pod whose app answers but which has no IP is never Ready; a Pod deleted gracefully (as
	// kubectl does) whose app has stopped is not left Terminating: the prober confirms it.
	ln2, err := net.Listen("tcp", network.AppAddress(1, 3, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	noIP := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "no-ip", Annotations: map[string]string{AppAnnotation: ln2.Addr().String()}},
		Spec:       corev1.PodSpec{NodeName: "sandbox", Containers: []corev1.Container{{Name: "app", Image: "app"}}},
	}
	if err := c.Create(ctx, noIP); err != nil {
		t.Fatal(err)
	}
	noIP.Status = corev1.PodStatus{Phase: corev1.PodRunning}
	SetPodReady(noIP, true)
	if err := c.Status().Update(ctx, noIP); err != nil {
		t.Fatal(err)
	}
	poll(t, 5*time.Second, "a Pod without an IP unready", func() error {
		var p corev1.Pod
		if err := c.Get(ctx, client.ObjectKeyFromObject(noIP), &p); err != nil {
			return err
		}
		if podReady(&p) {
			return errorf("Ready without an IP")
		}
		return nil
	})
	if err := c.Delete(ctx, pod); err != nil { // graceful, as kubectl delete
		t.Fatal(err)
	}
	poll(t, 5*time.Second, "the deleted Pod of a stopped app gone", func() error {
		err := c.Get(ctx, client.ObjectKeyFromObject(pod), &corev1.Pod{})
		if err == nil {
			return errorf("still Terminating")
		}
		return client.IgnoreNotFound(err)
	})
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

func poll(t *testing.T, within time.Duration, what string, cond func() error) {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < within {
		if err = cond(); err == nil {
			t.Logf("%s after %v", what, time.Since(start))
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v: %v", what, within, err)
}
