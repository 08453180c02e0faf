package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// GlobalLoadBalancerType says which clusters' endpoints a caller uses.
//
// +kubebuilder:validation:Enum=Locality;FailOver;ActiveActive
type GlobalLoadBalancerType string

const (
	// Locality uses the caller's own cluster only.
	Locality GlobalLoadBalancerType = "Locality"
	// FailOver uses the caller's cluster first and the targets when it fails.
	FailOver GlobalLoadBalancerType = "FailOver"
	// ActiveActive spreads requests over the caller's cluster and the targets by weight.
	ActiveActive GlobalLoadBalancerType = "ActiveActive"
)

// DefaultTargetWeight is the weight of a target, and of the local cluster, when none is given.
const DefaultTargetWeight = 100

// GlobalTrafficPolicySpec says how callers in this cluster spread requests for the service of
// the same namespace and name over the clusters that serve it.
//
// +kubebuilder:validation:XValidation:rule="self.lbType != 'Locality' || !has(self.targets) || size(self.targets) <= 1",message="Locality accepts at most one target",fieldPath=".targets"
// +kubebuilder:validation:XValidation:rule="self.lbType != 'FailOver' || (has(self.targets) && size(self.targets) >= 1)",message="FailOver needs at least one target to fail over to",fieldPath=".targets"
// +kubebuilder:validation:XValidation:rule="self.lbType != 'ActiveActive' || !has(self.targets) || size(self.targets) == 0 || self.targets.exists(t, !has(t.weight) || t.weight > 0)",message="ActiveActive with every target's weight 0 sends nothing to other clusters: give a target a weight above 0, or use lbType Locality for this cluster only",fieldPath=".targets"
type GlobalTrafficPolicySpec struct {
	// LbType is Locality (the caller's cluster only; the default), FailOver (the caller's cluster
	// first, then the targets) or ActiveActive (the caller's cluster and the targets together).
	// +kubebuilder:default=Locality
	// +optional
	LbType GlobalLoadBalancerType `json:"lbType,omitempty"`

	// Targets are the other clusters to use, by cluster key, each with a weight. ActiveActive
	// with no targets uses every cluster that exports the service.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:XValidation:rule="self.all(t, self.exists_one(o, o.clusterKey == t.clusterKey))",message="each clusterKey may appear only once"
	// +listType=atomic
	// +optional
	Targets []TrafficTarget `json:"targets,omitempty"`
}

// TrafficTarget is one cluster a GlobalTrafficPolicy may send requests to.
type TrafficTarget struct {
	// ClusterKey of the target cluster, region/zone/group/name (for example
	// default/default/default/cluster-1).
	ClusterKey ClusterKey `json:"clusterKey"`

	// Weight of the target relative to the others (and to the local cluster, whose weight is
	// 100) under ActiveActive; 0 sends it nothing.
	// +kubebuilder:default=100
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000
	// +optional
	Weight *int32 `json:"weight,omitempty"`
}

// GlobalTrafficPolicyStatus reports whether the policy is in use.
type GlobalTrafficPolicyStatus struct {
	// Conditions: Accepted is True when the policy is applied to the service's callers.
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// GlobalTrafficPolicy applies to the service of the same namespace and name, for callers in the
// cluster where the policy lives.
//
// +genclient
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=gtp,categories=crossgate
// +kubebuilder:printcolumn:name="LB Type",type=string,JSONPath=`.spec.lbType`
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type GlobalTrafficPolicy struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata; namespace and name are those of the service it applies to.
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the policy.
	Spec GlobalTrafficPolicySpec `json:"spec"`
	// Status is written by crossgate.
	// +optional
	Status GlobalTrafficPolicyStatus `json:"status,omitempty"`
}

// GlobalTrafficPolicyList is a list of GlobalTrafficPolicy.
//
// +kubebuilder:object:root=true
type GlobalTrafficPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []GlobalTrafficPolicy `json:"items"`
}
