package server

import (
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/crossgate-io/crossgate/xds/cache"
	"github.com/crossgate-io/crossgate/xds/identity"
	"github.com/crossgate-io/crossgate/xds/resources"
	"github.com/crossgate-io/crossgate/xds/translate"
)

// TestSDSRotation serves an Envoy-style SDS subscription to the certificate and the bundle, then
// a rotated certificate: the client receives the new certificate on the same stream.
func TestSDSRotation(t *testing.T) {
	ca, err := identity.NewCA("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	issue := func() *resources.Resources {
		cert, err := ca.Issue("curl", "curl", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		secrets, err := translate.Secrets(cert.CertPEM, cert.KeyPEM, cert.RootPEM)
		if err != nil {
			t.Fatal(err)
		}
		return &resources.Resources{Secrets: secrets}
	}
	c := cache.New(cache.NodeIDResolver, nil)
	first := issue()
	if err := c.Set("sidecar~curl/curl", first); err != nil {
		t.Fatal(err)
	}
	conn, ctx := serveInsecure(t, c)
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req := &discoveryv3.DiscoveryRequest{
		Node: &corev3.Node{Id: "sidecar~curl/curl"}, TypeUrl: resourcev3.SecretType,
		ResourceNames: []string{translate.SecretCertificate, translate.SecretRootCA},
	}
	if err := st.Send(req); err != nil {
		t.Fatal(err)
	}
	certOf := func(r *discoveryv3.DiscoveryResponse) string {
		for _, a := range r.GetResources() {
			sec := &tlsv3.Secret{}
			if err := a.UnmarshalTo(sec); err != nil {
				t.Fatal(err)
			}
			if sec.Name == translate.SecretCertificate {
				return string(sec.GetTlsCertificate().GetCertificateChain().GetInlineBytes())
			}
		}
		return ""
	}
	r, err := st.Recv()
	if err != nil || len(r.GetResources()) != 2 || certOf(r) != string(first.Secrets[0].GetTlsCertificate().GetCertificateChain().GetInlineBytes()) {
		t.Fatalf("first SDS response: %d resources, %v", len(r.GetResources()), err)
	}
	req.VersionInfo, req.ResponseNonce = r.VersionInfo, r.Nonce
	if err := st.Send(req); err != nil { // ACK
		t.Fatal(err)
	}
	rotated := issue()
	if err := c.Set("sidecar~curl/curl", rotated); err != nil {
		t.Fatal(err)
	}
	r, err = st.Recv()
	if err != nil || certOf(r) != string(rotated.Secrets[0].GetTlsCertificate().GetCertificateChain().GetInlineBytes()) {
		t.Fatalf("after rotation the stream did not deliver the new certificate: %v", err)
	}
}
