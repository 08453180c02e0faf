package sandbox

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/crossgate-io/crossgate/sandbox/network"
)

// LoadBalancer is a cluster's loopback load balancer: each LoadBalancer Service gets an
// address 127.0.<cluster index>.<n> in status.loadBalancer.ingress and a listener there on each
// of its ports, which carries every connection to one of the Service's ready endpoints (from
// its EndpointSlices, in turn), as a cloud load balancer in front of kube-proxy would. A port
// it cannot bind is logged once: below 1024, a user other than root needs
// CAP_NET_BIND_SERVICE, or net.ipv4.ip_unprivileged_port_start lowered.
type LoadBalancer struct {
	c     client.Client
	index int
	log   *slog.Logger
	mu    sync.Mutex
	ips   map[types.NamespacedName]string
	open  map[string]net.Listener // by ip:port
	fixed []fixedPort
	next  atomic.Uint64
}

// fixedPort is a listener given to the load balancer for a Service port (Bind).
type fixedPort struct {
	ln   net.Listener
	svc  types.NamespacedName
	port int32
}

// NewLoadBalancer starts the load balancer of the cluster of that index; it runs until ctx
// ends, and closes its listeners then.
func NewLoadBalancer(ctx context.Context, cfg *rest.Config, index int, log *slog.Logger) (*LoadBalancer, error) {
	ca, err := cache.New(cfg, cache.Options{Scheme: Scheme})
	if err != nil {
		return nil, err
	}
	go func() { _ = ca.Start(ctx) }()
	if !ca.WaitForCacheSync(ctx) {
		return nil, errors.New("the load balancer's cache did not sync")
	}
	c, err := client.New(cfg, client.Options{Scheme: Scheme, Cache: &client.CacheOptions{Reader: ca}})
	if err != nil {
		return nil, err
	}
	// The informers the load balancer reads start now, not at its first connection.
	for _, o := range []client.Object{&corev1.Service{}, &discoveryv1.EndpointSlice{}} {
		if _, err := ca.GetInformer(ctx, o); err != nil {
			return nil, err
		}
	}
	lb := &LoadBalancer{c: c, index: index, log: log, ips: map[types.NamespacedName]string{}, open: map[string]net.Listener{}}
	go lb.run(ctx)
	return lb, nil
}

// Bind serves ln as one more address of a Service's port (the member gateway ports the
// Cluster objects name).
func (lb *LoadBalancer) Bind(ln net.Listener, svc types.NamespacedName, port int32) {
	lb.mu.Lock()
	lb.fixed = append(lb.fixed, fixedPort{ln: ln, svc: svc, port: port})
	lb.mu.Unlock()
	go lb.serve(ln, svc, port)
}

func (lb *LoadBalancer) run(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	failed := map[string]bool{}
	for {
		lb.sync(ctx, failed)
		select {
		case <-ctx.Done():
			lb.mu.Lock()
			for _, ln := range lb.open {
				_ = ln.Close()
			}
			for _, f := range lb.fixed {
				_ = f.ln.Close()
			}
			lb.mu.Unlock()
			return
		case <-t.C:
		}
	}
}

// sync gives every LoadBalancer Service its address and listeners, and closes those of
// Services and ports gone.
func (lb *LoadBalancer) sync(ctx context.Context, failed map[string]bool) {
	var svcs corev1.ServiceList
	if err := lb.c.List(ctx, &svcs); err != nil {
		return
	}
	want := map[string]bool{}
	seen := map[types.NamespacedName]bool{}
	for i := range svcs.Items {
		svc := &svcs.Items[i]
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || !svc.DeletionTimestamp.IsZero() {
			continue
		}
		key := client.ObjectKeyFromObject(svc)
		seen[key] = true
		ip := lb.address(svc)
		ingress := []corev1.LoadBalancerIngress{{IP: ip, IPMode: ptr.To(corev1.LoadBalancerIPModeVIP)}}
		if !equality.Semantic.DeepEqual(svc.Status.LoadBalancer.Ingress, ingress) {
			orig := svc.DeepCopy()
			svc.Status.LoadBalancer.Ingress = ingress
			if err := lb.c.Status().Patch(ctx, svc, client.MergeFrom(orig)); err != nil {
				lb.log.Warn("writing the load balancer address", "service", key, "error", err)
			}
		}
		for _, sp := range svc.Spec.Ports {
			if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
				continue
			}
			addr := net.JoinHostPort(ip, strconv.Itoa(int(sp.Port)))
			want[addr] = true
			lb.mu.Lock()
			_, isOpen := lb.open[addr]
			lb.mu.Unlock()
			if isOpen || failed[addr] {
				continue
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				failed[addr] = true
				lb.log.Warn("the loopback load balancer cannot serve a port of a LoadBalancer Service (below 1024, a user other than root needs CAP_NET_BIND_SERVICE or a lower net.ipv4.ip_unprivileged_port_start)",
					"service", key, "address", addr, "error", err)
				continue
			}
			lb.mu.Lock()
			lb.open[addr] = ln
			lb.mu.Unlock()
			go lb.serve(ln, key, sp.Port)
		}
	}
	lb.mu.Lock()
	defer lb.mu.Unlock()
	for addr, ln := range lb.open {
		if !want[addr] {
			_ = ln.Close()
			delete(lb.open, addr)
		}
	}
	for addr := range failed {
		if !want[addr] {
			delete(failed, addr)
		}
	}
	for key := range lb.ips {
		if !seen[key] {
			delete(lb.ips, key)
		}
	}
}

// address is the Service's load balancer address: the one it has, when it is the cluster's,
// or the first free one.
func (lb *LoadBalancer) address(svc *corev1.Service) string {
	key := client.ObjectKeyFromObject(svc)
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if ip := lb.ips[key]; ip != "" {
		return ip
	}
	taken := map[string]bool{}
	for _, ip := range lb.ips {
		taken[ip] = true
	}
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if a := net.ParseIP(in.IP).To4(); a != nil && a[0] == 127 && a[1] == 0 && int(a[2]) == lb.index && !taken[in.IP] {
			lb.ips[key] = in.IP
			return in.IP
		}
	}
	for n := 1; n < 255; n++ {
		ip := LoadBalancerAddress(lb.index, n)
		if !taken[ip] {
			lb.ips[key] = ip
			return ip
		}
	}
	return ""
}

// LoadBalancerAddress is the n-th load balancer address of the cluster of index i:
// 127.0.i.n, on the loopback interface (Linux routes all of 127.0.0.0/8 there), apart from the
// pods' 127.i.x.x.
func LoadBalancerAddress(i, n int) string {
	return "127.0." + strconv.Itoa(i) + "." + strconv.Itoa(n)
}

// serve carries each connection to ln to a ready endpoint of the Service's port, the next in
// turn that accepts it.
func (lb *LoadBalancer) serve(ln net.Listener, svc types.NamespacedName, port int32) {
	network.Forward(ln, func() (net.Conn, error) {
		eps := lb.endpoints(svc, port)
		if len(eps) == 0 {
			return nil, errNoEndpoint // the connection is refused, as kube-proxy rejects it
		}
		start := int(lb.next.Add(1))
		var err error
		for i := range eps {
			var out net.Conn
			if out, err = net.DialTimeout("tcp", eps[(start+i)%len(eps)], 2*time.Second); err == nil {
				return out, nil
			}
		}
		return nil, err
	})
}

var errNoEndpoint = errors.New("no ready endpoint")

// endpoints are the loopback addresses of the Service port's ready endpoints.
func (lb *LoadBalancer) endpoints(key types.NamespacedName, port int32) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var svc corev1.Service
	if err := lb.c.Get(ctx, key, &svc); err != nil {
		return nil
	}
	name := ""
	found := false
	for _, sp := range svc.Spec.Ports {
		if sp.Port == port {
			name, found = sp.Name, true
		}
	}
	if !found {
		return nil
	}
	var slices discoveryv1.EndpointSliceList
	if err := lb.c.List(ctx, &slices, client.InNamespace(key.Namespace), client.MatchingLabels{discoveryv1.LabelServiceName: key.Name}); err != nil {
		return nil
	}
	var out []string
	for _, s := range slices.Items {
		target := int32(0)
		for _, p := range s.Ports {
			if ptr.Deref(p.Name, "") == name && p.Port != nil {
				target = *p.Port
			}
		}
		if target == 0 {
			continue
		}
		for _, e := range s.Endpoints {
			if !ptr.Deref(e.Conditions.Ready, false) || len(e.Addresses) == 0 {
				continue
			}
			out = append(out, network.LoopbackAddr(net.JoinHostPort(e.Addresses[0], strconv.Itoa(int(target)))))
		}
	}
	return out
}
