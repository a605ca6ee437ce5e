// Package netns creates, enters and deletes named network namespaces, the
// kind `ip netns` manages under /run/netns. The lab and the integration tests
// build their virtual hosts and pods out of them.
//
// Only the calling OS thread ever enters a namespace (see Do); goroutines it
// starts stay where they were. Code that needs a namespace for longer should
// use a netlink handle bound to it (Handle) or run as a subprocess under
// `ip netns exec`.
package netns

import "path/filepath"

// Dir is where named namespaces are bind-mounted, as iproute2 does.
const Dir = "/run/netns"

// Path returns the bind-mount path of the named namespace.
func Path(name string) string { return filepath.Join(Dir, name) }
