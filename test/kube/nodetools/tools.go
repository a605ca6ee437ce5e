//go:build tools

// Package tools pins the containerd commands build-nodetools.sh builds, so
// that `go mod tidy` in this module keeps their dependencies.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
