//go:build tools

// Package lint pins golangci-lint; tools/bins/build.sh builds it into bin/ for make lint.
package lint

import _ "github.com/golangci/golangci-lint/v2/cmd/golangci-lint"
