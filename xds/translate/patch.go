package translate

import (
	"errors"

	"github.com/crossgate-io/crossgate/translator/ir"
	"github.com/crossgate-io/crossgate/xds/resources"
)

// The builders below make the resources of one piece of the snapshot alone, exactly as Build
// makes them inside a proxy's configuration: an incremental publisher, told by the translator
// that one service's endpoints changed, rebuilds that service's resources and replaces them
// where proxies hold them, instead of building every proxy again.

// OutboundService builds the resources of one outbound service port, for Envoy sidecars and for
// grpc-go, as Build does for each entry of an outbound set. The listeners and route
// configurations hold this service alone (in a proxy's configuration they hold every service of
// its port); its clusters and endpoints are exactly a proxy's. An error means a resource failed
// validation and was left out, as Build leaves it out.
func OutboundService(trustDomain string, o *ir.OutboundService) (sidecar, proxyless *resources.Resources, err error) {
	s, p := newBuilder(trustDomain), newBuilder(trustDomain)
	list := []ir.OutboundService{*o}
	s.sidecarOutbound(list)
	p.proxylessOutbound(list, s.res.Endpoints)
	return s.finish(), p.finish(), errors.Join(append(s.errs, p.errs...)...)
}

// GatewayBackend builds the cluster and endpoints of one gateway backend, as Build does.
func GatewayBackend(trustDomain string, be *ir.Backend) (*resources.Resources, error) {
	b := newBuilder(trustDomain)
	b.gatewayBackend(be)
	return b.finish(), errors.Join(b.errs...)
}

// PassthroughBackend builds the cluster and endpoints of one backend of a gateway's TLS route, as
// Build does.
func PassthroughBackend(trustDomain string, be *ir.Backend) (*resources.Resources, error) {
	b := newBuilder(trustDomain)
	b.passthroughBackend(be)
	return b.finish(), errors.Join(b.errs...)
}
