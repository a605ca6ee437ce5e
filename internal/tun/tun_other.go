//go:build !linux

package tun

import (
	"errors"
	"fmt"
	"runtime"
)

// Open is Linux-only.
func Open(name string, o Options) (Device, error) {
	return nil, fmt.Errorf("open tun device %s on %s: %w", name, runtime.GOOS, errors.ErrUnsupported)
}

// OpenQueues is Linux-only.
func OpenQueues(name string, n int, o Options) ([]Device, error) {
	return nil, fmt.Errorf("open tun device %s on %s: %w", name, runtime.GOOS, errors.ErrUnsupported)
}
