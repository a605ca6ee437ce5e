//go:build tools

// Package tools pins the CNI reference plugins that the lab and the CNI
// integration tests build from the module proxy (bridge, host-local,
// loopback, portmap). Nothing imports it at run time.
package tools

import (
	_ "github.com/containernetworking/plugins/plugins/ipam/host-local"
	_ "github.com/containernetworking/plugins/plugins/main/bridge"
	_ "github.com/containernetworking/plugins/plugins/main/loopback"
	_ "github.com/containernetworking/plugins/plugins/meta/portmap"
)
