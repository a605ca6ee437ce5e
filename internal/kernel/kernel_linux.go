package kernel

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// dumpAttempts bounds how often a dump the kernel interrupted (because the
// table changed while it was being read) is started again. Interruptions
// need a concurrent writer, so a handful of attempts only fails under a
// storm of changes, and then the caller's next reconcile tries again.
const dumpAttempts = 5

// RetryDump calls dump until it returns without netlink.ErrDumpInterrupted,
// at most a few times. An interrupted dump may have skipped or repeated
// entries, and a reconciler that trusted it could delete a live route.
func RetryDump[T any](dump func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for range dumpAttempts {
		v, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, fmt.Errorf("kernel interrupted the dump %d times in a row: %w", dumpAttempts, err)
}

// ListRoutes returns the unicast routes of the main table, IPv4 and IPv6
// (ip route show table main; ip -6 route show table main). Entries a Route
// cannot represent (multipath, blackhole, local, RTA_VIA) are left out: no
// plan ever deletes them.
func ListRoutes(h RouteHandle) ([]Route, error) {
	nrs, err := RetryDump(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(netlink.FAMILY_ALL,
			&netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, fmt.Errorf("list routes of the main table: %w", err)
	}
	out := make([]Route, 0, len(nrs))
	for _, nr := range nrs {
		if r, ok := FromNetlink(nr); ok {
			out = append(out, r)
		}
	}
	return out, nil
}

// ip6DefaultMetric is the metric the kernel gives an IPv6 route added
// without one, as `ip -6 route` shows it.
const ip6DefaultMetric = 1024

// FromNetlink converts a main-table unicast route with at most one next hop.
// It reports false for anything else.
func FromNetlink(nr netlink.Route) (Route, bool) {
	if (nr.Table != 0 && nr.Table != unix.RT_TABLE_MAIN) || nr.Type != unix.RTN_UNICAST ||
		len(nr.MultiPath) > 0 || nr.Via != nil || nr.Encap != nil || nr.MPLSDst != nil {
		return Route{}, false
	}
	var dst netip.Prefix
	if nr.Dst == nil {
		switch nr.Family {
		case unix.AF_INET:
			dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		case unix.AF_INET6:
			dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		default:
			return Route{}, false
		}
	} else {
		p, ok := PrefixOf(nr.Dst)
		if !ok {
			return Route{}, false
		}
		dst = p.Masked()
	}
	r := Route{
		Dst:       dst,
		LinkIndex: nr.LinkIndex,
		OnLink:    nr.Flags&int(netlink.FLAG_ONLINK) != 0,
		Metric:    nr.Priority,
		Proto:     uint8(nr.Protocol),
	}
	if nr.Family == unix.AF_INET6 && nr.Priority == ip6DefaultMetric {
		// The kernel gives an IPv6 route installed without a metric 1024
		// (IP6_RT_PRIO_USER); read back as the 0 it was written with, a
		// planned route equals its echo, or every repair would replace it.
		r.Metric = 0
	}
	if nr.Gw != nil {
		gw, ok := netip.AddrFromSlice(nr.Gw)
		if !ok {
			return Route{}, false
		}
		r.Gw = gw.Unmap()
	}
	return r, true
}

// toNetlink is the main-table netlink form of r.
func toNetlink(r Route) *netlink.Route {
	nr := &netlink.Route{
		Dst:       IPNet(r.Dst),
		LinkIndex: r.LinkIndex,
		Priority:  r.Metric,
		Protocol:  netlink.RouteProtocol(r.Proto),
		Table:     unix.RT_TABLE_MAIN,
		Type:      unix.RTN_UNICAST,
	}
	if r.Gw.IsValid() {
		nr.Gw = r.Gw.AsSlice()
	}
	if r.OnLink {
		nr.Flags = int(netlink.FLAG_ONLINK)
	}
	return nr
}

// ApplyOps performs ops in order and returns what took effect and what the
// kernel refused. Deleting a route that is already gone counts as neither:
// the table is as wanted, and nothing changed.
func ApplyOps(h RouteHandle, ops []Op) Result {
	var res Result
	for _, op := range ops {
		var err error
		switch op.Kind {
		case Replace:
			// ip route replace DST via GW dev DEV proto 87 [onlink]
			err = h.RouteReplace(toNetlink(op.Route))
		case Delete:
			// ip route del DST via GW dev DEV proto P metric M
			nr := toNetlink(op.Route)
			// A Route does not carry the scope; NOWHERE matches any.
			nr.Scope = netlink.Scope(unix.RT_SCOPE_NOWHERE)
			err = h.RouteDel(nr)
			if errors.Is(err, unix.ESRCH) {
				continue
			}
		}
		if err != nil {
			res.Failed = append(res.Failed, &OpError{Op: op, Err: err})
			continue
		}
		res.Done = append(res.Done, op)
	}
	return res
}

// Sync makes the main table hold desired and no other route that owned
// accepts. It fails without changing anything when the table cannot be
// read; otherwise single refused changes are in the Result, and never stop
// the others.
func Sync(h RouteHandle, desired []Route, owned func(Route) bool) (Result, error) {
	installed, err := ListRoutes(h)
	if err != nil {
		return Result{}, err
	}
	return ApplyOps(h, PlanRoutes(desired, installed, owned)), nil
}
