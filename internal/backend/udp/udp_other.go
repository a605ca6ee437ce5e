//go:build !linux

package udp

import (
	"context"
	"errors"
	"fmt"
	"runtime"

	"github.com/weftnet/weft/internal/lease"
)

// supported refuses every platform but Linux: the backend needs a Linux
// TUN device and netlink.
func supported() error {
	return fmt.Errorf("udp on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

// Start is Linux-only.
func (b *Backend) Start(ctx context.Context, own lease.Lease) error { return supported() }

// Run is Linux-only.
func (b *Backend) Run(ctx context.Context) error { return supported() }

// Close is Linux-only; there is nothing to close elsewhere.
func (b *Backend) Close() error { return nil }

// loops are Linux-only.
type loops struct{}
