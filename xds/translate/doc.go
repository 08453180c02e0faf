// Package translate builds xDS resources from the IR: Envoy v3 listeners, routes, clusters and
// endpoints for sidecars and gateways, and the proxyless form read by grpc-go's xDS client and
// server. It is pure: the same IR always gives the same resources.
//
// Every resource is validated (ValidateAll) before it is returned; an invalid piece is dropped
// and reported in the joined error, the rest of the configuration is kept.
//
// It reads the IR only: it must not import the translator (hack/layout checks this).
package translate
