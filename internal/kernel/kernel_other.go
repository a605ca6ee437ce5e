//go:build !linux

// Off Linux every kernel call fails with errors.ErrUnsupported, so the
// pure planner and the packages above it still build and vet.

package kernel

import (
	"context"
	"errors"

	vns "github.com/vishvananda/netns"
)

// RetryDump calls dump once: there is no kernel to interrupt it.
func RetryDump[T any](dump func() (T, error)) (T, error) { return dump() }

// ListRoutes is Linux-only.
func ListRoutes(h RouteHandle) ([]Route, error) { return nil, errors.ErrUnsupported }

// ApplyOps is Linux-only; every op fails.
func ApplyOps(h RouteHandle, ops []Op) Result {
	var res Result
	for _, op := range ops {
		res.Failed = append(res.Failed, &OpError{Op: op, Err: errors.ErrUnsupported})
	}
	return res
}

// Sync is Linux-only.
func Sync(h RouteHandle, desired []Route, owned func(Route) bool) (Result, error) {
	return Result{}, errors.ErrUnsupported
}

// WatchRoutes is Linux-only.
func WatchRoutes(ctx context.Context, ns *vns.NsHandle, onError func(error)) (<-chan RouteEvent, error) {
	return nil, errors.ErrUnsupported
}
