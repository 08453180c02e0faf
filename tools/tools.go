//go:build tools

// Package tools pins the code generators run by `make generate` and `make manifests`.
package tools

import _ "sigs.k8s.io/controller-tools/cmd/controller-gen"
