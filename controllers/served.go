package controllers

import (
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// optionalKinds are kinds crossgate reads that a cluster may not serve: Gateway API CRDs older
// than those crossgate ships (standard channel v1.6) have no TLSRoute or ReferenceGrant of v1,
// and Helm does not upgrade the CRDs a cluster already has. crossgate works on without them:
// the mesh is served, exports get no TLSRoute (callers of other clusters do not reach them),
// and no ReferenceGrant allows anything; the GatewayClass's SupportedVersion condition says so.
// Without this, watching a kind that is not served waits forever, and nothing is published.
func optionalKinds() []client.Object {
	return []client.Object{&gatewayv1.TLSRoute{}, &gatewayv1.ReferenceGrant{}}
}

// unservedKinds are those of objs the API server does not serve, found by discovery (at
// start: a CRD installed later is taken up when the controller restarts).
func unservedKinds(cfg *rest.Config, objs []client.Object) ([]schema.GroupVersionKind, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	var out []schema.GroupVersionKind
	served := map[string][]string{} // group/version: kinds
	for _, o := range objs {
		gvk, err := apiutil.GVKForObject(o, Scheme())
		if err != nil {
			return nil, err
		}
		gv := gvk.GroupVersion().String()
		kinds, known := served[gv]
		if !known {
			list, err := dc.ServerResourcesForGroupVersion(gv)
			switch {
			case apierrors.IsNotFound(err):
			case err != nil:
				return nil, fmt.Errorf("discovering %s: %w", gv, err)
			default:
				for _, r := range list.APIResources {
					kinds = append(kinds, r.Kind)
				}
			}
			served[gv] = kinds
		}
		if !slices.Contains(kinds, gvk.Kind) {
			out = append(out, gvk)
		}
	}
	return out, nil
}

// kindName names a kind for a message and the translator: "TLSRoute.gateway.networking.k8s.io/v1".
func kindName(gvk schema.GroupVersionKind) string {
	return gvk.Kind + "." + gvk.Group + "/" + gvk.Version
}
