// Package app assembles and runs the member controller: the member controllers under a
// Supervisor (and the federation controller on a control plane), the xDS server over mTLS, the
// sidecar-injection webhook, and the metrics, health and debug endpoints. cmd/crossgate-controller
// turns its flags into a Config and calls Run; the benchmarks and integration tests call Run
// too, so what they measure and test is the wiring the product runs.
package app

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
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

// Config is what the controller runs with; each field is one flag of crossgate-controller (named
// in the comment), and errors about a field name that flag.
type Config struct {
	// Member configures the member controllers (--cluster-name, --region, --zone, --group,
	// --mesh-config, --gateway, --xds-host, --xds-port, --leader-elect, --proxy-image). Run sets
	// its CA, XDS, Log and LeaderElectionNamespace.
	Member controllers.Options
	// Namespace is the controller's namespace: the root CA Secret, leader election, the
	// federation's kubeconfig Secrets (--namespace).
	Namespace string
	// TrustDomain is the SPIFFE trust domain (--trust-domain).
	TrustDomain string
	// CA, when set, issues every certificate instead of the root CA kept in Namespace or
	// cert-manager (tests share one CA between clusters).
	CA identity.Issuer
	// CertManagerIssuer, Issuer/NAME or ClusterIssuer/NAME, has cert-manager issue every
	// certificate (--cert-manager-issuer).
	CertManagerIssuer string

	// XDSAddress is where the xDS server listens, mTLS (--xds-address).
	XDSAddress string
	// MetricsAddress serves /metrics, /healthz and /readyz; empty: none (--metrics-address).
	MetricsAddress string
	// DebugAddress serves server.ConfigDumpPath, loopback only; empty: none (--debug-address).
	DebugAddress string

	// WebhookAddress is where the sidecar-injection webhook listens; empty: no webhook
	// (--webhook-address).
	WebhookAddress string
	// WebhookURL is the URL the API server calls the webhook at, instead of WebhookService
	// (--webhook-url).
	WebhookURL string
	// WebhookService is the Service in front of the webhook (--webhook-service).
	WebhookService types.NamespacedName
	// WebhookCertDir holds tls.crt and tls.key for the webhook (--webhook-cert-dir).
	WebhookCertDir string
	// WebhookRegistration is managed (this controller keeps the MutatingWebhookConfiguration) or
	// external (--webhook-registration); empty is managed.
	WebhookRegistration string
	// InitImage is the traffic-capture init container's image (--init-image).
	InitImage string

	// Federation is on, off or auto (on when the API server serves the Cluster kind; also
	// when empty) (--federation); FederationID names this control plane in members' claims
	// (--control-plane-id).
	Federation   string
	FederationID string

	Log *slog.Logger
	// Started, when set, is called once every listener is bound and the controllers start.
	Started func(Running)
}

// Running is what a started controller exposes to its caller.
type Running struct {
	// XDS, Metrics, Debug and Webhook are the bound addresses (nil when not served).
	XDS, Metrics, Debug, Webhook net.Addr
	// Cache is the xDS cache the server serves.
	Cache *cache.Cache
	// CA issues the certificates of proxies (and of the xDS server).
	CA identity.Issuer
	// Supervisor runs the member controllers.
	Supervisor *controllers.Supervisor
}

// Check fills c's defaults and reports the first invalid field, naming its flag.
func (c *Config) Check() error {
	c.WebhookRegistration = cmp.Or(c.WebhookRegistration, "managed")
	c.Federation = cmp.Or(c.Federation, "auto")
	if c.DebugAddress != "" {
		if err := server.CheckLoopback(c.DebugAddress); err != nil {
			return fmt.Errorf("--debug-address: %w", err)
		}
	}
	if c.WebhookRegistration != "managed" && c.WebhookRegistration != "external" {
		return fmt.Errorf("--webhook-registration %q: want managed or external", c.WebhookRegistration)
	}
	switch c.Federation {
	case "on", "off", "auto":
	default:
		return fmt.Errorf("--federation %q: want on, off or auto", c.Federation)
	}
	if c.WebhookAddress != "" && c.WebhookURL == "" && (c.WebhookService.Namespace == "" || c.WebhookService.Name == "") {
		return errors.New("--webhook-service: want namespace/name (or --webhook-url)")
	}
	if c.CertManagerIssuer != "" {
		if _, _, _, err := certmanager.ParseIssuerRef(c.CertManagerIssuer); err != nil {
			return fmt.Errorf("--cert-manager-issuer: %w", err)
		}
	}
	return nil
}

// The root CA Secret in the controller's namespace, and the webhook's registration.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;create,namespace=crossgate-system
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,verbs=get;create;update

// Run runs the controller against the API server of cfg until ctx ends (nil) or a part fails.
func Run(ctx context.Context, cfg *rest.Config, c Config) error {
	if err := c.Check(); err != nil {
		return err
	}
	log := cmp.Or(c.Log, slog.Default())
	c.Namespace = cmp.Or(c.Namespace, wellknown.SystemNamespace)
	c.TrustDomain = cmp.Or(c.TrustDomain, wellknown.DefaultTrustDomain)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Bind every listener first: a busy port fails the start, before anything is written.
	var run Running
	listen := func(flag, addr string) (net.Listener, error) {
		if addr == "" {
			return nil, nil
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", flag, err)
		}
		go func() { <-ctx.Done(); _ = l.Close() }()
		return l, nil
	}
	xdsLn, err := listen("xds-address", cmp.Or(c.XDSAddress, ":15010"))
	if err != nil {
		return err
	}
	metricsLn, err := listen("metrics-address", c.MetricsAddress)
	if err != nil {
		return err
	}
	debugLn, err := listen("debug-address", c.DebugAddress)
	if err != nil {
		return err
	}
	webhookLn, err := listen("webhook-address", c.WebhookAddress)
	if err != nil {
		return err
	}

	ca, err := issuer(ctx, cfg, &c, log)
	if err != nil {
		return err
	}
	metrics := server.NewMetrics()
	opts := c.Member
	opts.CA = ca
	opts.XDS = cache.New(controllers.NodeKey, log)
	opts.XDS.Observer = metrics
	opts.PublishObserver = metrics
	opts.Log = log
	opts.LeaderElectionNamespace = c.Namespace
	fedOn, err := federationWanted(c.Federation, cfg)
	if err != nil {
		return err
	}
	fedOpts := federation.Options{ID: c.FederationID, Log: log, SecretNamespace: c.Namespace}
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
	run = Running{Cache: opts.XDS, CA: ca, Supervisor: sup}

	errc := make(chan error, 5)
	// xDS over mTLS: a proxy proves its identity with its certificate.
	dnsNames := []string{"localhost"}
	if opts.XDSHost != "" {
		dnsNames = append([]string{opts.XDSHost}, dnsNames...)
	}
	srvCert, err := ca.IssueServing(dnsNames, []net.IP{net.ParseIP("127.0.0.1")}, 365*24*time.Hour)
	if err != nil {
		return fmt.Errorf("the xDS server's certificate: %w", err)
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
	server.Register(ctx, grpcServer, opts.XDS, server.Options{RequireIdentity: true, TrustDomain: c.TrustDomain, Log: log, Metrics: metrics})
	go func() { errc <- grpcServer.Serve(xdsLn) }()
	defer grpcServer.Stop()
	go func() { <-ctx.Done(); grpcServer.GracefulStop() }()
	run.XDS = xdsLn.Addr()

	serve := func(l net.Listener, h http.Handler) {
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		go func() { <-ctx.Done(); _ = srv.Close() }()
		go func() {
			if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) && ctx.Err() == nil {
				errc <- err
			}
		}()
	}
	if metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("/", metrics.Handler(sup.Ready))
		serve(metricsLn, mux)
		run.Metrics = metricsLn.Addr()
	}
	if debugLn != nil {
		mux := http.NewServeMux()
		mux.Handle(server.ConfigDumpPath, server.ConfigDumpHandler(opts.XDS, controllers.NodeKey))
		serve(debugLn, mux)
		run.Debug = debugLn.Addr()
	}
	if webhookLn != nil {
		if err := startWebhook(ctx, cfg, &c, ca, srvCert.RootPEM, webhookLn, errc); err != nil {
			return err
		}
		run.Webhook = webhookLn.Addr()
	}
	if fedOn {
		log.Info("federation controller enabled: this cluster is a control plane for the Cluster objects it holds")
	}
	go func() { errc <- sup.Run(ctx) }()
	log.Info("crossgate-controller started", "cluster", opts.ClusterKey(), "xds", run.XDS.String())
	if c.Started != nil {
		c.Started(run)
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
}

// issuer is c.CA, or cert-manager's issuer, or the root CA kept in c.Namespace.
func issuer(ctx context.Context, cfg *rest.Config, c *Config, log *slog.Logger) (identity.Issuer, error) {
	if c.CA != nil {
		return c.CA, nil
	}
	if c.CertManagerIssuer == "" {
		kube, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return nil, err
		}
		ca, err := identity.LoadOrCreateRoot(ctx, kube, c.Namespace, wellknown.RootCASecret, c.TrustDomain)
		if err != nil {
			return nil, fmt.Errorf("the root CA: %w", err)
		}
		return ca, nil
	}
	kind, group, name, err := certmanager.ParseIssuerRef(c.CertManagerIssuer)
	if err != nil {
		return nil, fmt.Errorf("--cert-manager-issuer: %w", err)
	}
	cmClient, err := client.New(cfg, client.Options{Scheme: certmanager.Scheme()})
	if err != nil {
		return nil, err
	}
	ca, err := certmanager.New(certmanager.Options{Client: cmClient, Namespace: c.Namespace, IssuerName: name, IssuerKind: kind, IssuerGroup: group, TrustDomain: c.TrustDomain})
	if err != nil {
		return nil, fmt.Errorf("--cert-manager-issuer: %w", err)
	}
	log.Info("certificates are issued by cert-manager", "issuer", c.CertManagerIssuer)
	return ca, nil
}

// startWebhook serves the sidecar-injection webhook on l and, when managed, registers it.
func startWebhook(ctx context.Context, cfg *rest.Config, c *Config, ca identity.Issuer, caBundle []byte, l net.Listener, errc chan<- error) error {
	cc := admissionregistrationv1.WebhookClientConfig{CABundle: caBundle}
	dns := []string{"localhost"}
	if c.WebhookURL != "" {
		u := c.WebhookURL
		cc.URL = &u
	} else {
		path, port := inject.Path, int32(443)
		svc := c.WebhookService
		cc.Service = &admissionregistrationv1.ServiceReference{Namespace: svc.Namespace, Name: svc.Name, Path: &path, Port: &port}
		dns = append(dns, svc.Name+"."+svc.Namespace+".svc")
	}
	wh := &inject.Server{
		Handler: inject.NewHandler(inject.Options{ProxyImage: c.Member.GatewayImage, InitImage: c.InitImage}),
		CA:      ca, DNSNames: dns, IPs: []net.IP{net.ParseIP("127.0.0.1")},
	}
	if c.WebhookCertDir != "" {
		wh.CertFile, wh.KeyFile = filepath.Join(c.WebhookCertDir, "tls.crt"), filepath.Join(c.WebhookCertDir, "tls.key")
	}
	go func() { errc <- wh.Serve(ctx, l) }()
	if c.WebhookRegistration != "managed" {
		return nil
	}
	direct, err := client.New(cfg, client.Options{Scheme: controllers.Scheme()})
	if err != nil {
		return err
	}
	if err := inject.EnsureConfiguration(ctx, direct, inject.Configuration(cc, c.Namespace)); err != nil {
		return fmt.Errorf("registering the sidecar-injection webhook: %w", err)
	}
	return nil
}

// federationWanted decides --federation: auto is on when the API server serves the Cluster kind.
func federationWanted(mode string, cfg *rest.Config) (bool, error) {
	switch mode {
	case "on":
		return true, nil
	case "off":
		return false, nil
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
