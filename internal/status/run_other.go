//go:build !linux

package status

import (
	"context"
	"errors"
)

// Run is Linux-only: it reads the kernel over netlink.
func Run(ctx context.Context, o Options) (Report, error) {
	return Report{}, errors.ErrUnsupported
}
