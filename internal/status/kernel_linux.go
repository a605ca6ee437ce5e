package status

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
)

// Snapshot reads what Compare looks at from the namespace h works in:
// every link with its addresses of both families (ip addr), the main
// table (ip route), and the neighbour and FDB entries of each device in
// overlays that exists (ip neigh show dev D; bridge fdb show dev D).
func Snapshot(h *netlink.Handle, overlays []string) (Kernel, error) {
	var k Kernel
	links, err := kernel.RetryDump(h.LinkList)
	if err != nil {
		return Kernel{}, fmt.Errorf("list links: %w", err)
	}
	addrs, err := kernel.RetryDump(func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return Kernel{}, fmt.Errorf("list addresses: %w", err)
	}
	for _, l := range links {
		a := l.Attrs()
		mac, _ := kernel.MACFrom(a.HardwareAddr)
		link := Link{Name: a.Name, Index: a.Index, MTU: a.MTU, MAC: mac, Up: a.Flags&net.FlagUp != 0}
		for _, ad := range addrs {
			if ad.LinkIndex != a.Index || ad.IPNet == nil {
				continue
			}
			ip, ok := netip.AddrFromSlice(ad.IP)
			if !ok {
				continue
			}
			ones, _ := ad.Mask.Size()
			link.Addrs = append(link.Addrs, netip.PrefixFrom(ip.Unmap(), ones))
		}
		k.Links = append(k.Links, link)
	}
	if k.Routes, err = kernel.ListRoutes(h); err != nil {
		return Kernel{}, err
	}
	for _, name := range overlays {
		l, ok := k.Link(name)
		if !ok {
			continue
		}
		ns, err := kernel.ListNeighs(h, l.Index)
		if err != nil {
			return Kernel{}, err
		}
		fdb, err := kernel.ListFDB(h, l.Index)
		if err != nil {
			return Kernel{}, err
		}
		k.Neighs = append(k.Neighs, ns...)
		k.FDB = append(k.FDB, fdb...)
	}
	return k, nil
}

// snapshotFor takes the Snapshot the network's backend needs (the
// neighbours and FDB of its overlay devices) and, when its entries depend
// on it, which peers are directly reachable. An unknown backend, or one
// with invalid options, gets the links and routes only: Build reports it.
func snapshotFor(h *netlink.Handle, cfg *netconf.Config, ext backend.ExternalInterface, leases []lease.Lease, publicIP, publicIPv6 netip.Addr) (Kernel, map[netip.Addr]string, error) {
	_, exp, bad := expectation(cfg, ext)
	k, err := Snapshot(h, exp.Overlays)
	if err != nil || bad != nil || !exp.DirectRouting {
		return k, nil, err
	}
	var ips []netip.Addr
	for _, l := range leases {
		if l.Attrs.PublicIP.IsValid() && l.Attrs.PublicIP != publicIP {
			ips = append(ips, l.Attrs.PublicIP)
		}
		// vxlan's IPv6 side routes directly by the IPv6 underlay; on an
		// IPv6-only network it is the only side.
		if cfg.EnableIPv6 && l.Attrs.PublicIPv6.IsValid() && l.Attrs.PublicIPv6 != publicIPv6 {
			ips = append(ips, l.Attrs.PublicIPv6)
		}
	}
	return k, directPeers(h, k, ips, exp.Overlays), nil
}

// lookup asks the kernel for the route to dst (ip route get dst).
func lookup(h *netlink.Handle, dst netip.Addr) (Path, error) {
	rs, err := h.RouteGet(dst.AsSlice())
	if errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.EHOSTUNREACH) {
		return Path{}, fmt.Errorf("ip route get %s: %w (%w)", dst, ErrNoRoute, err)
	}
	if err != nil {
		return Path{}, fmt.Errorf("ip route get %s: %w", dst, err)
	}
	if len(rs) == 0 {
		return Path{}, fmt.Errorf("ip route get %s: %w", dst, ErrNoRoute)
	}
	r := rs[0]
	p := Path{Dst: dst}
	if gw, ok := netip.AddrFromSlice(r.Gw); ok {
		p.Gw = gw.Unmap()
	}
	if src, ok := netip.AddrFromSlice(r.Src); ok {
		p.Src = src.Unmap()
	}
	if r.LinkIndex != 0 {
		if l, err := h.LinkByIndex(r.LinkIndex); err == nil {
			p.Dev = l.Attrs().Name
		} else {
			p.Dev = fmt.Sprintf("if%d", r.LinkIndex)
		}
	}
	return p, nil
}

// directPeers maps each address in ips that the kernel reaches without a
// gateway to the device it leaves by, by the rule vxlan's DirectRouting
// programs by (backend.DirectLink), with the overlays and device names
// taken from k.
func directPeers(h backend.RouteGetter, k Kernel, ips []netip.Addr, overlays []string) map[netip.Addr]string {
	var skip []int
	for _, name := range overlays {
		if l, ok := k.Link(name); ok {
			skip = append(skip, l.Index)
		}
	}
	out := make(map[netip.Addr]string)
	for _, ip := range ips {
		idx := backend.DirectLink(h, ip, skip...)
		if i := slices.IndexFunc(k.Links, func(l Link) bool { return l.Index == idx }); idx != 0 && i >= 0 {
			out[ip] = k.Links[i].Name
		}
	}
	return out
}
