package kernel

import (
	"net"
	"net/netip"
)

// IPNet is p as netlink and the net package take it: the address bytes in
// the family's length (4 or 16) and the mask in the same length.
func IPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// PrefixOf is n as a netip.Prefix, an IPv4-mapped address unmapped, so
// that what netlink reports compares equal to what weft planned. It is
// false for nil or an address of neither length.
func PrefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}
