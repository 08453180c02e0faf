// Package translator turns one cluster's objects (Input) into the IR of its proxies and the
// statuses to write (Result). It is pure: no clients, no clock, no goroutines; the same Input
// always gives the same Result, and the Input is never modified.
//
// User mistakes become status conditions in the Result, never returned errors.
//
// It must not import client-go, controller-runtime, Envoy protos or crossgate's xds packages
// (hack/layout checks this).
package translator
