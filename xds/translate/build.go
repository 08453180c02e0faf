package translate

import (
	"errors"
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/crossgate-io/crossgate/internal/parallel"
	"github.com/crossgate-io/crossgate/translator/ir"
	"github.com/crossgate-io/crossgate/xds/resources"
)

// Build turns a snapshot into xDS resources. Pieces that fail validation are left out and
// reported in the error (joined, one per piece); the rest is returned. A nil error means every
// piece of the snapshot was built.
func Build(s *ir.Snapshot) (*resources.Output, error) {
	out := &resources.Output{Sidecars: map[string]*resources.Resources{}, Proxyless: map[string]*resources.Resources{}, Gateways: map[string]*resources.Resources{}}
	var errs []error
	// Identities that name one outbound set (every identity in permissive mode) share the
	// resources built from it: built, validated and reported once. The sets, then each
	// identity's own resources, are built in parallel (each by a builder of its own, from the
	// snapshot, which nothing modifies); the output and its errors are put together in order.
	var setNames []string
	var lists [][]ir.OutboundService
	sets := map[string]*[2]*builder{}
	for i := range s.Sidecars {
		if name, list := s.Sidecars[i].Outbound, s.Outbound(&s.Sidecars[i]); list != nil {
			if _, ok := sets[name]; !ok {
				sets[name] = nil
				setNames, lists = append(setNames, name), append(lists, list)
			}
		}
	}
	built := make([][2]*builder, len(setNames))
	parallel.Do(len(setNames), func(i int) {
		list := lists[i]
		b := [2]*builder{newBuilder(s.TrustDomain), newBuilder(s.TrustDomain)}
		b[0].sidecarOutbound(list)
		b[1].proxylessOutbound(list, b[0].res.Endpoints)
		b[0].finish()
		b[1].finish()
		built[i] = b
	})
	for i, name := range setNames {
		sets[name] = &built[i]
		errs = append(errs, wrap("outbound of "+name, append(built[i][0].errs, built[i][1].errs...))...)
	}
	own := make([][2]*builder, len(s.Sidecars))
	parallel.Do(len(s.Sidecars), func(i int) {
		sc := &s.Sidecars[i]
		b := newBuilder(s.TrustDomain)
		b.outboundCapture()
		b.inbound(sc.Inbound)
		b.probe(sc.Probes)
		p := newBuilder(s.TrustDomain)
		p.proxylessInbound(sc.Inbound)
		b.finish()
		p.finish()
		own[i] = [2]*builder{b, p}
	})
	for i := range s.Sidecars {
		sc := &s.Sidecars[i]
		var outb *[2]*builder
		if sc.Outbound != "" {
			if outb = sets[sc.Outbound]; outb == nil {
				errs = append(errs, fmt.Errorf("sidecar %s: outbound set %q does not exist", sc.Identity, sc.Outbound))
				continue
			}
		}
		b, p := own[i][0], own[i][1]
		if outb != nil {
			b.res.Shared, p.res.Shared = &outb[0].res, &outb[1].res
		}
		out.Sidecars[sc.Identity.String()] = &b.res
		out.Proxyless[sc.Identity.String()] = &p.res
		errs = append(errs, wrap("sidecar "+sc.Identity.String(), b.errs)...)
		errs = append(errs, wrap("proxyless "+sc.Identity.String(), p.errs)...)
	}
	for i := range s.Gateways {
		g := &s.Gateways[i]
		b := newBuilder(s.TrustDomain)
		b.gateway(g)
		out.Gateways[g.Namespace+"/"+g.Name] = b.finish()
		errs = append(errs, wrap("gateway "+g.Namespace+"/"+g.Name, b.errs)...)
	}
	return out, errors.Join(errs...)
}

func wrap(what string, errs []error) []error {
	out := make([]error, 0, len(errs))
	for _, e := range errs {
		out = append(out, fmt.Errorf("%s: %w", what, e))
	}
	return out
}

// validatable is what every generated resource is.
type validatable interface{ ValidateAll() error }

// builder collects one proxy's resources, validating each as it is added.
type builder struct {
	trustDomain string
	res         resources.Resources
	errs        []error
	seen        map[resourceName]bool
}

// resourceName names a resource of a builder: its kind and its name.
type resourceName struct{ kind, name string }

func newBuilder(trustDomain string) *builder {
	return &builder{trustDomain: trustDomain, seen: map[resourceName]bool{}}
}

// valid reports whether m passes validation; when it does not, the error is recorded and the
// resource is to be dropped.
func (b *builder) valid(kind, name string, m validatable) bool {
	if err := m.ValidateAll(); err != nil {
		b.errs = append(b.errs, fmt.Errorf("%s %s dropped: %w", kind, name, err))
		return false
	}
	key := resourceName{kind, name}
	if b.seen[key] {
		return false // the same resource reached twice (a cluster shared by two routes)
	}
	b.seen[key] = true
	return true
}

func (b *builder) listener(l *listenerv3.Listener) {
	if b.valid("listener", l.Name, l) {
		b.res.Listeners = append(b.res.Listeners, l)
	}
}

func (b *builder) route(r *routev3.RouteConfiguration) {
	if b.valid("route", r.Name, r) {
		b.res.Routes = append(b.res.Routes, r)
	}
}

func (b *builder) cluster(c *clusterv3.Cluster) {
	if b.valid("cluster", c.Name, c) {
		b.res.Clusters = append(b.res.Clusters, c)
	}
}

func (b *builder) endpoints(e *endpointv3.ClusterLoadAssignment) {
	if b.valid("endpoints", e.ClusterName, e) {
		b.res.Endpoints = append(b.res.Endpoints, e)
	}
}

func (b *builder) secret(s *tlsv3.Secret) {
	if b.valid("secret", s.Name, s) {
		b.res.Secrets = append(b.res.Secrets, s)
	}
}

func (b *builder) fail(err error) { b.errs = append(b.errs, err) }

func (b *builder) finish() *resources.Resources {
	sortByName(b.res.Listeners, func(l *listenerv3.Listener) string { return l.Name })
	sortByName(b.res.Routes, func(r *routev3.RouteConfiguration) string { return r.Name })
	sortByName(b.res.Clusters, func(c *clusterv3.Cluster) string { return c.Name })
	sortByName(b.res.Endpoints, func(e *endpointv3.ClusterLoadAssignment) string { return e.ClusterName })
	sortByName(b.res.Secrets, func(s *tlsv3.Secret) string { return s.Name })
	return &b.res
}
