//go:build tools

// Package tools pins the command built by `make bins`: the Gateway API conformance suite's echo
// server, which the sandbox node runs for the suite's backend Deployments.
package tools

import (
	_ "sigs.k8s.io/gateway-api/conformance/echo-basic"
)
