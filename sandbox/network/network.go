// Package network is the sandbox's network. The API server refuses loopback addresses in
// EndpointSlices, so a pod the sandbox node runs in cluster i has a pod IP 10.(240+i).(128+n).x
// and is reached at the loopback address 127.i.(128+n).x that the pod IP stands for; whoever
// dials a pod IP in the sandbox (the stand-in proxies, the probe, the load balancer) dials
// Loopback(ip) instead, as a CNI would route it.
package network

import (
	"io"
	"net"
)

// Loopback maps a sandbox pod IP to the loopback address it stands for; any other IP is
// returned unchanged.
func Loopback(ip string) string {
	a := net.ParseIP(ip).To4()
	if a == nil || a[0] != 10 || a[1] < 240 {
		return ip
	}
	return net.IPv4(127, a[1]-240, a[2], a[3]).String()
}

// LoopbackAddr maps host:port with Loopback.
func LoopbackAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return net.JoinHostPort(Loopback(host), port)
}

// Forward serves ln until it is closed: each connection is spliced to the one dial returns for
// it, or closed when dial fails.
func Forward(ln net.Listener, dial func() (net.Conn, error)) {
	for {
		in, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer in.Close()
			out, err := dial()
			if err != nil {
				return
			}
			defer out.Close()
			Splice(in, out)
		}()
	}
}

// Splice copies both ways between a and b until both directions end, passing each half-close
// on (a TCP side's write is closed when its source ends), as a port forwarder or a load
// balancer does. The caller closes both.
func Splice(a, b net.Conn) {
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(b, a)
		closeWrite(b)
		close(done)
	}()
	_, _ = io.Copy(a, b)
	closeWrite(a)
	<-done
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}
