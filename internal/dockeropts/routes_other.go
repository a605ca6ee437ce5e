//go:build !linux

package dockeropts

import "net/netip"

// HostRouteCheck finds nothing off Linux: the routing check is a Linux
// safety net, and docker's bridge options only matter there.
func HostRouteCheck(subnet netip.Prefix) ([]string, error) { return nil, nil }
