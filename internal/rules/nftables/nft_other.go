//go:build !linux

package nftables

import (
	"errors"
	"fmt"

	"sigs.k8s.io/knftables"
)

var errNotLinux = fmt.Errorf("nftables: %w", errors.ErrUnsupported)

func newNFT(string, knftables.Family, string) (knftables.Interface, error) { return nil, errNotLinux }

// readTable finds no table where there is no nftables.
func readTable(string, knftables.Family, string) (State, error) { return State{}, nil }
