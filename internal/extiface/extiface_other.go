//go:build !linux

package extiface

import (
	"errors"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/backend"
)

// Select is Linux-only.
func Select(h *netlink.Handle, o Options) (backend.ExternalInterface, error) {
	return backend.ExternalInterface{}, errors.ErrUnsupported
}
