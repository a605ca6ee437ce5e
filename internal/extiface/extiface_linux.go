package extiface

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/kernel"
)

// Select picks the external interface in the namespace h works in (see the
// package doc for the order) and fails with a message naming the flag that
// could not be satisfied.
func Select(h *netlink.Handle, o Options) (backend.ExternalInterface, error) {
	s, err := load(h)
	if err != nil {
		return backend.ExternalInterface{}, err
	}
	return choose(s, o)
}

// load takes the snapshot choose decides from: links, their IPv4
// addresses (ip -4 addr) and global IPv6 addresses (ip -6 addr scope
// global), and the default route (ip route show default).
func load(h *netlink.Handle) (snapshot, error) {
	links, err := kernel.RetryDump(h.LinkList)
	if err != nil {
		return snapshot{}, fmt.Errorf("list interfaces: %w", err)
	}
	addrs, err := kernel.RetryDump(func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return snapshot{}, fmt.Errorf("list addresses: %w", err)
	}
	addrs6, err := kernel.RetryDump(func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_V6) })
	if err != nil {
		return snapshot{}, fmt.Errorf("list IPv6 addresses: %w", err)
	}
	s := snapshot{reach: func(dst netip.Addr) (int, netip.Addr, error) { return reach(h, dst) }}
	for _, l := range links {
		a := l.Attrs()
		s.ifaces = append(s.ifaces, ifaceInfo{
			Name:     a.Name,
			Index:    a.Index,
			MTU:      a.MTU,
			Loopback: a.Flags&net.FlagLoopback != 0,
		})
	}
	for _, ad := range addrs {
		ip, ok := netip.AddrFromSlice(ad.IP)
		if !ok {
			continue
		}
		for n := range s.ifaces {
			if s.ifaces[n].Index == ad.LinkIndex {
				s.ifaces[n].Addrs = append(s.ifaces[n].Addrs, ip.Unmap())
			}
		}
	}

	// Permanent addresses first: a temporary (privacy) or deprecated
	// address changes under the lease, and peers would lose the host.
	for _, preferred := range []bool{true, false} {
		for _, ad := range addrs6 {
			ip, ok := netip.AddrFromSlice(ad.IP)
			if !ok || !ip.IsGlobalUnicast() || ip.Is4In6() {
				continue
			}
			transient := ad.Flags&(unix.IFA_F_TEMPORARY|unix.IFA_F_DEPRECATED|unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0
			if transient == preferred {
				continue
			}
			for n := range s.ifaces {
				if s.ifaces[n].Index == ad.LinkIndex {
					s.ifaces[n].Addrs6 = append(s.ifaces[n].Addrs6, ip)
				}
			}
		}
	}

	routes, err := kernel.RetryDump(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return snapshot{}, fmt.Errorf("list routes: %w", err)
	}
	best := -1
	for _, r := range routes {
		if r.Type != unix.RTN_UNICAST {
			continue
		}
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		idx := r.LinkIndex
		if idx == 0 && len(r.MultiPath) > 0 {
			idx = r.MultiPath[0].LinkIndex
		}
		if idx != 0 && (best < 0 || r.Priority < best) {
			best, s.defaultIndex = r.Priority, idx
		}
	}
	return s, nil
}

// reach is `ip route get DST`: the interface and source address the kernel
// would use.
func reach(h *netlink.Handle, dst netip.Addr) (int, netip.Addr, error) {
	rs, err := h.RouteGet(dst.AsSlice())
	if err != nil {
		return 0, netip.Addr{}, err
	}
	if len(rs) == 0 || rs[0].LinkIndex == 0 {
		return 0, netip.Addr{}, fmt.Errorf("route to %s names no interface", dst)
	}
	src, _ := netip.AddrFromSlice(rs[0].Src)
	return rs[0].LinkIndex, src.Unmap(), nil
}
