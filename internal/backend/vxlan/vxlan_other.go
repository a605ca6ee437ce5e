//go:build !linux

package vxlan

import (
	"context"
	"errors"
	"fmt"
	"runtime"

	"github.com/weftnet/weft/internal/lease"
)

// supported refuses every platform but Linux: vxlan programs Linux devices,
// neighbours, FDB entries and routes.
func supported() error {
	return fmt.Errorf("vxlan on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

func (b *Backend) setup() error { return supported() }

// Start is Linux-only.
func (b *Backend) Start(ctx context.Context, own lease.Lease) error { return supported() }

// Apply is Linux-only.
func (b *Backend) Apply(ctx context.Context, leases []lease.Lease) error { return supported() }

// Readdress is Linux-only.
func (b *Backend) Readdress() (string, string, error) { return "", "", supported() }

// Run is Linux-only.
func (b *Backend) Run(ctx context.Context) error { return supported() }
