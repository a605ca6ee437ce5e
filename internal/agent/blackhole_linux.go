package agent

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/kernel"
)

// BlackholeMetric is the metric of weft's blackhole route. A blackhole at
// metric 0 would shadow the bridge's connected route for the same subnet
// (the kernel uses the first route of equal metric, and cni0 usually gets
// its address after the agent starts), cutting every pod off; this far
// down it only catches what no other route for the subnet takes, which is
// what it is for: a host with no bridge yet, or addresses the bridge does
// not answer for, no longer sends its subnet along the default route.
const BlackholeMetric = 8700

// netlinkBlackhole keeps blackhole routes (proto 87, BlackholeMetric) in
// the main table of the namespace h is bound to.
type netlinkBlackhole struct{ h *netlink.Handle }

// NewBlackholeRoutes manages blackhole routes over h; nil means the
// agent's own network namespace.
func NewBlackholeRoutes(h *netlink.Handle) BlackholeRoutes {
	if h == nil {
		h = &netlink.Handle{} // the zero handle works in the caller's namespace
	}
	return netlinkBlackhole{h: h}
}

func blackholeRoute(subnet netip.Prefix) *netlink.Route {
	return &netlink.Route{
		Dst:      kernel.IPNet(subnet),
		Type:     unix.RTN_BLACKHOLE,
		Table:    unix.RT_TABLE_MAIN,
		Priority: BlackholeMetric,
		Protocol: kernel.ProtoWeft,
	}
}

// ours lists weft's blackhole routes for exactly subnet, whatever their
// metric.
func (b netlinkBlackhole) ours(subnet netip.Prefix) ([]netlink.Route, error) {
	family := netlink.FAMILY_V4
	if subnet.Addr().Is6() {
		family = netlink.FAMILY_V6
	}
	filter := blackholeRoute(subnet)
	rs, err := kernel.RetryDump(func() ([]netlink.Route, error) {
		return b.h.RouteListFiltered(family, filter, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_DST|netlink.RT_FILTER_PROTOCOL)
	})
	if err != nil {
		return nil, fmt.Errorf("list blackhole routes for %s: %w", subnet, err)
	}
	out := rs[:0]
	for _, r := range rs {
		if r.Type == unix.RTN_BLACKHOLE {
			out = append(out, r)
		}
	}
	return out, nil
}

func (b netlinkBlackhole) Ensure(subnet netip.Prefix) (bool, error) {
	subnet = subnet.Masked()
	rs, err := b.ours(subnet)
	if err != nil {
		return false, err
	}
	for _, r := range rs {
		if r.Priority == BlackholeMetric {
			return false, nil
		}
	}
	// ip route replace blackhole SUBNET proto 87 metric 8700
	if err := b.h.RouteReplace(blackholeRoute(subnet)); err != nil {
		return false, fmt.Errorf("add blackhole route for %s: %w", subnet, err)
	}
	return true, nil
}

func (b netlinkBlackhole) Remove(subnet netip.Prefix) (bool, error) {
	subnet = subnet.Masked()
	rs, err := b.ours(subnet)
	if err != nil {
		return false, err
	}
	var errs []error
	removed := false
	for _, r := range rs {
		if err := b.h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete blackhole route for %s: %w", subnet, err))
			continue
		}
		removed = true
	}
	return removed, errors.Join(errs...)
}
