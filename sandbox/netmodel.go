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
	// services by ClusterIP, read again after servicesTTL.
	services map[string]corev1.Service
	read     time.Time
}

const servicesTTL = time.Second

// serviceAt is the Service whose ClusterIP is ip, if any.
func (n *ClusterNetwork) serviceAt(ctx context.Context, ip string) (*corev1.Service, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.services == nil || time.Since(n.read) > servicesTTL {
		var svcs corev1.ServiceList
		if err := n.Client.List(ctx, &svcs); err != nil {
			return nil, err
		}
		n.services = map[string]corev1.Service{}
		for _, s := range svcs.Items {
			if s.Spec.ClusterIP != "" && s.Spec.ClusterIP != corev1.ClusterIPNone {
				n.services[s.Spec.ClusterIP] = s
			}
		}
		n.read = time.Now()
	}
	if s, ok := n.services[ip]; ok {
		return &s, nil
	}
	return nil, nil
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
	var svc corev1.Service
	if err := n.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &svc); err != nil {
		return "", fmt.Errorf("no such host %s: %w", host, err)
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
	svc, err := n.serviceAt(ctx, host)
	if err != nil {
		return "", err
	}
	if s := svc; s != nil {
		var eps []string
		for _, sp := range s.Spec.Ports {
			if int(sp.Port) != port {
				continue
			}
			var slices discoveryv1.EndpointSliceList
			if err := n.Client.List(ctx, &slices, client.InNamespace(s.Namespace), client.MatchingLabels{discoveryv1.LabelServiceName: s.Name}); err != nil {
				return "", err
			}
			for _, es := range slices.Items {
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
		n.mu.Lock()
		if n.next == nil {
			n.next = map[string]int{}
		}
		i := n.next[addr]
		n.next[addr] = i + 1
		n.mu.Unlock()
		return network.LoopbackAddr(eps[i%len(eps)]), nil
	}
	return network.LoopbackAddr(addr), nil
}
