package app

import (
	"bufio"
	"net"
	"sync"
	"time"
)

// mux splits one listener between HTTP/1.1 and gRPC: a connection that starts with a TLS
// handshake or the HTTP/2 preface goes to the gRPC server, any other to the HTTP server, so
// that one Service port serves both, as one container port would.
type mux struct {
	ln         net.Listener
	http, grpc *chanListener
}

func newMux(ln net.Listener, grpcAddr net.Addr) *mux {
	m := &mux{ln: ln, http: newChanListener(ln.Addr(), nil), grpc: newChanListener(grpcAddr, grpcAddr)}
	go m.run()
	return m
}

func (m *mux) run() {
	for {
		c, err := m.ln.Accept()
		if err != nil {
			m.http.close(err)
			m.grpc.close(err)
			return
		}
		go func() {
			br := bufio.NewReader(c)
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			head, err := br.Peek(3)
			_ = c.SetReadDeadline(time.Time{})
			if err != nil {
				_ = c.Close()
				return
			}
			pc := &peekedConn{Conn: c, r: br}
			if head[0] == 0x16 || string(head) == "PRI" {
				m.grpc.deliver(pc)
			} else {
				m.http.deliver(pc)
			}
		}()
	}
}

type peekedConn struct {
	net.Conn
	r     *bufio.Reader
	local net.Addr
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *peekedConn) LocalAddr() net.Addr {
	if c.local != nil {
		return c.local
	}
	return c.Conn.LocalAddr()
}

// chanListener is a listener fed by the mux. A non-nil local makes its connections report that
// local address: the pod IP the gRPC server's xDS listener is named after and matched on.
type chanListener struct {
	addr, local net.Addr
	conns       chan net.Conn
	once        sync.Once
	done        chan struct{}
	err         error
}

func newChanListener(addr, local net.Addr) *chanListener {
	return &chanListener{addr: addr, local: local, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) deliver(c *peekedConn) {
	c.local = l.local
	select {
	case l.conns <- c:
	case <-l.done:
		_ = c.Close()
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, l.err
	}
}

func (l *chanListener) close(err error) {
	l.once.Do(func() {
		if err == nil {
			err = net.ErrClosed
		}
		l.err = err
		close(l.done)
	})
}

func (l *chanListener) Close() error   { l.close(net.ErrClosed); return nil }
func (l *chanListener) Addr() net.Addr { return l.addr }
