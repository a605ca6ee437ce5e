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
// IPv4 addresses of a point-to-point device (udp's flannel0, wireguard's
// flannel-wg): a stale address of an earlier lease, or anyone else's, is
// removed. changed is told of each address removed or added ("address
// removed" / "address added"), for the backend's log and metrics.
func SyncDeviceAddr(h AddrHandle, link netlink.Link, own netip.Prefix, changed func(what, addr string)) error {
	dev := link.Attrs().Name
	want := DeviceAddr(own)
	addrs, err := kernel.RetryDump(func() ([]netlink.Addr, error) { return h.AddrList(link, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", dev, err)
	}
	var errs []error
	have := false
	for _, a := range addrs {
		if p, ok := kernel.PrefixOf(a.IPNet); ok && p == want {
			have = true
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
		a := &netlink.Addr{IPNet: kernel.IPNet(netip.PrefixFrom(want.Addr(), 32))}
		if err := h.AddrAdd(link, a); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("add address %s to %s: %w", want, dev, err))
		} else if err == nil {
			changed("address added", want.String())
		}
	}
	return errors.Join(errs...)
}
