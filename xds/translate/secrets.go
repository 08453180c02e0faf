package translate

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// Secrets are the SDS secrets an Envoy proxy's TLS contexts refer to: its certificate and key
// (SecretCertificate) and the trust bundle (SecretRootCA). They are validated like every other
// resource.
func Secrets(certPEM, keyPEM, rootPEM []byte) ([]*tlsv3.Secret, error) {
	inline := func(b []byte) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
	}
	out := []*tlsv3.Secret{
		{Name: SecretCertificate, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: inline(certPEM), PrivateKey: inline(keyPEM),
		}}},
		{Name: SecretRootCA, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: inline(rootPEM),
		}}},
	}
	for _, s := range out {
		if err := s.ValidateAll(); err != nil {
			return nil, fmt.Errorf("secret %s: %w", s.Name, err)
		}
	}
	return out, nil
}
