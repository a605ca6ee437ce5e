package agent

import (
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/kernel"
)

// hostRoutes lists the main routing table of the agent's namespace (ip
// route show table main), where the next hop to each peer is found.
func hostRoutes() ([]kernel.Route, error) {
	return kernel.ListRoutes(&netlink.Handle{})
}
