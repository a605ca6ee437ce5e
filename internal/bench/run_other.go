//go:build !linux

package bench

import (
	"context"
	"errors"
)

// Run needs Linux network namespaces.
func Run(context.Context, Options) (*Result, error) {
	return nil, errors.New("weft lab bench needs Linux network namespaces")
}
