package proxyless

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/crossgate-io/crossgate/sandbox/proxy"
	"github.com/crossgate-io/crossgate/test/internal/poll"
	"github.com/crossgate-io/crossgate/translator"
	"github.com/crossgate-io/crossgate/wellknown"
	"github.com/crossgate-io/crossgate/xds/identity"
	"github.com/crossgate-io/crossgate/xds/translate"
)

// The stand-in gateway, from its own xDS stream, terminates TLS for HTTPS listeners with the
// certificate of the listener the server name selects (delivered by SDS), and serves the
// listener's routes inside; a server name no listener takes gets no handshake.
func TestGatewayTerminatesHTTPS(t *testing.T) {
	b, err := os.ReadFile("../../translator/testdata/gateway-https-listeners.in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	in, err := translator.ParseInput(b)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	for _, s := range in.Secrets {
		if s.Name == "foo-cert" || s.Name == "bar-cert" {
			roots.AppendCertsFromPEM(s.Data[corev1.TLSCertKey])
		}
	}
	res := translator.Translate(in)
	out, err := translate.Build(&res.IR)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := identity.NewCA("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	c, _, tlis := xdsServers(t, ca)
	node := wellknown.Gateway(wellknown.SystemNamespace, wellknown.DefaultGatewayName).String()
	if err := c.Set(node, out.Gateways[wellknown.SystemNamespace+"/"+wellknown.DefaultGatewayName]); err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue(wellknown.SystemNamespace, wellknown.DefaultGatewayName, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	serveStandIn(t, ln, proxy.Options{
		Role: proxy.Gateway, ListenerPort: 443,
		XDS: proxy.XDSOptions{Address: tlis.Addr().String(), Node: node, Certificate: cert},
	})
	get := func(host, path string) (*http.Response, string, error) {
		tr := &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
			},
			TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true,
		}
		defer tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+path, nil)
		client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := client.Do(req)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body), nil
	}
	// foo.example.com: foo's certificate (the client verifies it for the name), foo's routes.
	// The certificates come by SDS after the listeners: until then the handshake fails, as Envoy
	// keeps a listener warming until its secrets arrive.
	var resp *http.Response
	poll.Eventually(t, 10*time.Second, "foo.example.com served", func() error {
		resp, _, err = get("foo.example.com", "/old/page")
		return err
	})
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "https://foo.example.com/new/page" || resp.ProtoMajor != 2 {
		t.Errorf("foo.example.com/old/page: %s %q over HTTP/%d, want 302 to https://foo.example.com/new/page over HTTP/2", resp.Status, resp.Header.Get("Location"), resp.ProtoMajor)
	}
	if n := resp.TLS.PeerCertificates[0].DNSNames; len(n) != 1 || n[0] != "foo.example.com" {
		t.Errorf("foo.example.com got the certificate of %v", n)
	}
	// shop.bar.example.com: bar's certificate, for *.bar.example.com.
	resp, _, err = get("shop.bar.example.com", "/nothing-there")
	if err != nil {
		t.Fatalf("shop.bar.example.com: %v", err)
	}
	if n := resp.TLS.PeerCertificates[0].DNSNames; len(n) != 1 || n[0] != "*.bar.example.com" {
		t.Errorf("shop.bar.example.com got the certificate of %v", n)
	}
	// A name no listener takes: the connection is closed before any certificate.
	if _, _, err := get("other.example.com", "/"); err == nil || strings.Contains(err.Error(), "certificate") {
		t.Errorf("other.example.com: %v, want the connection closed in the handshake", err)
	}
}
