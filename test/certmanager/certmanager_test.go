//go:build integration

// Package certmanager tests issuing crossgate's certificates through cert-manager: cert-manager's
// own controllers (CA issuer, approver) sign the CertificateRequests on a real API server.
package certmanager

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/dataplane"
	"github.com/crossgate-io/crossgate/inject"
	"github.com/crossgate-io/crossgate/sandbox"
	"github.com/crossgate-io/crossgate/test/internal/cmtest"
	"github.com/crossgate-io/crossgate/test/internal/poll"
	"github.com/crossgate-io/crossgate/test/internal/sbtest"
	"github.com/crossgate-io/crossgate/translator"
	"github.com/crossgate-io/crossgate/xds/identity"
	"github.com/crossgate-io/crossgate/xds/identity/certmanager"
)

const ns = "crossgate-system"

// eventually waits for cond (test/internal/poll).
var eventually = poll.Eventually

// verify checks that certPEM chains to root and returns the leaf.
func verify(t *testing.T, certPEM, root []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	if b == nil {
		t.Fatalf("not PEM: %q", certPEM)
	}
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(root)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("the certificate does not chain to the CA for client and server use: %v", err)
	}
	return leaf
}

// setup starts an API server with cert-manager and a CA Issuer corp-ca of a new root.
func setup(t *testing.T) (*sandbox.Cluster, client.Client, []byte) {
	t.Helper()
	ctx := context.Background()
	sb := sbtest.Start(t, "cluster-1")
	cl := sb.Cluster("cluster-1")
	cmtest.InstallCRDs(t, ctx, cl.Client)
	cmtest.StartController(t, cl.Kubeconfig, t.TempDir())
	cmc, err := client.New(cl.Config, client.Options{Scheme: certmanager.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	root, err := identity.NewCA("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM := root.PEM()
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "corp-ca"}, Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM},
		},
	} {
		if err := cl.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	if err := cmc.Create(ctx, &cmapi.Issuer{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "corp-ca"},
		Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: "corp-ca"}}},
	}); err != nil {
		t.Fatal(err)
	}
	return cl, cmc, certPEM
}

// TestIssueThroughCertManager: workload and serving certificates come from cert-manager's CA
// issuer, with the SPIFFE ID as their only name, chaining to the issuer's CA, which becomes the
// trust bundle; the key never leaves the process and no CertificateRequest is left behind; a
// missing issuer is a clear error.
func TestIssueThroughCertManager(t *testing.T) {
	ctx := context.Background()
	_, cmc, caPEM := setup(t)
	iss, err := certmanager.New(certmanager.Options{Client: cmc, Namespace: ns, IssuerName: "corp-ca", IssuerKind: "Issuer", TrustDomain: "cluster.local"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var c *identity.Certificate
	eventually(t, 30*time.Second, "a workload certificate (the issuer becomes Ready first)", func() error {
		c, err = iss.Issue("httpbin", "httpbin", time.Hour)
		return err
	})
	t.Logf("the first certificate took %v", time.Since(start).Round(time.Millisecond))
	leaf := verify(t, c.CertPEM, caPEM)
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://cluster.local/ns/httpbin/sa/httpbin" || len(leaf.DNSNames) != 0 || c.SPIFFEID != leaf.URIs[0].String() {
		t.Errorf("names: URIs %v DNS %v (SPIFFEID %q)", leaf.URIs, leaf.DNSNames, c.SPIFFEID)
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d < 59*time.Minute || d > 61*time.Minute {
		t.Errorf("lifetime %v, want an hour", d)
	}
	if _, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM); err != nil {
		t.Errorf("the key does not match the certificate: %v", err)
	}
	if !bytes.Equal(c.RootPEM, caPEM) || !bytes.Equal(iss.Root(), caPEM) {
		t.Error("the trust bundle is not the issuer's CA")
	}
	start = time.Now()
	if c, err = iss.Issue("curl", "curl", time.Hour); err != nil {
		t.Fatal(err)
	}
	t.Logf("a certificate once the issuer is ready took %v", time.Since(start).Round(time.Millisecond))

	s, err := iss.IssueServing([]string{"crossgate-controller.crossgate-system.svc"}, []net.IP{net.ParseIP("127.0.0.1")}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if leaf := verify(t, s.CertPEM, caPEM); !slices.Equal(leaf.DNSNames, []string{"crossgate-controller.crossgate-system.svc"}) || len(leaf.IPAddresses) != 1 {
		t.Errorf("serving certificate names %v %v", leaf.DNSNames, leaf.IPAddresses)
	}

	var crs cmapi.CertificateRequestList
	if err := cmc.List(ctx, &crs, client.InNamespace(ns)); err != nil || len(crs.Items) != 0 {
		t.Errorf("%d CertificateRequests left behind (%v)", len(crs.Items), err)
	}
	for _, cr := range crs.Items {
		if bytes.Contains(cr.Spec.Request, []byte("PRIVATE KEY")) {
			t.Error("a private key was sent")
		}
	}

	missing, err := certmanager.New(certmanager.Options{Client: cmc, Namespace: ns, IssuerName: "missing", IssuerKind: "ClusterIssuer", TrustDomain: "cluster.local", Timeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = missing.Issue("httpbin", "httpbin", time.Hour)
	if err == nil || !strings.Contains(err.Error(), "ClusterIssuer missing") || !strings.Contains(err.Error(), "not signed within 3s") {
		t.Errorf("a missing issuer: %v", err)
	}
	for _, bad := range []string{"corp-ca", "Certificate/x", "Issuer/"} {
		if _, _, _, err := certmanager.ParseIssuerRef(bad); err == nil || !strings.Contains(err.Error(), "want Issuer/NAME or ClusterIssuer/NAME") {
			t.Errorf("ParseIssuerRef(%q): %v", bad, err)
		}
	}
	if k, g, n, err := certmanager.ParseIssuerRef("ClusterIssuer.example.io/vault"); err != nil || k != "ClusterIssuer" || g != "example.io" || n != "vault" {
		t.Errorf("ParseIssuerRef with a group: %s %s %s %v", k, g, n, err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestControllerWithCertManager: crossgate-controller --cert-manager-issuer serves xDS with a
// certificate of the issuer's CA, registers the webhook with that CA as its bundle, and gives the
// gateway an identity Secret issued through cert-manager.
func TestControllerWithCertManager(t *testing.T) {
	ctx := context.Background()
	cl, _, caPEM := setup(t)
	dir := t.TempDir()
	crossgate, err := sandbox.BuildCommands(filepath.Join(dir, "bin"))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "fsm-system"}},
		&flomeshv1alpha1.MeshConfig{
			ObjectMeta: metav1.ObjectMeta{Namespace: "fsm-system", Name: "fsm-mesh-config"},
			Spec:       flomeshv1alpha1.MeshConfigSpec{ClusterSet: flomeshv1alpha1.ClusterSetSpec{Name: "cluster-1"}},
		},
		&gatewayv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "crossgate"}, Spec: gatewayv1.GatewayClassSpec{ControllerName: "crossgate.io/gateway-controller"}},
		&gatewayv1.Gateway{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "crossgate-gateway"},
			Spec:       gatewayv1.GatewaySpec{GatewayClassName: "crossgate", Listeners: translator.GatewayListeners(80)},
		},
	} {
		if err := cl.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	xds, metrics, webhook := freePort(t), freePort(t), freePort(t)
	logPath := filepath.Join(dir, "controller.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(filepath.Dir(crossgate), "crossgate-controller"),
		"--namespace="+ns, "--cert-manager-issuer=Issuer/corp-ca",
		"--xds-address=127.0.0.1:"+strconv.Itoa(xds), "--xds-host=127.0.0.1", "--xds-port="+strconv.Itoa(xds),
		"--metrics-address=127.0.0.1:"+strconv.Itoa(metrics), "--webhook-address=127.0.0.1:"+strconv.Itoa(webhook), "--debug-address=",
		fmt.Sprintf("--webhook-url=https://127.0.0.1:%d%s", webhook, inject.Path))
	cmd.Env = append(os.Environ(), "KUBECONFIG="+cl.Kubeconfig)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("the controller's log:\n%s", b)
		}
	})
	eventually(t, time.Minute, "the controller ready", func() error {
		if cmd.ProcessState != nil {
			return fmt.Errorf("exited")
		}
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", metrics))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %s", resp.Status)
		}
		return nil
	})

	// The xDS server presents a certificate of the issuer's CA.
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", xds), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the chain is verified below
	if err != nil {
		t.Fatal(err)
	}
	chain := conn.ConnectionState().PeerCertificates
	conn.Close()
	verify(t, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: chain[0].Raw}), caPEM)

	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	eventually(t, 10*time.Second, "the webhook registered with the issuer's CA", func() error {
		if err := cl.Client.Get(ctx, client.ObjectKey{Name: inject.ConfigurationName}, &mwc); err != nil {
			return err
		}
		if !bytes.Equal(mwc.Webhooks[0].ClientConfig.CABundle, caPEM) {
			return fmt.Errorf("caBundle is not the issuer's CA")
		}
		return nil
	})
	eventually(t, 30*time.Second, "the gateway's identity Secret issued through cert-manager", func() error {
		var secrets corev1.SecretList
		if err := cl.Client.List(ctx, &secrets, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, s := range secrets.Items {
			if strings.HasPrefix(s.Name, dataplane.IdentitySecretPrefix) {
				if !bytes.Equal(s.Data["ca.crt"], caPEM) {
					return fmt.Errorf("%s: ca.crt is not the issuer's CA", s.Name)
				}
				leaf := verify(t, s.Data["tls.crt"], caPEM)
				if len(leaf.URIs) != 1 || !strings.HasPrefix(leaf.URIs[0].String(), "spiffe://cluster.local/ns/"+ns+"/sa/") {
					return fmt.Errorf("%s: URIs %v", s.Name, leaf.URIs)
				}
				return nil
			}
		}
		return fmt.Errorf("no %s* Secret in %s", dataplane.IdentitySecretPrefix, ns)
	})
	if log, _ := os.ReadFile(logPath); bytes.Contains(log, []byte("crossgate-root-ca")) {
		t.Error("the controller touched the built-in root CA although cert-manager issues")
	}
}
