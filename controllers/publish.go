package controllers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	ctrlcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	accessv1alpha3 "github.com/crossgate-io/crossgate/api/smi/access/v1alpha3"
	specsv1alpha4 "github.com/crossgate-io/crossgate/api/smi/specs/v1alpha4"
	"github.com/crossgate-io/crossgate/debounce"
	"github.com/crossgate-io/crossgate/translator"
	"github.com/crossgate-io/crossgate/translator/ir"
	"github.com/crossgate-io/crossgate/wellknown"
	"github.com/crossgate-io/crossgate/xds/cache"
	"github.com/crossgate-io/crossgate/xds/identity"
	"github.com/crossgate-io/crossgate/xds/resources"
	"github.com/crossgate-io/crossgate/xds/translate"
)

// NodeKey maps a node ID to its cache key, the node ID in its full form (wellknown.NodeID): a
// bare "ns/sa" is "proxyless~ns/sa".
func NodeKey(_ context.Context, node *corev3.Node) (string, error) {
	id, err := wellknown.ParseNodeID(node.GetId())
	if err != nil {
		return "", err
	}
	return id.String(), nil
}

// Publisher is the translate-and-publish loop: changes of the objects the translator reads
// trigger, after a short quiet time, one publication to the xDS cache: incremental when only
// endpoints changed (incremental.go), otherwise one translation of the whole cluster from the
// informer caches, its publication, and the status writes that result.
type Publisher struct {
	opts   *Options
	reader client.Reader       // the manager's cache
	config *rest.Config        // the API server's, for the EndpointSlices' informer
	slices *EndpointSliceStore // the EndpointSlices (the manager's cache does not hold them)
	status *StatusWriter
	xds    *cache.Cache
	log    *slog.Logger

	mu        sync.Mutex
	published map[string]bool
	certs     map[string]*identity.Certificate
	renewal   *time.Timer
	deb       *debounce.Debouncer
	pending   pending
	// kept is the translation of the last full publish, which endpoint changes update; only
	// the publish loop (one goroutine: the debouncer's) uses it.
	kept *translator.Incremental
	// publishes counts publications by path (Ready once there is one).
	publishes map[string]int
	// publishing is set while a publication runs.
	publishing bool
	// certificateRefs are the Secrets (namespace/name) Gateways' HTTPS listeners refer to, as of
	// the last input read: a change to one of them asks for a publish, to others not.
	certificateRefs atomic.Pointer[map[string]bool]
	// unserved are the optional kinds (optionalKinds) the API server does not serve, by
	// kindName, found when the publisher starts: neither watched nor read.
	unserved atomic.Pointer[map[string]bool]
}

// PublishObserver is told of each publication, for metrics.
type PublishObserver interface {
	Published(path string, took time.Duration)
}

// The translator's inputs, read through the manager's informers.
// +kubebuilder:rbac:groups="",resources=namespaces;services;pods;serviceaccounts,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups=flomesh.io,resources=serviceexports;serviceimports;globaltrafficpolicies;meshconfigs,verbs=get;list;watch
// +kubebuilder:rbac:groups=access.smi-spec.io,resources=traffictargets,verbs=get;list;watch
// +kubebuilder:rbac:groups=specs.smi-spec.io,resources=httproutegroups,verbs=get;list;watch
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=gatewayclasses;gateways;httproutes;tlsroutes;referencegrants,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch

// watchedTypes are the kinds the translator reads through the manager's cache (EndpointSlices
// aside: see EndpointSliceStore).
func watchedTypes() []client.Object {
	return []client.Object{
		&corev1.Namespace{}, &corev1.Service{}, &corev1.Pod{}, &corev1.ServiceAccount{},
		&flomeshv1alpha1.ServiceExport{}, &flomeshv1alpha1.ServiceImport{}, &flomeshv1alpha1.GlobalTrafficPolicy{}, &flomeshv1alpha1.MeshConfig{},
		&accessv1alpha3.TrafficTarget{}, &specsv1alpha4.HTTPRouteGroup{},
		&gatewayv1.GatewayClass{}, &gatewayv1.Gateway{}, &gatewayv1.HTTPRoute{}, &gatewayv1.TLSRoute{}, &gatewayv1.ReferenceGrant{},
		&appsv1.Deployment{}, // the gateways': their availability is the Gateways' Programmed
		&corev1.Secret{},     // those of HTTPS listeners' certificateRefs
	}
}

// NeedLeaderElection is false: every replica serves xDS. Status writes wait for leadership.
func (p *Publisher) NeedLeaderElection() bool { return false }

// Start registers the event handlers and runs until ctx ends.
func (p *Publisher) Start(ctx context.Context, informers ctrlcache.Informers) error {
	p.deb = debounce.New(p.opts.Quiet, p.opts.MaxDelay, func() { p.publish(ctx) })
	defer p.deb.Stop()
	full := p.triggerFull
	handler := toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { full() },
		UpdateFunc: func(oldObj, newObj any) {
			if !statusOnly(oldObj, newObj) {
				full()
			}
		},
		DeleteFunc: func(any) { full() },
	}
	endpoints := toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { p.record(obj, false) },
		UpdateFunc: func(oldObj, newObj any) {
			if !podUnchanged(oldObj, newObj) {
				p.record(newObj, false)
			}
		},
		DeleteFunc: func(obj any) { p.record(obj, true) },
	}
	p.slices.changed = func(s *translator.EndpointSlice, deleted bool) { p.record(s, deleted) }
	p.slices.relisted = full
	slicesDone := make(chan struct{})
	go func() {
		defer close(slicesDone)
		if err := p.slices.Run(ctx, p.config, logr.FromSlogHandler(p.log.Handler())); err != nil {
			p.log.Error("watching EndpointSlices", "error", err)
		}
	}()
	defer func() { <-slicesDone }()
	if err := p.findUnserved(ctx); err != nil {
		return nil // ctx ended
	}
	for _, obj := range watchedTypes() {
		if p.isUnserved(obj) {
			continue
		}
		// The API server may be unreachable (a manager built after a lost leadership): wait for
		// it rather than end, the xDS cache serving the last state meanwhile.
		var inf ctrlcache.Informer
		err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
			var err error
			if inf, err = informers.GetInformer(ctx, obj); err != nil {
				p.log.Warn("waiting for the API server to watch", "kind", fmt.Sprintf("%T", obj), "error", err)
				return false, nil
			}
			return true, nil
		})
		if err != nil {
			return nil // ctx ended
		}
		var h toolscache.ResourceEventHandler = handler
		switch obj.(type) {
		case *corev1.Pod:
			h = endpoints
		case *appsv1.Deployment:
			// Only the gateways' Deployments matter (their availability); the others change
			// often and must not cause publishes.
			h = toolscache.FilteringResourceEventHandler{FilterFunc: gatewayDeployment, Handler: handler}
		case *corev1.Secret:
			// Only the listeners' certificates matter; a Gateway that starts to refer to one
			// asks for a publish itself.
			h = toolscache.FilteringResourceEventHandler{FilterFunc: p.certificateRef, Handler: handler}
		}
		if _, err := inf.AddEventHandler(h); err != nil {
			return err
		}
	}
	if !informers.WaitForCacheSync(ctx) || !p.slices.WaitSynced(ctx) {
		return ctx.Err()
	}
	full()
	<-ctx.Done()
	p.mu.Lock()
	if p.renewal != nil {
		p.renewal.Stop()
	}
	p.mu.Unlock()
	return nil
}

// gatewayDeployment reports whether obj is a Deployment dataplane rendered for a Gateway.
func gatewayDeployment(obj any) bool {
	if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	d, ok := obj.(*appsv1.Deployment)
	return ok && wellknown.RenderedFor(d.Labels) != ""
}

// findUnserved finds which optional kinds the API server does not serve, waiting for it to
// answer, and says what that means once per kind.
func (p *Publisher) findUnserved(ctx context.Context) error {
	var kinds []schema.GroupVersionKind
	err := wait.PollUntilContextCancel(ctx, time.Second, true, func(context.Context) (bool, error) {
		var err error
		if kinds, err = unservedKinds(p.config, optionalKinds()); err != nil {
			p.log.Warn("waiting for the API server's discovery", "error", err)
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	unserved := map[string]bool{}
	for _, gvk := range kinds {
		unserved[kindName(gvk)] = true
		p.log.Error("the API server serves no "+kindName(gvk)+": the cluster's Gateway API CRDs are older than crossgate's (standard channel v1.6, the chart's crds/); "+
			"crossgate works on without it (exports are not reachable from other clusters without TLSRoutes; without ReferenceGrants no reference to another namespace is allowed). "+
			"Install the CRDs, then restart crossgate-controller.", "kind", kindName(gvk))
	}
	p.unserved.Store(&unserved)
	return nil
}

// isUnserved reports whether obj's kind is one the API server does not serve.
func (p *Publisher) isUnserved(obj client.Object) bool {
	u := p.unserved.Load()
	if obj == nil || u == nil || len(*u) == 0 {
		return false
	}
	gvk, err := apiutil.GVKForObject(obj, Scheme())
	return err == nil && (*u)[kindName(gvk)]
}

// certificateRef reports whether obj is a Secret a Gateway's HTTPS listener refers to.
func (p *Publisher) certificateRef(obj any) bool {
	if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	o, ok := obj.(client.Object)
	refs := p.certificateRefs.Load()
	return ok && refs != nil && (*refs)[o.GetNamespace()+"/"+o.GetName()]
}

// certificateSecrets reads the Secrets the Gateways' HTTPS listeners refer to (whatever their
// class: the translator checks the rest), and remembers which they are.
func (p *Publisher) certificateSecrets(ctx context.Context, reader client.Reader, gws []gatewayv1.Gateway) ([]corev1.Secret, error) {
	refs := map[string]bool{}
	var out []corev1.Secret
	for i := range gws {
		for _, l := range gws[i].Spec.Listeners {
			if l.TLS == nil {
				continue
			}
			for _, ref := range l.TLS.CertificateRefs {
				key, ok := translator.SecretRef(gws[i].Namespace, ref)
				if !ok || refs[key.String()] {
					continue
				}
				refs[key.String()] = true
				s := corev1.Secret{}
				switch err := reader.Get(ctx, key, &s); {
				case err == nil:
					out = append(out, s)
				case !apierrors.IsNotFound(err):
					return nil, err
				}
			}
		}
	}
	p.certificateRefs.Store(&refs)
	return out, nil
}

// listItem is an object of a list's kind (for the optional kinds; nil for others).
func listItem(l client.ObjectList) client.Object {
	switch l.(type) {
	case *gatewayv1.TLSRouteList:
		return &gatewayv1.TLSRoute{}
	case *gatewayv1.ReferenceGrantList:
		return &gatewayv1.ReferenceGrant{}
	}
	return nil
}

// statusOnly reports an update that changed neither spec (generation) nor labels nor
// annotations of a kind whose spec is versioned by generation: the status writes of this very
// loop, which need no new translation.
func statusOnly(oldObj, newObj any) bool {
	o, ok1 := oldObj.(client.Object)
	n, ok2 := newObj.(client.Object)
	if !ok1 || !ok2 || n.GetGeneration() == 0 {
		return false
	}
	switch n.(type) {
	case *flomeshv1alpha1.ServiceExport, *flomeshv1alpha1.GlobalTrafficPolicy, *flomeshv1alpha1.MeshConfig,
		*gatewayv1.GatewayClass, *gatewayv1.Gateway, *gatewayv1.HTTPRoute:
	default:
		return false
	}
	return o.GetGeneration() == n.GetGeneration() && maps.Equal(o.GetLabels(), n.GetLabels()) && maps.Equal(o.GetAnnotations(), n.GetAnnotations())
}

// Input reads the translator's input from the cache and the EndpointSlices' store.
func (p *Publisher) Input(ctx context.Context) (*translator.Input, error) {
	return p.input(ctx, p.reader, func(context.Context) ([]translator.EndpointSlice, error) { return p.slices.List(), nil })
}

// input reads the translator's input through reader, its EndpointSlices through slices.
func (p *Publisher) input(ctx context.Context, reader client.Reader, slices func(context.Context) ([]translator.EndpointSlice, error)) (*translator.Input, error) {
	in := &translator.Input{
		Cluster: p.opts.ClusterKey(), DNSDomain: p.opts.DNSDomain,
		ControllerNamespace: p.opts.controllerNamespace(), ExportGateway: p.opts.exportGateway(ctx, reader).String(),
	}
	var (
		ns   corev1.NamespaceList
		svc  corev1.ServiceList
		pods corev1.PodList
		sas  corev1.ServiceAccountList
		sexp flomeshv1alpha1.ServiceExportList
		simp flomeshv1alpha1.ServiceImportList
		gtp  flomeshv1alpha1.GlobalTrafficPolicyList
		tt   accessv1alpha3.TrafficTargetList
		hrg  specsv1alpha4.HTTPRouteGroupList
		gwc  gatewayv1.GatewayClassList
		gw   gatewayv1.GatewayList
		hr   gatewayv1.HTTPRouteList
		tr   gatewayv1.TLSRouteList
		rg   gatewayv1.ReferenceGrantList
		dep  appsv1.DeploymentList
	)
	for _, l := range []client.ObjectList{&ns, &svc, &pods, &sas, &sexp, &simp, &gtp, &tt, &hrg, &gwc, &gw, &hr, &tr, &rg} {
		if p.isUnserved(listItem(l)) {
			continue // none to read
		}
		// The informers' objects themselves, not copies: nothing of a publication modifies them
		// (the translator reads its input only, TestGolden checks it; the status writer
		// copies an object before it writes), and a copy of every object on every full publish
		// was a large part of its time and garbage. A reader that is not a cache ignores this.
		if err := reader.List(ctx, l, client.UnsafeDisableDeepCopy); err != nil {
			return nil, err
		}
	}
	if u := p.unserved.Load(); u != nil {
		for k := range *u {
			in.UnservedKinds = append(in.UnservedKinds, k)
		}
		sort.Strings(in.UnservedKinds)
	}
	// Only the gateways' Deployments, as dataplane renders them.
	if err := reader.List(ctx, &dep, client.UnsafeDisableDeepCopy, client.MatchingLabels(wellknown.ManagedBy())); err != nil {
		return nil, err
	}
	eps, err := slices(ctx)
	if err != nil {
		return nil, err
	}
	in.Namespaces, in.Services, in.EndpointSlices, in.Pods, in.ServiceAccounts = ns.Items, svc.Items, eps, pods.Items, sas.Items
	in.ServiceExports, in.ServiceImports, in.GlobalTrafficPolicies = sexp.Items, simp.Items, gtp.Items
	in.TrafficTargets, in.HTTPRouteGroups = tt.Items, hrg.Items
	in.GatewayClasses, in.Gateways, in.HTTPRoutes, in.TLSRoutes, in.Deployments = gwc.Items, gw.Items, hr.Items, tr.Items, dep.Items
	in.ReferenceGrants = rg.Items
	if in.Secrets, err = p.certificateSecrets(ctx, reader, gw.Items); err != nil {
		return nil, err
	}
	mc := &flomeshv1alpha1.MeshConfig{}
	switch err := reader.Get(ctx, p.opts.MeshConfig, mc); {
	case err == nil:
		in.MeshConfig = mc
	case !apierrors.IsNotFound(err):
		return nil, err
	}
	return in, nil
}

func (p *Publisher) publish(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	started := time.Now()
	p.mu.Lock()
	work := p.pending.take()
	p.publishing = true
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.publishing = false
		p.mu.Unlock()
	}()
	if !work.full && p.kept != nil {
		if work.empty() {
			return
		}
		if path, ok := p.publishEndpoints(work.EndpointEvents); ok {
			p.count(path, started)
			return
		}
	}
	in, err := p.Input(ctx)
	if err != nil {
		p.log.Error("reading the cluster's objects", "error", err)
		p.kept = nil
		p.retryLater()
		return
	}
	p.kept = translator.NewIncremental(in)
	res := p.kept.Result()
	p.build(&res.IR)
	p.count(PathFull, started)
	if err := p.status.Write(ctx, in, &res.Statuses); err != nil {
		if ctx.Err() == nil {
			p.log.Error("writing statuses", "error", err)
			p.retryLater()
		}
	}
}

// publishEndpoints applies endpoint events to the kept translation and publishes what they
// change: by replacing single clusters and endpoints, or, when the change reaches further, by
// rebuilding every proxy's resources from the kept translation. ok is false when the caller is
// to publish in full: a Pod change the kept translation does not apply, or a replacement the
// cache refused.
func (p *Publisher) publishEndpoints(ev EndpointEvents) (path string, ok bool) {
	// published is written by setCache, on this goroutine only.
	path, err := PatchEndpoints(p.kept, p.xds, p.published, ev)
	switch {
	case err != nil:
		p.log.Error("replacing changed endpoints; publishing in full", "error", err)
		return "", false
	case path == PathFull:
		return "", false
	case path == PathRebuild:
		p.build(&p.kept.Result().IR)
	}
	return path, true
}

// build builds every proxy's resources from a translation and publishes them.
func (p *Publisher) build(snap *ir.Snapshot) {
	out, err := translate.Build(snap)
	if err != nil {
		// Invalid pieces are left out; the rest is still published.
		p.log.Error("some configuration could not be built and is left out", "error", err)
	}
	if err := p.setCache(out); err != nil {
		p.log.Error("some configuration could not be published", "error", err)
	}
}

func (p *Publisher) count(path string, started time.Time) {
	p.mu.Lock()
	if p.publishes == nil {
		p.publishes = map[string]int{}
	}
	p.publishes[path]++
	p.mu.Unlock()
	if p.opts.PublishObserver != nil {
		p.opts.PublishObserver.Published(path, time.Since(started))
	}
}

// Idle reports whether nothing is being published and no change waits to be.
func (p *Publisher) Idle() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.publishing && !p.pending.full && p.pending.empty()
}

// Publishes counts the publications so far by path (PathFull, PathIncremental, PathRebuild).
func (p *Publisher) Publishes() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.publishes)
}

func (p *Publisher) retryLater() {
	time.AfterFunc(time.Second, p.triggerFull)
}

// triggerFull asks for a full publish.
func (p *Publisher) triggerFull() {
	p.mu.Lock()
	p.pending.full = true
	p.mu.Unlock()
	p.deb.Trigger()
}

// setCache publishes every proxy's resources, with its certificate as SDS secrets for Envoy
// sidecars and gateways, and empties the keys of proxies that no longer exist.
func (p *Publisher) setCache(out *resources.Output) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	now := time.Now()
	next := map[string]bool{}
	usedCerts := map[string]bool{}
	var updates []cache.Update
	set := func(key, ns, name string, r *resources.Resources, withCert bool) {
		next[key] = true
		if withCert && p.opts.CA != nil {
			usedCerts[ns+"/"+name] = true
			secrets, err := p.secrets(ns, name, now)
			if err != nil {
				errs = append(errs, err)
			} else {
				own := *r
				own.Secrets = append(slices.Clip(r.Secrets), secrets...) // a gateway's certificates first
				r = &own
			}
		}
		updates = append(updates, cache.Update{Key: key, Resources: r})
	}
	for id, r := range out.Sidecars {
		ns, sa, _ := strings.Cut(id, "/")
		set(wellknown.Sidecar(ns, sa).String(), ns, sa, r, true)
	}
	for id, r := range out.Proxyless {
		ns, sa, _ := strings.Cut(id, "/")
		set(wellknown.Proxyless(ns, sa).String(), ns, sa, r, false)
	}
	for id, r := range out.Gateways {
		ns, name, _ := strings.Cut(id, "/")
		gi := translator.GatewayIdentity(ns, name)
		set(wellknown.Gateway(ns, name).String(), gi.Namespace, gi.ServiceAccount, r, true)
	}
	for key := range p.published {
		if !next[key] {
			updates = append(updates, cache.Update{Key: key, Resources: &resources.Resources{}})
		}
	}
	if err := p.xds.SetAll(updates); err != nil {
		errs = append(errs, err)
	}
	for id := range p.certs {
		if !usedCerts[id] {
			delete(p.certs, id)
		}
	}
	p.published = next
	p.scheduleRenewal()
	return errors.Join(errs...)
}

// secrets returns the SDS secrets of an identity, issuing its certificate when it has none or
// when the one it has is due for renewal.
func (p *Publisher) secrets(ns, sa string, now time.Time) ([]*tlsv3.Secret, error) {
	id := ns + "/" + sa
	c := p.certs[id]
	if c == nil || !now.Before(c.RenewAt()) {
		var err error
		if c, err = p.opts.CA.Issue(ns, sa, p.opts.CertTTL); err != nil {
			return nil, fmt.Errorf("issuing the certificate of %s: %w", id, err)
		}
		p.certs[id] = c
	}
	return translate.Secrets(c.CertPEM, c.KeyPEM, c.RootPEM)
}

// scheduleRenewal arranges a publication when the earliest certificate is due for renewal.
func (p *Publisher) scheduleRenewal() {
	var first time.Time
	for _, c := range p.certs {
		if first.IsZero() || c.RenewAt().Before(first) {
			first = c.RenewAt()
		}
	}
	if p.renewal != nil {
		p.renewal.Stop()
		p.renewal = nil
	}
	if !first.IsZero() {
		p.renewal = time.AfterFunc(time.Until(first)+time.Second, p.triggerFull)
	}
}

// Ready reports whether a first translation has been published.
func (p *Publisher) Ready() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.publishes) > 0
}
