//go:build !linux

package hostgw

import (
	"context"
	"errors"
	"fmt"
	"runtime"

	"github.com/weftnet/weft/internal/lease"
)

// supported refuses every platform but Linux: host-gw programs the Linux
// routing table.
func supported() error {
	return fmt.Errorf("host-gw on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

// Apply is Linux-only.
func (b *Backend) Apply(ctx context.Context, leases []lease.Lease) error { return supported() }

// Run is Linux-only.
func (b *Backend) Run(ctx context.Context) error { return supported() }
