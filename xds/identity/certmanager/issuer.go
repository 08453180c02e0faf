// Package certmanager issues crossgate's certificates through cert-manager: each certificate is
// a CertificateRequest (cert-manager's Go API) against a configured Issuer or ClusterIssuer,
// with a key that never leaves this process. The issuer's CA, as cert-manager reports it in
// status.ca, is the trust bundle; every cluster of a set must use issuers of one CA.
package certmanager

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/crossgate-io/crossgate/wellknown"
	"github.com/crossgate-io/crossgate/xds/identity"
)

// Scheme knows cert-manager's kinds.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = cmapi.AddToScheme(s)
	return s
}

// Options configure an Issuer.
type Options struct {
	// Client writes CertificateRequests; its scheme must know cert-manager's kinds (Scheme).
	Client client.Client
	// Namespace holds the CertificateRequests (the controller's own), and the Issuer when
	// IssuerKind is Issuer.
	Namespace string
	// IssuerName, IssuerKind (Issuer or ClusterIssuer) and IssuerGroup (cert-manager.io when
	// empty) name the issuer.
	IssuerName, IssuerKind, IssuerGroup string
	// TrustDomain of the SPIFFE IDs.
	TrustDomain string
	// Timeout bounds the wait for one certificate (30s when zero).
	Timeout time.Duration
}

// The CertificateRequests, in the controller's namespace.
// +kubebuilder:rbac:groups=cert-manager.io,resources=certificaterequests,verbs=get;create;delete,namespace=crossgate-system

// Issuer implements identity.Issuer with cert-manager.
type Issuer struct {
	opts Options
	mu   sync.Mutex
	root []byte
}

var _ identity.Issuer = (*Issuer)(nil)

// ParseIssuerRef reads "Issuer/name" or "ClusterIssuer/name" (an optional ".group" after the
// kind: "ClusterIssuer.example.io/name").
func ParseIssuerRef(ref string) (kind, group, name string, err error) {
	k, name, ok := strings.Cut(ref, "/")
	kind, group, _ = strings.Cut(k, ".")
	if !ok || name == "" || (kind != cmapi.IssuerKind && kind != cmapi.ClusterIssuerKind) {
		return "", "", "", fmt.Errorf("issuer %q: want Issuer/NAME or ClusterIssuer/NAME (with .GROUP after the kind for an external issuer)", ref)
	}
	return kind, group, name, nil
}

// New returns an Issuer. It checks the options only; Start checks the issuer.
func New(opts Options) (*Issuer, error) {
	if opts.Client == nil || opts.Namespace == "" || opts.IssuerName == "" || opts.TrustDomain == "" {
		return nil, errors.New("cert-manager issuer: a client, a namespace, an issuer name and a trust domain are needed")
	}
	if opts.IssuerKind != cmapi.IssuerKind && opts.IssuerKind != cmapi.ClusterIssuerKind {
		return nil, fmt.Errorf("cert-manager issuer kind %q: want Issuer or ClusterIssuer", opts.IssuerKind)
	}
	if opts.IssuerGroup == "" {
		opts.IssuerGroup = "cert-manager.io"
	}
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Second
	}
	return &Issuer{opts: opts}, nil
}

func (i *Issuer) ref() string {
	if i.opts.IssuerKind == cmapi.IssuerKind {
		return fmt.Sprintf("Issuer %s/%s", i.opts.Namespace, i.opts.IssuerName)
	}
	return "ClusterIssuer " + i.opts.IssuerName
}

// Root is the issuer's CA as last reported by cert-manager (nil before the first certificate).
func (i *Issuer) Root() []byte {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.root
}

// Issue requests a certificate whose only name is the SPIFFE ID of namespace/serviceAccount.
func (i *Issuer) Issue(namespace, serviceAccount string, ttl time.Duration) (*identity.Certificate, error) {
	if namespace == "" || serviceAccount == "" {
		return nil, errors.New("a workload identity needs a namespace and a ServiceAccount")
	}
	id := wellknown.SPIFFEID{TrustDomain: i.opts.TrustDomain, Namespace: namespace, ServiceAccount: serviceAccount}.String()
	u, err := url.Parse(id)
	if err != nil {
		return nil, err
	}
	c, err := i.request(&x509.CertificateRequest{URIs: []*url.URL{u}}, ttl, "crossgate-"+serviceAccount+"-")
	if err != nil {
		return nil, fmt.Errorf("%s for %s/%s: %w", i.ref(), namespace, serviceAccount, err)
	}
	c.SPIFFEID = id
	return c, nil
}

// IssueServing requests a server certificate for DNS names and IP addresses.
func (i *Issuer) IssueServing(dnsNames []string, ips []net.IP, ttl time.Duration) (*identity.Certificate, error) {
	if len(dnsNames) == 0 && len(ips) == 0 {
		return nil, errors.New("a serving certificate needs a DNS name or an IP address")
	}
	tmpl := &x509.CertificateRequest{DNSNames: dnsNames, IPAddresses: ips}
	if len(dnsNames) > 0 {
		tmpl.Subject = pkix.Name{CommonName: dnsNames[0]}
	}
	c, err := i.request(tmpl, ttl, "crossgate-serving-")
	if err != nil {
		return nil, fmt.Errorf("%s for a serving certificate: %w", i.ref(), err)
	}
	return c, nil
}

// request makes a key, sends its CSR as a CertificateRequest, waits until cert-manager answers,
// and deletes the request: the certificate lives with its key, in this process.
func (i *Issuer) request(tmpl *x509.CertificateRequest, ttl time.Duration, prefix string) (*identity.Certificate, error) {
	if ttl < time.Minute {
		return nil, fmt.Errorf("certificate lifetime %s is shorter than a minute", ttl)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), i.opts.Timeout)
	defer cancel()
	cr := &cmapi.CertificateRequest{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: i.opts.Namespace, GenerateName: prefix,
			Labels: wellknown.ManagedBy(),
		},
		Spec: cmapi.CertificateRequestSpec{
			Request:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			Duration:  &metav1.Duration{Duration: ttl},
			IssuerRef: cmmeta.IssuerReference{Name: i.opts.IssuerName, Kind: i.opts.IssuerKind, Group: i.opts.IssuerGroup},
			Usages:    []cmapi.KeyUsage{cmapi.UsageDigitalSignature, cmapi.UsageServerAuth, cmapi.UsageClientAuth},
		},
	}
	if err := i.opts.Client.Create(ctx, cr); err != nil {
		return nil, fmt.Errorf("creating a CertificateRequest in %s: %w", i.opts.Namespace, err)
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer dcancel()
		_ = i.opts.Client.Delete(dctx, cr)
	}()
	var last string
	timedOut := func() error {
		if last == "" {
			last = "no condition: is cert-manager running, and does the issuer exist?"
		}
		return fmt.Errorf("CertificateRequest %s not signed within %v (%s)", cr.Name, i.opts.Timeout, last)
	}
	for {
		if err := i.opts.Client.Get(ctx, client.ObjectKeyFromObject(cr), cr); err != nil {
			// The time ran out during the read, or the client's rate limiter refused to wait
			// past the deadline (golang.org/x/time/rate has no sentinel error for that).
			if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "would exceed context deadline") {
				return nil, timedOut()
			}
			return nil, fmt.Errorf("reading CertificateRequest %s: %w", cr.Name, err)
		}
		for _, c := range cr.Status.Conditions {
			switch {
			case c.Type == cmapi.CertificateRequestConditionDenied && c.Status == cmmeta.ConditionTrue:
				return nil, fmt.Errorf("CertificateRequest %s was denied (%s: %s); an approver must approve crossgate's requests", cr.Name, c.Reason, c.Message)
			case c.Type == cmapi.CertificateRequestConditionReady && c.Reason == cmapi.CertificateRequestReasonFailed:
				return nil, fmt.Errorf("CertificateRequest %s failed: %s", cr.Name, c.Message)
			case c.Type == cmapi.CertificateRequestConditionReady && c.Status == cmmeta.ConditionTrue && len(cr.Status.Certificate) > 0:
				return i.certificate(cr, kder)
			case c.Type == cmapi.CertificateRequestConditionReady:
				last = fmt.Sprintf("Ready=%s %s: %s", c.Status, c.Reason, c.Message)
			}
		}
		select {
		case <-ctx.Done():
			return nil, timedOut()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (i *Issuer) certificate(cr *cmapi.CertificateRequest, kder []byte) (*identity.Certificate, error) {
	block, _ := pem.Decode(cr.Status.Certificate)
	if block == nil {
		return nil, fmt.Errorf("CertificateRequest %s: status.certificate is not PEM", cr.Name)
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("CertificateRequest %s: %w", cr.Name, err)
	}
	if len(cr.Status.CA) == 0 {
		return nil, fmt.Errorf("CertificateRequest %s: the issuer reports no CA (status.ca); crossgate needs it to verify peers: use a CA or Vault issuer", cr.Name)
	}
	i.mu.Lock()
	i.root = cr.Status.CA
	i.mu.Unlock()
	return &identity.Certificate{
		CertPEM:   cr.Status.Certificate,
		KeyPEM:    pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
		RootPEM:   cr.Status.CA,
		Serial:    leaf.SerialNumber,
		NotBefore: leaf.NotBefore,
		NotAfter:  leaf.NotAfter,
	}, nil
}
