//go:build integration

// Package membership tests joining a member to a control plane with a dedicated
// ServiceAccount, on two real API servers with the federation running.
package membership

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/controllers/federation"
	"github.com/crossgate-io/crossgate/membership"
	"github.com/crossgate-io/crossgate/sandbox"
	"github.com/crossgate-io/crossgate/test/internal/poll"
	"github.com/crossgate-io/crossgate/test/internal/sbtest"
)

// eventually waits for cond (test/internal/poll).
var eventually = poll.Eventually

func TestJoinWithAScopedServiceAccount(t *testing.T) {
	sb := sbtest.Start(t, "control-plane", "cluster-1")
	cp, member := sb.Cluster("control-plane"), sb.Cluster("cluster-1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	mgr, err := ctrl.NewManager(cp.Config, manager.Options{
		Scheme: sandbox.Scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := federation.Setup(mgr, federation.Options{Log: log, HealthInterval: 500 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = mgr.Start(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	// The control plane's root CA, as its controller would have made it.
	root := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: membership.Namespace, Name: membership.RootSecret},
		Data:       map[string][]byte{"ca.crt": []byte("root certificate"), "ca.key": []byte("root key")},
	}
	if err := cp.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: membership.Namespace}}); err != nil {
		t.Fatal(err)
	}
	if err := cp.Client.Create(ctx, root); err != nil {
		t.Fatal(err)
	}

	// A join that would be refused is refused before anything is created in either cluster.
	for _, bad := range []membership.Options{
		{Name: "Bad_Name", GatewayHost: "127.0.0.1"},
		{Name: "cluster-1", GatewayHost: "127.0.0.1", Region: "EU West"},
		{Name: "cluster-1", GatewayHost: "not a host"},
		{Name: "cluster-1", GatewayHost: "127.0.0.1", GatewayPort: -5},
	} {
		err := membership.Join(ctx, cp.Config, member.Config, bad)
		if err == nil {
			t.Fatalf("join %+v accepted", bad)
		}
		t.Logf("join %+v: %v", bad, err)
		if err := member.Client.Get(ctx, client.ObjectKey{Name: membership.Namespace}, &corev1.Namespace{}); !apierrors.IsNotFound(err) {
			t.Fatalf("a refused join (%+v) created the member's namespace: %v", bad, err)
		}
		var cls flomeshv1alpha1.ClusterList
		if err := cp.Client.List(ctx, &cls); err != nil || len(cls.Items) > 0 {
			t.Fatalf("a refused join (%+v) left Clusters: %v %d", bad, err, len(cls.Items))
		}
	}
	if err := membership.Leave(ctx, cp.Config, member.Config, "no-such-cluster"); err == nil || !strings.Contains(err.Error(), "no Cluster no-such-cluster") {
		t.Errorf("leaving a Cluster that does not exist: %v", err)
	}

	if err := membership.Join(ctx, cp.Config, member.Config, membership.Options{Name: "cluster-1", GatewayHost: "127.0.0.1", GatewayPort: 81}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "Cluster cluster-1 Managed=True", func() error {
		var c flomeshv1alpha1.Cluster
		if err := cp.Client.Get(ctx, client.ObjectKey{Name: "cluster-1"}, &c); err != nil {
			return err
		}
		if m := meta.FindStatusCondition(c.Status.Conditions, flomeshv1alpha1.ConditionManaged); m == nil || m.Status != metav1.ConditionTrue {
			return fmt.Errorf("Managed is %+v", m)
		}
		return nil
	})

	// The Secret holds a token of the dedicated ServiceAccount, not the admin's credentials.
	var s corev1.Secret
	if err := cp.Client.Get(ctx, client.ObjectKey{Namespace: membership.Namespace, Name: "kubeconfig-cluster-1"}, &s); err != nil {
		t.Fatal(err)
	}
	kc, err := clientcmd.Load(s.Data["kubeconfig"])
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range kc.AuthInfos {
		if a.Token == "" || len(a.ClientCertificateData) > 0 || a.ClientCertificate != "" {
			t.Errorf("the kubeconfig's credentials are not a ServiceAccount token: %+v", a)
		}
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(s.Data["kubeconfig"])
	if err != nil {
		t.Fatal(err)
	}
	asFederation, err := client.New(cfg, client.Options{Scheme: sandbox.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	if err := asFederation.List(ctx, &corev1.SecretList{}); !apierrors.IsForbidden(err) {
		t.Errorf("the federation's ServiceAccount can list Secrets: %v", err)
	}
	if err := asFederation.List(ctx, &flomeshv1alpha1.ServiceExportList{}); err != nil {
		t.Errorf("the federation's ServiceAccount cannot list ServiceExports: %v", err)
	}
	// It may hold its own claim, and cannot take over another Lease of kube-system (such as
	// kube-controller-manager's leader election).
	other := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "kube-controller-manager"}}
	if err := member.Client.Create(ctx, other); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if err := member.Client.Get(ctx, client.ObjectKeyFromObject(other), other); err != nil {
		t.Fatal(err)
	}
	holder := "crossgate-federation-takeover"
	other.Spec.HolderIdentity = &holder
	if err := asFederation.Update(ctx, other); !apierrors.IsForbidden(err) {
		t.Errorf("the federation's ServiceAccount can update kube-controller-manager's Lease: %v", err)
	}
	if err := asFederation.Delete(ctx, other); !apierrors.IsForbidden(err) {
		t.Errorf("the federation's ServiceAccount can delete kube-controller-manager's Lease: %v", err)
	}
	if err := asFederation.Get(ctx, client.ObjectKey{Namespace: "kube-system", Name: membership.ClaimLease}, &coordinationv1.Lease{}); err != nil {
		t.Errorf("the federation's ServiceAccount cannot read its claim: %v", err)
	}
	// It writes ServiceImports where imports go, and never in Kubernetes' own namespaces: the
	// join's admission policy refuses them there, naming the field.
	imp := func(ns, name string) *flomeshv1alpha1.ServiceImport {
		return &flomeshv1alpha1.ServiceImport{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       flomeshv1alpha1.ServiceImportSpec{Type: flomeshv1alpha1.ClusterSetIP, Ports: []flomeshv1alpha1.ServicePort{{Port: 80, Protocol: "TCP"}}},
		}
	}
	for _, ns := range []string{"kube-system", "kube-public", "kube-node-lease", membership.Namespace} {
		eventually(t, 10*time.Second, "a ServiceImport in "+ns+" refused", func() error {
			err := asFederation.Create(ctx, imp(ns, "planted"))
			if err == nil {
				_ = member.Client.Delete(ctx, imp(ns, "planted"))
				return fmt.Errorf("created")
			}
			if !strings.Contains(err.Error(), "metadata.namespace "+ns) {
				return err
			}
			return nil
		})
	}
	if err := member.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "imports"}}); err != nil {
		t.Fatal(err)
	}
	if err := asFederation.Create(ctx, imp("imports", "allowed")); err != nil {
		t.Errorf("the federation cannot write a ServiceImport where imports go: %v", err)
	} else if err := asFederation.Delete(ctx, imp("imports", "allowed")); err != nil {
		t.Errorf("the federation cannot delete its ServiceImport: %v", err)
	}
	// The same policy leaves the member's own users alone.
	if err := member.Client.Create(ctx, imp("kube-public", "by-admin")); err != nil {
		t.Errorf("the admission policy refuses an admin's ServiceImport: %v", err)
	}

	// No wildcard anywhere in what the join granted.
	var cr rbacv1.ClusterRole
	if err := member.Client.Get(ctx, client.ObjectKey{Name: membership.ServiceAccount}, &cr); err != nil {
		t.Fatal(err)
	}
	var role rbacv1.Role
	if err := member.Client.Get(ctx, client.ObjectKey{Namespace: membership.LeaseNamespace, Name: membership.ServiceAccount}, &role); err != nil {
		t.Fatal(err)
	}
	for _, r := range append(cr.Rules, role.Rules...) {
		if slices.Contains(r.Verbs, "*") || slices.Contains(r.Resources, "*") || slices.Contains(r.APIGroups, "*") {
			t.Errorf("a wildcard rule: %+v", r)
		}
	}
	// The set shares one root.
	var copied corev1.Secret
	if err := member.Client.Get(ctx, client.ObjectKey{Namespace: membership.Namespace, Name: membership.RootSecret}, &copied); err != nil || string(copied.Data["ca.crt"]) != "root certificate" {
		t.Errorf("the member's root CA: %v %q", err, copied.Data["ca.crt"])
	}

	// The federation works through that account: an export in the member gets its Conflict
	// condition (a status patch).
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "web"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "web"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt(8080)}}}},
		&flomeshv1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "web"}, Spec: flomeshv1alpha1.ServiceExportSpec{
			Rules: []flomeshv1alpha1.ServiceExportRule{{PortNumber: 80, Path: "/web", PathType: flomeshv1alpha1.PathMatchPrefix}},
		}},
	} {
		if err := member.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "the export's Conflict condition written through the ServiceAccount", func() error {
		var e flomeshv1alpha1.ServiceExport
		if err := member.Client.Get(ctx, client.ObjectKey{Namespace: "web", Name: "web"}, &e); err != nil {
			return err
		}
		if c := meta.FindStatusCondition(e.Status.Conditions, flomeshv1alpha1.ConditionConflict); c == nil {
			return fmt.Errorf("no Conflict condition")
		}
		return nil
	})

	// Leaving: the Cluster goes and the claim with it.
	if err := membership.Leave(ctx, cp.Config, member.Config, "cluster-1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the Cluster and the member's claim gone", func() error {
		if err := cp.Client.Get(ctx, client.ObjectKey{Name: "cluster-1"}, &flomeshv1alpha1.Cluster{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("the Cluster: %w", err)
		}
		if err := member.Client.Get(ctx, client.ObjectKey{Namespace: "kube-system", Name: "crossgate-federation"}, &coordinationv1.Lease{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("the claim: %w", err)
		}
		if err := member.Client.Get(ctx, client.ObjectKey{Namespace: membership.Namespace, Name: membership.ServiceAccount}, &corev1.ServiceAccount{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("the ServiceAccount: %w", err)
		}
		if err := member.Client.Get(ctx, client.ObjectKey{Name: membership.ImportsPolicy}, &admissionregistrationv1.ValidatingAdmissionPolicy{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("the admission policy: %w", err)
		}
		return nil
	})
}
