//go:build tools

// Package tools pins the command built by `make bins`.
package tools

import (
	_ "github.com/coredns/coredns"
)
