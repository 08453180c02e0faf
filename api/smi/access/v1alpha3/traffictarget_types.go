package v1alpha3

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// TrafficTargetSpec allows the sources to send the traffic described by the rules to the
// destination.
type TrafficTargetSpec struct {
	// Destination is the ServiceAccount whose workloads receive the traffic.
	Destination IdentityBindingSubject `json:"destination"`

	// Sources are the ServiceAccounts whose workloads may send the traffic.
	// +kubebuilder:validation:MaxItems=256
	// +listType=atomic
	// +optional
	Sources []IdentityBindingSubject `json:"sources,omitempty"`

	// Rules name the route groups (HTTPRouteGroup or TCPRoute) that describe the allowed traffic.
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	// +optional
	Rules []TrafficTargetRule `json:"rules,omitempty"`
}

// IdentityBindingSubject is a workload identity: a ServiceAccount.
type IdentityBindingSubject struct {
	// Kind of the subject; only ServiceAccount is defined.
	// +kubebuilder:validation:Enum=ServiceAccount
	Kind string `json:"kind"`

	// Name of the ServiceAccount.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`

	// Namespace of the ServiceAccount; the TrafficTarget's own namespace when empty.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$`
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// Port restricts the destination to one port.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port *int `json:"port,omitempty"`
}

// TrafficTargetRule selects matches of a route group in the TrafficTarget's namespace.
type TrafficTargetRule struct {
	// Kind of the route group: HTTPRouteGroup or TCPRoute.
	// +kubebuilder:validation:Enum=HTTPRouteGroup;TCPRoute
	Kind string `json:"kind"`

	// Name of the route group.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// Matches are the names of the route group's matches that are allowed; all of them when
	// empty.
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	// +optional
	Matches []string `json:"matches,omitempty"`
}

// TrafficTarget is the SMI access-control resource: which identities may send which traffic to
// which identity.
//
// +genclient
// +kubebuilder:object:root=true
// +kubebuilder:resource:categories=smi
// +kubebuilder:printcolumn:name="Destination",type=string,JSONPath=`.spec.destination.name`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TrafficTarget struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata.
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the access rule.
	Spec TrafficTargetSpec `json:"spec"`
}

// TrafficTargetList is a list of TrafficTarget.
//
// +kubebuilder:object:root=true
type TrafficTargetList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TrafficTarget `json:"items"`
}
