package translator

import (
	"cmp"
	"net"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/translator/ir"
	"github.com/crossgate-io/crossgate/wellknown"
)

// serviceView is one service as callers in this cluster see it: its local Service (if any) and
// its ServiceImport (if any), port by port, before any policy applies.
type serviceView struct {
	key       nsName
	svc       *corev1.Service
	imp       *flomeshv1alpha1.ServiceImport
	hostnames []string
	ports     []*portView
	// mesh is set for the services callers' sidecars route: imports, and Services with a
	// selector in namespaces added to the mesh. Any other destination (the API server's
	// "kubernetes" Service, kube-dns, Services of other namespaces) is passed through unchanged.
	mesh bool
}

// portView is one port of a service with its endpoints by source cluster.
type portView struct {
	port     int32
	protocol ir.Protocol
	local    []ir.Endpoint
	// remote holds the endpoints of other clusters, by cluster key; remoteKeys is sorted.
	remote     map[string][]ir.Endpoint
	remoteKeys []string
}

func (t *translation) newView(k nsName) *serviceView {
	v := &serviceView{key: k, svc: t.services[k], imp: t.imports[k]}
	if v.svc != nil && v.svc.Spec.Type == corev1.ServiceTypeExternalName {
		v.svc = nil
	}
	v.mesh = v.imp != nil || (v.svc != nil && len(v.svc.Spec.Selector) > 0 && t.meshNamespace(k.ns))
	v.hostnames = meshHostnames(k.name, k.ns, t.domain)
	var ips []string
	if v.svc != nil {
		for _, ip := range v.svc.Spec.ClusterIPs {
			if net.ParseIP(ip) != nil {
				ips = append(ips, ip)
			}
		}
	}
	if v.imp != nil {
		for _, ip := range v.imp.Spec.IPs {
			if net.ParseIP(ip) != nil && !slices.Contains(ips, ip) {
				ips = append(ips, ip)
			}
		}
	}
	slices.Sort(ips)
	v.hostnames = append(v.hostnames, ips...)

	byPort := map[int32]*portView{}
	get := func(port int32, proto ir.Protocol) *portView {
		p := byPort[port]
		if p == nil {
			p = &portView{port: port, protocol: proto, remote: map[string][]ir.Endpoint{}}
			byPort[port] = p
		}
		return p
	}
	if v.svc != nil {
		for _, sp := range v.svc.Spec.Ports {
			proto, ok := portProtocol(sp.Protocol, sp.Name, sp.AppProtocol)
			if !ok {
				continue
			}
			p := get(sp.Port, proto)
			p.local = t.localEndpoints(k, sp)
		}
	}
	if v.imp != nil {
		idn := ir.Identity{Namespace: k.ns, ServiceAccount: cmp.Or(v.imp.Spec.ServiceAccountName, flomeshv1alpha1.AnyServiceAccount)}
		for _, ip := range v.imp.Spec.Ports {
			proto, ok := portProtocol(corev1.Protocol(cmp.Or(string(ip.Protocol), "TCP")), ip.Name, ip.AppProtocol)
			if !ok {
				continue
			}
			p := get(ip.Port, proto)
			for _, e := range ip.Endpoints {
				addr := cmp.Or(e.Target.IP, e.Target.Host)
				if e.ClusterKey == t.cluster || addr == "" || e.Target.Port <= 0 {
					continue // our own export, or an endpoint with nowhere to go
				}
				ep := ir.Endpoint{Address: addr, Port: uint32(e.Target.Port), Identity: idn}
				if !slices.Contains(p.remote[e.ClusterKey], ep) {
					p.remote[e.ClusterKey] = append(p.remote[e.ClusterKey], ep)
				}
			}
		}
	}
	for _, p := range byPort {
		for c := range p.remote {
			p.remoteKeys = append(p.remoteKeys, c)
			slices.SortFunc(p.remote[c], cmpEndpoint)
		}
		slices.Sort(p.remoteKeys)
		v.ports = append(v.ports, p)
	}
	slices.SortFunc(v.ports, func(a, b *portView) int { return cmp.Compare(a.port, b.port) })
	return v
}

// refreshLocal returns a copy of v with its local endpoints read again: what an EndpointSlice
// change can change. Hostnames and the import's endpoints are shared with v.
func (t *translation) refreshLocal(v *serviceView) *serviceView {
	nu := *v
	nu.ports = make([]*portView, len(v.ports))
	for i, p := range v.ports {
		np := *p
		np.local = nil
		for _, sp := range v.svcPorts() {
			if sp.Port == p.port {
				if _, ok := portProtocol(sp.Protocol, sp.Name, sp.AppProtocol); ok {
					np.local = t.localEndpoints(v.key, sp)
				}
			}
		}
		nu.ports[i] = &np
	}
	return &nu
}

// svcPorts are the local Service's ports, if there is a local Service.
func (v *serviceView) svcPorts() []corev1.ServicePort {
	if v.svc == nil {
		return nil
	}
	return v.svc.Spec.Ports
}

// portProtocol says what a Service port carries; ok is false for ports crossgate does not proxy
// (UDP, SCTP). As Istio and Envoy Gateway do, the port's appProtocol decides first, then its name
// (the protocol, alone or before a "-"). A port that declares neither is HTTP (OSM's default): a
// TCP or TLS service must say so, or its connections are parsed as HTTP.
func portProtocol(proto corev1.Protocol, name string, appProtocol *string) (ir.Protocol, bool) {
	if proto != "" && proto != corev1.ProtocolTCP {
		return "", false
	}
	if appProtocol != nil && *appProtocol != "" {
		switch strings.ToLower(*appProtocol) {
		case "http", "kubernetes.io/ws", "grpc-web":
			return ir.HTTP, true
		case "http2", "grpc", "kubernetes.io/h2c":
			return ir.HTTP2, true
		case "https", "tls", "kubernetes.io/wss":
			return ir.TLS, true
		default: // tcp, and any protocol that is not HTTP (mysql, redis, ...)
			return ir.TCP, true
		}
	}
	n := strings.ToLower(name)
	prefix, _, _ := strings.Cut(n, "-")
	switch {
	case prefix == "http" || n == "grpc-web" || strings.HasPrefix(n, "grpc-web-"):
		return ir.HTTP, true
	case prefix == "http2" || prefix == "grpc" || prefix == "h2c":
		return ir.HTTP2, true
	case prefix == "https" || prefix == "tls" || strings.HasSuffix(n, "-https") || strings.HasSuffix(n, "-tls"):
		return ir.TLS, true
	case prefix == "tcp" || prefix == "mongo" || prefix == "mysql" || prefix == "redis" || prefix == "dns":
		return ir.TCP, true
	}
	return ir.HTTP, true
}

// localEndpoints are the ready endpoints of a Service port in this cluster, with the identity of
// the pod behind each.
func (t *translation) localEndpoints(k nsName, sp corev1.ServicePort) []ir.Endpoint {
	var out []ir.Endpoint
	for _, s := range t.slicesBySvc[k] {
		var port int32 = -1
		for _, p := range s.Ports {
			if p.Name == sp.Name {
				port = p.Port
			}
		}
		if port <= 0 {
			continue
		}
		for i := range s.Endpoints {
			e := &s.Endpoints[i]
			if !e.Ready {
				continue
			}
			idn := ir.Identity{Namespace: k.ns}
			proxyless := false
			if ns, name := e.PodOf(k.ns); name != "" {
				if pod := t.pods[nsName{ns, name}]; pod != nil {
					idn = ir.Identity{Namespace: pod.Namespace, ServiceAccount: cmp.Or(pod.Spec.ServiceAccountName, "default")}
					proxyless = pod.Annotations[wellknown.ProxylessAnnotation] == "true"
				}
			}
			ep := ir.Endpoint{Address: e.Address, Port: uint32(port), Identity: idn, Proxyless: proxyless}
			if !slices.Contains(out, ep) {
				out = append(out, ep)
			}
		}
	}
	slices.SortFunc(out, cmpEndpoint)
	return out
}

func cmpEndpoint(a, b ir.Endpoint) int {
	if c := cmp.Compare(a.Address, b.Address); c != 0 {
		return c
	}
	return cmp.Compare(a.Port, b.Port)
}

// meshNamespace reports whether a namespace was added to the mesh.
func (t *translation) meshNamespace(ns string) bool {
	n := t.namespaces[ns]
	return n != nil && n.Labels[wellknown.MeshNamespaceLabel] == wellknown.MeshNamespaceValue
}
