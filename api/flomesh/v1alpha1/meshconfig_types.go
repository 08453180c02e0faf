package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// MeshConfigSpec is the configuration of one crossgate installation (one cluster).
type MeshConfigSpec struct {
	// Traffic holds the access-control mode.
	// +kubebuilder:default={}
	// +optional
	Traffic TrafficSpec `json:"traffic,omitempty"`

	// ClusterSet is this cluster's place in the cluster set.
	// +kubebuilder:default={}
	// +optional
	ClusterSet ClusterSetSpec `json:"clusterSet,omitempty"`

	// Gateway names the Gateway that carries this cluster's exported services.
	// +kubebuilder:default={}
	// +optional
	Gateway GatewaySpec `json:"gateway,omitempty"`

	// Certificate configures workload identities and their certificates.
	// +kubebuilder:default={}
	// +optional
	Certificate CertificateSpec `json:"certificate,omitempty"`
}

// TrafficSpec is the access-control mode of the mesh.
type TrafficSpec struct {
	// EnablePermissiveTrafficPolicyMode lets every caller reach every visible service when true
	// (the default). When false, a caller reaches a destination only through an SMI TrafficTarget.
	// +kubebuilder:default=true
	// +optional
	EnablePermissiveTrafficPolicyMode *bool `json:"enablePermissiveTrafficPolicyMode,omitempty"`
}

// ClusterSetSpec is this cluster's key in the cluster set.
type ClusterSetSpec struct {
	// Region of this cluster.
	// +kubebuilder:default=default
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="must be a DNS label: lower-case letters, digits and '-', starting and ending with a letter or digit"
	// +optional
	Region string `json:"region,omitempty"`

	// Zone of this cluster.
	// +kubebuilder:default=default
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="must be a DNS label: lower-case letters, digits and '-', starting and ending with a letter or digit"
	// +optional
	Zone string `json:"zone,omitempty"`

	// Group of this cluster.
	// +kubebuilder:default=default
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="must be a DNS label: lower-case letters, digits and '-', starting and ending with a letter or digit"
	// +optional
	Group string `json:"group,omitempty"`

	// Name of this cluster; empty while the cluster has not joined a set.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$`
	// +optional
	Name string `json:"name,omitempty"`
}

// GatewaySpec names the Gateway that exported services are attached to.
type GatewaySpec struct {
	// Namespace of the Gateway.
	// +kubebuilder:default=crossgate-system
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="must be a DNS label: lower-case letters, digits and '-', starting and ending with a letter or digit"
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// Name of the Gateway.
	// +kubebuilder:default=crossgate-gateway
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +optional
	Name string `json:"name,omitempty"`
}

// CertificateSpec configures workload certificates.
type CertificateSpec struct {
	// TrustDomain of the SPIFFE identities, spiffe://<trustDomain>/ns/<ns>/sa/<sa>. Every
	// cluster of a set uses the same one.
	// +kubebuilder:default=cluster.local
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9_]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9_]*[a-z0-9])?)*$`
	// +optional
	TrustDomain string `json:"trustDomain,omitempty"`

	// ValidityDuration is the lifetime of a workload certificate, at least 10m and at most 720h.
	// +kubebuilder:default="24h"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10m') && duration(self) <= duration('720h')",message="must be between 10m and 720h"
	// +optional
	ValidityDuration *metav1.Duration `json:"validityDuration,omitempty"`
}

// MeshConfigStatus reports whether the configuration is in use.
type MeshConfigStatus struct {
	// Conditions: Accepted is True when the controller runs with this configuration.
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// MeshConfig is the configuration of crossgate in one cluster: one object, created at install.
//
// +genclient
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=crossgate
// +kubebuilder:printcolumn:name="Permissive",type=boolean,JSONPath=`.spec.traffic.enablePermissiveTrafficPolicyMode`
// +kubebuilder:printcolumn:name="Cluster",type=string,JSONPath=`.spec.clusterSet.name`
// +kubebuilder:printcolumn:name="Trust Domain",type=string,JSONPath=`.spec.certificate.trustDomain`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MeshConfig struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata.
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the configuration.
	// +kubebuilder:default={}
	// +optional
	Spec MeshConfigSpec `json:"spec,omitempty"`
	// Status is written by crossgate.
	// +optional
	Status MeshConfigStatus `json:"status,omitempty"`
}

// PermissiveMode reports whether every caller may reach every visible service.
func (m *MeshConfig) PermissiveMode() bool {
	p := m.Spec.Traffic.EnablePermissiveTrafficPolicyMode
	return p == nil || *p
}

// MeshConfigList is a list of MeshConfig.
//
// +kubebuilder:object:root=true
type MeshConfigList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MeshConfig `json:"items"`
}
