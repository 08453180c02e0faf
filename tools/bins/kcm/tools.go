//go:build tools

// Package tools pins the command built by `make bins`.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
