package translator

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	accessv1alpha3 "github.com/crossgate-io/crossgate/api/smi/access/v1alpha3"
	specsv1alpha4 "github.com/crossgate-io/crossgate/api/smi/specs/v1alpha4"
)

// Input is everything the translator reads for one cluster: that cluster's own objects, and the
// ServiceImports the federation wrote into it. All objects belong to Cluster; objects of other
// clusters reach it only through ServiceImports.
type Input struct {
	// Cluster is the key (region/zone/group/name) of the cluster being translated.
	Cluster string `json:"cluster"`
	// DNSDomain is the cluster's DNS domain; cluster.local when empty.
	DNSDomain string `json:"dnsDomain,omitempty"`
	// MeshConfig is the installation's configuration; defaults apply when nil.
	MeshConfig *flomeshv1alpha1.MeshConfig `json:"meshConfig,omitempty"`
	// ControllerNamespace is the controller's namespace (crossgate-system when empty) and
	// ExportGateway the Gateway exported services attach to (namespace/name; the MeshConfig's
	// spec.gateway, else crossgate-system/crossgate-gateway, when empty): Gateways of crossgate's
	// class are trusted mesh peers only there (TrustedGateway).
	ControllerNamespace string `json:"controllerNamespace,omitempty"`
	ExportGateway       string `json:"exportGateway,omitempty"`

	Namespaces      []corev1.Namespace      `json:"namespaces,omitempty"`
	Services        []corev1.Service        `json:"services,omitempty"`
	EndpointSlices  []EndpointSlice         `json:"endpointSlices,omitempty"`
	Pods            []corev1.Pod            `json:"pods,omitempty"`
	ServiceAccounts []corev1.ServiceAccount `json:"serviceAccounts,omitempty"`

	ServiceExports        []flomeshv1alpha1.ServiceExport       `json:"serviceExports,omitempty"`
	ServiceImports        []flomeshv1alpha1.ServiceImport       `json:"serviceImports,omitempty"`
	GlobalTrafficPolicies []flomeshv1alpha1.GlobalTrafficPolicy `json:"globalTrafficPolicies,omitempty"`

	TrafficTargets  []accessv1alpha3.TrafficTarget `json:"trafficTargets,omitempty"`
	HTTPRouteGroups []specsv1alpha4.HTTPRouteGroup `json:"httpRouteGroups,omitempty"`

	GatewayClasses []gatewayv1.GatewayClass `json:"gatewayClasses,omitempty"`
	Gateways       []gatewayv1.Gateway      `json:"gateways,omitempty"`
	HTTPRoutes     []gatewayv1.HTTPRoute    `json:"httpRoutes,omitempty"`
	TLSRoutes      []gatewayv1.TLSRoute     `json:"tlsRoutes,omitempty"`
	// ReferenceGrants let routes refer to Services, and Gateways to Secrets, of other
	// namespaces.
	ReferenceGrants []gatewayv1.ReferenceGrant `json:"referenceGrants,omitempty"`
	// UnservedKinds are kinds crossgate reads that the API server does not serve ("TLSRoute.
	// gateway.networking.k8s.io/v1": Gateway API CRDs older than crossgate's), sorted.
	UnservedKinds []string `json:"unservedKinds,omitempty"`
	// Secrets are those our Gateways' HTTPS listeners refer to (the controller passes no
	// other): their certificates and keys terminate TLS at the gateway.
	Secrets []corev1.Secret `json:"secrets,omitempty"`
	// Deployments are the gateways' Deployments, as dataplane renders them (named after their
	// Gateway, labelled with it and managed by crossgate); the controller reads no other. Their
	// availability, with their LoadBalancer Service's address, is the Gateway's Programmed.
	Deployments []appsv1.Deployment `json:"deployments,omitempty"`
}

// ParseInput reads an Input from YAML (or JSON). Unknown fields are an error, so that a typo in
// a test fixture does not pass silently.
func ParseInput(b []byte) (*Input, error) {
	in := &Input{}
	if err := yaml.UnmarshalStrict(b, in); err != nil {
		return nil, err
	}
	return in, nil
}
