package backend

import (
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// RouteGetter asks the kernel which route a packet to destination takes
// (ip route get); *netlink.Handle and every kernel.Handle are one.
type RouteGetter interface {
	RouteGet(destination net.IP) ([]netlink.Route, error)
}

// DirectLink is DirectRouting's rule: the kernel reaches ip directly when
// `ip route get IP` gives exactly one unicast route, with no gateway, on a
// link that is not one of overlays (the backend's own devices). It returns
// that link's index, or 0 when ip is not reached directly or the lookup
// failed. vxlan programs by it and status predicts vxlan by it, so the two
// cannot disagree about a peer.
func DirectLink(h RouteGetter, ip netip.Addr, overlays ...int) int {
	rs, err := h.RouteGet(ip.AsSlice())
	if err != nil || len(rs) != 1 {
		return 0
	}
	r := rs[0]
	if r.Gw != nil || r.Type != unix.RTN_UNICAST || r.LinkIndex == 0 || slices.Contains(overlays, r.LinkIndex) {
		return 0
	}
	return r.LinkIndex
}
