package sandbox

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/crossgate-io/crossgate/sandbox/network"
)

// ClusterNetwork is what a cluster's DNS, kube-proxy and pod network do for the sandbox's
// processes, read from the cluster's Services and EndpointSlices: a Service's name resolves to
// its ClusterIP, a connection to a ClusterIP goes to one of its ready endpoints (none: refused),
// and a pod IP stands for its loopback address. It is the network a stand-in sidecar's
// application sees.
type ClusterNetwork struct {
	Client client.Client
	// Namespace is the calling pod's: short names resolve in it.
	Namespace string
	mu        sync.Mutex
	next      map[string]int
	// The cluster's Services by ClusterIP and by namespace/name, and EndpointSlices by
	// namespace/Service, read again after readTTL: a DNS server and kube-proxy watch them, and
	// reading them per connection would be throttled by the client's rate limiter.
	byIP, byName map[string]*corev1.Service
	slices       map[string][]discoveryv1.EndpointSlice
	read         time.Time
}

const readTTL = time.Second

// refresh reads the Services and EndpointSlices when they are older than readTTL.
func (n *ClusterNetwork) refresh(ctx context.Context) error {
	if n.byIP != nil && time.Since(n.read) < readTTL {
		return nil
	}
	var svcs corev1.ServiceList
	if err := n.Client.List(ctx, &svcs); err != nil {
		return err
	}
	var eps discoveryv1.EndpointSliceList
	if err := n.Client.List(ctx, &eps); err != nil {
		return err
	}
	n.byIP, n.byName, n.slices = map[string]*corev1.Service{}, map[string]*corev1.Service{}, map[string][]discoveryv1.EndpointSlice{}
	for i := range svcs.Items {
		s := &svcs.Items[i]
		n.byName[s.Namespace+"/"+s.Name] = s
		if s.Spec.ClusterIP != "" && s.Spec.ClusterIP != corev1.ClusterIPNone {
			n.byIP[s.Spec.ClusterIP] = s
		}
	}
	for _, es := range eps.Items {
		k := es.Namespace + "/" + es.Labels[discoveryv1.LabelServiceName]
		n.slices[k] = append(n.slices[k], es)
	}
	n.read = time.Now()
	return nil
}

// Resolve is the cluster's DNS for a Service: name, name.ns, name.ns.svc or
// name.ns.svc.cluster.local; an IP is itself. The sandbox has no other names.
func (n *ClusterNetwork) Resolve(ctx context.Context, host string) (string, error) {
	if net.ParseIP(host) != nil {
		return host, nil
	}
	parts := strings.Split(strings.TrimSuffix(host, "."), ".")
	name, ns := parts[0], n.Namespace
	switch {
	case len(parts) == 1:
	case len(parts) == 2, len(parts) == 3 && parts[2] == "svc", len(parts) == 5 && parts[2] == "svc" && parts[3]+"."+parts[4] == TrustDomain:
		ns = parts[1]
	default:
		return "", fmt.Errorf("no such host %s in the sandbox (it resolves Service names only)", host)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.refresh(ctx); err != nil {
		return "", err
	}
	svc := n.byName[ns+"/"+name]
	if svc == nil {
		return "", fmt.Errorf("no such host %s: Service %s/%s does not exist", host, ns, name)
	}
	if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone {
		return "", fmt.Errorf("Service %s/%s has no ClusterIP", ns, name)
	}
	return svc.Spec.ClusterIP, nil
}

// Route is kube-proxy and the pod network: a connection to a Service's ClusterIP and port goes
// to its ready endpoints in turn; any other address to the loopback address it stands for.
func (n *ClusterNetwork) Route(ctx context.Context, addr string) (string, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	port, _ := strconv.Atoi(portStr)
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.refresh(ctx); err != nil {
		return "", err
	}
	s := n.byIP[host]
	if s == nil {
		return network.LoopbackAddr(addr), nil
	}
	var eps []string
	for _, sp := range s.Spec.Ports {
		if int(sp.Port) != port {
			continue
		}
		for _, es := range n.slices[s.Namespace+"/"+s.Name] {
			for _, p := range es.Ports {
				if p.Port == nil || (p.Name != nil && *p.Name != sp.Name) {
					continue
				}
				for _, e := range es.Endpoints {
					if e.Conditions.Ready != nil && !*e.Conditions.Ready {
						continue
					}
					for _, a := range e.Addresses {
						eps = append(eps, net.JoinHostPort(a, strconv.Itoa(int(*p.Port))))
					}
				}
			}
		}
	}
	if len(eps) == 0 {
		return "", fmt.Errorf("Service %s/%s has no ready endpoint on port %d: connection refused", s.Namespace, s.Name, port)
	}
	if n.next == nil {
		n.next = map[string]int{}
	}
	i := n.next[addr]
	n.next[addr] = i + 1
	return network.LoopbackAddr(eps[i%len(eps)]), nil
}
