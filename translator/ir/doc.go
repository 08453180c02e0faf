// Package ir is the intermediate representation between the translator and the xDS builder:
// what each proxy must do, with no Kubernetes or Envoy types in it.
//
// It describes one Sidecar per workload identity (namespace/serviceaccount) and one Gateway
// per Gateway object. Everything is sorted so that equal inputs give byte-equal output.
//
// This package is a leaf: it imports the standard library only.
package ir
