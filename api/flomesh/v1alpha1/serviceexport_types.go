package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// LoadBalancerType is the balancing algorithm the exporting gateway uses across the service's
// local endpoints.
//
// +kubebuilder:validation:Enum=RoundRobinLoadBalancer;HashingLoadBalancer;LeastWorkLoadBalancer
type LoadBalancerType string

const (
	// RoundRobinLoadBalancer spreads requests in turn.
	RoundRobinLoadBalancer LoadBalancerType = "RoundRobinLoadBalancer"
	// HashingLoadBalancer keeps a client on one endpoint by a consistent hash.
	HashingLoadBalancer LoadBalancerType = "HashingLoadBalancer"
	// LeastWorkLoadBalancer sends each request to the endpoint with the fewest requests in flight.
	LeastWorkLoadBalancer LoadBalancerType = "LeastWorkLoadBalancer"
)

// ServiceExportSpec says how a Service of the same namespace and name is offered to the other
// clusters of the set.
//
// +kubebuilder:validation:XValidation:rule="self.rules.all(r, self.rules.exists_one(o, o.portNumber == r.portNumber && o.path == r.path))",message="each pair of portNumber and path may appear only once",fieldPath=".rules"
type ServiceExportSpec struct {
	// ServiceAccountName is the identity of the exported service's workloads as seen from other
	// clusters, used by their access policies; "*" matches any identity.
	// +kubebuilder:default="*"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self == '*' || self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="must be \"*\" (any identity) or the name of a ServiceAccount"
	// +optional
	ServiceAccountName string `json:"serviceAccountName,omitempty"`

	// Rules are the exported ports, each with the path at which the gateway serves it for
	// direct access (for example /cluster-1/httpbin-mesh).
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	Rules []ServiceExportRule `json:"rules"`

	// PathRewrite rewrites the matched path prefix before the request reaches the service.
	// +optional
	PathRewrite *PathRewrite `json:"pathRewrite,omitempty"`

	// SessionSticky keeps a client on the same endpoint across requests.
	// +optional
	SessionSticky bool `json:"sessionSticky,omitempty"`

	// LoadBalancer is the algorithm used across the service's endpoints behind the gateway.
	// +kubebuilder:default=RoundRobinLoadBalancer
	// +optional
	LoadBalancer LoadBalancerType `json:"loadBalancer,omitempty"`

	// TargetClusters limits the clusters that import the service, by cluster key; empty means
	// every cluster of the set.
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +optional
	TargetClusters []ClusterKey `json:"targetClusters,omitempty"`
}

// ServiceExportRule exports one port of the Service.
type ServiceExportRule struct {
	// PortNumber is the exported port; it must be a port of the Service.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	PortNumber int32 `json:"portNumber"`

	// Path at which the exporting cluster's gateway serves this port for direct access. It starts
	// with "/" and holds no query, fragment or whitespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/')",message="must start with '/'"
	// +kubebuilder:validation:XValidation:rule="!self.matches('[?#\\\\s]')",message="must not contain '?', '#' or whitespace"
	Path string `json:"path"`

	// PathType says how path is matched: Exact or Prefix.
	PathType PathMatchType `json:"pathType"`
}

// PathRewrite replaces the path prefix From with To.
type PathRewrite struct {
	// From is the path prefix to replace; it starts with "/".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/')",message="must start with '/'"
	From string `json:"from"`

	// To is what replaces From; it starts with "/".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/')",message="must start with '/'"
	To string `json:"to"`
}

// ServiceExportStatus reports whether the export is in effect.
type ServiceExportStatus struct {
	// Conditions: Valid (the Service and the rules' ports exist) and Conflict (another cluster
	// exports the same service with different ports, protocol, type or serviceAccountName, and
	// the older export wins).
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ServiceExport offers the Service of the same namespace and name to the other clusters of the
// set, and publishes it on this cluster's gateway.
//
// +genclient
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=sexp,categories=crossgate
// +kubebuilder:printcolumn:name="Valid",type=string,JSONPath=`.status.conditions[?(@.type=="Valid")].status`
// +kubebuilder:printcolumn:name="Conflict",type=string,JSONPath=`.status.conditions[?(@.type=="Conflict")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ServiceExport struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata; namespace and name are those of the exported Service.
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec says which ports are exported and how.
	Spec ServiceExportSpec `json:"spec"`
	// Status is written by crossgate.
	// +optional
	Status ServiceExportStatus `json:"status,omitempty"`
}

// ServiceExportList is a list of ServiceExport.
//
// +kubebuilder:object:root=true
type ServiceExportList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ServiceExport `json:"items"`
}
