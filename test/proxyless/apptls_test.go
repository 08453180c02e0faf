package proxyless

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crossgate-io/crossgate/sandbox/proxy"
	"github.com/crossgate-io/crossgate/test/internal/poll"
	"github.com/crossgate-io/crossgate/translator"
	"github.com/crossgate-io/crossgate/wellknown"
	"github.com/crossgate-io/crossgate/xds/identity"
	"github.com/crossgate-io/crossgate/xds/translate"
)

// sidecarWorld is a cluster where httpbin (ServiceAccount httpbin) runs with a sidecar on
// 127.0.0.1:port, in permissive or in policy mode (curl/curl may call it).
func sidecarWorld(port int, permissive bool) *translator.Input {
	in, err := translator.ParseInput([]byte(fmt.Sprintf(`
cluster: default/default/default/cluster-1
meshConfig: {metadata: {name: mesh, namespace: crossgate-system}, spec: {traffic: {enablePermissiveTrafficPolicyMode: %t}}}
namespaces: [{metadata: {name: httpbin, labels: {crossgate.io/inject: enabled}}}]
serviceAccounts: [{metadata: {namespace: curl, name: curl}}]
services:
- metadata: {namespace: httpbin, name: httpbin}
  spec: {clusterIP: 10.96.0.30, clusterIPs: [10.96.0.30], ports: [{port: 8080, protocol: TCP}], selector: {app: httpbin}}
pods:
- metadata: {namespace: httpbin, name: httpbin-0}
  spec: {serviceAccountName: httpbin, containers: [{name: app, image: app}]}
endpointSlices:
- metadata: {namespace: httpbin, name: httpbin-1, labels: {kubernetes.io/service-name: httpbin}}
  addressType: IPv4
  ports: [{name: "", port: %d, protocol: TCP}]
  endpoints: [{addresses: [127.0.0.1], conditions: {ready: true}, targetRef: {kind: Pod, namespace: httpbin, name: httpbin-0}}]
httpRouteGroups:
- metadata: {namespace: httpbin, name: httpbin-route}
  spec: {matches: [{name: all, pathRegex: "/.*"}]}
trafficTargets:
- metadata: {namespace: httpbin, name: curl-to-httpbin}
  spec:
    destination: {kind: ServiceAccount, name: httpbin, namespace: httpbin}
    rules: [{kind: HTTPRouteGroup, name: httpbin-route, matches: [all]}]
    sources: [{kind: ServiceAccount, name: curl, namespace: curl}]
`, permissive, port)))
	if err != nil {
		panic(err)
	}
	return in
}

// bothWays serves HTTP (HTTP/1.1 and h2c) in plaintext and, with its own certificate (not the
// mesh's), HTTP/1.1 and HTTP/2 over TLS, on one port, as an application that terminates its own
// TLS does; it answers "tls" or "plain".
func bothWays(t *testing.T) (addr string, pool *x509.CertPool) {
	t.Helper()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			_, _ = io.WriteString(w, "tls")
			return
		}
		_, _ = io.WriteString(w, "plain")
	})
	certSrv := httptest.NewUnstartedServer(handler)
	certSrv.EnableHTTP2 = true
	certSrv.StartTLS() // for its certificate and TLS configuration
	t.Cleanup(certSrv.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := &chanListener{conns: make(chan net.Conn), done: make(chan struct{}), addr: ln.Addr()}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: handler, Protocols: &protos, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(conns) }()
	t.Cleanup(func() { _ = ln.Close(); _ = srv.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				br := bufio.NewReader(c)
				head, err := br.Peek(1)
				if err != nil {
					_ = c.Close()
					return
				}
				var conn net.Conn = &peeked{Conn: c, r: br}
				if head[0] == 0x16 { // a TLS handshake record
					conn = tls.Server(conn, certSrv.TLS)
				}
				select {
				case conns.conns <- conn:
				case <-conns.done:
					_ = c.Close()
				}
			}()
		}
	}()
	return ln.Addr().String(), certSrv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
}

type peeked struct {
	net.Conn
	r *bufio.Reader
}

func (c *peeked) Read(b []byte) (int, error) { return c.r.Read(b) }

// chanListener gives the connections sent to it, until it is closed.
type chanListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	addr  net.Addr
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// K8 with the stand-in sidecar from its own xDS stream: the workload's proxy terminates mesh
// TLS, known by its server name or crossgate's ALPN, and passes an application's own TLS
// through to the application untouched (closed in policy mode, where a caller without a mesh
// identity has no access).
func TestSidecarPassesApplicationTLSThrough(t *testing.T) {
	ca, err := identity.NewCA("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	c, _, tlis := xdsServers(t, ca)
	appAddr, appRoots := bothWays(t)
	curlCert, err := ca.Issue("curl", "curl", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	curlPair, err := tls.X509KeyPair(curlCert.CertPEM, curlCert.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	for _, permissive := range []bool{true, false} {
		t.Run(map[bool]string{true: "permissive", false: "policy"}[permissive], func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			port := ln.Addr().(*net.TCPAddr).Port
			res := translator.Translate(sidecarWorld(port, permissive))
			out, err := translate.Build(&res.IR)
			if err != nil {
				t.Fatal(err)
			}
			node := wellknown.Sidecar("httpbin", "httpbin").String()
			if err := c.Set(node, out.Sidecars["httpbin/httpbin"]); err != nil {
				t.Fatal(err)
			}
			cert, err := ca.Issue("httpbin", "httpbin", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			serveStandIn(t, ln, proxy.Options{
				Role: proxy.Inbound, PodIP: "127.0.0.1", Namespace: "httpbin", AppAddress: appAddr,
				XDS: proxy.XDSOptions{Address: tlis.Addr().String(), Node: node, Certificate: cert},
			})
			// get sends GET https://host/ to the sidecar's port with cfg, speaking HTTP/2 or
			// HTTP/1.1 as h2 says (the transport then offers cfg's protocols as they are), and
			// returns the answer and the server certificate's names. An IP address as host
			// sends no server name.
			get := func(host string, h2 bool, cfg *tls.Config) (string, string, error) {
				var protos http.Protocols
				protos.SetHTTP1(!h2)
				protos.SetHTTP2(h2)
				tr := &http.Transport{
					DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
						return (&net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
					},
					TLSClientConfig: cfg, Protocols: &protos,
				}
				defer tr.CloseIdleConnections()
				cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer ccancel()
				req, _ := http.NewRequestWithContext(cctx, http.MethodGet, "https://"+host+"/", nil)
				resp, err := (&http.Client{Transport: tr}).Do(req)
				if err != nil {
					return "", "", err
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				leaf := resp.TLS.PeerCertificates[0]
				return resp.Status + " " + string(body), fmt.Sprint(leaf.DNSNames, leaf.URIs), nil
			}

			// A mesh caller, marked by the server name or by crossgate's ALPN alone: the
			// sidecar terminates it (its certificate is httpbin's SPIFFE ID) and the
			// application gets plaintext.
			sni := wellknown.MeshSNI("httpbin", "httpbin", 8080)
			for i, mark := range []struct {
				name, host string
				h2         bool
				alpn       []string
			}{
				{"server name and ALPN (Envoy's)", sni, false, []string{wellknown.MeshALPN}},
				{"ALPN alone", "127.0.0.1", false, []string{wellknown.MeshALPN}},
				{"server name, h2 (grpc-go's)", sni, true, []string{"h2"}},
			} {
				cfg := &tls.Config{
					NextProtos: mark.alpn, Certificates: []tls.Certificate{curlPair}, MinVersion: tls.VersionTLS12,
					InsecureSkipVerify: true, // a mesh caller checks the SPIFFE ID (below), not a host name
				}
				var got, names string
				var err error
				if i == 0 {
					// The first call waits until the sidecar holds its whole configuration (the
					// clusters may follow the listeners), so that what follows is decided by it.
					poll.Eventually(t, 10*time.Second, "the sidecar configured", func() error {
						got, names, err = get(mark.host, mark.h2, cfg)
						return err
					})
				} else {
					got, names, err = get(mark.host, mark.h2, cfg)
				}
				if err != nil || got != "200 OK plain" || !strings.Contains(names, "spiffe://cluster.local/ns/httpbin/sa/httpbin") {
					t.Errorf("mesh TLS by %s: %q from %s, %v; want the sidecar to terminate it", mark.name, got, names, err)
				}
			}

			// An application's client: its own server name, h2 and http/1.1, the application's
			// CA. It talks TLS with the application itself.
			got, names, err := get("example.com", true, &tls.Config{RootCAs: appRoots, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12})
			switch {
			case permissive && (err != nil || got != "200 OK tls" || !strings.Contains(names, "example.com")):
				t.Errorf("the application's TLS: %q from %s, %v; want the application's own answer over its TLS", got, names, err)
			case !permissive && err == nil:
				t.Errorf("policy mode: the application's TLS from a caller without identity got %q", got)
			}
		})
	}
}
