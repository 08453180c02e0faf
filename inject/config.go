package inject

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/crossgate-io/crossgate/wellknown"
	"github.com/crossgate-io/crossgate/xds/identity"
)

// ConfigurationName is the MutatingWebhookConfiguration crossgate keeps.
const ConfigurationName = "crossgate-sidecar-injector"

// ProtectedNamespaces are never injected, labelled or not: Kubernetes' own, and the controller's
// (with the webhook down, its fail-closed registration would block the controller's own pods).
func ProtectedNamespaces(controllerNamespace string) []string {
	out := slices.Clone(wellknown.SystemNamespaces)
	if controllerNamespace != "" && !slices.Contains(out, controllerNamespace) {
		out = append(out, controllerNamespace)
	}
	return out
}

// Configuration is the webhook's registration: pods created in namespaces labelled
// NamespaceLabel=enabled only, never in the ProtectedNamespaces, failing closed there (a pod
// that would run without its sidecar is refused rather than created), and never consulted for
// any other namespace or for a pod labelled PodLabel=false.
func Configuration(cc admissionregistrationv1.WebhookClientConfig, controllerNamespace string) *admissionregistrationv1.MutatingWebhookConfiguration {
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	never := admissionregistrationv1.NeverReinvocationPolicy
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: ConfigurationName, Labels: map[string]string{wellknown.ManagedByLabel: wellknown.ManagedByValue}},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "sidecar.crossgate.io",
			ClientConfig:            cc,
			FailurePolicy:           &fail,
			SideEffects:             &none,
			ReinvocationPolicy:      &never,
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          ptr.To[int32](5),
			NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{NamespaceLabel: NamespaceLabelValue},
				MatchExpressions: []metav1.LabelSelectorRequirement{{
					Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: ProtectedNamespaces(controllerNamespace),
				}},
			},
			// A pod labelled out is never sent to the webhook: it starts while the webhook is down.
			ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: PodLabel, Operator: metav1.LabelSelectorOpNotIn, Values: OptOutValues,
			}}},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{
					APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"},
					Scope: ptr.To(admissionregistrationv1.NamespacedScope),
				},
			}},
		}},
	}
}

// EnsureConfiguration creates or updates the registration.
func EnsureConfiguration(ctx context.Context, c client.Client, want *admissionregistrationv1.MutatingWebhookConfiguration) error {
	have := &admissionregistrationv1.MutatingWebhookConfiguration{}
	err := c.Get(ctx, client.ObjectKeyFromObject(want), have)
	if apierrors.IsNotFound(err) {
		return c.Create(ctx, want, client.FieldOwner(wellknown.FieldOwner))
	}
	if err != nil {
		return err
	}
	if equality.Semantic.DeepDerivative(want.Webhooks, have.Webhooks) {
		return nil
	}
	have.Webhooks = want.Webhooks
	have.Labels = want.Labels
	return c.Update(ctx, have, client.FieldOwner(wellknown.FieldOwner))
}

// Server serves the webhook over HTTPS with a certificate from ca for names and ips, renewed
// before it expires, or, when CertFile is set, with the certificate in CertFile and KeyFile
// (cert-manager's Secret mounted as files), read again whenever either file changes.
type Server struct {
	Handler  http.Handler
	CA       identity.Issuer
	DNSNames []string
	IPs      []net.IP
	TTL      time.Duration

	CertFile, KeyFile string

	cert    *tls.Certificate
	renewAt time.Time
	stamp   string
}

// fileStamp identifies the current contents of the certificate files.
func (s *Server) fileStamp() string {
	var b strings.Builder
	for _, f := range []string{s.CertFile, s.KeyFile} {
		if fi, err := os.Stat(f); err == nil {
			fmt.Fprintf(&b, "%d/%d;", fi.ModTime().UnixNano(), fi.Size())
		}
	}
	return b.String()
}

func (s *Server) certificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if s.CertFile != "" {
		stamp := s.fileStamp()
		if s.cert != nil && stamp == s.stamp {
			return s.cert, nil
		}
		pair, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
		if err != nil {
			if s.cert != nil { // a rotation half written: keep serving the old pair
				return s.cert, nil
			}
			return nil, fmt.Errorf("the webhook's certificate files: %w", err)
		}
		s.cert, s.stamp = &pair, stamp
		return s.cert, nil
	}
	if s.cert != nil && time.Now().Before(s.renewAt) {
		return s.cert, nil
	}
	ttl := s.TTL
	if ttl == 0 {
		ttl = 24 * time.Hour
	}
	c, err := s.CA.IssueServing(s.DNSNames, s.IPs, ttl)
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
	if err != nil {
		return nil, err
	}
	s.cert, s.renewAt = &pair, c.RenewAt()
	return s.cert, nil
}

// Serve serves on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if _, err := s.certificate(nil); err != nil {
		return err
	}
	var mu sync.Mutex
	mux := http.NewServeMux()
	mux.Handle(Path, s.Handler)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			mu.Lock()
			defer mu.Unlock()
			return s.certificate(h)
		}},
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
