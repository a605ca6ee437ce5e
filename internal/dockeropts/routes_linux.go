package dockeropts

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/kernel"
)

// HostRouteCheck is ViaRoutes in this process's network namespace.
func HostRouteCheck(subnet netip.Prefix) ([]string, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	defer h.Close()
	return ViaRoutes(h, subnet)
}

// ViaRoutes lists the routes of h's main table (what `ip route show`
// shows) whose destination is exactly subnet and that go via a gateway,
// each as "10.244.1.0/24 via 192.168.1.3 dev eth0 proto 87".
func ViaRoutes(h *netlink.Handle, subnet netip.Prefix) ([]string, error) {
	subnet = subnet.Masked()
	family := netlink.FAMILY_V4
	if subnet.Addr().Is6() {
		family = netlink.FAMILY_V6
	}
	filter := &netlink.Route{
		Table: unix.RT_TABLE_MAIN,
		Dst:   kernel.IPNet(subnet),
	}
	routes, err := h.RouteListFiltered(family, filter, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_DST)
	if err != nil {
		return nil, fmt.Errorf("list routes to %s: %w", subnet, err)
	}
	var out []string
	for _, r := range routes {
		var gws []string
		if r.Gw != nil {
			gws = append(gws, r.Gw.String())
		}
		if r.Via != nil {
			gws = append(gws, r.Via.String())
		}
		for _, nh := range r.MultiPath {
			if nh.Gw != nil {
				gws = append(gws, nh.Gw.String())
			}
		}
		if len(gws) == 0 {
			continue
		}
		desc := subnet.String()
		for _, gw := range gws {
			desc += " via " + gw
		}
		if r.LinkIndex > 0 {
			if l, err := h.LinkByIndex(r.LinkIndex); err == nil {
				desc += " dev " + l.Attrs().Name
			}
		}
		desc += fmt.Sprintf(" proto %d", int(r.Protocol))
		out = append(out, desc)
	}
	return out, nil
}
