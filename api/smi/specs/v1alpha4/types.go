package v1alpha4

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// HTTPMethod is an HTTP method, or "*" for any.
//
// +kubebuilder:validation:Enum="*";GET;HEAD;PUT;POST;DELETE;CONNECT;OPTIONS;TRACE;PATCH
type HTTPMethod string

// HTTPRouteGroupSpec is a set of named HTTP request matches.
//
// +kubebuilder:validation:XValidation:rule="!has(self.matches) || self.matches.all(m, !has(m.name) || self.matches.exists_one(o, has(o.name) && o.name == m.name))",message="match names must be unique",fieldPath=".matches"
type HTTPRouteGroupSpec struct {
	// Matches are the named request shapes that TrafficTarget rules refer to.
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	// +optional
	Matches []HTTPMatch `json:"matches,omitempty"`
}

// HTTPMatch describes requests by path, method and headers; every given part must match.
type HTTPMatch struct {
	// Name by which TrafficTarget rules select this match.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Name string `json:"name,omitempty"`

	// Methods that match; "*" or none means any.
	// +kubebuilder:validation:MaxItems=10
	// +listType=atomic
	// +optional
	Methods []HTTPMethod `json:"methods,omitempty"`

	// PathRegex is an RE2 regular expression the whole request path must match ("/" matches
	// the path "/" only; "/.*" matches every path).
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	PathRegex string `json:"pathRegex,omitempty"`

	// Headers are request headers that must be present, each value matching an RE2 regular
	// expression as a whole.
	// +kubebuilder:validation:MaxProperties=32
	// +optional
	Headers map[string]string `json:"headers,omitempty"`
}

// HTTPRouteGroup is the SMI resource describing HTTP traffic, referred to by TrafficTargets.
//
// +genclient
// +kubebuilder:object:root=true
// +kubebuilder:resource:categories=smi
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type HTTPRouteGroup struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata.
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec holds the matches.
	Spec HTTPRouteGroupSpec `json:"spec"`
}

// HTTPRouteGroupList is a list of HTTPRouteGroup.
//
// +kubebuilder:object:root=true
type HTTPRouteGroupList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []HTTPRouteGroup `json:"items"`
}

// TCPRouteSpec is a set of named TCP matches.
type TCPRouteSpec struct {
	// Matches are the named port sets that TrafficTarget rules refer to.
	// +optional
	Matches TCPMatch `json:"matches,omitempty"`
}

// TCPMatch describes TCP traffic by destination port.
type TCPMatch struct {
	// Name by which TrafficTarget rules select this match.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Name string `json:"name,omitempty"`

	// Ports that match; any port when empty.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Minimum=1
	// +kubebuilder:validation:items:Maximum=65535
	// +listType=atomic
	// +optional
	Ports []int `json:"ports,omitempty"`
}

// TCPRoute is the SMI resource describing TCP traffic, referred to by TrafficTargets.
//
// +genclient
// +kubebuilder:object:root=true
// +kubebuilder:resource:categories=smi
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TCPRoute struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata.
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec holds the matches.
	Spec TCPRouteSpec `json:"spec"`
}

// TCPRouteList is a list of TCPRoute.
//
// +kubebuilder:object:root=true
type TCPRouteList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TCPRoute `json:"items"`
}
