package federation

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	ctrlcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/membership"
	"github.com/crossgate-io/crossgate/wellknown"
)

// The claim: a Lease in the member's kube-system namespace naming the control plane that manages
// it, so that two control planes never write into one member.
const (
	claimNamespace = membership.LeaseNamespace
	claimName      = membership.ClaimLease // the join grants rights on this one Lease only
)

// connection is a live link to a member: a client for writes, a cache of its exports, Services
// and the federation's imports, and the loop that renews the claim.
type connection struct {
	name    string
	server  string
	client  client.Client
	cache   ctrlcache.Cache
	synced  atomic.Bool
	healthy atomic.Bool
	cancel  context.CancelFunc
	done    sync.WaitGroup
}

func (c *connection) stop() {
	c.cancel()
	c.done.Wait()
}

// restConfig parses a kubeconfig; every request made with the result is bounded by timeout.
// Only inline credentials are taken (see inlineOnly).
func restConfig(raw []byte, timeout time.Duration) (*rest.Config, error) {
	if len(strings.TrimSpace(string(raw))) == 0 {
		return nil, errors.New("the kubeconfig is empty")
	}
	if err := inlineOnly(raw); err != nil {
		return nil, err
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(raw)
	if err != nil {
		return nil, err
	}
	cfg.Timeout = timeout
	cfg.QPS, cfg.Burst = 50, 100
	cfg.UserAgent = "crossgate-federation"
	return cfg, nil
}

// inlineOnly refuses a kubeconfig whose current context would make the control plane run a
// command (exec, an auth-provider plugin) or read one of its own files (tokenFile,
// client-certificate, client-key, certificate-authority) and send or trust what it holds: a
// Cluster's author is not the controller, and must not reach its process or its files. Only
// inline credentials (token, client-certificate-data and client-key-data, username and
// password) and certificate-authority-data are taken.
func inlineOnly(raw []byte) error {
	kc, err := clientcmd.Load(raw)
	if err != nil {
		return err
	}
	ctxName := kc.CurrentContext
	kctx := kc.Contexts[ctxName]
	if kctx == nil {
		return fmt.Errorf("current-context %q names no context", ctxName)
	}
	var bad []string
	if u := kc.AuthInfos[kctx.AuthInfo]; u != nil {
		at := func(field string) string { return fmt.Sprintf("users[%s].user.%s", kctx.AuthInfo, field) }
		if u.Exec != nil {
			bad = append(bad, at("exec"))
		}
		if u.AuthProvider != nil {
			bad = append(bad, at("auth-provider"))
		}
		if u.TokenFile != "" {
			bad = append(bad, at("tokenFile"))
		}
		if u.ClientCertificate != "" {
			bad = append(bad, at("client-certificate"))
		}
		if u.ClientKey != "" {
			bad = append(bad, at("client-key"))
		}
	}
	if c := kc.Clusters[kctx.Cluster]; c != nil {
		if c.CertificateAuthority != "" {
			bad = append(bad, fmt.Sprintf("clusters[%s].cluster.certificate-authority", kctx.Cluster))
		}
		if c.ProxyURL != "" {
			bad = append(bad, fmt.Sprintf("clusters[%s].cluster.proxy-url", kctx.Cluster))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%s: not allowed in a Cluster's kubeconfig (the control plane runs no command and reads none of its own files for a member); use inline credentials: token, or client-certificate-data and client-key-data, with certificate-authority-data", strings.Join(bad, ", "))
	}
	return nil
}

// connect checks that the member is reachable, accepts the credentials, runs crossgate and is
// not managed by another control plane, claims it, and starts watching it. A failure the Cluster's
// author must fix is a *ConditionError (the Managed condition's reason and message); any other
// error is beforeClaim's, which runs before the first write to the member.
func (f *Federation) connect(ctx context.Context, c *flomeshv1alpha1.Cluster, raw []byte, beforeClaim func(context.Context) error) (*connection, error) {
	began := time.Now()
	cfg, err := restConfig(raw, f.opts.ConnectTimeout)
	if err != nil {
		where := "spec.kubeconfig"
		if c.Spec.KubeconfigSecretRef != nil {
			where = fmt.Sprintf("the kubeconfig in Secret %s/%s", c.Spec.KubeconfigSecretRef.Namespace, c.Spec.KubeconfigSecretRef.Name)
		}
		return nil, flomeshv1alpha1.Problem(flomeshv1alpha1.ReasonKubeconfigInvalid, "%s does not parse as a kubeconfig with a current context: %v", where, err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, &flomeshv1alpha1.ConditionError{Reason: flomeshv1alpha1.ReasonKubeconfigInvalid, Message: err.Error()}
	}
	resources, err := dc.ServerResourcesForGroupVersion(flomeshv1alpha1.GroupVersion.String())
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, flomeshv1alpha1.Problem(flomeshv1alpha1.ReasonCrossgateNotInstalled, "%s serves no %s API: install crossgate in the member first.", cfg.Host, flomeshv1alpha1.GroupVersion)
		}
		return nil, classify(cfg.Host, err)
	}
	served := map[string]bool{}
	for _, r := range resources.APIResources {
		served[r.Name] = true
	}
	if !served["serviceexports"] || !served["serviceimports"] {
		return nil, flomeshv1alpha1.Problem(flomeshv1alpha1.ReasonCrossgateNotInstalled, "%s serves %s without ServiceExport and ServiceImport: install crossgate's CRDs in the member.", cfg.Host, flomeshv1alpha1.GroupVersion)
	}
	cl, err := client.New(cfg, client.Options{Scheme: f.scheme})
	if err != nil {
		return nil, &flomeshv1alpha1.ConditionError{Reason: flomeshv1alpha1.ReasonKubeconfigInvalid, Message: err.Error()}
	}
	var beforeErr error
	if p := f.claim(ctx, cl, cfg.Host, c.Name, func(ctx context.Context) error {
		beforeErr = beforeClaim(ctx)
		return beforeErr
	}); beforeErr != nil {
		return nil, beforeErr
	} else if p != nil {
		return nil, p
	}

	f.opts.Log.Debug("member claimed", "cluster", c.Name, "took", time.Since(began))
	watchCfg := rest.CopyConfig(cfg)
	watchCfg.Timeout = 0 // watches are long requests
	informers, err := ctrlcache.New(watchCfg, ctrlcache.Options{
		Scheme:           f.scheme,
		DefaultTransform: strip,
		ByObject: map[client.Object]ctrlcache.ByObject{
			&flomeshv1alpha1.ServiceImport{}: {Label: labels.SelectorFromSet(labels.Set{wellknown.FederatedLabel: "true"})},
		},
	})
	if err != nil {
		return nil, &flomeshv1alpha1.ConditionError{Reason: flomeshv1alpha1.ReasonKubeconfigInvalid, Message: err.Error()}
	}
	runCtx, cancel := context.WithCancel(f.base)
	conn := &connection{name: c.Name, server: cfg.Host, client: cl, cache: informers, cancel: cancel}
	conn.healthy.Store(true)
	kick := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { f.trigger() },
		UpdateFunc: func(any, any) { f.trigger() },
		DeleteFunc: func(any) { f.trigger() },
	}
	for _, o := range []client.Object{&flomeshv1alpha1.ServiceExport{}, &corev1.Service{}, &flomeshv1alpha1.ServiceImport{}} {
		inf, err := informers.GetInformer(runCtx, o)
		if err == nil {
			_, err = inf.AddEventHandler(kick)
		}
		if err != nil {
			cancel()
			return nil, flomeshv1alpha1.Problem(flomeshv1alpha1.ReasonUnreachable, "watching %T in %s: %v", o, cfg.Host, err)
		}
	}
	conn.done.Go(func() { _ = informers.Start(runCtx) })
	syncCtx, syncCancel := context.WithTimeout(runCtx, 6*f.opts.ConnectTimeout)
	ok := informers.WaitForCacheSync(syncCtx)
	syncCancel()
	if !ok {
		conn.stop()
		return nil, flomeshv1alpha1.Problem(flomeshv1alpha1.ReasonUnreachable, "the watches on %s did not sync within %v.", cfg.Host, 6*f.opts.ConnectTimeout)
	}
	conn.synced.Store(true)
	f.opts.Log.Debug("member watches synced", "cluster", c.Name, "took", time.Since(began))
	conn.done.Go(func() { f.health(runCtx, conn) })
	return conn, nil
}

// classify turns a request error into the Managed condition's reason and message.
func classify(host string, err error) *flomeshv1alpha1.ConditionError {
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case apierrors.IsUnauthorized(err):
		return flomeshv1alpha1.Problem(flomeshv1alpha1.ReasonUnauthorized, "%s refused the kubeconfig's credentials (401 Unauthorized): give the Cluster a kubeconfig with valid credentials.", host)
	case apierrors.IsForbidden(err):
		return flomeshv1alpha1.Problem(flomeshv1alpha1.ReasonForbidden, "%s accepted the credentials but forbids what the federation needs: %v. Grant the kubeconfig's user the federation's role (crossgate cluster join creates it).", host, err)
	case errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid):
		return flomeshv1alpha1.Problem(flomeshv1alpha1.ReasonTLSError, "the TLS handshake with %s failed: %v. Check the kubeconfig's certificate-authority-data and server address.", host, err)
	}
	var netErr net.Error
	var urlErr *url.Error
	if errors.As(err, &netErr) || errors.As(err, &urlErr) {
		return flomeshv1alpha1.Problem(flomeshv1alpha1.ReasonUnreachable, "%s cannot be reached: %v", host, err)
	}
	return flomeshv1alpha1.Problem(flomeshv1alpha1.ReasonUnreachable, "%s: %v", host, err)
}

// holder is this control plane's holder identity in a member's claim.
func (f *Federation) holder(name string) string { return f.opts.ID + "/" + name }

// claim takes or renews the member's claim Lease for this control plane. beforeWrite, when
// given, runs just before the Lease is written; its error ends the claim (returned as the
// reason Unreachable, the caller reads the error itself). It returns nil once the claim is held.
func (f *Federation) claim(ctx context.Context, cl client.Client, host, name string, beforeWrite func(context.Context) error) *flomeshv1alpha1.ConditionError {
	if beforeWrite == nil {
		beforeWrite = func(context.Context) error { return nil }
	}
	now := metav1.NewMicroTime(time.Now())
	var l coordinationv1.Lease
	err := cl.Get(ctx, client.ObjectKey{Namespace: claimNamespace, Name: claimName}, &l)
	if apierrors.IsNotFound(err) {
		l = coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: claimNamespace, Name: claimName, Labels: wellknown.ManagedBy()},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity: ptr.To(f.holder(name)), LeaseDurationSeconds: ptr.To(int32(f.opts.LeaseDuration / time.Second)),
				AcquireTime: &now, RenewTime: &now,
			},
		}
		if err := beforeWrite(ctx); err != nil {
			return &flomeshv1alpha1.ConditionError{Reason: flomeshv1alpha1.ReasonUnreachable, Message: err.Error()}
		}
		err = cl.Create(ctx, &l)
		if err == nil {
			return nil
		}
	}
	if err != nil {
		p := classify(host, err)
		p.Message = "claiming the member: " + p.Message
		return p
	}
	h := ptr.Deref(l.Spec.HolderIdentity, "")
	switch {
	case h == f.holder(name):
	case strings.HasPrefix(h, f.opts.ID+"/"):
		return flomeshv1alpha1.Problem(flomeshv1alpha1.ReasonAlreadyJoined, "%s is already a member of this cluster set as Cluster %q; one API server can join only once.", host, strings.TrimPrefix(h, f.opts.ID+"/"))
	case h != "" && l.Spec.RenewTime != nil && time.Since(l.Spec.RenewTime.Time) < time.Duration(ptr.Deref(l.Spec.LeaseDurationSeconds, 0))*time.Second:
		return flomeshv1alpha1.Problem(flomeshv1alpha1.ReasonManagedByAnotherControlPlane, "%s is managed by another control plane (%s holds Lease %s/%s, renewed %s). Remove it from that cluster set first (crossgate cluster leave there).", host, h, claimNamespace, claimName, l.Spec.RenewTime.UTC().Format(time.RFC3339))
	default:
		l.Spec.HolderIdentity = ptr.To(f.holder(name))
		l.Spec.AcquireTime = &now
		l.Spec.LeaseTransitions = ptr.To(ptr.Deref(l.Spec.LeaseTransitions, 0) + 1)
	}
	l.Spec.RenewTime = &now
	l.Spec.LeaseDurationSeconds = ptr.To(int32(f.opts.LeaseDuration / time.Second))
	if err := beforeWrite(ctx); err != nil {
		return &flomeshv1alpha1.ConditionError{Reason: flomeshv1alpha1.ReasonUnreachable, Message: err.Error()}
	}
	if err := cl.Update(ctx, &l); err != nil {
		if apierrors.IsConflict(err) {
			return flomeshv1alpha1.Problem(flomeshv1alpha1.ReasonManagedByAnotherControlPlane, "another writer changed Lease %s/%s in %s while this control plane claimed it.", claimNamespace, claimName, host)
		}
		p := classify(host, err)
		p.Message = "claiming the member: " + p.Message
		return p
	}
	return nil
}

// unclaim deletes the member's claim if this control plane holds it.
func (f *Federation) unclaim(ctx context.Context, cl client.Client, name string) error {
	var l coordinationv1.Lease
	if err := cl.Get(ctx, client.ObjectKey{Namespace: claimNamespace, Name: claimName}, &l); err != nil {
		return client.IgnoreNotFound(err)
	}
	if ptr.Deref(l.Spec.HolderIdentity, "") != f.holder(name) {
		return nil
	}
	return client.IgnoreNotFound(cl.Delete(ctx, &l, client.Preconditions{UID: &l.UID, ResourceVersion: &l.ResourceVersion}))
}

// health renews the claim every HealthInterval. A failed renewal marks the member unreachable
// (Managed=False) but keeps everything read from it, so the imports it holds and its endpoints
// elsewhere stay as they were; a later success reconnects. Losing the claim to another control
// plane ends the connection.
func (f *Federation) health(ctx context.Context, conn *connection) {
	t := time.NewTicker(f.opts.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		reqCtx, cancel := context.WithTimeout(ctx, f.opts.ConnectTimeout)
		p := f.claim(reqCtx, conn.client, conn.server, conn.name, nil)
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch {
		case p == nil:
			f.probed(ctx, conn.name, time.Now())
			if !conn.healthy.Load() {
				// Back after an outage. The watches may be waiting out a long backoff, so
				// connect afresh: the member's last state stands in until the new watches sync.
				f.opts.Log.Info("member reachable again; reconnecting", "cluster", conn.name)
				f.disconnectConn(conn)
				f.requeue(conn.name)
				return
			}
		case p.Reason == flomeshv1alpha1.ReasonManagedByAnotherControlPlane, p.Reason == flomeshv1alpha1.ReasonAlreadyJoined:
			conn.healthy.Store(false)
			_ = f.setManaged(ctx, conn.name, false, p.Reason, p.Message)
			f.disconnectConn(conn)
			f.requeue(conn.name)
			return
		default:
			if conn.healthy.Swap(false) {
				f.opts.Log.Warn("member unreachable", "cluster", conn.name, "reason", p.Reason, "error", p.Message)
			}
			_ = f.setManaged(ctx, conn.name, false, p.Reason, p.Message+" The imports it holds and its exports elsewhere are kept as last seen until it is back.")
		}
	}
}

// disconnectConn ends conn if it is still its member's connection (from the health loop, which
// conn.stop waits for, so the stop runs on its own goroutine).
func (f *Federation) disconnectConn(conn *connection) {
	f.mu.Lock()
	m := f.members[conn.name]
	if m != nil && m.conn == conn {
		m.conn, m.fingerprint = nil, ""
	}
	f.mu.Unlock()
	go conn.stop()
}

// strip keeps the cached objects small: the federation reads the exports' spec, the Services'
// ports and type, and the imports.
func strip(obj any) (any, error) {
	o, ok := obj.(client.Object)
	if !ok {
		return obj, nil
	}
	o.SetManagedFields(nil)
	if a := o.GetAnnotations(); a != nil {
		delete(a, corev1.LastAppliedConfigAnnotation)
	}
	if svc, ok := o.(*corev1.Service); ok {
		svc.Spec = corev1.ServiceSpec{Ports: svc.Spec.Ports, ClusterIP: svc.Spec.ClusterIP, Type: svc.Spec.Type}
		svc.Status = corev1.ServiceStatus{}
		svc.Annotations = nil
		// Only the labels that mark crossgate's placeholder for an import are kept: an export of
		// a placeholder is not valid (translator.ExportCondition, in plan.Aggregate).
		var labels map[string]string
		if wellknown.IsPlaceholder(svc.Name, svc.Labels) {
			labels = map[string]string{wellknown.ImportLabel: svc.Name, wellknown.ManagedByLabel: wellknown.ManagedByValue}
		}
		svc.Labels = labels
	}
	return o, nil
}
