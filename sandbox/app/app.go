// Package app is the sandbox's workload: a process standing in for one pod of a Deployment. It
// registers a Pod (labels, ServiceAccount, a pod IP 10.(240+i).0.x standing for the loopback
// address 127.i.0.x) in its cluster, so Services select it and crossgate sees its identity, and
// answers every request with its message ("Hi, I am from cluster-1 and controlled by mesh!").
//
// A pod runs one of three ways, as in a cluster with crossgate:
//   - with a sidecar (the default, given the controller's xDS address): the application answers
//     HTTP/1.1, and gRPC (grpc.testing.TestService) over h2c, on a private address, and a stand-in
//     for its Envoy sidecar takes the connections arriving at the pod's address (mTLS from mesh
//     callers, plaintext from others) and hands them over as the sidecar's inbound
//     configuration says (RBAC, protocol);
//   - proxyless: grpc-go's xDS server serves gRPC on the pod's address itself, with the mTLS and
//     RBAC of its xDS configuration, and nothing else;
//   - without the mesh: the application answers on the pod's address directly.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
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
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/crossgate-io/crossgate/sandbox"
	"github.com/crossgate-io/crossgate/sandbox/grpcxds"
	"github.com/crossgate-io/crossgate/sandbox/kubelet"
	"github.com/crossgate-io/crossgate/sandbox/network"
	"github.com/crossgate-io/crossgate/sandbox/proxy"
	"github.com/crossgate-io/crossgate/wellknown"
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
	// Port is the application's port (the Service's targetPort).
	Port int
	// Message answers every request; "Hi, I am from <cluster> and controlled by mesh!" when empty.
	Message string
	// XDS is the cluster controller's xDS address: the pod then runs with a sidecar, or, with
	// Proxyless, as a proxyless gRPC server. Empty: outside the mesh. Dir holds what the pod
	// writes (grpc-go's bootstrap and certificate files).
	XDS, Dir  string
	Proxyless bool
	Log       *slog.Logger
}

// App is a running app.
type App struct {
	// Addr is the pod's address (where callers connect); AppAddr where the application itself
	// answers (behind its sidecar, or the same).
	Addr, AppAddr string
	Pod           *corev1.Pod
	c             client.Client
	servers       []func()
	done          chan struct{} // closed when the application's server ends; err says why
	err           error
}

// Start registers the app's Pod and starts answering.
func Start(ctx context.Context, o Options) (*App, error) {
	if o.Message == "" {
		o.Message = "Hi, I am from " + o.Cluster + " and controlled by mesh!"
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Proxyless && o.XDS == "" {
		return nil, errors.New("a proxyless app needs the controller's xDS address")
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
	a := &App{Addr: ln.Addr().String(), AppAddr: ln.Addr().String(), c: c, done: make(chan struct{})}
	ip := network.PodIP(o.ClusterIndex, host) // the API server refuses loopback endpoints
	fail := func(err error) (*App, error) {
		_ = ln.Close()
		a.stopServers()
		if a.Pod != nil {
			_ = c.Delete(context.Background(), a.Pod, client.GracePeriodSeconds(0))
		}
		return nil, err
	}

	// The application, behind a sidecar on a private address of the pod.
	appLn := ln
	sidecar := o.XDS != "" && !o.Proxyless
	if sidecar {
		if appLn, err = net.Listen("tcp", network.AppAddress(o.ClusterIndex, host, 0)); err != nil {
			return fail(err)
		}
		a.AppAddr = appLn.Addr().String()
	}

	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: o.Namespace, Name: o.ServiceAccount}}
	if err := c.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		return fail(fmt.Errorf("ServiceAccount %s/%s: %w", o.Namespace, o.ServiceAccount, err))
	}
	annotations := map[string]string{kubelet.AppAnnotation: a.AppAddr}
	if o.Proxyless {
		annotations[wellknown.ProxylessAnnotation] = "true"
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: o.Namespace, Name: o.Name + "-" + strconv.Itoa(host), Labels: o.Labels,
			Annotations: annotations,
		},
		Spec: corev1.PodSpec{ // the pod stands for this process; nothing runs the container
			ServiceAccountName: o.ServiceAccount, NodeName: "sandbox-" + o.Cluster,
			Containers: []corev1.Container{{
				Name: "app", Image: "crossgate.io/sandbox-app",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: int32(o.Port)}},
			}},
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
		return fail(fmt.Errorf("registering the Pod: %w", err))
	}
	a.Pod = pod

	msg := []byte(o.Message + "\n")
	switch {
	case o.Proxyless:
		if err := a.serveProxyless(ctx, o, ln, ip); err != nil {
			return fail(err)
		}
	default:
		a.serveApp(appLn, o.Message, msg)
		if sidecar {
			// Like kubelet with a native sidecar, the pod is Ready once its sidecar has its
			// configuration.
			if err := a.startSidecar(ctx, o, ln, ip); err != nil {
				return fail(err)
			}
		}
	}

	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return err
		}
		pod.Status = corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}, HostIP: "127.0.0.1",
			StartTime: ptrTime(metav1.Now()),
			ContainerStatuses: []corev1.ContainerStatus{{
				Name: "app", Image: "crossgate.io/sandbox-app", Started: ptrBool(true),
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}},
			}},
		}
		kubelet.SetPodReady(pod, true)
		return c.Status().Update(ctx, pod)
	})
	if err != nil {
		return fail(fmt.Errorf("the Pod's status: %w", err))
	}
	mode := "without the mesh"
	switch {
	case o.Proxyless:
		mode = "proxyless"
	case sidecar:
		mode = "with a sidecar"
	}
	o.Log.Info("app up", "cluster", o.Cluster, "pod", o.Namespace+"/"+pod.Name, "address", a.Addr, "serviceAccount", o.ServiceAccount, "mode", mode)
	return a, nil
}

func ptrTime(t metav1.Time) *metav1.Time { return &t }
func ptrBool(b bool) *bool               { return &b }

// serveApp runs the application: HTTP/1.1 answering the message, and gRPC over h2c.
func (a *App) serveApp(ln net.Listener, hostname string, msg []byte) {
	gs := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(gs, &testService{hostname: hostname})
	var ps http.Protocols
	ps.SetHTTP1(true)
	ps.SetUnencryptedHTTP2(true)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Protocols: &ps, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			gs.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(msg)
	})}
	a.servers = append(a.servers, func() { _ = srv.Close(); gs.Stop() })
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			a.err = err
		}
		close(a.done)
	}()
}

// startSidecar runs the stand-in for the pod's Envoy sidecar on the pod's address.
func (a *App) startSidecar(ctx context.Context, o Options, ln net.Listener, podIP string) error {
	ca, err := grpcxds.RootCA(ctx, o.Config)
	if err != nil {
		return err
	}
	cert, err := ca.Issue(o.Namespace, o.ServiceAccount, 24*time.Hour)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithCancel(context.Background())
	p, err := proxy.Start(pctx, proxy.Options{
		Role: proxy.Inbound, PodIP: podIP, Namespace: o.Namespace, AppAddress: a.AppAddr,
		Log: o.Log.With("sidecar", o.Namespace+"/"+o.Name),
		XDS: proxy.XDSOptions{Address: o.XDS, Node: wellknown.Sidecar(o.Namespace, o.ServiceAccount).String(), Certificate: cert},
	})
	if err != nil {
		cancel()
		return err
	}
	tln, err := p.Listener(ln)
	if err != nil {
		cancel()
		return err
	}
	srv := p.Server()
	a.servers = append(a.servers, func() { _ = srv.Close(); cancel() })
	go func() { _ = srv.Serve(tln) }()
	select {
	case <-p.Ready():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(30 * time.Second):
		return fmt.Errorf("the sidecar of %s/%s got no configuration from %s within 30s", o.Namespace, o.Name, o.XDS)
	}
}

// serveProxyless serves grpc.testing.TestService on the pod's address as an xDS-enabled grpc-go
// server, whose listener is named after the pod IP.
func (a *App) serveProxyless(ctx context.Context, o Options, ln net.Listener, podIP string) error {
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
	a.servers = append(a.servers, srv.Stop)
	go func() {
		if err := srv.Serve(podAddrListener{Listener: ln, pod: &net.TCPAddr{IP: net.ParseIP(podIP), Port: o.Port}}); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			a.err = err
		}
		close(a.done)
	}()
	return nil
}

func (a *App) stopServers() {
	for i := len(a.servers) - 1; i >= 0; i-- {
		a.servers[i]()
	}
	a.servers = nil
}

// Stop stops answering and deletes the Pod.
func (a *App) Stop(ctx context.Context) error {
	a.stopServers()
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

type testService struct {
	testgrpc.UnimplementedTestServiceServer
	hostname string
}

func (s *testService) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{Hostname: s.hostname}, nil
}
