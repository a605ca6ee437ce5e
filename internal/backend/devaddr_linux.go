package backend

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/kernel"
)

// AddrHandle is what SyncDeviceAddr needs of a netlink handle.
type AddrHandle interface {
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
	AddrAdd(link netlink.Link, addr *netlink.Addr) error
	AddrDel(link netlink.Link, addr *netlink.Addr) error
}

// SyncDeviceAddr leaves exactly the own subnet's DeviceAddr among the
// addresses of own's family on a point-to-point device (udp's flannel0,
// wireguard's flannel-wg and flannel-wg-v6): a stale address of an
// earlier lease, or anyone else's, is removed. IPv6 link-local addresses
// are the kernel's and stay. changed is told of each address removed or
// added ("address removed" / "address added"), for the backend's log and
// metrics.
func SyncDeviceAddr(h AddrHandle, link netlink.Link, own netip.Prefix, changed func(what, addr string)) error {
	dev := link.Attrs().Name
	want := DeviceAddr(own)
	family := netlink.FAMILY_V4
	if want.Addr().Is6() {
		family = netlink.FAMILY_V6
	}
	addrs, err := kernel.RetryDump(func() ([]netlink.Addr, error) { return h.AddrList(link, family) })
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", dev, err)
	}
	var errs []error
	have := false
	for _, a := range addrs {
		p, ok := kernel.PrefixOf(a.IPNet)
		if ok && p == want {
			have = true
			continue
		}
		if ok && p.Addr().IsLinkLocalUnicast() {
			continue
		}
		// ip addr del ADDR dev DEV
		if err := h.AddrDel(link, &a); err != nil {
			errs = append(errs, fmt.Errorf("delete address %s from %s: %w", a.IPNet, dev, err))
		} else {
			changed("address removed", a.IPNet.String())
		}
	}
	if !have {
		// ip addr add SUBNET-ADDR/32 dev DEV
		// ip addr add SUBNET-ADDR/128 dev DEV nodad
		//
		// Without nodad an IPv6 address is tentative for a second or more,
		// and the host's own packets to peers' pods have no source.
		a := &netlink.Addr{IPNet: kernel.IPNet(netip.PrefixFrom(want.Addr(), want.Addr().BitLen()))}
		if family == netlink.FAMILY_V6 {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(link, a); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("add address %s to %s: %w", want, dev, err))
		} else if err == nil {
			changed("address added", want.String())
		}
	}
	return errors.Join(errs...)
}
