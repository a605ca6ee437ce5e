//go:build !linux

package wireguard

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/weftnet/weft/internal/lease"
)

// supported refuses every platform but Linux: the backend needs a Linux
// TUN device and netlink.
func supported() error {
	return fmt.Errorf("wireguard on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

// plane is Linux-only.
type plane struct{}

// Start is Linux-only.
func (b *Backend) Start(ctx context.Context, own lease.Lease) error { return supported() }

// Apply is Linux-only.
func (b *Backend) Apply(ctx context.Context, leases []lease.Lease) error { return supported() }

// Run is Linux-only.
func (b *Backend) Run(ctx context.Context) error { return supported() }

// Close is Linux-only; there is nothing to close elsewhere.
func (b *Backend) Close() error { return nil }

// ReadStatusSocket is Linux-only.
func ReadStatusSocket(path string, timeout time.Duration) (DeviceStatus, error) {
	return DeviceStatus{}, supported()
}

// SetSocket is Linux-only.
func SetSocket(path, text string, timeout time.Duration) error { return supported() }
