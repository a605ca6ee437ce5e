package bench

import "net/netip"

// nthSubnet is the i-th subnet of length bits in network (0 is the
// network's first).
func nthSubnet(network netip.Prefix, bits, i int) netip.Prefix {
	a := network.Masked().Addr().As4()
	base := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v := base + uint32(i)<<(32-bits)
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), bits)
}

// nthAddr is network's address at offset i.
func nthAddr(network netip.Prefix, i int) netip.Addr {
	a := network.Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) + uint32(i)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
