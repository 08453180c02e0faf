// Command crossgate-controller runs in every member cluster: the member controllers, the
// translate-and-publish loop, the xDS server (mTLS, one configuration per proven identity), the
// sidecar-injection webhook, and metrics and health endpoints.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/crossgate-io/crossgate/controllers"
	"github.com/crossgate-io/crossgate/internal/app"
	"github.com/crossgate-io/crossgate/wellknown"
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

func run() error {
	var (
		c                                    app.Config
		meshConfig, gw, webhookSvc, logLevel string
		proxyImage                           string
	)
	opts := &c.Member
	flag.StringVar(&opts.Name, "cluster-name", "", "this cluster's name in the cluster set (default: the MeshConfig's spec.clusterSet.name)")
	flag.StringVar(&opts.Region, "region", "default", "this cluster's region")
	flag.StringVar(&opts.Zone, "zone", "default", "this cluster's zone")
	flag.StringVar(&opts.Group, "group", "default", "this cluster's group")
	flag.StringVar(&meshConfig, "mesh-config", "fsm-system/fsm-mesh-config", "namespace/name of the MeshConfig")
	flag.StringVar(&gw, "gateway", "", "namespace/name of the Gateway exported services attach to (default: the MeshConfig's spec.gateway)")
	flag.StringVar(&c.Namespace, "namespace", wellknown.SystemNamespace, "the controller's namespace (root CA Secret, leader election)")
	flag.StringVar(&c.TrustDomain, "trust-domain", wellknown.DefaultTrustDomain, "SPIFFE trust domain of the cluster set")
	flag.StringVar(&c.XDSAddress, "xds-address", ":15010", "where the xDS server listens (mTLS)")
	flag.StringVar(&opts.XDSHost, "xds-host", "crossgate-controller.crossgate-system.svc", "the host proxies dial for xDS")
	xdsPort := flag.Uint("xds-port", 15010, "the port proxies dial for xDS")
	flag.StringVar(&c.MetricsAddress, "metrics-address", ":9090", "where /metrics, /healthz and /readyz are served")
	flag.StringVar(&c.DebugAddress, "debug-address", server.DefaultDebugAddress, "where "+server.ConfigDumpPath+" (every identity's configuration) is served: a loopback address only, reached by `crossgate proxy config` through a port-forward; empty turns it off")
	flag.StringVar(&c.WebhookAddress, "webhook-address", ":9443", "where the sidecar-injection webhook listens (empty: no webhook)")
	flag.StringVar(&c.WebhookURL, "webhook-url", "", "URL the API server calls the webhook at (the sandbox's); default: --webhook-service")
	flag.StringVar(&webhookSvc, "webhook-service", "crossgate-system/crossgate-controller", "namespace/name of the Service in front of the webhook")
	flag.StringVar(&c.WebhookCertDir, "webhook-cert-dir", "", "serve the webhook with tls.crt and tls.key from this directory (cert-manager), read again when they change; default: a certificate from the built-in CA")
	flag.StringVar(&c.WebhookRegistration, "webhook-registration", "managed", "managed: this controller keeps the MutatingWebhookConfiguration and its CA bundle; external: it is installed with its CA bundle by someone else (the chart with cert-manager's CA injector)")
	flag.StringVar(&proxyImage, "proxy-image", controllers.DefaultEnvoyImage, "Envoy image of sidecars and gateways")
	flag.StringVar(&c.InitImage, "init-image", "ghcr.io/crossgate-io/crossgate-init:latest", "image of the traffic-capture init container (sh and iptables)")
	flag.BoolVar(&opts.LeaderElection, "leader-elect", true, "elect one leader among replicas for writes")
	flag.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	flag.StringVar(&c.CertManagerIssuer, "cert-manager-issuer", "", "issue every certificate (workloads, xDS server, webhook) by CertificateRequests against this cert-manager issuer, Issuer/NAME (in --namespace) or ClusterIssuer/NAME; default: the built-in CA")
	flag.StringVar(&c.Federation, "federation", "auto", "run the federation controller (Cluster objects): on, off, or auto (on when the API server serves the Cluster kind)")
	flag.StringVar(&c.FederationID, "control-plane-id", "", "this control plane's name in the members' claim Lease (default: the UID of kube-system)")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", logLevel)
	}
	c.Log = setupLogging(os.Stderr, level)
	var err error
	if opts.MeshConfig, err = nsName("mesh-config", meshConfig); err != nil {
		return err
	}
	if opts.Gateway, err = nsName("gateway", gw); err != nil {
		return err
	}
	if c.WebhookService, err = nsName("webhook-service", webhookSvc); err != nil {
		return err
	}
	if *xdsPort == 0 || *xdsPort > 65535 {
		return fmt.Errorf("--xds-port %d: want 1-65535", *xdsPort)
	}
	opts.XDSPort = uint32(*xdsPort)
	opts.GatewayImage = proxyImage
	if err := c.Check(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("no Kubernetes configuration (in-cluster or KUBECONFIG): %w", err)
	}
	return app.Run(ctx, cfg, c)
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
