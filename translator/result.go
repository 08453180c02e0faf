package translator

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/crossgate-io/crossgate/translator/ir"
)

// Result is the IR of the cluster's proxies and the statuses to write.
type Result struct {
	IR       ir.Snapshot `json:"ir"`
	Statuses Statuses    `json:"statuses"`
}

// Statuses are the status blocks the controllers write back. Conditions carry
// ObservedGeneration; LastTransitionTime is left zero for the writer to fill (the translator has
// no clock). Every list is sorted by namespace/name.
type Statuses struct {
	GatewayClasses        []GatewayClassStatus `json:"gatewayClasses,omitempty"`
	Gateways              []GatewayStatus      `json:"gateways,omitempty"`
	HTTPRoutes            []RouteStatus        `json:"httpRoutes,omitempty"`
	TLSRoutes             []RouteStatus        `json:"tlsRoutes,omitempty"`
	ServiceExports        []ObjectConditions   `json:"serviceExports,omitempty"`
	GlobalTrafficPolicies []ObjectConditions   `json:"globalTrafficPolicies,omitempty"`
	// Warnings are problems with objects that have no status of crossgate's to hold them (a
	// Service); the controller reports each as an Event on the object when it first appears.
	Warnings []ObjectWarning `json:"warnings,omitempty"`
}

// ObjectWarning is a problem with one object, for an Event.
type ObjectWarning struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Reason    string `json:"reason"`
	Message   string `json:"message"`
}

// GatewayClassStatus is the status of a GatewayClass of our controller.
type GatewayClassStatus struct {
	Name              string                       `json:"name"`
	Conditions        []metav1.Condition           `json:"conditions"`
	SupportedFeatures []gatewayv1.SupportedFeature `json:"supportedFeatures,omitempty"`
}

// GatewayStatus is the status of a Gateway of our class.
type GatewayStatus struct {
	Namespace string                  `json:"namespace"`
	Name      string                  `json:"name"`
	Status    gatewayv1.GatewayStatus `json:"status"`
}

// RouteStatus holds a route's (an HTTPRoute's or a TLSRoute's) parent statuses for the parents
// that are ours; parents of other controllers are left to them.
type RouteStatus struct {
	Namespace string                        `json:"namespace"`
	Name      string                        `json:"name"`
	Parents   []gatewayv1.RouteParentStatus `json:"parents"`
}

// ObjectConditions are the conditions of one namespaced object.
type ObjectConditions struct {
	Namespace  string             `json:"namespace"`
	Name       string             `json:"name"`
	Conditions []metav1.Condition `json:"conditions"`
}
