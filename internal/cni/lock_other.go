//go:build !linux

package cni

// lockFile is a no-op where there is no bridge repair to serialise.
func lockFile(string) (func(), error) { return func() {}, nil }
