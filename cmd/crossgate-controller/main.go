// Command crossgate-controller runs in every member cluster: the member controllers, the
// translate-and-publish loop, the xDS server (mTLS, one configuration per proven identity), the
// sidecar-injection webhook, and metrics and health endpoints.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/controllers"
	"github.com/crossgate-io/crossgate/controllers/federation"
	"github.com/crossgate-io/crossgate/inject"
	"github.com/crossgate-io/crossgate/wellknown"
	"github.com/crossgate-io/crossgate/xds/cache"
	"github.com/crossgate-io/crossgate/xds/identity"
	"github.com/crossgate-io/crossgate/xds/identity/certmanager"
	"github.com/crossgate-io/crossgate/xds/server"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "crossgate-controller:", err)
		os.Exit(1)
	}
}

func nsName(flagName, v string) (types.NamespacedName, error) {
	if v == "" {
		return types.NamespacedName{}, nil
	}
	ns, name, ok := strings.Cut(v, "/")
	if !ok || ns == "" || name == "" {
		return types.NamespacedName{}, fmt.Errorf("--%s %q: want namespace/name", flagName, v)
	}
	return types.NamespacedName{Namespace: ns, Name: name}, nil
}

// The root CA Secret in the controller's namespace, and the webhook's registration.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;create,namespace=crossgate-system
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,verbs=get;create;update

func run() error {
	var (
		opts                                   controllers.Options
		meshConfig, gw, namespace, trustDomain string
		xdsAddr, metricsAddr, webhookAddr      string
		debugAddr                              string
		webhookURL, webhookService             string
		webhookCertDir, webhookRegistration    string
		proxyImage, initImage, logLevel        string
		fedMode, certManagerIssuer             string
		fedOpts                                federation.Options
	)
	flag.StringVar(&opts.Name, "cluster-name", "", "this cluster's name in the cluster set (default: the MeshConfig's spec.clusterSet.name)")
	flag.StringVar(&opts.Region, "region", "default", "this cluster's region")
	flag.StringVar(&opts.Zone, "zone", "default", "this cluster's zone")
	flag.StringVar(&opts.Group, "group", "default", "this cluster's group")
	flag.StringVar(&meshConfig, "mesh-config", "fsm-system/fsm-mesh-config", "namespace/name of the MeshConfig")
	flag.StringVar(&gw, "gateway", "", "namespace/name of the Gateway exported services attach to (default: the MeshConfig's spec.gateway)")
	flag.StringVar(&namespace, "namespace", wellknown.SystemNamespace, "the controller's namespace (root CA Secret, leader election)")
	flag.StringVar(&trustDomain, "trust-domain", "cluster.local", "SPIFFE trust domain of the cluster set")
	flag.StringVar(&xdsAddr, "xds-address", ":15010", "where the xDS server listens (mTLS)")
	flag.StringVar(&opts.XDSHost, "xds-host", "crossgate-controller.crossgate-system.svc", "the host proxies dial for xDS")
	xdsPort := flag.Uint("xds-port", 15010, "the port proxies dial for xDS")
	flag.StringVar(&metricsAddr, "metrics-address", ":9090", "where /metrics, /healthz and /readyz are served")
	flag.StringVar(&debugAddr, "debug-address", server.DefaultDebugAddress, "where "+server.ConfigDumpPath+" (every identity's configuration) is served: a loopback address only, reached by `crossgate proxy config` through a port-forward; empty turns it off")
	flag.StringVar(&webhookAddr, "webhook-address", ":9443", "where the sidecar-injection webhook listens (empty: no webhook)")
	flag.StringVar(&webhookURL, "webhook-url", "", "URL the API server calls the webhook at (the sandbox's); default: --webhook-service")
	flag.StringVar(&webhookService, "webhook-service", "crossgate-system/crossgate-controller", "namespace/name of the Service in front of the webhook")
	flag.StringVar(&webhookCertDir, "webhook-cert-dir", "", "serve the webhook with tls.crt and tls.key from this directory (cert-manager), read again when they change; default: a certificate from the built-in CA")
	flag.StringVar(&webhookRegistration, "webhook-registration", "managed", "managed: this controller keeps the MutatingWebhookConfiguration and its CA bundle; external: it is installed with its CA bundle by someone else (the chart with cert-manager's CA injector)")
	flag.StringVar(&proxyImage, "proxy-image", controllers.DefaultEnvoyImage, "Envoy image of sidecars and gateways")
	flag.StringVar(&initImage, "init-image", "ghcr.io/crossgate-io/crossgate-init:latest", "image of the traffic-capture init container (sh and iptables)")
	flag.BoolVar(&opts.LeaderElection, "leader-elect", true, "elect one leader among replicas for writes")
	flag.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	flag.StringVar(&certManagerIssuer, "cert-manager-issuer", "", "issue every certificate (workloads, xDS server, webhook) by CertificateRequests against this cert-manager issuer, Issuer/NAME (in --namespace) or ClusterIssuer/NAME; default: the built-in CA")
	flag.StringVar(&fedMode, "federation", "auto", "run the federation controller (Cluster objects): on, off, or auto (on when the API server serves the Cluster kind)")
	flag.StringVar(&fedOpts.ID, "control-plane-id", "", "this control plane's name in the members' claim Lease (default: the UID of kube-system)")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", logLevel)
	}
	log := setupLogging(os.Stderr, level)
	var err error
	if opts.MeshConfig, err = nsName("mesh-config", meshConfig); err != nil {
		return err
	}
	if opts.Gateway, err = nsName("gateway", gw); err != nil {
		return err
	}
	var debugLn net.Listener
	if debugAddr != "" {
		if err := server.CheckLoopback(debugAddr); err != nil {
			return fmt.Errorf("--debug-address: %w", err)
		}
		if debugLn, err = net.Listen("tcp", debugAddr); err != nil {
			return fmt.Errorf("--debug-address: %w", err)
		}
		defer debugLn.Close()
	}
	if *xdsPort == 0 || *xdsPort > 65535 {
		return fmt.Errorf("--xds-port %d: want 1-65535", *xdsPort)
	}
	opts.XDSPort = uint32(*xdsPort)
	opts.GatewayImage = proxyImage
	opts.LeaderElectionNamespace = namespace
	opts.Log = log

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("no Kubernetes configuration (in-cluster or KUBECONFIG): %w", err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	var ca identity.Issuer
	if certManagerIssuer == "" {
		if ca, err = identity.LoadOrCreateRoot(ctx, kube, namespace, wellknown.RootCASecret, trustDomain); err != nil {
			return fmt.Errorf("the root CA: %w", err)
		}
	} else {
		kind, group, name, err := certmanager.ParseIssuerRef(certManagerIssuer)
		if err != nil {
			return fmt.Errorf("--cert-manager-issuer: %w", err)
		}
		cmClient, err := client.New(cfg, client.Options{Scheme: certmanager.Scheme()})
		if err != nil {
			return err
		}
		if ca, err = certmanager.New(certmanager.Options{Client: cmClient, Namespace: namespace, IssuerName: name, IssuerKind: kind, IssuerGroup: group, TrustDomain: trustDomain}); err != nil {
			return fmt.Errorf("--cert-manager-issuer: %w", err)
		}
		log.Info("certificates are issued by cert-manager", "issuer", certManagerIssuer)
	}
	opts.CA = ca
	metrics := server.NewMetrics()
	opts.XDS = cache.New(controllers.NodeKey, log)
	opts.XDS.Observer = metrics
	fedOn, err := federationWanted(fedMode, cfg)
	if err != nil {
		return err
	}
	fedOpts.Log = log
	fedOpts.SecretNamespace = namespace
	sup := &controllers.Supervisor{Log: log, Build: func() (*controllers.Member, error) {
		member, err := controllers.NewMember(cfg, opts)
		if err != nil {
			return nil, err
		}
		if fedOn {
			if _, err := federation.Setup(member.Manager, fedOpts); err != nil {
				return nil, fmt.Errorf("the federation controller: %w", err)
			}
		}
		return member, nil
	}}

	errc := make(chan error, 4)
	// xDS over mTLS: a proxy proves its identity with its certificate.
	srvCert, err := ca.IssueServing([]string{opts.XDSHost, "localhost"}, []net.IP{net.ParseIP("127.0.0.1")}, 365*24*time.Hour)
	if err != nil {
		return err
	}
	pair, err := tls.X509KeyPair(srvCert.CertPEM, srvCert.KeyPEM)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(srvCert.RootPEM)
	grpcServer := grpc.NewServer(append(server.GRPCOptions(opts.XDS), grpc.Creds(credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool,
	})))...)
	server.Register(ctx, grpcServer, opts.XDS, server.Options{RequireIdentity: true, TrustDomain: trustDomain, Log: log, Metrics: metrics})
	xdsLn, err := net.Listen("tcp", xdsAddr)
	if err != nil {
		return fmt.Errorf("--xds-address: %w", err)
	}
	go func() { errc <- grpcServer.Serve(xdsLn) }()
	go func() { <-ctx.Done(); grpcServer.GracefulStop() }()

	ready := sup.Ready
	mux := http.NewServeMux()
	mux.Handle("/", metrics.Handler(ready))
	metricsSrv := &http.Server{Addr: metricsAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := metricsSrv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	go func() { <-ctx.Done(); _ = metricsSrv.Close() }()
	if debugAddr != "" {
		debugMux := http.NewServeMux()
		debugMux.Handle(server.ConfigDumpPath, server.ConfigDumpHandler(opts.XDS, controllers.NodeKey))
		debugSrv := &http.Server{Handler: debugMux, ReadHeaderTimeout: 10 * time.Second}
		go func() { <-ctx.Done(); _ = debugSrv.Close() }()
		go func() {
			if err := debugSrv.Serve(debugLn); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}

	if webhookRegistration != "managed" && webhookRegistration != "external" {
		return fmt.Errorf("--webhook-registration %q: want managed or external", webhookRegistration)
	}
	if webhookAddr != "" {
		cc := admissionregistrationv1.WebhookClientConfig{CABundle: srvCert.RootPEM}
		dns := []string{"localhost"}
		if webhookURL != "" {
			cc.URL = &webhookURL
		} else {
			svc, err := nsName("webhook-service", webhookService)
			if err != nil {
				return err
			}
			path := inject.Path
			cc.Service = &admissionregistrationv1.ServiceReference{Namespace: svc.Namespace, Name: svc.Name, Path: &path, Port: ptrInt32(443)}
			dns = append(dns, svc.Name+"."+svc.Namespace+".svc")
		}
		direct, err := client.New(cfg, client.Options{Scheme: controllers.Scheme()})
		if err != nil {
			return err
		}
		wl, err := net.Listen("tcp", webhookAddr)
		if err != nil {
			return fmt.Errorf("--webhook-address: %w", err)
		}
		wh := &inject.Server{Handler: inject.NewHandler(inject.Options{ProxyImage: proxyImage, InitImage: initImage}), CA: ca, DNSNames: dns, IPs: []net.IP{net.ParseIP("127.0.0.1")}}
		if webhookCertDir != "" {
			wh.CertFile, wh.KeyFile = filepath.Join(webhookCertDir, "tls.crt"), filepath.Join(webhookCertDir, "tls.key")
		}
		go func() { errc <- wh.Serve(ctx, wl) }()
		if webhookRegistration == "managed" {
			if err := inject.EnsureConfiguration(ctx, direct, inject.Configuration(cc, namespace)); err != nil {
				return fmt.Errorf("registering the sidecar-injection webhook: %w", err)
			}
		}
	}
	if fedOn {
		log.Info("federation controller enabled: this cluster is a control plane for the Cluster objects it holds")
	}
	go func() { errc <- sup.Run(ctx) }()
	log.Info("crossgate-controller started", "cluster", opts.ClusterKey(), "xds", xdsLn.Addr().String())
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	}
}

func ptrInt32(v int32) *int32 { return &v }

// federationWanted decides --federation: auto is on when the API server serves the Cluster kind.
func federationWanted(mode string, cfg *rest.Config) (bool, error) {
	switch mode {
	case "on":
		return true, nil
	case "off":
		return false, nil
	case "auto":
	default:
		return false, fmt.Errorf("--federation %q: want on, off or auto", mode)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return false, err
	}
	list, err := dc.ServerResourcesForGroupVersion(flomeshv1alpha1.GroupVersion.String())
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("--federation=auto: discovering %s: %w", flomeshv1alpha1.GroupVersion, err)
	}
	return slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == "clusters" }), nil
}

// setupLogging is the controller's logger: JSON lines on w at level, which controller-runtime's
// and client-go's logs (reconciler errors, leader election, watch failures) share, so none of
// them is dropped.
func setupLogging(w io.Writer, level slog.Level) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
	l := logr.FromSlogHandler(h)
	ctrl.SetLogger(l)
	klog.SetLogger(l)
	return slog.New(h)
}
