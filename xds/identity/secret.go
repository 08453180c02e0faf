package identity

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/crossgate-io/crossgate/wellknown"
)

// Keys of the Secret that holds a root.
const (
	SecretCertKey = "ca.crt"
	SecretKeyKey  = "ca.key"
	// TrustDomainAnnotation records the trust domain the root was made for.
	TrustDomainAnnotation = "crossgate.io/trust-domain"
)

// LoadOrCreateRoot reads the root from Secret namespace/name, or creates both when it does not
// exist. When two controllers race to create it, the loser reads the winner's, so one root
// results. A Secret made for another trust domain is an error, not silently reused.
func LoadOrCreateRoot(ctx context.Context, kube kubernetes.Interface, namespace, name, trustDomain string) (*CA, error) {
	secrets := kube.CoreV1().Secrets(namespace)
	for range 2 {
		s, err := secrets.Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			if td := s.Annotations[TrustDomainAnnotation]; td != "" && td != trustDomain {
				return nil, fmt.Errorf("secret %s/%s holds the root of trust domain %q, not %q", namespace, name, td, trustDomain)
			}
			ca, err := LoadCA(trustDomain, s.Data[SecretCertKey], s.Data[SecretKeyKey])
			if err != nil {
				return nil, fmt.Errorf("secret %s/%s: %w", namespace, name, err)
			}
			return ca, nil
		}
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("reading the root from secret %s/%s: %w", namespace, name, err)
		}
		ca, err := NewCA(trustDomain)
		if err != nil {
			return nil, err
		}
		err = StoreRoot(ctx, kube, namespace, name, ca)
		if err == nil {
			return ca, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, err
		}
		// Another controller created it first: read theirs.
	}
	return nil, fmt.Errorf("secret %s/%s: could not read or create the root", namespace, name)
}

// StoreRoot creates Secret namespace/name holding ca, so that clusters sharing one root (a
// cluster set) issue certificates the others trust. It fails with AlreadyExists when the Secret
// is there.
func StoreRoot(ctx context.Context, kube kubernetes.Interface, namespace, name string, ca *CA) error {
	cert, key := ca.PEM()
	_, err := kube.CoreV1().Secrets(namespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: namespace, Name: name,
			Labels:      wellknown.ManagedBy(),
			Annotations: map[string]string{TrustDomainAnnotation: ca.TrustDomain()},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{SecretCertKey: cert, SecretKeyKey: key},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("storing the root in secret %s/%s: %w", namespace, name, err)
	}
	return err
}
