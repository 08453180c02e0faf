// Package identity is crossgate's built-in certificate authority for workload identities: it
// issues short-lived certificates whose only name is a SPIFFE ID,
// spiffe://<trust-domain>/ns/<ns>/sa/<sa>, and writes them for grpc-go's file_watcher
// certificate provider with an atomic swap, so a reader never sees a certificate with the key of
// another.
//
// The root's certificate and key are plain PEM so that the controller can keep them in a Secret,
// and a cluster set can share one root.
package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/crossgate-io/crossgate/wellknown"
)

// Issuer issues a cluster's certificates: the workloads' SPIFFE certificates, and the serving
// certificates of the xDS server and the webhook. CA is the built-in one; package certmanager
// issues through cert-manager.
type Issuer interface {
	// Issue makes a certificate for namespace/serviceAccount valid for ttl.
	Issue(namespace, serviceAccount string, ttl time.Duration) (*Certificate, error)
	// IssueServing makes a server certificate for DNS names and IP addresses.
	IssueServing(dnsNames []string, ips []net.IP, ttl time.Duration) (*Certificate, error)
	// Root is the trust bundle (PEM) the issued certificates chain to.
	Root() []byte
}

var _ Issuer = (*CA)(nil)

// CA issues workload certificates.
type CA struct {
	trustDomain string
	cert        *x509.Certificate
	key         *ecdsa.PrivateKey
	certPEM     []byte
	keyPEM      []byte
	now         func() time.Time
}

// NewCA creates a root for a trust domain, valid for ten years.
func NewCA(trustDomain string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"crossgate"}, CommonName: "crossgate root " + trustDomain},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return LoadCA(trustDomain,
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
}

// LoadCA reads a root kept as PEM (for example in a Secret).
func LoadCA(trustDomain string, certPEM, keyPEM []byte) (*CA, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil {
		return nil, errors.New("the root certificate is not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing the root certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("the root certificate is not a CA")
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, errors.New("the root key is not PEM")
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing the root key: %w", err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, errors.New("the root key does not match the root certificate")
	}
	return &CA{trustDomain: trustDomain, cert: cert, key: key, certPEM: certPEM, keyPEM: keyPEM, now: time.Now}, nil
}

// PEM returns the root's certificate and key, to persist.
func (ca *CA) PEM() (cert, key []byte) { return ca.certPEM, ca.keyPEM }

// Root is the root's certificate.
func (ca *CA) Root() []byte { return ca.certPEM }

// SPIFFEID is the URI of a workload identity in the CA's trust domain.
func (ca *CA) SPIFFEID(namespace, serviceAccount string) string {
	return wellknown.SPIFFEID{TrustDomain: ca.trustDomain, Namespace: namespace, ServiceAccount: serviceAccount}.String()
}

// Certificate is an issued workload certificate with its key and the trust bundle.
type Certificate struct {
	CertPEM, KeyPEM, RootPEM []byte
	SPIFFEID                 string
	Serial                   *big.Int
	NotBefore, NotAfter      time.Time
}

// RenewAt is when the certificate should be replaced: two thirds into its lifetime.
func (c *Certificate) RenewAt() time.Time {
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) * 2 / 3)
}

// Issue makes a certificate for namespace/serviceAccount valid for ttl.
func (ca *CA) Issue(namespace, serviceAccount string, ttl time.Duration) (*Certificate, error) {
	if namespace == "" || serviceAccount == "" {
		return nil, errors.New("a workload identity needs a namespace and a ServiceAccount")
	}
	if ttl < time.Minute {
		return nil, fmt.Errorf("certificate lifetime %s is shorter than a minute", ttl)
	}
	id := ca.SPIFFEID(namespace, serviceAccount)
	u, err := url.Parse(id)
	if err != nil {
		return nil, err
	}
	c, err := ca.issue(&x509.Certificate{URIs: []*url.URL{u}}, ttl)
	if err != nil {
		return nil, err
	}
	c.SPIFFEID = id
	return c, nil
}

// IssueServing makes a server certificate for DNS names and IP addresses (the admission webhook's).
func (ca *CA) IssueServing(dnsNames []string, ips []net.IP, ttl time.Duration) (*Certificate, error) {
	if len(dnsNames) == 0 && len(ips) == 0 {
		return nil, errors.New("a serving certificate needs a DNS name or an IP address")
	}
	if ttl < time.Minute {
		return nil, fmt.Errorf("certificate lifetime %s is shorter than a minute", ttl)
	}
	return ca.issue(&x509.Certificate{DNSNames: dnsNames, IPAddresses: ips}, ttl)
}

// issue signs tmpl, with its names set, with a new key.
func (ca *CA) issue(tmpl *x509.Certificate, ttl time.Duration) (*Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := ca.now()
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = now.Add(-5 * time.Minute) // clock skew between peers
	tmpl.NotAfter = now.Add(ttl)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &Certificate{
		CertPEM:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:    pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
		RootPEM:   ca.certPEM,
		Serial:    tmpl.SerialNumber,
		NotBefore: tmpl.NotBefore,
		NotAfter:  tmpl.NotAfter,
	}, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// File names inside a directory written by WriteFiles, as grpc-go's file_watcher is configured.
const (
	CertFile = "cert.pem"
	KeyFile  = "key.pem"
	CAFile   = "ca.pem"
)

// WriteFiles writes cert.pem, key.pem and ca.pem into dir the way Kubernetes projects Secrets:
// into a new directory, then an atomic swap of the ..data link that the three names point
// through. A reader sees the old set or the new set, never a mix.
func (c *Certificate) WriteFiles(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	version := "..v" + strconv.FormatInt(time.Now().UnixNano(), 36)
	vdir := filepath.Join(dir, version)
	if err := os.Mkdir(vdir, 0o700); err != nil {
		return err
	}
	for name, b := range map[string][]byte{CertFile: c.CertPEM, KeyFile: c.KeyPEM, CAFile: c.RootPEM} {
		if err := os.WriteFile(filepath.Join(vdir, name), b, 0o600); err != nil {
			return err
		}
	}
	tmp := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(version, tmp); err != nil {
		return err
	}
	data := filepath.Join(dir, "..data")
	old, _ := os.Readlink(data)
	if err := os.Rename(tmp, data); err != nil { // rename(2) replaces the link atomically
		return err
	}
	for _, name := range []string{CertFile, KeyFile, CAFile} {
		p := filepath.Join(dir, name)
		if _, err := os.Lstat(p); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), p); err != nil {
				return err
			}
		}
	}
	if old != "" && old != version {
		_ = os.RemoveAll(filepath.Join(dir, old))
	}
	return nil
}

// TrustDomain is the SPIFFE trust domain of the certificates the CA issues.
func (ca *CA) TrustDomain() string { return ca.trustDomain }

// ClientTLS is the TLS configuration of a client proving c's identity and trusting c's root:
// what a proxy dials the xDS server with.
func (c *Certificate) ClientTLS() (*tls.Config, error) {
	pair, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(c.RootPEM) {
		return nil, errors.New("the certificate carries no root")
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}, RootCAs: pool}, nil
}
