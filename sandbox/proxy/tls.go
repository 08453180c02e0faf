package proxy

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"sync"
	"time"
)

// Listener wraps ln so that the proxy takes TLS as well as plaintext on one port, as the
// gateway's Envoy does (an mTLS filter chain for mesh peers beside the plaintext one): a
// connection that starts with a TLS handshake is terminated with the proxy's certificate,
// verifying a client certificate from the set's root when one is presented.
func (p *Proxy) Listener(ln net.Listener) (net.Listener, error) {
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
	s := &sniffListener{Listener: ln, tls: cfg, conns: make(chan net.Conn), done: make(chan struct{})}
	go s.run()
	return s, nil
}

type sniffListener struct {
	net.Listener
	tls   *tls.Config
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
	err   error
}

func (s *sniffListener) run() {
	for {
		c, err := s.Listener.Accept()
		if err != nil {
			s.once.Do(func() { s.err = err; close(s.done) })
			return
		}
		go func() {
			br := bufio.NewReader(c)
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			head, err := br.Peek(1)
			_ = c.SetReadDeadline(time.Time{})
			if err != nil {
				_ = c.Close()
				return
			}
			var out net.Conn = &bufConn{Conn: c, r: br}
			if head[0] == 0x16 {
				out = tls.Server(out, s.tls)
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

type bufConn struct {
	net.Conn
	r *bufio.Reader
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
