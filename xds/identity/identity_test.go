package identity

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestIssueAndVerify(t *testing.T) {
	ca, err := NewCA("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.Issue("curl", "curl", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://cluster.local/ns/curl/sa/curl" || len(leaf.DNSNames) != 0 {
		t.Errorf("names: URIs %v DNS %v", leaf.URIs, leaf.DNSNames)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.RootPEM)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("does not verify against its root: %v", err)
	}
	if r := c.RenewAt(); !r.After(c.NotBefore) || !r.Before(c.NotAfter) {
		t.Errorf("renew at %s outside the lifetime", r)
	}
	// The root survives a round trip through PEM (a Secret) and still signs verifiable leaves.
	cp, kp := ca.PEM()
	again, err := LoadCA("cluster.local", cp, kp)
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := again.Issue("a", "b", time.Hour)
	b, _ := pem.Decode(c2.CertPEM)
	l2, _ := x509.ParseCertificate(b.Bytes)
	if _, err := l2.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("a leaf of the reloaded root does not verify: %v", err)
	}
	other, _ := NewCA("cluster.local")
	if _, err := LoadCA("cluster.local", cp, func() []byte { _, k := other.PEM(); return k }()); err == nil {
		t.Error("a root with another's key was accepted")
	}
	for _, bad := range []struct{ ns, sa string }{{"", "x"}, {"x", ""}} {
		if _, err := ca.Issue(bad.ns, bad.sa, time.Hour); err == nil {
			t.Errorf("issued for %q/%q", bad.ns, bad.sa)
		}
	}
	if _, err := ca.Issue("a", "b", time.Second); err == nil {
		t.Error("issued a certificate shorter than a minute")
	}
}

func TestWriteFilesSwapsAtomically(t *testing.T) {
	ca, _ := NewCA("cluster.local")
	dir := t.TempDir()
	for i := range 3 {
		c, _ := ca.Issue("curl", "curl", time.Hour)
		if err := c.WriteFiles(dir); err != nil {
			t.Fatal(err)
		}
		cert, _ := os.ReadFile(filepath.Join(dir, CertFile))
		key, _ := os.ReadFile(filepath.Join(dir, KeyFile))
		if string(cert) != string(c.CertPEM) || string(key) != string(c.KeyPEM) {
			t.Fatalf("write %d: the files are not the new certificate", i)
		}
		if _, err := tls.X509KeyPair(cert, key); err != nil {
			t.Fatalf("write %d: certificate and key do not match: %v", i, err)
		}
	}
	entries, _ := os.ReadDir(dir)
	versions := 0
	for _, e := range entries {
		if e.IsDir() {
			versions++
		}
	}
	if versions != 1 {
		t.Errorf("%d version directories left, want 1 (old ones removed)", versions)
	}
}
