package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// ClusterSpec describes a member cluster of the cluster set: where its gateway is reached and how
// the control plane connects to its API server.
//
// +kubebuilder:validation:XValidation:rule="!(has(self.kubeconfig) && has(self.kubeconfigSecretRef))",message="set either kubeconfig or kubeconfigSecretRef, not both",fieldPath=".kubeconfigSecretRef"
// +kubebuilder:validation:XValidation:rule="has(self.kubeconfig) || has(self.kubeconfigSecretRef)",message="one of kubeconfig or kubeconfigSecretRef is required to reach the member's API server",fieldPath=".kubeconfigSecretRef"
type ClusterSpec struct {
	// Region of the cluster: the first part of its cluster key region/zone/group/name.
	// +kubebuilder:default=default
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="must be a DNS label: lower-case letters, digits and '-', starting and ending with a letter or digit"
	// +optional
	Region string `json:"region,omitempty"`

	// Zone of the cluster: the second part of its cluster key.
	// +kubebuilder:default=default
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="must be a DNS label: lower-case letters, digits and '-', starting and ending with a letter or digit"
	// +optional
	Zone string `json:"zone,omitempty"`

	// Group of the cluster: the third part of its cluster key.
	// +kubebuilder:default=default
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="must be a DNS label: lower-case letters, digits and '-', starting and ending with a letter or digit"
	// +optional
	Group string `json:"group,omitempty"`

	// GatewayHost is the host name or IP address at which other clusters reach this cluster's
	// gateway (the address of its LoadBalancer Service).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="isIP(self) || self.matches('^[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\\\\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*$')",message="must be a DNS host name or an IP address"
	GatewayHost string `json:"gatewayHost"`

	// GatewayPort is the port of this cluster's gateway as seen from other clusters.
	// +kubebuilder:default=80
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	GatewayPort int32 `json:"gatewayPort,omitempty"`

	// Kubeconfig is an inline kubeconfig for the member's API server. Accepted for compatibility
	// with existing manifests; prefer kubeconfigSecretRef, which keeps credentials out of this
	// object.
	// +kubebuilder:validation:MaxLength=1048576
	// +optional
	Kubeconfig string `json:"kubeconfig,omitempty"`

	// KubeconfigSecretRef names a Secret holding the kubeconfig for the member's API server.
	// +optional
	KubeconfigSecretRef *SecretKeyReference `json:"kubeconfigSecretRef,omitempty"`

	// FsmMeshConfigName is accepted for compatibility with existing manifests and is informational
	// only: crossgate reads the MeshConfig of its own installation.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	FsmMeshConfigName string `json:"fsmMeshConfigName,omitempty"`
}

// SecretKeyReference points at one key of a Secret.
type SecretKeyReference struct {
	// Namespace of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="must be a DNS label: lower-case letters, digits and '-', starting and ending with a letter or digit"
	Namespace string `json:"namespace"`

	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`

	// Key in the Secret's data that holds the kubeconfig.
	// +kubebuilder:default=kubeconfig
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	// +optional
	Key string `json:"key,omitempty"`
}

// ClusterStatus is the control plane's view of a member cluster.
type ClusterStatus struct {
	// Conditions: Managed is True while the control plane is connected to the member and False,
	// with a reason and message, when it cannot be.
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// LastProbeTime is when the control plane last reached the member (renewed its claim there),
	// written at most every 30 seconds. A time older than that under Managed=True means the
	// control plane's federation controller is not running: the condition is stale.
	// +optional
	LastProbeTime *metav1.Time `json:"lastProbeTime,omitempty"`
}

// Cluster is a member of the cluster set, registered on the control-plane cluster. Its key is
// region/zone/group/name.
//
// +genclient
// +genclient:nonNamespaced
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,categories=crossgate
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$')",message="metadata.name must be a DNS label (lower-case letters, digits and '-', at most 63 characters): it is the last part of the cluster key"
// +kubebuilder:printcolumn:name="Region",type=string,JSONPath=`.spec.region`
// +kubebuilder:printcolumn:name="Zone",type=string,JSONPath=`.spec.zone`
// +kubebuilder:printcolumn:name="Group",type=string,JSONPath=`.spec.group`
// +kubebuilder:printcolumn:name="Gateway Host",type=string,JSONPath=`.spec.gatewayHost`
// +kubebuilder:printcolumn:name="Gateway Port",type=integer,JSONPath=`.spec.gatewayPort`
// +kubebuilder:printcolumn:name="Managed",type=string,JSONPath=`.status.conditions[?(@.type=="Managed")].status`
// +kubebuilder:printcolumn:name="Managed Age",type=date,JSONPath=`.status.conditions[?(@.type=="Managed")].lastTransitionTime`
// +kubebuilder:printcolumn:name="Last Probe",type=date,JSONPath=`.status.lastProbeTime`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Cluster struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata. The name is the last part of the cluster key.
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec says where the member's gateway is and how to reach its API server.
	Spec ClusterSpec `json:"spec"`
	// Status is written by the control plane.
	// +optional
	Status ClusterStatus `json:"status,omitempty"`
}

// Key returns the cluster key region/zone/group/name, applying the defaults.
func (c *Cluster) Key() ClusterKey {
	return NewClusterKey(orDefault(c.Spec.Region), orDefault(c.Spec.Zone), orDefault(c.Spec.Group), c.Name)
}

func orDefault(s string) string {
	if s == "" {
		return DefaultClusterSetValue
	}
	return s
}

// ClusterList is a list of Cluster.
//
// +kubebuilder:object:root=true
type ClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Cluster `json:"items"`
}
