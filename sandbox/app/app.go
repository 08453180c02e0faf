// Package app is the sandbox's workload: the process the sandbox node runs for the containers of
// the sandbox app image (sandbox.AppImage). It answers every request with its message ("Hi, I am from
// cluster-1 and controlled by mesh!") over HTTP/1.1, and grpc.testing.TestService over h2c.
//
// A pod of the image runs one of three ways, as in a cluster with crossgate:
//   - with a sidecar (ModeSidecar): the application answers on a private address of the pod,
//     and a stand-in for its Envoy sidecar takes the connections arriving at the pod's address
//     (mTLS from mesh callers, plaintext from others) and hands them over as the sidecar's
//     inbound configuration says (RBAC, protocol). The stand-in reads the same bootstrap and
//     identity Secret that crossgate's injector mounts into an Envoy sidecar;
//   - proxyless (ModeProxyless): grpc-go's xDS server serves gRPC on the pod's address itself,
//     with the mTLS and RBAC of its xDS configuration, its certificate read from the mounted
//     identity Secret by grpc-go's file_watcher provider;
//   - without the mesh (ModeNone): the application answers on the pod's address directly.
//
// Deployment renders the Deployment that `crossgate sandbox app` applies; RunContainer is the
// image's entrypoint.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/xds"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/crossgate-io/crossgate/dataplane"
	"github.com/crossgate-io/crossgate/sandbox"
	"github.com/crossgate-io/crossgate/sandbox/grpcxds"
	"github.com/crossgate-io/crossgate/sandbox/proxy"
	"github.com/crossgate-io/crossgate/wellknown"
	"github.com/crossgate-io/crossgate/xds/identity"
)

// Mode is how a pod of the app takes part in the mesh.
type Mode string

const (
	ModeSidecar   Mode = "sidecar"
	ModeProxyless Mode = "proxyless"
	ModeNone      Mode = "none"
)

// Modes are the valid modes.
var Modes = []Mode{ModeSidecar, ModeProxyless, ModeNone}

// The environment a container of the image reads besides the node's (SANDBOX_POD_ADDRESS,
// SANDBOX_MOUNTS): the Deployment sets them from the downward API.
const (
	PodNameEnv        = "POD_NAME"
	PodIPEnv          = "POD_IP"
	PodNamespaceEnv   = "POD_NAMESPACE"
	ServiceAccountEnv = "POD_SERVICE_ACCOUNT"
	podAddressEnv     = "SANDBOX_POD_ADDRESS"
)

// DeploymentOptions describe an app's Deployment.
type DeploymentOptions struct {
	Namespace, Name, ServiceAccount string
	// Labels select its pods (the Services' selector).
	Labels map[string]string
	// Port is the application's port (the Service's targetPort).
	Port     int
	Message  string
	Mode     Mode
	Replicas int32
}

// Deployment is the app's Deployment: pods of sandbox.AppImage answering Message on Port, as ServiceAccount,
// in the given mode; in the mesh they mount the bootstrap ConfigMap and the identity Secret that
// crossgate keeps in every namespace added to the mesh, at the paths an injected sidecar has
// them.
func Deployment(o DeploymentOptions) *appsv1.Deployment {
	fromField := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	c := corev1.Container{
		Name: "app", Image: sandbox.AppImage,
		Args: []string{"--port=" + strconv.Itoa(o.Port), "--message=" + o.Message, "--mode=" + string(o.Mode)},
		Env: []corev1.EnvVar{
			fromField(PodNameEnv, "metadata.name"), fromField(PodIPEnv, "status.podIP"), fromField(PodNamespaceEnv, "metadata.namespace"),
			fromField(ServiceAccountEnv, "spec.serviceAccountName"),
		},
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: int32(o.Port)}},
		// The application takes connections once it (and its sidecar) is serving.
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt(o.Port)}},
			PeriodSeconds: 1,
		},
	}
	spec := corev1.PodSpec{ServiceAccountName: o.ServiceAccount, AutomountServiceAccountToken: ptr.To(false)}
	annotations := map[string]string{}
	if o.Mode == ModeProxyless {
		annotations[wellknown.ProxylessAnnotation] = "true"
	}
	if o.Mode != ModeNone {
		c.VolumeMounts = []corev1.VolumeMount{
			{Name: "crossgate-bootstrap", MountPath: dataplane.BootstrapDir, ReadOnly: true},
			{Name: "crossgate-identity", MountPath: dataplane.IdentityDir, ReadOnly: true},
		}
		spec.Volumes = []corev1.Volume{
			{Name: "crossgate-bootstrap", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: dataplane.BootstrapConfigMap},
			}}},
			{Name: "crossgate-identity", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName: dataplane.IdentitySecretName(o.ServiceAccount),
			}}},
		}
	}
	spec.Containers = []corev1.Container{c}
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Namespace: o.Namespace, Name: o.Name, Labels: o.Labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(max(o.Replicas, 1)),
			Selector: &metav1.LabelSelector{MatchLabels: o.Labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: o.Labels, Annotations: annotations},
				Spec:       spec,
			},
		},
	}
}

// Options describe one running pod of the app.
type Options struct {
	// Address is the pod's loopback address, which the node gives (the pod IP stands for it);
	// PodIP is the pod IP, and Name the Pod's.
	Address, PodIP, Name      string
	Namespace, ServiceAccount string
	Port                      int
	Message                   string
	Mode                      Mode
	// XDS is the controller's xDS address and Certificate the pod's identity (ModeSidecar);
	// CertFiles are the identity's certificate, key and CA files (ModeProxyless).
	XDS         string
	Certificate *identity.Certificate
	CertFiles   grpcxds.Files
	Log         *slog.Logger
}

// RunContainer is the entrypoint of sandbox.AppImage as the sandbox node runs it: --port, --message and
// --mode on the command line, the pod's address, IP, namespace and ServiceAccount in the
// environment, and, in the mesh, the bootstrap and identity mounted as an injected sidecar has
// them. It serves until ctx ends.
func RunContainer(ctx context.Context, args []string, getenv func(string) string, log *slog.Logger) error {
	fs := flag.NewFlagSet("app", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	port := fs.Int("port", 8080, "")
	message := fs.String("message", "", "")
	mode := fs.String("mode", string(ModeSidecar), "")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("the app's command line: %w", err)
	}
	o := Options{
		Address: getenv(podAddressEnv), PodIP: getenv(PodIPEnv), Name: getenv(PodNameEnv), Namespace: getenv(PodNamespaceEnv),
		ServiceAccount: getenv(ServiceAccountEnv), Port: *port, Message: *message, Mode: Mode(*mode), Log: log,
	}
	switch {
	case net.ParseIP(o.Address) == nil:
		return fmt.Errorf("%s %q: the sandbox node gives the pod's address", podAddressEnv, o.Address)
	case net.ParseIP(o.PodIP) == nil, o.Namespace == "", o.ServiceAccount == "":
		return fmt.Errorf("%s, %s and %s must be set (from the downward API)", PodIPEnv, PodNamespaceEnv, ServiceAccountEnv)
	case o.Port <= 0 || o.Port > 65535:
		return fmt.Errorf("--port %d: want 1-65535", o.Port)
	}
	bootstrap := path.Join(dataplane.BootstrapDir, dataplane.BootstrapFile)
	switch o.Mode {
	case ModeNone:
	case ModeSidecar, ModeProxyless:
		addr, cert, err := proxy.ReadBootstrap(bootstrap, getenv)
		if err != nil {
			return fmt.Errorf("the mesh's bootstrap (is namespace %s in the mesh?): %w", o.Namespace, err)
		}
		o.XDS, o.Certificate = addr, cert
		o.CertFiles = grpcxds.Files{
			Cert: proxy.HostPath(path.Join(dataplane.IdentityDir, dataplane.IdentityCertFile), getenv),
			Key:  proxy.HostPath(path.Join(dataplane.IdentityDir, dataplane.IdentityKeyFile), getenv),
			CA:   proxy.HostPath(path.Join(dataplane.IdentityDir, dataplane.IdentityCAFile), getenv),
		}
	default:
		return fmt.Errorf("--mode %q: want one of %v", o.Mode, Modes)
	}
	return Run(ctx, o)
}

// Run serves as one pod of the app until ctx ends, or a server fails.
func Run(ctx context.Context, o Options) error {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	a := &app{done: make(chan error, 2)}
	defer a.stop()
	addr := net.JoinHostPort(o.Address, strconv.Itoa(o.Port))
	switch o.Mode {
	case ModeProxyless:
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		if err := a.serveProxyless(o, ln); err != nil {
			_ = ln.Close()
			return err
		}
	case ModeSidecar:
		// The application on a private port of the pod's address; its sidecar takes the
		// pod's port once it holds its configuration (then the pod is ready).
		appLn, err := net.Listen("tcp", net.JoinHostPort(o.Address, "0"))
		if err != nil {
			return err
		}
		a.serveApp(appLn, o.Message)
		if err := a.startSidecar(ctx, o, addr, appLn.Addr().String()); err != nil {
			return err
		}
	default:
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		a.serveApp(ln, o.Message)
	}
	o.Log.Info("app up", "pod", o.Namespace+"/"+o.Name, "podIP", o.PodIP, "address", addr, "serviceAccount", o.ServiceAccount, "mode", o.Mode)
	select {
	case <-ctx.Done():
		return nil
	case err := <-a.done:
		return err
	}
}

type app struct {
	servers []func()
	done    chan error // a server's end
}

func (a *app) stop() {
	for i := len(a.servers) - 1; i >= 0; i-- {
		a.servers[i]()
	}
}

// serveApp runs the application: HTTP/1.1 answering the message, and gRPC over h2c.
func (a *app) serveApp(ln net.Listener, message string) {
	gs := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(gs, &testService{hostname: message})
	msg := []byte(message + "\n")
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
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
			err = errors.New("closed")
		}
		a.done <- fmt.Errorf("the application stopped serving: %w", err)
	}()
}

// startSidecar runs the stand-in for the pod's Envoy sidecar on the pod's address, once it
// holds its configuration.
func (a *app) startSidecar(ctx context.Context, o Options, addr, appAddr string) error {
	pctx, cancel := context.WithCancel(context.Background())
	a.servers = append(a.servers, cancel)
	p, err := proxy.Start(pctx, proxy.Options{
		Role: proxy.Inbound, PodIP: o.PodIP, Namespace: o.Namespace, AppAddress: appAddr,
		Log: o.Log.With("sidecar", o.Namespace+"/"+o.ServiceAccount),
		XDS: proxy.XDSOptions{Address: o.XDS, Node: wellknown.Sidecar(o.Namespace, o.ServiceAccount).String(), Certificate: o.Certificate},
	})
	if err != nil {
		return err
	}
	select {
	case <-p.Ready():
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(60 * time.Second):
		return fmt.Errorf("the sidecar got no configuration from %s within 60s", o.XDS)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	tln, err := p.Listener(ln)
	if err != nil {
		_ = ln.Close()
		return err
	}
	srv := p.Server()
	a.servers = append(a.servers, func() { _ = srv.Close() })
	go func() { _ = srv.Serve(tln) }()
	return nil
}

// serveProxyless serves grpc.testing.TestService on the pod's address as an xDS-enabled grpc-go
// server, whose listener is named after the pod IP.
func (a *app) serveProxyless(o Options, ln net.Listener) error {
	boot, err := grpcxds.BootstrapFor(o.XDS, o.Namespace, o.ServiceAccount, o.CertFiles)
	if err != nil {
		return err
	}
	creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		return err
	}
	// The bootstrap is passed in-process: grpc-go's option for tests, which spares the sandbox
	// writing a file for it.
	srv, err := xds.NewGRPCServer(grpc.Creds(creds), xds.BootstrapContentsForTesting(boot))
	if err != nil {
		return err
	}
	testgrpc.RegisterTestServiceServer(srv, &testService{hostname: o.Message})
	a.servers = append(a.servers, srv.Stop)
	go func() {
		err := srv.Serve(podAddrListener{Listener: ln, pod: &net.TCPAddr{IP: net.ParseIP(o.PodIP), Port: o.Port}})
		if err == nil || errors.Is(err, grpc.ErrServerStopped) {
			err = errors.New("stopped")
		}
		a.done <- fmt.Errorf("the gRPC server stopped serving: %w", err)
	}()
	return nil
}

type testService struct {
	testgrpc.UnimplementedTestServiceServer
	hostname string
}

func (s *testService) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{Hostname: s.hostname}, nil
}
