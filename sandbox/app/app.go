// Package app is the sandbox's workload: a process standing in for one pod of a Deployment. It
// registers a Pod (labels, ServiceAccount, a loopback IP 127.<cluster>.0.x) in its cluster, so
// Services select it and crossgate sees its identity, and answers every HTTP request with its
// message ("Hi, I am from cluster-1 and controlled by mesh!").
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/xds"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/crossgate-io/crossgate/sandbox"
	"github.com/crossgate-io/crossgate/sandbox/grpcxds"
	"github.com/crossgate-io/crossgate/sandbox/network"
	"github.com/crossgate-io/crossgate/translator"
)

// Options describe one app.
type Options struct {
	// Cluster is the cluster's name and ClusterIndex its position in the set (1 for cluster-1):
	// the app's address is 127.<ClusterIndex>.0.x.
	Cluster      string
	ClusterIndex int
	Config       *rest.Config
	// Namespace, Name (the Pod is Name-x), Labels and ServiceAccount are those of the pod the app
	// stands for.
	Namespace, Name, ServiceAccount string
	Labels                          map[string]string
	// Port is the HTTP port (the Service's targetPort).
	Port int
	// Message answers every request; "Hi, I am from <cluster> and controlled by mesh!" when empty.
	Message string
	// XDS, when set, is the cluster controller's xDS address: the app then also serves gRPC
	// (grpc.testing.TestService, UnaryCall answering Message as its hostname) as an
	// xDS-enabled grpc-go server, so crossgate's inbound configuration and RBAC apply to it,
	// with a certificate for its identity written under Dir.
	XDS, Dir string
	Log      *slog.Logger
}

// App is a running app.
type App struct {
	// Addr is where it answers HTTP.
	Addr string
	Pod  *corev1.Pod
	c    client.Client
	srv  *http.Server
	grpc *xds.GRPCServer
	mux  *mux
	done chan struct{} // closed when the server ends; err says why
	err  error
}

// Start registers the app's Pod and starts answering.
func Start(ctx context.Context, o Options) (*App, error) {
	if o.Message == "" {
		o.Message = "Hi, I am from " + o.Cluster + " and controlled by mesh!"
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	c, err := client.New(o.Config, client.Options{Scheme: sandbox.Scheme})
	if err != nil {
		return nil, err
	}
	if err := c.Get(ctx, client.ObjectKey{Name: o.Namespace}, &corev1.Namespace{}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("namespace %s does not exist in %s: create it first (kubectl create namespace %s)", o.Namespace, o.Cluster, o.Namespace)
		}
		return nil, err
	}
	var ln net.Listener
	host := 0
	for h := 2; h < 255 && ln == nil; h++ {
		if l, err := net.Listen("tcp", network.AppAddress(o.ClusterIndex, h, o.Port)); err == nil {
			ln, host = l, h
		}
	}
	if ln == nil {
		return nil, fmt.Errorf("no free loopback address 127.%d.0.x for port %d", o.ClusterIndex, o.Port)
	}
	a := &App{Addr: ln.Addr().String(), c: c, done: make(chan struct{})}
	ip := network.PodIP(o.ClusterIndex, host) // the API server refuses loopback endpoints

	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: o.Namespace, Name: o.ServiceAccount}}
	if err := c.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		_ = ln.Close()
		return nil, fmt.Errorf("ServiceAccount %s/%s: %w", o.Namespace, o.ServiceAccount, err)
	}
	annotations := map[string]string{sandbox.AppAnnotation: a.Addr}
	if o.XDS != "" {
		annotations[translator.ProxylessAnnotation] = "true"
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: o.Namespace, Name: o.Name + "-" + strconv.Itoa(host), Labels: o.Labels,
			Annotations: annotations},
		Spec: corev1.PodSpec{ // the pod stands for this process; nothing runs the container
			ServiceAccountName: o.ServiceAccount, NodeName: "sandbox-" + o.Cluster,
			Containers: []corev1.Container{{Name: "app", Image: "crossgate.io/sandbox-app",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: int32(o.Port)}}}},
		},
	}
	// A pod of that name left by a killed app is replaced.
	_ = c.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name}}, client.GracePeriodSeconds(0))
	for range 50 {
		err = c.Create(ctx, pod)
		if !apierrors.IsAlreadyExists(err) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("registering the Pod: %w", err)
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}, HostIP: "127.0.0.1",
		StartTime: ptrTime(metav1.Now()),
		ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Image: "crossgate.io/sandbox-app", Started: ptrBool(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}}}}
	sandbox.SetPodReady(pod, true)
	if err := c.Status().Update(ctx, pod); err != nil {
		_ = ln.Close()
		_ = c.Delete(ctx, pod)
		return nil, fmt.Errorf("the Pod's status: %w", err)
	}
	a.Pod = pod
	msg := []byte(o.Message + "\n")
	a.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(msg)
	})}
	httpLn := ln
	if o.XDS != "" {
		if err := a.startGRPC(ctx, o, ln, ip); err != nil {
			_ = ln.Close()
			_ = c.Delete(ctx, pod, client.GracePeriodSeconds(0))
			return nil, err
		}
		httpLn = a.mux.http
	}
	go func() {
		if err := a.srv.Serve(httpLn); !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			a.err = err
		}
		close(a.done)
	}()
	o.Log.Info("app up", "cluster", o.Cluster, "pod", o.Namespace+"/"+pod.Name, "address", a.Addr, "serviceAccount", o.ServiceAccount)
	return a, nil
}

func ptrTime(t metav1.Time) *metav1.Time { return &t }
func ptrBool(b bool) *bool               { return &b }

// Stop stops answering and deletes the Pod.
func (a *App) Stop(ctx context.Context) error {
	if a.grpc != nil {
		a.grpc.Stop()
	}
	_ = a.srv.Shutdown(ctx)
	if a.mux != nil {
		_ = a.mux.ln.Close()
	}
	<-a.done
	err := a.err
	if derr := a.c.Delete(ctx, a.Pod, client.GracePeriodSeconds(0)); derr != nil && !apierrors.IsNotFound(derr) {
		err = errors.Join(err, derr)
	}
	return err
}

// Done is closed when the server ends; Err then says why.
func (a *App) Done() <-chan struct{} { return a.done }

// Err is why the server ended, once Done is closed.
func (a *App) Err() error { return a.err }

// startGRPC serves grpc.testing.TestService on the app's port beside HTTP, as an xDS-enabled
// server whose listener is named after the pod IP.
func (a *App) startGRPC(ctx context.Context, o Options, ln net.Listener, podIP string) error {
	ca, err := grpcxds.RootCA(ctx, o.Config)
	if err != nil {
		return err
	}
	boot, err := grpcxds.Bootstrap(ca, o.Dir, o.XDS, o.Namespace, o.ServiceAccount)
	if err != nil {
		return err
	}
	creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		return err
	}
	// The sandbox passes the bootstrap in-process (grpc-go reads its environment variables once,
	// at start): the option is grpc-go's for tests, and the sandbox is one.
	srv, err := xds.NewGRPCServer(grpc.Creds(creds), xds.BootstrapContentsForTesting(boot))
	if err != nil {
		return err
	}
	testgrpc.RegisterTestServiceServer(srv, &testService{hostname: o.Message})
	a.grpc = srv
	a.mux = newMux(ln, &net.TCPAddr{IP: net.ParseIP(podIP), Port: o.Port})
	go func() { _ = srv.Serve(a.mux.grpc) }()
	return nil
}

type testService struct {
	testgrpc.UnimplementedTestServiceServer
	hostname string
}

func (s *testService) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{Hostname: s.hostname}, nil
}
