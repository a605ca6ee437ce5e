//go:build !linux

package faults

import (
	"context"
	"errors"
)

// Run needs Linux network namespaces.
func Run(context.Context, Options) ([]Row, error) {
	return nil, errors.New("weft lab faults needs Linux network namespaces")
}
