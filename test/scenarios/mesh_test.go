package scenarios

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/crossgate-io/crossgate/inject/capture"
	"github.com/crossgate-io/crossgate/translator"
	"github.com/crossgate-io/crossgate/wellknown"
	"github.com/crossgate-io/crossgate/xds/resources"
	"github.com/crossgate-io/crossgate/xds/simulate"
	"github.com/crossgate-io/crossgate/xds/translate"
)

// A mesh of clusters, each one translated from a translator golden input, through which a
// connection is followed hop by hop: the caller's sidecar (or grpc-go), kube-proxy for a
// ClusterIP, a remote cluster's gateway, the destination's sidecar or grpc-go server, and the
// application. Every proxy decides with xds/simulate, and every hop connects the way the previous
// one's configuration says (protocol, TLS, ALPN, Host), so a configuration that would break a
// request on Envoy breaks it here.

// world is one cluster: its input and what Build made of it.
type world struct {
	name string
	in   *translator.Input
	out  *resources.Output
}

func loadWorld(t *testing.T, name string) *world {
	t.Helper()
	return loadWorldWith(t, name, nil)
}

// loadWorldWith is loadWorld with the input changed by change first.
func loadWorldWith(t *testing.T, name string, change func(*translator.Input)) *world {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "translator", "testdata", name+".in.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	in, err := translator.ParseInput(b)
	if err != nil {
		t.Fatal(err)
	}
	if change != nil {
		change(in)
	}
	res := translator.Translate(in)
	out, err := translate.Build(&res.IR)
	if err != nil {
		t.Fatalf("build %s: %v", name, err)
	}
	checkOutput(t, name, out)
	return &world{name: name, in: in, out: out}
}

// checkOutput fails on anything a client would refuse or Envoy would mishandle.
func checkOutput(t *testing.T, name string, out *resources.Output) {
	t.Helper()
	if err := simulate.Check(out); err != nil {
		t.Errorf("%s: %v", name, err)
	}
}

// mesh is a set of worlds and the addresses of their gateways.
type mesh struct {
	worlds []*world
	// gateways maps a gateway's LoadBalancer address to its world, its key and listener port.
	gateways map[string]gatewayAt
	// apps say what the application of each pod speaks: "http" (HTTP/1.1 and h2c, a sidecar's
	// application) by default, "grpc" (h2c only).
	apps map[string]string
}

type gatewayAt struct {
	w    *world
	key  string
	port uint32
}

// hop is one step of a connection's path.
type hop struct {
	at     string // what handled it: "sidecar ns/sa", "gateway ns/name", "kube-proxy", "app ..."
	result *simulate.Result
	note   string
}

// path is what happened to a connection: its hops, and how it ended.
type path struct {
	hops []hop
	// reached is the application that answered ("cluster-1 httpbin/httpbin-6d8f7"), "" when none.
	reached string
	// failed says why the request failed, "" when an application answered.
	failed string
	// host and proto are the Host and protocol the application got, path its path, tls whether
	// it got TLS (its client's own).
	host, proto, urlPath string
	tls                  bool
	// payload is what a proxy carries inside the mTLS it originated for a TCP stream: what the
	// next sidecar's tcp_proxy hands the application.
	payload *simulate.Request
	// podIP is the pod whose sidecar made the last hop: a connection it opens to its own
	// address is the sidecar's own (captured as such).
	podIP string
	// origin is how the proxy that opened the TLS in flight connects: the proxy that terminates
	// it must present a certificate origin accepts.
	origin *simulate.Upstream
}

func (p *path) String() string {
	var b strings.Builder
	for _, h := range p.hops {
		fmt.Fprintf(&b, "  %s", h.at)
		if r := h.result; r != nil {
			fmt.Fprintf(&b, ": listener %s chain %s vhost %s", r.Listener, r.FilterChain, r.VirtualHost)
			if r.Denied {
				fmt.Fprintf(&b, " DENIED %d %s", r.Status, r.DenyReason)
			}
		}
		if h.note != "" {
			fmt.Fprintf(&b, " (%s)", h.note)
		}
		b.WriteString("\n")
	}
	if p.failed != "" {
		fmt.Fprintf(&b, "  failed: %s\n", p.failed)
	} else {
		fmt.Fprintf(&b, "  reached %s with Host %q over %s\n", p.reached, p.host, p.proto)
	}
	return b.String()
}

// call is what a client sends: from a pod of a world (its application's connection), to an
// address, with a request.
type call struct {
	from    *world
	pod     string // ns/name of the calling pod
	grpc    bool   // the caller is a proxyless grpc-go client: target is Host
	dst     string // IP:port the application connects to (a sidecar caller)
	proto   string // simulate.HTTP1 or HTTP2
	host    string
	method  string
	urlPath string
	// tls is set when the application opens TLS itself (to an https port, an external site),
	// with sni.
	tls bool
	sni string
	// pick chooses an endpoint among those a proxy may send to (priority, locality order);
	// nil takes the first.
	pick func(c simulate.Cluster) string
}

// send follows one call through the mesh.
func (m *mesh) send(t *testing.T, c call) *path {
	t.Helper()
	p := &path{}
	pod := c.from.pod(t, c.pod)
	id := pod.Namespace + "/" + cmpOr(pod.Spec.ServiceAccountName, "default")
	req := simulate.Request{Protocol: cmpOr(c.proto, simulate.HTTP1), Host: c.host, Method: cmpOr(c.method, "GET"), Path: cmpOr(c.urlPath, "/")}
	var r *simulate.Result
	if c.grpc {
		req.Listener, req.Protocol = c.host, simulate.HTTP2
		r = simulate.Simulate(c.from.out.Proxyless[id], req)
		p.hops = append(p.hops, hop{at: "grpc-go client " + id, result: r})
	} else {
		ap, err := netip.ParseAddrPort(c.dst)
		if err != nil {
			t.Fatal(err)
		}
		req.TLS, req.SNI = c.tls, c.sni
		if c.tls {
			req.Protocol = simulate.TCP // the application's own TLS: opaque to the proxy
		}
		p.podIP = pod.Status.PodIP
		req.PodIP, req.DestinationIP, req.Port = pod.Status.PodIP, ap.Addr().String(), uint32(ap.Port())
		r = simulate.Simulate(c.from.out.Sidecars[id], req)
		p.hops = append(p.hops, hop{at: "sidecar " + id + " of " + c.from.name, result: r})
		if r.Bypass {
			return m.direct(t, p, c.from, ap, req, "")
		}
	}
	source := "spiffe://" + trustDomain(c.from) + "/ns/" + pod.Namespace + "/sa/" + cmpOr(pod.Spec.ServiceAccountName, "default")
	return m.forward(t, p, c.from, r, req, source, c.pick)
}

// forward takes a proxy's decision to its upstream.
func (m *mesh) forward(t *testing.T, p *path, w *world, r *simulate.Result, req simulate.Request, source string, pick func(simulate.Cluster) string) *path {
	t.Helper()
	if r.Denied || r.DirectResponse != 0 {
		p.failed = fmt.Sprintf("%s answered itself (status %d): %s", p.hops[len(p.hops)-1].at, cmpU(r.Status, r.DirectResponse), r.DenyReason)
		return p
	}
	if len(r.Clusters) == 0 {
		p.failed = "no upstream"
		return p
	}
	cl := r.Clusters[0]
	up := req
	up.Host, up.Path = r.Host, r.Path
	up.Listener, up.Inbound, up.UID = "", false, 0
	if cl.Upstream.Protocol == simulate.TCP {
		// tcp_proxy: the client's bytes go on as they are, inside the mTLS the proxy originates.
		switch {
		case cl.Upstream.TLS:
			inner := req
			if p.payload != nil && req.TLS && lastTerminated(r) {
				inner = *p.payload
			}
			p.payload = &inner
			up.Protocol, up.TLS, up.ALPN, up.SNI, up.Source = simulate.TCP, true, cl.Upstream.ALPN, cl.Upstream.SNI, source
		case p.payload != nil && lastTerminated(r):
			up = *p.payload // this hop took the mTLS off: the application gets what is inside
			p.payload = nil
		}
	} else {
		up.Protocol = cl.Upstream.Protocol
		up.TLS, up.ALPN, up.SNI = cl.Upstream.TLS, cl.Upstream.ALPN, cl.Upstream.SNI
		up.Source = ""
		if cl.Upstream.TLS {
			up.Source = source // the proxy's own certificate
		}
	}
	if cl.Upstream.TLS {
		u := cl.Upstream
		p.origin = &u
	}
	if cl.OriginalDestination != "" {
		ap := netip.MustParseAddrPort(cl.OriginalDestination)
		if cl.BindSource != "" {
			// The inbound passthrough: to the application itself.
			return m.app(t, p, w, ap, up, "passthrough from "+cl.BindSource)
		}
		return m.direct(t, p, w, ap, up, "passthrough")
	}
	ep := ""
	if pick != nil {
		ep = pick(cl)
	} else if len(cl.Priorities) > 0 {
		ep = cl.Priorities[0].Localities[0].Endpoints[0]
	}
	if ep == "" {
		p.failed = "cluster " + cl.Name + " has no endpoint"
		return p
	}
	ap := netip.MustParseAddrPort(ep)
	if ap.Addr().IsLoopback() {
		return m.app(t, p, w, ap, up, "")
	}
	return m.toAddress(t, p, w, ap, up)
}

// direct is a connection that no proxy of the sender captures: a ClusterIP goes through
// kube-proxy to an endpoint; a pod address or a gateway is reached as it is.
func (m *mesh) direct(t *testing.T, p *path, w *world, ap netip.AddrPort, req simulate.Request, note string) *path {
	t.Helper()
	if eps, isSvc := w.clusterIP(ap); isSvc {
		if len(eps) == 0 {
			p.hops = append(p.hops, hop{at: "kube-proxy of " + w.name, note: note})
			p.failed = fmt.Sprintf("Service %s has no endpoints: kube-proxy refuses the connection", ap)
			return p
		}
		p.hops = append(p.hops, hop{at: "kube-proxy of " + w.name, note: note + " to " + eps[0].String()})
		ap = eps[0]
	} else if note != "" {
		p.hops = append(p.hops, hop{at: "network", note: note + " to " + ap.String()})
	}
	return m.toAddress(t, p, w, ap, req)
}

// toAddress is a connection arriving at an address: a gateway, or a pod (its sidecar's capture,
// or grpc-go's server for a proxyless pod).
func (m *mesh) toAddress(t *testing.T, p *path, w *world, ap netip.AddrPort, req simulate.Request) *path {
	t.Helper()
	if g, ok := m.gateways[ap.String()]; ok {
		in := req
		in.Listener, in.PodIP, in.DestinationIP, in.Port, in.Inbound = "", "", "", g.port, false
		r := simulate.Simulate(g.w.out.Gateways[g.key], in)
		p.hops = append(p.hops, hop{at: "gateway " + g.key + " of " + g.w.name, result: r})
		return m.forward(t, p, g.w, r, in, "spiffe://"+trustDomain(g.w)+"/ns/"+strings.Replace(g.key, "/", "/sa/", 1), nil)
	}
	for _, dw := range m.worlds {
		pod := dw.podByIP(ap.Addr().String())
		if pod == nil {
			continue
		}
		id := pod.Namespace + "/" + cmpOr(pod.Spec.ServiceAccountName, "default")
		in := req
		in.Listener, in.Inbound, in.PodIP, in.DestinationIP, in.Port = "", true, ap.Addr().String(), ap.Addr().String(), uint32(ap.Port())
		if ap.Addr().String() == p.podIP {
			// The sidecar connects to its own pod: a local connection of the proxy's user.
			in.Inbound, in.UID = false, capture.ProxyUID
		}
		// The TLS client checks the certificate of the proxy that terminates its TLS: the pod's
		// sidecar or grpc-go server (upstream_impl, cert_validator default_validator.cc).
		if uri := "spiffe://" + trustDomain(dw) + "/ns/" + pod.Namespace + "/sa/" + cmpOr(pod.Spec.ServiceAccountName, "default"); req.TLS && p.origin != nil &&
			dw.meshNamespace(pod.Namespace) && !p.origin.AcceptsServer(uri) {
			p.failed = "the caller's proxy refuses the server's certificate (" + uri + "): not an identity of the service"
			return p
		}
		if !dw.meshNamespace(pod.Namespace) {
			p.hops = append(p.hops, hop{at: "pod " + pod.Namespace + "/" + pod.Name + " of " + dw.name + " (no sidecar)"})
			p.reached, p.host, p.proto, p.urlPath, p.tls = dw.name+" "+pod.Namespace+"/"+pod.Name, req.Host, req.Protocol, req.Path, req.TLS
			return p
		}
		if pod.Annotations[wellknown.ProxylessAnnotation] == "true" {
			in.Listener = translate.ServerListenerName(ap.Addr().String(), uint32(ap.Port()))
			if !req.TLS {
				p.failed = "grpc-go's server requires mTLS and the connection is plaintext"
				return p
			}
			if req.Protocol != simulate.HTTP2 {
				p.failed = "grpc-go's server speaks HTTP/2 only and gets " + req.Protocol + " (bogus greeting)"
				return p
			}
			r := simulate.Simulate(dw.out.Proxyless[id], in)
			p.hops = append(p.hops, hop{at: "grpc-go server " + id + " of " + dw.name, result: r})
			if r.Denied {
				p.failed = fmt.Sprintf("grpc-go server refused: %s", r.DenyReason)
				return p
			}
			p.reached, p.host, p.proto = dw.name+" "+pod.Namespace+"/"+pod.Name, req.Host, req.Protocol
			return p
		}
		r := simulate.Simulate(dw.out.Sidecars[id], in)
		p.hops = append(p.hops, hop{at: "sidecar " + id + " of " + dw.name + " (inbound)", result: r})
		p.podIP = ap.Addr().String()
		if r.Bypass {
			return m.app(t, p, dw, ap, req, "not captured")
		}
		return m.forward(t, p, dw, r, in, "spiffe://"+trustDomain(dw)+"/ns/"+id[:strings.Index(id, "/")]+"/sa/"+id[strings.Index(id, "/")+1:], nil)
	}
	// No pod of the mesh's worlds: a server outside (the API server, a site on the internet).
	p.hops = append(p.hops, hop{at: "server at " + ap.String()})
	p.reached, p.host, p.proto, p.urlPath, p.tls = "server at "+ap.String(), req.Host, req.Protocol, req.Path, req.TLS
	return p
}

// lastTerminated reports whether the proxy that decided r terminated TLS: its filter chain
// ended it (a chain of the inbound listener for mesh ports).
func lastTerminated(r *simulate.Result) bool {
	return r.FilterChain != "" && !strings.HasSuffix(r.FilterChain, "/plaintext") && r.Listener == "inbound"
}

// app is the application of the pod that owns an address (or of the proxy that forwards to
// 127.0.0.1), receiving a request.
func (m *mesh) app(t *testing.T, p *path, w *world, ap netip.AddrPort, req simulate.Request, note string) *path {
	t.Helper()
	// The application is the one behind the last sidecar.
	last := ""
	for i := len(p.hops) - 1; i >= 0; i-- {
		if strings.HasPrefix(p.hops[i].at, "sidecar ") {
			last = p.hops[i].at
			break
		}
	}
	kind := m.apps[last]
	p.hops = append(p.hops, hop{at: "app behind " + last, note: note})
	switch {
	case req.TLS && kind != "tls":
		p.failed = "the application gets TLS where it serves plaintext"
	case !req.TLS && kind == "tls":
		p.failed = "the TLS application gets plaintext"
	case kind == "grpc" && req.Protocol != simulate.HTTP2:
		p.failed = "the gRPC application gets " + req.Protocol
	case req.Protocol == simulate.TCP && kind != "tcp" && kind != "tls":
		p.failed = "the application gets a stream that is not HTTP"
	default:
		p.reached, p.host, p.proto, p.urlPath, p.tls = strings.TrimPrefix(last, "sidecar "), req.Host, req.Protocol, req.Path, req.TLS
	}
	return p
}

func (w *world) pod(t *testing.T, nsName string) *podT {
	t.Helper()
	for i := range w.in.Pods {
		p := &w.in.Pods[i]
		if p.Namespace+"/"+p.Name == nsName {
			return p
		}
	}
	t.Fatalf("%s has no pod %s", w.name, nsName)
	return nil
}

func (w *world) podByIP(ip string) *podT {
	for i := range w.in.Pods {
		if w.in.Pods[i].Status.PodIP == ip {
			return &w.in.Pods[i]
		}
	}
	return nil
}

// clusterIP is kube-proxy: the ready endpoints of the Service with that ClusterIP and port.
func (w *world) clusterIP(ap netip.AddrPort) ([]netip.AddrPort, bool) {
	for _, s := range w.in.Services {
		if !slices.Contains(s.Spec.ClusterIPs, ap.Addr().String()) && s.Spec.ClusterIP != ap.Addr().String() {
			continue
		}
		var out []netip.AddrPort
		for _, sp := range s.Spec.Ports {
			if uint16(sp.Port) != ap.Port() {
				continue
			}
			for _, es := range w.in.EndpointSlices {
				if es.Namespace != s.Namespace || es.Service != s.Name {
					continue
				}
				for _, port := range es.Ports {
					if port.Name != sp.Name {
						continue
					}
					for _, e := range es.Endpoints {
						out = append(out, netip.AddrPortFrom(netip.MustParseAddr(e.Address), uint16(port.Port)))
					}
				}
			}
		}
		return out, true
	}
	return nil, false
}

func (w *world) meshNamespace(ns string) bool {
	for _, n := range w.in.Namespaces {
		if n.Name == ns {
			return n.Labels[wellknown.MeshNamespaceLabel] == wellknown.MeshNamespaceValue
		}
	}
	return false
}

func trustDomain(w *world) string {
	if mc := w.in.MeshConfig; mc != nil && mc.Spec.Certificate.TrustDomain != "" {
		return mc.Spec.Certificate.TrustDomain
	}
	return wellknown.DefaultTrustDomain
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func cmpU(a, b uint32) uint32 {
	if a != 0 {
		return a
	}
	return b
}

// endpointIn picks the first endpoint of a locality whose name ends with suffix.
func endpointIn(suffix string) func(c simulate.Cluster) string {
	return func(c simulate.Cluster) string {
		for _, pr := range c.Priorities {
			for _, l := range pr.Localities {
				if strings.HasSuffix(l.Name, suffix) && len(l.Endpoints) > 0 {
					return l.Endpoints[0]
				}
			}
		}
		return ""
	}
}

type podT = corev1.Pod

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func netipAddrPort(ip string, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(ip), port)
}
