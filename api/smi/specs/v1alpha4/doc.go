// Package v1alpha4 holds the SMI specs.smi-spec.io/v1alpha4 API (HTTPRouteGroup, TCPRoute), with
// the fields of the SMI specification unchanged.
//
// This package depends on apimachinery only.
//
// +kubebuilder:object:generate=true
// +groupName=specs.smi-spec.io
package v1alpha4
