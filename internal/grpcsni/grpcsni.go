// Package grpcsni turns on grpc-go's support for the server name of an xDS cluster's TLS context
// (gRFC A101) in the processes that import it: the sandbox's proxyless callers, which cross
// remote gateways that route by that name (wellknown.MeshSNI). grpc-go reads the switch,
// GRPC_EXPERIMENTAL_XDS_SNI, from the environment once, when its internal/envconfig package is
// initialized; this package sets it first, unless the environment already says otherwise.
//
// That it runs first is Go's package initialization order (the Go specification, "Package
// initialization", since Go 1.21): packages are initialized one at a time, the first in import
// path order whose imports are all initialized. This package imports only os, as grpc-go's
// envconfig does, and "github.com/..." sorts before "google.golang.org/...". A proxyless
// workload of a user sets the variable in its environment (README, "Proxyless gRPC").
package grpcsni

import "os"

// Variable is the environment variable grpc-go reads.
const Variable = "GRPC_EXPERIMENTAL_XDS_SNI"

func init() {
	if _, set := os.LookupEnv(Variable); !set {
		_ = os.Setenv(Variable, "true")
	}
}
