package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// ServiceImportType says how an imported service is addressed.
//
// +kubebuilder:validation:Enum=ClusterSetIP;Headless
type ServiceImportType string

const (
	// ClusterSetIP services are reached through one virtual IP.
	ClusterSetIP ServiceImportType = "ClusterSetIP"
	// Headless services are reached through their endpoints' addresses.
	Headless ServiceImportType = "Headless"
)

// Protocol is the transport protocol of an imported port.
//
// +kubebuilder:validation:Enum=TCP;UDP;SCTP
type Protocol string

// ServiceImportSpec is the cluster set's view of a service exported by one or more clusters.
// It is written by the control plane; users read it.
type ServiceImportSpec struct {
	// Ports of the service, each with the endpoints (remote gateways) that serve it.
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	Ports []ServicePort `json:"ports"`

	// IPs holds the ClusterIP of the local Service that stands for the import, when there is one.
	// +kubebuilder:validation:MaxItems=2
	// +listType=atomic
	// +optional
	IPs []string `json:"ips,omitempty"`

	// Type is ClusterSetIP (one virtual IP) or Headless.
	// +kubebuilder:default=ClusterSetIP
	// +optional
	Type ServiceImportType `json:"type,omitempty"`

	// ServiceAccountName is the identity the exporting clusters declared for the service's
	// workloads; "*" matches any identity.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
}

// ServicePort is one port of an imported service.
type ServicePort struct {
	// Name of the port, as in the exported Service.
	// +kubebuilder:validation:MaxLength=63
	// +optional
	Name string `json:"name,omitempty"`

	// Protocol of the port: TCP, UDP or SCTP.
	// +kubebuilder:default=TCP
	// +optional
	Protocol Protocol `json:"protocol,omitempty"`

	// AppProtocol is the application protocol of the port, as in the exported Service.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	AppProtocol *string `json:"appProtocol,omitempty"`

	// Port number of the service.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`

	// Endpoints are the exporting clusters' gateways that serve this port.
	// +kubebuilder:validation:MaxItems=256
	// +listType=atomic
	// +optional
	Endpoints []Endpoint `json:"endpoints,omitempty"`
}

// Endpoint is one exporting cluster's gateway for an imported port.
type Endpoint struct {
	// ClusterKey of the exporting cluster, region/zone/group/name. (A plain pattern rather than
	// the ClusterKey type's CEL rule: this object is written by the control plane, and a CEL rule
	// per endpoint of every port exceeds the API server's validation cost budget.)
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`
	ClusterKey string `json:"clusterKey"`

	// Target is where the exporting cluster's gateway is reached.
	Target Target `json:"target"`
}

// Target is an address of an exporting cluster's gateway.
type Target struct {
	// Host is the gateway's host name or IP address.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Host string `json:"host,omitempty"`

	// IP is the gateway's IP address.
	// +kubebuilder:validation:MaxLength=45
	// +optional
	IP string `json:"ip,omitempty"`

	// Port is the gateway's port.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`

	// Path is the export rule's path at which the gateway serves the port for direct access.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Path string `json:"path,omitempty"`
}

// ServiceImportStatus lists the clusters that currently export the service.
type ServiceImportStatus struct {
	// Clusters that export the service.
	// +listType=map
	// +listMapKey=cluster
	// +kubebuilder:validation:MaxItems=256
	// +optional
	Clusters []SourceCluster `json:"clusters,omitempty"`

	// Conditions about the import.
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// SourceCluster is one cluster that exports an imported service.
type SourceCluster struct {
	// Cluster is the exporting cluster's key, region/zone/group/name.
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`
	Cluster string `json:"cluster"`
}

// ServiceImport describes a service exported by other clusters of the set, as seen in this
// cluster. Written by the control plane.
//
// +genclient
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=simp,categories=crossgate
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.type`
// +kubebuilder:printcolumn:name="IP",type=string,JSONPath=`.spec.ips`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ServiceImport struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata; namespace and name are those of the exported service.
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the merged view of every export of the service.
	Spec ServiceImportSpec `json:"spec"`
	// Status lists the exporting clusters.
	// +optional
	Status ServiceImportStatus `json:"status,omitempty"`
}

// ServiceImportList is a list of ServiceImport.
//
// +kubebuilder:object:root=true
type ServiceImportList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ServiceImport `json:"items"`
}
