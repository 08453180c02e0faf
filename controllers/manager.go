// Package controllers holds what runs in every member cluster: the translate-and-publish loop
// feeding the xDS server, the status writer, the ServiceExport controller (HTTPRoutes on the
// cluster's gateway) and the ServiceImport controller (placeholder Services for DNS).
package controllers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	ctrlcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	accessv1alpha3 "github.com/crossgate-io/crossgate/api/smi/access/v1alpha3"
	specsv1alpha4 "github.com/crossgate-io/crossgate/api/smi/specs/v1alpha4"
	crossgateevents "github.com/crossgate-io/crossgate/controllers/events"
	"github.com/crossgate-io/crossgate/dataplane"
	"github.com/crossgate-io/crossgate/translator"
	"github.com/crossgate-io/crossgate/wellknown"
	"github.com/crossgate-io/crossgate/xds/cache"
	"github.com/crossgate-io/crossgate/xds/identity"
)

// Options configure a member cluster's controllers.
type Options struct {
	// Region, Zone, Group and Name form the cluster's key; when Name is empty, the MeshConfig's
	// spec.clusterSet is used.
	Region, Zone, Group, Name string
	// DNSDomain of the cluster; cluster.local when empty.
	DNSDomain string
	// MeshConfig names the installation's MeshConfig.
	MeshConfig types.NamespacedName
	// Gateway, when set, is the Gateway exported services are attached to, overriding the
	// MeshConfig's spec.gateway.
	Gateway types.NamespacedName
	// CA issues the certificates served to Envoy by SDS; none are served when nil.
	CA identity.Issuer
	// CertTTL is the lifetime of those certificates (24h when zero).
	CertTTL time.Duration
	// Quiet and MaxDelay bound the debounce of the translate loop (10ms and 200ms when zero).
	Quiet, MaxDelay time.Duration
	// XDS is the cache the xDS server serves.
	XDS *cache.Cache
	// XDSHost and XDSPort are where proxies reach the xDS server (the controller's Service).
	XDSHost string
	XDSPort uint32
	// GatewayImage is the Envoy image of the gateways.
	GatewayImage string

	// LeaderElection and LeaderElectionNamespace configure the manager's leader election.
	LeaderElection          bool
	LeaderElectionNamespace string
	// LeaseDuration, RenewDeadline and RetryPeriod tune it (controller-runtime's 15s, 10s and 2s
	// when zero).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// HealthProbeAddress serves /healthz and /readyz ("0" disables).
	HealthProbeAddress string
	// PublishObserver, when set, is told of each publication to the xDS cache.
	PublishObserver PublishObserver
	Log             *slog.Logger
}

// ClusterKey is region/zone/group/name of the cluster, from the options.
func (o *Options) ClusterKey() string {
	or := func(s string) string {
		if s == "" {
			return "default"
		}
		return s
	}
	return or(o.Region) + "/" + or(o.Zone) + "/" + or(o.Group) + "/" + o.Name
}

func (o *Options) defaults() {
	if o.Quiet == 0 {
		o.Quiet = 10 * time.Millisecond
	}
	if o.MaxDelay == 0 {
		o.MaxDelay = 200 * time.Millisecond
	}
	if o.CertTTL == 0 {
		o.CertTTL = 24 * time.Hour
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.XDSHost == "" {
		o.XDSHost = "crossgate-controller.crossgate-system.svc"
	}
	if o.XDSPort == 0 {
		o.XDSPort = 15010
	}
	if o.GatewayImage == "" {
		o.GatewayImage = DefaultEnvoyImage
	}
	if o.HealthProbeAddress == "" {
		o.HealthProbeAddress = "0"
	}
}

// DefaultEnvoyImage is the Envoy of gateways and sidecars unless configured otherwise.
const DefaultEnvoyImage = "docker.io/envoyproxy/envoy:v1.36.2"

// Scheme knows the kinds the controllers read and write.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme, flomeshv1alpha1.AddToScheme, accessv1alpha3.AddToScheme,
		specsv1alpha4.AddToScheme, gatewayv1.Install,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}

// Member is a member cluster's controllers, assembled on one manager.
type Member struct {
	Manager   manager.Manager
	Publisher *Publisher
	Exports   *ExportReconciler
	Imports   *ImportReconciler
	Gateways  *dataplane.Reconciler
}

// Leader election among replicas, in the controller's namespace.
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;create;update,namespace=crossgate-system
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch,namespace=crossgate-system

// NewMember builds the manager and registers every member controller on it.
func NewMember(cfg *rest.Config, opts Options) (*Member, error) {
	opts.defaults()
	if opts.CA == nil {
		return nil, errors.New("a member needs a CA for the proxies' certificates")
	}
	mgr, err := ctrl.NewManager(cfg, manager.Options{
		Scheme: Scheme(),
		Cache: ctrlcache.Options{
			DefaultTransform: compact,
		},
		Metrics: metricsserver.Options{BindAddress: "0"},
		// Several members may run in one process (tests, the sandbox).
		Controller:                    config.Controller{SkipNameValidation: ptr.To(true)},
		HealthProbeBindAddress:        opts.HealthProbeAddress,
		LeaderElection:                opts.LeaderElection,
		LeaderElectionID:              "crossgate-controller",
		LeaderElectionNamespace:       opts.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 nonZero(opts.LeaseDuration),
		RenewDeadline:                 nonZero(opts.RenewDeadline),
		RetryPeriod:                   nonZero(opts.RetryPeriod),
		Logger:                        logr.FromSlogHandler(opts.Log.Handler()),
	})
	if err != nil {
		return nil, err
	}
	m := &Member{Manager: mgr}
	status := &StatusWriter{
		client: mgr.GetClient(), api: mgr.GetAPIReader(), elected: mgr.Elected(), log: opts.Log, now: time.Now,
		recorder: crossgateevents.Bounded(mgr.GetEventRecorder("crossgate-translator")),
	}
	m.Publisher = &Publisher{
		opts: &opts, reader: mgr.GetClient(), config: mgr.GetConfig(), slices: NewEndpointSliceStore(),
		status: status, xds: opts.XDS, log: opts.Log, certs: map[string]*identity.Certificate{},
	}
	if opts.XDS == nil {
		m.Publisher.xds = cache.New(cache.NodeIDResolver, opts.Log)
	}
	if err := mgr.Add(runnable{m.Publisher, mgr.GetCache()}); err != nil {
		return nil, err
	}
	m.Exports = &ExportReconciler{Client: mgr.GetClient(), Opts: &opts, Recorder: crossgateevents.Bounded(mgr.GetEventRecorder("crossgate-exports"))}
	if err := m.Exports.SetupWithManager(mgr); err != nil {
		return nil, err
	}
	m.Imports = &ImportReconciler{Client: mgr.GetClient(), Recorder: crossgateevents.Bounded(mgr.GetEventRecorder("crossgate-imports"))}
	if err := m.Imports.SetupWithManager(mgr); err != nil {
		return nil, err
	}
	m.Gateways = &dataplane.Reconciler{
		Client: mgr.GetClient(), Recorder: crossgateevents.Bounded(mgr.GetEventRecorder("crossgate-gateways")),
		Render: dataplane.RenderOptions{Image: opts.GatewayImage},
		CA:     opts.CA, CertTTL: opts.CertTTL, XDSHost: opts.XDSHost, XDSPort: opts.XDSPort,
		Unserved: func(ctx context.Context, gw *gatewayv1.Gateway, class *gatewayv1.GatewayClass) (string, string) {
			if msg := translator.InvalidParameters(gw); msg != "" {
				return string(gatewayv1.GatewayReasonInvalidParameters), msg
			}
			if all, _ := translator.GatewayNamespaces(class); all || opts.trustedGateway(ctx, mgr.GetClient(), gw) {
				return "", ""
			}
			return flomeshv1alpha1.ReasonGatewayNotTrusted, fmt.Sprintf("Gateways of class %s run only in the controller's namespace or as the export Gateway (unless the class's annotation %s is %s): no proxy, no certificate.",
				gw.Spec.GatewayClassName, wellknown.GatewayNamespacesAnnotation, wellknown.GatewayNamespacesAll)
		},
	}
	if err := m.Gateways.SetupWithManager(mgr); err != nil {
		return nil, err
	}
	if err := (&IdentityReconciler{Client: mgr.GetClient(), Opts: &opts}).SetupWithManager(mgr); err != nil {
		return nil, err
	}
	if err := mgr.AddHealthzCheck("ping", func(*http.Request) error { return nil }); err != nil {
		return nil, err
	}
	return m, nil
}

// runnable adapts the Publisher to the manager.
type runnable struct {
	p *Publisher
	c ctrlcache.Cache
}

func (r runnable) Start(ctx context.Context) error { return r.p.Start(ctx, r.c) }
func (r runnable) NeedLeaderElection() bool        { return false }

// compact is the informers' transform: it drops what nothing reads (managed fields, the
// last-applied annotation, pod specs beyond the ServiceAccount, container statuses, the spec and
// status of Deployments that are not crossgate's gateways), keeping the
// memory per object small. Placeholder Services keep their managed fields: the import controller
// reads them to see whether a user took the Service over.
func compact(obj any) (any, error) {
	o, ok := obj.(client.Object)
	if !ok {
		return obj, nil // a tombstone
	}
	if svc, ok := o.(*corev1.Service); !ok || svc.Labels[wellknown.ImportLabel] == "" {
		o.SetManagedFields(nil)
	}
	if a := o.GetAnnotations(); a != nil {
		if _, ok := a[corev1.LastAppliedConfigAnnotation]; ok {
			if _, isSvc := o.(*corev1.Service); !isSvc {
				delete(a, corev1.LastAppliedConfigAnnotation)
			}
		}
	}
	if x, ok := o.(*appsv1.Deployment); ok && x.Labels[wellknown.ManagedByLabel] != wellknown.ManagedByValue {
		// Only the gateways' Deployments are read (the Gateways' Programmed): of the others the
		// cache keeps the metadata alone, which is all the dataplane reconciler needs to see
		// that a name is taken.
		x.Spec, x.Status = appsv1.DeploymentSpec{}, appsv1.DeploymentStatus{}
	}
	if x, ok := o.(*corev1.Pod); ok {
		x.Spec = corev1.PodSpec{ServiceAccountName: x.Spec.ServiceAccountName, NodeName: x.Spec.NodeName}
		x.Status = corev1.PodStatus{Phase: x.Status.Phase, PodIP: x.Status.PodIP, PodIPs: x.Status.PodIPs}
	}
	return o, nil
}

var _ toolscache.TransformFunc = compact

// nonZero is d, or nil for zero (controller-runtime's default).
func nonZero(d time.Duration) *time.Duration {
	if d == 0 {
		return nil
	}
	return &d
}
