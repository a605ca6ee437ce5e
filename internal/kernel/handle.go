package kernel

import (
	"net"

	"github.com/vishvananda/netlink"
)

// The handle interfaces are the part of netlink the backends call, in
// netlink's own terms, so that *netlink.Handle (one per namespace, from
// netlink.NewHandleAt) is the real implementation as it is and
// kerneltest.Netlink the recording fake for unit tests without root. Each
// function takes the narrowest one it needs. Calls may come from several
// goroutines; an implementation serialises them as it needs to.

// RouteHandle reads and writes routing tables.
type RouteHandle interface {
	RouteListFiltered(family int, filter *netlink.Route, filterMask uint64) ([]netlink.Route, error)
	RouteReplace(route *netlink.Route) error
	RouteDel(route *netlink.Route) error
}

// NeighHandle reads and writes neighbour and FDB entries.
type NeighHandle interface {
	NeighList(linkIndex, family int) ([]netlink.Neigh, error)
	NeighSet(neigh *netlink.Neigh) error
	NeighDel(neigh *netlink.Neigh) error
}

// LinkHandle creates, configures and addresses links.
type LinkHandle interface {
	LinkByName(name string) (netlink.Link, error)
	LinkByIndex(index int) (netlink.Link, error)
	LinkAdd(link netlink.Link) error
	LinkDel(link netlink.Link) error
	LinkSetMTU(link netlink.Link, mtu int) error
	LinkSetHardwareAddr(link netlink.Link, hwaddr net.HardwareAddr) error
	LinkSetUp(link netlink.Link) error
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
	AddrAdd(link netlink.Link, addr *netlink.Addr) error
	AddrDel(link netlink.Link, addr *netlink.Addr) error
}

// Handle is everything a backend programs: routes (and route lookups, ip
// route get), neighbours and FDB entries, links and their addresses.
type Handle interface {
	RouteHandle
	NeighHandle
	LinkHandle
	RouteGet(destination net.IP) ([]netlink.Route, error)
}

var _ Handle = (*netlink.Handle)(nil)
