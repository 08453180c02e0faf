// Package v1alpha1 holds the flomesh.io/v1alpha1 API: Cluster, ServiceExport, ServiceImport,
// GlobalTrafficPolicy and MeshConfig.
//
// Field names and JSON tags match the objects of the multi-cluster walkthrough exactly, so its
// manifests apply unchanged. Validation lives on the types (OpenAPI and CEL markers) so that a
// bad object is refused by the API server with a message naming the field.
//
// This package depends on apimachinery only: never on client-go, controller-runtime or any
// other crossgate package.
//
// +kubebuilder:object:generate=true
// +groupName=flomesh.io
package v1alpha1
