// Package v1alpha3 holds the SMI access.smi-spec.io/v1alpha3 API (TrafficTarget), with the
// fields of the SMI specification unchanged. Validation is added only where the specification
// leaves no other reading (kinds, names), so manifests written for other SMI implementations
// apply as they are.
//
// This package depends on apimachinery only.
//
// +kubebuilder:object:generate=true
// +groupName=access.smi-spec.io
package v1alpha3
