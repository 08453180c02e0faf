package inject

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/crossgate-io/crossgate/xds/identity"
)

// TestCertificateFromFiles: with CertFile set (cert-manager's Secret mounted), the server serves
// that pair, reads it again when it changes, and keeps the last good pair while a rotation is
// half written.
func TestCertificateFromFiles(t *testing.T) {
	ca, err := identity.NewCA("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(certPEM, keyPEM []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "tls.crt"), certPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "tls.key"), keyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	issue := func() *identity.Certificate {
		c, err := ca.IssueServing([]string{"crossgate-controller.crossgate-system.svc"}, nil, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	s := &Server{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
	if _, err := s.certificate(nil); err == nil {
		t.Error("no files: want an error")
	}
	first := issue()
	write(first.CertPEM, first.KeyPEM)
	got, err := s.certificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(first.CertPEM, []byte("CERTIFICATE")) || got.Certificate == nil {
		t.Fatal("no certificate served")
	}
	firstDER := got.Certificate[0]

	second := issue()
	time.Sleep(10 * time.Millisecond) // a later modification time
	write(second.CertPEM, second.KeyPEM)
	got, err = s.certificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(got.Certificate[0], firstDER) {
		t.Error("the rotated files were not read again")
	}
	secondDER := got.Certificate[0]

	time.Sleep(10 * time.Millisecond)
	write(issue().CertPEM, second.KeyPEM) // half written: the key of another certificate
	got, err = s.certificate(nil)
	if err != nil || !bytes.Equal(got.Certificate[0], secondDER) {
		t.Errorf("a half-written rotation: %v; want the last good pair kept", err)
	}
}
