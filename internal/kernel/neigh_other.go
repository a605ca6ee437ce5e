//go:build !linux

package kernel

import (
	"context"
	"errors"

	vns "github.com/vishvananda/netns"
)

// ListNeighs is Linux-only.
func ListNeighs(h NeighHandle, linkIndex int) ([]Neigh, error) { return nil, errors.ErrUnsupported }

// ListFDB is Linux-only.
func ListFDB(h NeighHandle, linkIndex int) ([]FDB, error) { return nil, errors.ErrUnsupported }

// ApplyNeighOps is Linux-only; every op fails.
func ApplyNeighOps(h NeighHandle, ops []NeighOp) NeighResult {
	var res NeighResult
	for _, op := range ops {
		res.Failed = append(res.Failed, &NeighOpError{Op: op, Err: errors.ErrUnsupported})
	}
	return res
}

// ApplyFDBOps is Linux-only; every op fails.
func ApplyFDBOps(h NeighHandle, ops []FDBOp) FDBResult {
	var res FDBResult
	for _, op := range ops {
		res.Failed = append(res.Failed, &FDBOpError{Op: op, Err: errors.ErrUnsupported})
	}
	return res
}

// WatchNeighs is Linux-only.
func WatchNeighs(ctx context.Context, ns *vns.NsHandle, onError func(error)) (<-chan NeighEvent, error) {
	return nil, errors.ErrUnsupported
}

// WatchLinks is Linux-only.
func WatchLinks(ctx context.Context, ns *vns.NsHandle, onError func(error)) (<-chan LinkEvent, error) {
	return nil, errors.ErrUnsupported
}

// WatchAddrs is Linux-only.
func WatchAddrs(ctx context.Context, ns *vns.NsHandle, onError func(error)) (<-chan AddrEvent, error) {
	return nil, errors.ErrUnsupported
}
