package kernel

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ListNeighs returns the IPv4 and IPv6 neighbour entries of link linkIndex
// (ip neigh show dev DEV nud all), in the kernel's order, but for the
// NOARP entries the kernel derives itself (multicast groups, such as
// ff02::16 on every IPv6-enabled device), which are nobody's to plan.
// Entries still resolving have a zero MAC.
func ListNeighs(h NeighHandle, linkIndex int) ([]Neigh, error) {
	// One dump of every family's table: AF_UNSPEC asks the ARP and the
	// NDP table both (the bridge FDB answers only to AF_BRIDGE).
	ns, err := RetryDump(func() ([]netlink.Neigh, error) { return h.NeighList(linkIndex, unix.AF_UNSPEC) })
	if err != nil {
		return nil, fmt.Errorf("list neighbours of link %d: %w", linkIndex, err)
	}
	out := make([]Neigh, 0, len(ns))
	for _, n := range ns {
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok || n.LinkIndex != linkIndex || (n.Family != unix.AF_INET && n.Family != unix.AF_INET6) || n.State == netlink.NUD_NOARP {
			continue
		}
		mac, _ := MACFrom(n.HardwareAddr)
		out = append(out, Neigh{
			LinkIndex: n.LinkIndex,
			IP:        ip.Unmap(),
			MAC:       mac,
			Permanent: n.State&netlink.NUD_PERMANENT != 0,
		})
	}
	return out, nil
}

// ListFDB returns the forwarding entries of VXLAN link linkIndex, one per
// remote, in the kernel's order (bridge fdb show dev DEV).
func ListFDB(h NeighHandle, linkIndex int) ([]FDB, error) {
	ns, err := RetryDump(func() ([]netlink.Neigh, error) { return h.NeighList(linkIndex, unix.AF_BRIDGE) })
	if err != nil {
		return nil, fmt.Errorf("list fdb entries of link %d: %w", linkIndex, err)
	}
	out := make([]FDB, 0, len(ns))
	for _, n := range ns {
		mac, ok := MACFrom(n.HardwareAddr)
		if !ok || n.LinkIndex != linkIndex {
			continue
		}
		var dst netip.Addr
		if a, ok := netip.AddrFromSlice(n.IP); ok {
			dst = a.Unmap()
		}
		out = append(out, FDB{
			LinkIndex: n.LinkIndex,
			MAC:       mac,
			Dst:       dst,
			VNI:       n.VNI,
			Permanent: n.State&netlink.NUD_PERMANENT != 0,
		})
	}
	return out, nil
}

func neighToNetlink(n Neigh) *netlink.Neigh {
	state := netlink.NUD_REACHABLE
	if n.Permanent {
		state = netlink.NUD_PERMANENT
	}
	family := unix.AF_INET
	if n.IP.Is6() {
		family = unix.AF_INET6
	}
	nn := &netlink.Neigh{
		LinkIndex: n.LinkIndex,
		Family:    family,
		State:     state,
		Type:      unix.RTN_UNICAST,
		IP:        n.IP.AsSlice(),
	}
	if !n.MAC.IsZero() {
		nn.HardwareAddr = n.MAC.HardwareAddr()
	}
	return nn
}

func fdbToNetlink(f FDB) *netlink.Neigh {
	state := netlink.NUD_REACHABLE
	if f.Permanent {
		state = netlink.NUD_PERMANENT
	}
	nn := &netlink.Neigh{
		LinkIndex:    f.LinkIndex,
		Family:       unix.AF_BRIDGE,
		Flags:        netlink.NTF_SELF,
		State:        state,
		HardwareAddr: f.MAC.HardwareAddr(),
		VNI:          f.VNI,
	}
	if f.Dst.IsValid() {
		nn.IP = f.Dst.AsSlice()
	}
	return nn
}

// ApplyNeighOps performs ops in order. Deleting an entry that is already
// gone counts as neither done nor failed.
func ApplyNeighOps(h NeighHandle, ops []NeighOp) NeighResult {
	var res NeighResult
	for _, op := range ops {
		var err error
		switch op.Kind {
		case Replace:
			// ip neigh replace IP lladdr MAC dev DEV nud permanent
			err = h.NeighSet(neighToNetlink(op.Neigh))
		case Delete:
			// ip neigh del IP dev DEV
			err = h.NeighDel(neighToNetlink(op.Neigh))
			if errors.Is(err, unix.ENOENT) {
				continue
			}
		}
		if err != nil {
			res.Failed = append(res.Failed, &NeighOpError{Op: op, Err: err})
			continue
		}
		res.Done = append(res.Done, op)
	}
	return res
}

// ApplyFDBOps performs ops in order. Deleting a remote that is already gone
// counts as neither done nor failed.
func ApplyFDBOps(h NeighHandle, ops []FDBOp) FDBResult {
	var res FDBResult
	for _, op := range ops {
		var err error
		switch op.Kind {
		case Replace:
			// bridge fdb replace MAC dev DEV dst IP self permanent
			err = h.NeighSet(fdbToNetlink(op.Entry))
		case Delete:
			// bridge fdb del MAC dev DEV dst IP self
			err = h.NeighDel(fdbToNetlink(op.Entry))
			if errors.Is(err, unix.ENOENT) {
				continue
			}
		}
		if err != nil {
			res.Failed = append(res.Failed, &FDBOpError{Op: op, Err: err})
			continue
		}
		res.Done = append(res.Done, op)
	}
	return res
}
