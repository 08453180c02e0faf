package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Listener wraps ln so that the proxy takes TLS as well as plaintext on one port, as Envoy does
// with tls_inspector. A gateway and a sidecar's inbound side read the server name and ALPN of the
// ClientHello first and ask the model (acceptTLS): a sidecar terminates the mesh's TLS with the
// proxy's certificate, verifying a client certificate from the set's root when one is presented,
// and passes any other TLS through to the application or closes it; a gateway terminates TLS for
// its HTTPS listeners with their certificates, and passes TLS routes' connections through.
// Plaintext is served as HTTP.
func (p *Proxy) Listener(ln net.Listener) (net.Listener, error) {
	return p.ListenerFor(ln, 0)
}

// ListenerFor is Listener for a gateway's listener on port (a Service port's targetPort) in
// its xDS configuration, wherever ln listens; 0 is Options.ListenerPort.
func (p *Proxy) ListenerFor(ln net.Listener, port uint32) (net.Listener, error) {
	if port == 0 {
		port = p.opts.ListenerPort
	}
	pair, err := tls.X509KeyPair(p.opts.XDS.Certificate.CertPEM, p.opts.XDS.Certificate.KeyPEM)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.opts.XDS.Certificate.RootPEM)
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair},
		ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool, NextProtos: []string{"h2", "http/1.1"},
	}
	s := &sniffListener{Listener: ln, port: port, tls: cfg, conns: make(chan net.Conn), done: make(chan struct{})}
	if p.opts.Role == Gateway || p.opts.Role == Inbound {
		s.accept = p.acceptTLS
	}
	go s.run()
	return s, nil
}

type sniffListener struct {
	net.Listener
	port uint32 // the listener port in the configuration
	tls  *tls.Config
	// accept, when set, takes a TLS connection and gives back the connection to serve (its
	// TLS terminated), or nil when it passed it through or closed it.
	accept func(c net.Conn, br *bufio.Reader, tlsConfig *tls.Config) net.Conn
	conns  chan net.Conn
	once   sync.Once
	done   chan struct{}
	err    error
}

func (s *sniffListener) run() {
	for {
		c, err := s.Listener.Accept()
		if err != nil {
			s.once.Do(func() { s.err = err; close(s.done) })
			return
		}
		go func() {
			br := bufio.NewReaderSize(c, maxClientHello)
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			head, err := br.Peek(1)
			_ = c.SetReadDeadline(time.Time{})
			if err != nil {
				_ = c.Close()
				return
			}
			var out net.Conn = &bufConn{Conn: c, r: br, port: s.port}
			if head[0] == recordTypeHandshake {
				if s.accept == nil {
					out = tls.Server(out, s.tls)
				} else if out = s.accept(out, br, s.tls); out == nil {
					return
				}
			}
			select {
			case s.conns <- out:
			case <-s.done:
				_ = c.Close()
			}
		}()
	}
}

func (s *sniffListener) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		return nil, s.err
	}
}

// bufConn is an accepted connection read through the buffer its first bytes were peeked into,
// with the listener port in the configuration it arrived at.
type bufConn struct {
	net.Conn
	r    *bufio.Reader
	port uint32
}

// listenerPort is the listener port in the configuration a served connection arrived at: that
// of its bufConn, under TLS or not; 0 when unknown.
func listenerPort(c net.Conn) uint32 {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if bc, ok := c.(*bufConn); ok {
		return bc.port
	}
	return 0
}

func (c *bufConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// peerIdentity is the SPIFFE URI of a request's verified client certificate, if any.
func peerIdentity(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.PeerCertificates) == 0 {
		return ""
	}
	for _, u := range r.TLS.PeerCertificates[0].URIs {
		if u.Scheme == "spiffe" {
			return u.String()
		}
	}
	return ""
}

// recordTypeHandshake starts a TLS record of the handshake protocol (RFC 8446 5.1), the first
// byte of every TLS connection; maxClientHello is the largest record, its header included.
const (
	recordTypeHandshake = 0x16
	maxClientHello      = 5 + 1<<14
)

// PeekClientHello reads the server name and ALPN protocols of the ClientHello at the head of br
// without consuming it, as Envoy's tls_inspector does (a ClientHello in one record). crypto/tls
// parses it: a server handshake over a copy of the record stops once it has the hello.
func PeekClientHello(br *bufio.Reader) (sni string, alpn []string, err error) {
	head, err := br.Peek(5)
	if err != nil {
		return "", nil, err
	}
	if head[0] != recordTypeHandshake {
		return "", nil, errors.New("not a TLS handshake")
	}
	record, err := br.Peek(5 + (int(head[3])<<8 | int(head[4])))
	if err != nil {
		return "", nil, fmt.Errorf("reading the ClientHello: %w", err)
	}
	var hello *tls.ClientHelloInfo
	stop := errors.New("hello read")
	err = tls.Server(&helloConn{r: bytes.NewReader(record)}, &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			hello = h
			return nil, stop
		},
	}).Handshake()
	if hello == nil {
		return "", nil, fmt.Errorf("parsing the ClientHello: %w", err)
	}
	return hello.ServerName, hello.SupportedProtos, nil
}

// helloConn is a connection that reads a recorded ClientHello and discards what is written.
type helloConn struct {
	net.Conn
	r io.Reader
}

func (c *helloConn) Read(b []byte) (int, error)       { return c.r.Read(b) }
func (c *helloConn) Write(b []byte) (int, error)      { return len(b), nil }
func (c *helloConn) Close() error                     { return nil }
func (c *helloConn) SetDeadline(time.Time) error      { return nil }
func (c *helloConn) SetReadDeadline(time.Time) error  { return nil }
func (c *helloConn) SetWriteDeadline(time.Time) error { return nil }
func (c *helloConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *helloConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
