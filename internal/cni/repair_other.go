//go:build !linux

package cni

import (
	"log/slog"
	"net/netip"
)

// NewBridgeRepairer returns a BridgeRepairer that does nothing: there are
// no Linux bridges to repair on this platform.
func NewBridgeRepairer(log *slog.Logger) BridgeRepairer { return noRepair{} }

type noRepair struct{}

func (noRepair) Repair(string, netip.Prefix, string) error { return nil }
