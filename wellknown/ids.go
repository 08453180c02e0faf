package wellknown

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Node-ID kinds, the part before "~" in a node ID ("sidecar~httpbin/httpbin"). A node ID with
// no kind is a proxyless gRPC workload.
const (
	KindSidecar   = "sidecar"
	KindGateway   = "gateway"
	KindProxyless = "proxyless"
)

// NodeID is what a proxy presents as its xDS node ID: its kind and the identity whose
// configuration it asks for (namespace/ServiceAccount, or namespace/name of a Gateway). Written
// "kind~namespace/name"; a bare "namespace/name" is a proxyless workload.
type NodeID struct {
	Kind      string
	Namespace string
	Name      string
}

// String is the node ID as proxies send it.
func (n NodeID) String() string { return n.Kind + "~" + n.Namespace + "/" + n.Name }

// Identity is namespace/name, the identity part.
func (n NodeID) Identity() string { return n.Namespace + "/" + n.Name }

// Sidecar, Gateway and Proxyless are the node IDs of the three kinds of proxies.
func Sidecar(namespace, serviceAccount string) NodeID {
	return NodeID{Kind: KindSidecar, Namespace: namespace, Name: serviceAccount}
}

func Gateway(namespace, name string) NodeID {
	return NodeID{Kind: KindGateway, Namespace: namespace, Name: name}
}

func Proxyless(namespace, serviceAccount string) NodeID {
	return NodeID{Kind: KindProxyless, Namespace: namespace, Name: serviceAccount}
}

// ParseNodeID reads "kind~namespace/name" or "namespace/name" (proxyless).
func ParseNodeID(id string) (NodeID, error) {
	kind, rest, ok := strings.Cut(id, "~")
	if !ok {
		kind, rest = KindProxyless, id
	}
	switch kind {
	case KindSidecar, KindGateway, KindProxyless:
	default:
		return NodeID{}, fmt.Errorf("node ID %q: the kind before '~' must be sidecar, gateway or proxyless", id)
	}
	ns, name, ok := strings.Cut(rest, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return NodeID{}, fmt.Errorf("node ID %q: want [kind~]namespace/name", id)
	}
	return NodeID{Kind: kind, Namespace: ns, Name: name}, nil
}

// SPIFFEID is a workload's identity URI, spiffe://<trust-domain>/ns/<namespace>/sa/<sa>.
type SPIFFEID struct {
	TrustDomain    string
	Namespace      string
	ServiceAccount string
}

// String is the URI.
func (s SPIFFEID) String() string {
	return "spiffe://" + s.TrustDomain + "/ns/" + s.Namespace + "/sa/" + s.ServiceAccount
}

// Identity is namespace/ServiceAccount.
func (s SPIFFEID) Identity() string { return s.Namespace + "/" + s.ServiceAccount }

// SPIFFEPrefix is the start every SPIFFE ID of a trust domain shares.
func SPIFFEPrefix(trustDomain string) string { return "spiffe://" + trustDomain + "/" }

// ErrNotWorkload is returned for a URI that is not a SPIFFE workload identity of our form.
var ErrNotWorkload = errors.New("not a SPIFFE workload identity (spiffe://<trust-domain>/ns/<ns>/sa/<sa>)")

// ParseSPIFFEID reads a SPIFFE workload URI of crossgate's form.
func ParseSPIFFEID(u *url.URL) (SPIFFEID, error) {
	if u == nil || u.Scheme != "spiffe" || u.Host == "" {
		return SPIFFEID{}, ErrNotWorkload
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" || parts[1] == "" || parts[3] == "" {
		return SPIFFEID{}, ErrNotWorkload
	}
	return SPIFFEID{TrustDomain: u.Host, Namespace: parts[1], ServiceAccount: parts[3]}, nil
}

// MeshSNISuffix ends every mesh SNI name (MeshSNI).
const MeshSNISuffix = ".svc.clusterset.local"

// MeshSNI is the TLS server name a caller's proxy (or grpc-go) sends when it opens mTLS to a
// service port's workloads: "<port>.<name>.<namespace>.svc.clusterset.local". A remote
// cluster's gateway routes the connection by this name, without terminating it (TLS
// passthrough), to the local endpoints of that Service port; the workload's own proxy knows by
// it (or by MeshALPN) that the connection is mesh TLS to terminate, and sees the caller's
// identity. The name is the Multi-Cluster Services name of
// the service (clusterset.local) with the port as its first label, so that one gateway port
// carries every port of every export. A Service name and a namespace are DNS labels, and a port
// is at most five digits, so the name fits the 253 characters of a host name.
func MeshSNI(namespace, name string, port int32) string {
	return strconv.Itoa(int(port)) + "." + name + "." + namespace + MeshSNISuffix
}

// MeshALPN is the ALPN protocol a crossgate proxy offers first when it opens mesh mTLS: a
// workload's proxy terminates TLS that offers it (or names one of the workload's services by
// MeshSNI) and passes any other TLS through to the application untouched, so an application
// that terminates its own TLS keeps its clients. No application offers it, and no server
// selects it: a workload's proxy then agrees on no protocol and reads HTTP/1.1 or HTTP/2 from
// what the client sends.
const MeshALPN = "crossgate"

// NamespacePrefix is the start of every SPIFFE ID of a namespace's ServiceAccounts in a trust
// domain: "spiffe://<trust-domain>/ns/<namespace>/sa/".
func NamespacePrefix(trustDomain, namespace string) string {
	return "spiffe://" + trustDomain + "/ns/" + namespace + "/sa/"
}
