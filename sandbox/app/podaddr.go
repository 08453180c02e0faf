package app

import "net"

// podAddrListener makes the connections of a loopback listener report the pod's address as
// their local address, and itself as its address: grpc-go's xDS server names and matches its
// listener by the address it serves, which is the pod IP (a loopback address stands for it in
// the sandbox).
type podAddrListener struct {
	net.Listener
	pod net.Addr
}

func (l podAddrListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return podAddrConn{Conn: c, pod: l.pod}, nil
}

func (l podAddrListener) Addr() net.Addr { return l.pod }

type podAddrConn struct {
	net.Conn
	pod net.Addr
}

func (c podAddrConn) LocalAddr() net.Addr { return c.pod }
