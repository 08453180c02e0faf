// Package membership joins a member cluster to a control plane and takes it out again, with a
// dedicated ServiceAccount in the member holding only what the federation needs, never the
// user's own credentials.
package membership

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/wellknown"
	"github.com/crossgate-io/crossgate/xds/identity"
)

// Names the join creates.
const (
	Namespace      = wellknown.SystemNamespace
	ServiceAccount = "crossgate-federation"
	RootSecret     = wellknown.RootCASecret
	// LeaseNamespace holds the federation's claim on the member, the Lease ClaimLease.
	LeaseNamespace = metav1.NamespaceSystem
	ClaimLease     = "crossgate-federation"
)

// MemberRules are what the federation does in a member: read exports and Services, set the
// exports' Conflict condition, own the ServiceImports, create namespaces for them.
var MemberRules = []rbacv1.PolicyRule{
	{APIGroups: []string{"flomesh.io"}, Resources: []string{"serviceexports"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{"flomesh.io"}, Resources: []string{"serviceexports/status"}, Verbs: []string{"get", "patch"}},
	{APIGroups: []string{"flomesh.io"}, Resources: []string{"serviceimports"}, Verbs: []string{"get", "list", "watch", "create", "patch", "update", "delete"}},
	{APIGroups: []string{"flomesh.io"}, Resources: []string{"serviceimports/status"}, Verbs: []string{"get", "patch", "update"}},
	{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "create"}},
}

// LeaseRules are the federation's rights on its claim, in kube-system only: that one Lease (by
// name; RBAC cannot restrict create by name, so creating a Lease is allowed, and taking over
// another, such as kube-controller-manager's, is not).
var LeaseRules = []rbacv1.PolicyRule{
	{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, ResourceNames: []string{ClaimLease}, Verbs: []string{"get", "update", "delete"}},
	{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"create"}},
}

// ImportsPolicy is the ValidatingAdmissionPolicy (and its binding) that holds the federation's
// ServiceImport writes to the namespaces imports go to: every namespace but the
// wellknown.SystemNamespaces, where no export is federated. RBAC cannot name that set (it
// grows with every exported namespace, and the federation must not be able to create
// RoleBindings to follow it), so the API server's in-process admission does, which no webhook
// outage can bypass.
const ImportsPolicy = "crossgate-federation-imports"

// importsPolicy is ImportsPolicy: ServiceImport writes by the federation's ServiceAccount are
// refused in the SystemNamespaces, naming the namespace and what is allowed.
func importsPolicy() (*admissionregistrationv1.ValidatingAdmissionPolicy, *admissionregistrationv1.ValidatingAdmissionPolicyBinding) {
	quoted := make([]string, len(wellknown.SystemNamespaces))
	for i, n := range wellknown.SystemNamespaces {
		quoted[i] = "'" + n + "'"
	}
	list := "[" + strings.Join(quoted, ", ") + "]"
	labels := wellknown.ManagedBy()
	p := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: ImportsPolicy, Labels: labels},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update, admissionregistrationv1.Delete},
					Rule: admissionregistrationv1.Rule{
						APIGroups: []string{flomeshv1alpha1.GroupVersion.Group}, APIVersions: []string{"*"},
						Resources: []string{"serviceimports", "serviceimports/status"},
					},
				},
			}}},
			MatchConditions: []admissionregistrationv1.MatchCondition{{
				Name:       "federation-service-account",
				Expression: fmt.Sprintf("request.userInfo.username == 'system:serviceaccount:%s:%s'", Namespace, ServiceAccount),
			}},
			Validations: []admissionregistrationv1.Validation{{
				Expression: "!(request.namespace in " + list + ")",
				MessageExpression: "'metadata.namespace ' + request.namespace + ': the federation writes ServiceImports in every namespace but " +
					strings.Join(wellknown.SystemNamespaces, ", ") + ", where no export is federated'",
				Reason: ptr.To(metav1.StatusReasonForbidden),
			}},
		},
	}
	b := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ImportsPolicy, Labels: labels},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        ImportsPolicy,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
		},
	}
	return p, b
}

// SecretName is the control plane's Secret (in Namespace) holding member name's kubeconfig.
func SecretName(name string) string { return "kubeconfig-" + name }

// clusterClient reads and writes Cluster objects on the control plane.
func clusterClient(cp *rest.Config) (client.Client, error) {
	scheme := runtime.NewScheme()
	if err := flomeshv1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	return client.New(cp, client.Options{Scheme: scheme})
}

// Options of a join.
type Options struct {
	// Name of the Cluster object (the last part of the cluster key) and its place in the set.
	Name, Region, Zone, Group string
	// GatewayHost and GatewayPort are where the other clusters reach the member's gateway.
	GatewayHost string
	GatewayPort int32
	// TokenTTL is the lifetime of the federation's token in the member (1 year when zero).
	TokenTTL time.Duration
	// Progress receives a line per step.
	Progress func(format string, args ...any)
}

// Join sets up the member for the federation and registers it on the control plane: a
// ServiceAccount with MemberRules and LeaseRules in the member, a kubeconfig for it in a Secret
// on the control plane, the Cluster object naming that Secret, and the control plane's root CA
// in the member, so that the set shares one root.
func Join(ctx context.Context, cp, member *rest.Config, o Options) error {
	progress := o.Progress
	if progress == nil {
		progress = func(string, ...any) {}
	}
	if o.Name == "" || o.GatewayHost == "" {
		return errors.New("a join needs the member's name and its gateway host (--gateway-host)")
	}
	// Everything that can be refused is refused before anything is created in either cluster.
	if errs := validation.IsDNS1123Label(o.Name); len(errs) > 0 {
		return fmt.Errorf("--name %q: %s (it names the Cluster and the member's place in cluster keys)", o.Name, strings.Join(errs, "; "))
	}
	mk, err := kubernetes.NewForConfig(member)
	if err != nil {
		return err
	}
	ck, err := kubernetes.NewForConfig(cp)
	if err != nil {
		return err
	}
	c, err := clusterClient(cp)
	if err != nil {
		return err
	}
	secretName := SecretName(o.Name)
	cl := &flomeshv1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: o.Name}, Spec: flomeshv1alpha1.ClusterSpec{
		Region: o.Region, Zone: o.Zone, Group: o.Group, GatewayHost: o.GatewayHost, GatewayPort: o.GatewayPort,
		KubeconfigSecretRef: &flomeshv1alpha1.SecretKeyReference{Namespace: Namespace, Name: secretName, Key: "kubeconfig"},
	}}
	// The control plane's own validation of the Cluster (a server-side dry run), so that a bad
	// --region or --gateway-host is refused with the API's message before anything exists.
	if err := c.Create(ctx, cl.DeepCopy(), client.DryRunAll); apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("Cluster %s already exists on the control plane: `crossgate cluster leave %s` first, or join under another --name", o.Name, o.Name)
	} else if err != nil {
		return fmt.Errorf("the Cluster this join would register: %w", err)
	}
	progress("creating ServiceAccount %s/%s and its roles in the member", Namespace, ServiceAccount)
	if err := ensureAccess(ctx, mk); err != nil {
		return fmt.Errorf("in the member: %w", err)
	}
	progress("sharing the control plane's root CA with the member")
	if err := shareRoot(ctx, ck, mk); err != nil {
		return err
	}
	ttl := o.TokenTTL
	if ttl == 0 {
		ttl = 365 * 24 * time.Hour
	}
	tr, err := mk.CoreV1().ServiceAccounts(Namespace).CreateToken(ctx, ServiceAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(ttl / time.Second))},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("a token for %s/%s in the member: %w", Namespace, ServiceAccount, err)
	}
	kubeconfig, err := kubeconfigFor(member, o.Name, tr.Status.Token)
	if err != nil {
		return err
	}

	progress("registering Cluster %s on the control plane", o.Name)
	if _, err := ck.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: Namespace, Name: secretName,
			Labels: wellknown.ManagedBy(),
		},
		Data: map[string][]byte{"kubeconfig": kubeconfig},
	}
	if _, err := ck.CoreV1().Secrets(Namespace).Create(ctx, secret, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		_, err = ck.CoreV1().Secrets(Namespace).Update(ctx, secret, metav1.UpdateOptions{})
		if err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	if err := c.Create(ctx, cl); apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("Cluster %s already exists on the control plane: `crossgate cluster leave %s` first, or join under another --name", o.Name, o.Name)
	} else if err != nil {
		return err
	}
	return nil
}

func ensureAccess(ctx context.Context, k kubernetes.Interface) error {
	if _, err := k.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	labels := wellknown.ManagedBy()
	if _, err := k.CoreV1().ServiceAccounts(Namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: ServiceAccount, Labels: labels}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: Namespace, Name: ServiceAccount}}
	cr := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: ServiceAccount, Labels: labels}, Rules: MemberRules}
	if _, err := k.RbacV1().ClusterRoles().Create(ctx, cr, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		_, err = k.RbacV1().ClusterRoles().Update(ctx, cr, metav1.UpdateOptions{})
		if err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ServiceAccount, Labels: labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: ServiceAccount}, Subjects: subject,
	}
	if _, err := k.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	p, b := importsPolicy()
	if _, err := k.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, p, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		cur, err := k.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Spec = p.Spec
		if _, err := k.AdmissionregistrationV1().ValidatingAdmissionPolicies().Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			return err
		}
	} else if err != nil {
		return fmt.Errorf("the admission policy %s: %w", p.Name, err)
	}
	if _, err := k.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, b, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("the admission policy binding %s: %w", b.Name, err)
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: LeaseNamespace, Name: ServiceAccount, Labels: labels}, Rules: LeaseRules}
	if _, err := k.RbacV1().Roles(LeaseNamespace).Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: LeaseNamespace, Name: ServiceAccount, Labels: labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: ServiceAccount}, Subjects: subject,
	}
	if _, err := k.RbacV1().RoleBindings(LeaseNamespace).Create(ctx, rb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// shareRoot copies the control plane's root CA into the member. A member with another root is
// an error: its workloads would not trust the others'.
func shareRoot(ctx context.Context, cp, member kubernetes.Interface) error {
	root, err := cp.CoreV1().Secrets(Namespace).Get(ctx, RootSecret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil // no root yet: the controllers create one, and the next join shares it
	}
	if err != nil {
		return fmt.Errorf("reading the control plane's root CA: %w", err)
	}
	have, err := member.CoreV1().Secrets(Namespace).Get(ctx, RootSecret, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		copy := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: RootSecret, Labels: root.Labels, Annotations: root.Annotations},
			Type:       root.Type, Data: root.Data,
		}
		_, err = member.CoreV1().Secrets(Namespace).Create(ctx, copy, metav1.CreateOptions{})
		return err
	case err != nil:
		return err
	case !bytes.Equal(have.Data[identity.SecretCertKey], root.Data[identity.SecretCertKey]):
		return fmt.Errorf("the member already has its own root CA (Secret %s/%s): its workloads would not trust the set's. Delete that Secret and restart crossgate-controller there, then join again", Namespace, RootSecret)
	}
	return nil
}

// kubeconfigFor is a kubeconfig reaching the member's API server as the federation's
// ServiceAccount.
func kubeconfigFor(member *rest.Config, name, token string) ([]byte, error) {
	ca := member.CAData
	if len(ca) == 0 && member.CAFile != "" {
		b, err := os.ReadFile(member.CAFile)
		if err != nil {
			return nil, err
		}
		ca = b
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: member.Host, CertificateAuthorityData: ca, TLSServerName: member.ServerName}
	cfg.AuthInfos[ServiceAccount] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: ServiceAccount}
	cfg.CurrentContext = name
	return clientcmd.Write(*cfg)
}

// Leave takes a member out of the set: it deletes the Cluster object and waits until the
// federation has deleted its imports and claim in the member (the Cluster's finalizer), then
// the kubeconfig Secret, and, when member is given, the federation's ServiceAccount and roles
// there.
func Leave(ctx context.Context, cp, member *rest.Config, name string) error {
	c, err := clusterClient(cp)
	if err != nil {
		return err
	}
	cl := &flomeshv1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name}}
	ck, err := kubernetes.NewForConfig(cp)
	if err != nil {
		return err
	}
	if err := c.Delete(ctx, cl); apierrors.IsNotFound(err) {
		// Nothing to leave, unless an earlier leave stopped half-way (its Secret is still here).
		if _, serr := ck.CoreV1().Secrets(Namespace).Get(ctx, SecretName(name), metav1.GetOptions{}); apierrors.IsNotFound(serr) {
			return fmt.Errorf("no Cluster %s on the control plane (`kubectl get clusters` lists them): nothing to leave", name)
		}
	} else if err != nil {
		return err
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		err := c.Get(ctx, client.ObjectKeyFromObject(cl), cl)
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("Cluster %s is still there after 3 minutes (is the federation running on the control plane?): %w", name, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err := ck.CoreV1().Secrets(Namespace).Delete(ctx, SecretName(name), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if member == nil {
		return nil
	}
	mk, err := kubernetes.NewForConfig(member)
	if err != nil {
		return err
	}
	for _, del := range []func() error{
		func() error {
			return mk.RbacV1().RoleBindings(LeaseNamespace).Delete(ctx, ServiceAccount, metav1.DeleteOptions{})
		},
		func() error {
			return mk.RbacV1().Roles(LeaseNamespace).Delete(ctx, ServiceAccount, metav1.DeleteOptions{})
		},
		func() error {
			return mk.RbacV1().ClusterRoleBindings().Delete(ctx, ServiceAccount, metav1.DeleteOptions{})
		},
		func() error { return mk.RbacV1().ClusterRoles().Delete(ctx, ServiceAccount, metav1.DeleteOptions{}) },
		func() error {
			return mk.CoreV1().ServiceAccounts(Namespace).Delete(ctx, ServiceAccount, metav1.DeleteOptions{})
		},
		func() error {
			return mk.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Delete(ctx, ImportsPolicy, metav1.DeleteOptions{})
		},
		func() error {
			return mk.AdmissionregistrationV1().ValidatingAdmissionPolicies().Delete(ctx, ImportsPolicy, metav1.DeleteOptions{})
		},
	} {
		if err := del(); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("removing the federation's access from the member: %w", err)
		}
	}
	return nil
}
