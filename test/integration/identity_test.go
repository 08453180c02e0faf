//go:build integration

package integration

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/crossgate-io/crossgate/xds/identity"
)

// TestRootInSecret: controllers racing on one cluster end with one root, kept in a Secret; a
// second cluster given a copy of that Secret (what cluster join does) issues certificates that
// the first cluster's bundle verifies; a Secret of another trust domain is refused.
func TestRootInSecret(t *testing.T) {
	ctx := context.Background()
	c1, c2 := sb.Cluster("cluster-1").Kube, sb.Cluster("cluster-2").Kube
	if _, err := c1.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "crossgate-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "crossgate-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	roots := make([][]byte, 4)
	errs := make([]error, 4)
	for i := range roots {
		wg.Go(func() {
			ca, err := identity.LoadOrCreateRoot(ctx, c1, "crossgate-system", "crossgate-root", "cluster.local")
			if err == nil {
				roots[i], _ = ca.PEM()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i := range roots {
		if errs[i] != nil || string(roots[i]) != string(roots[0]) {
			t.Fatalf("racing controllers: %v; roots equal: %v", errs[i], string(roots[i]) == string(roots[0]))
		}
	}
	// cluster join copies the Secret to the member.
	s, err := c1.CoreV1().Secrets("crossgate-system").Get(ctx, "crossgate-root", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	copied := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "crossgate-system", Name: "crossgate-root", Annotations: s.Annotations}, Data: s.Data}
	if _, err := c2.CoreV1().Secrets("crossgate-system").Create(ctx, copied, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ca2, err := identity.LoadOrCreateRoot(ctx, c2, "crossgate-system", "crossgate-root", "cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca2.Issue("httpbin", "httpbin", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(roots[0])
	b, _ := pem.Decode(leaf.CertPEM)
	cert, _ := x509.ParseCertificate(b.Bytes)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("a certificate of cluster-2 does not verify with cluster-1's root: %v", err)
	}
	if _, err := identity.LoadOrCreateRoot(ctx, c1, "crossgate-system", "crossgate-root", "other.domain"); err == nil {
		t.Error("the root of cluster.local was reused for trust domain other.domain")
	}
}
