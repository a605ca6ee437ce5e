//go:build !linux

package agent

import (
	"errors"

	"github.com/weftnet/weft/internal/kernel"
)

// hostRoutes is Linux-only: elsewhere every peer counts as a next hop.
func hostRoutes() ([]kernel.Route, error) { return nil, errors.ErrUnsupported }
