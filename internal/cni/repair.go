package cni

import (
	"fmt"
	"net/netip"
	"strings"
)

// BridgeRepairer readies the host bridge for a delegate ADD after the
// node's pod subnet changed while the bridge survived (the agent got a new
// lease, or the node joined another cluster). The bridge plugin refuses to
// add a gateway address to a bridge that already has a different IPv4
// address, so without this every new pod on the node fails.
//
// The contract of Repair:
//   - a missing bridge, or one whose IPv4 addresses all lie in subnet, is
//     left alone and nil returned;
//   - otherwise, if no interface is attached to the bridge, the stale IPv4
//     addresses (StaleAddrs) are removed and nil returned;
//   - otherwise nothing changes and a *StaleBridgeError is returned, with
//     the host-local reservations found in ipamDir ("" = unknown) that lie
//     in the stale subnets, to name the pods.
//
// Repair acts in the network namespace of the calling process (the host's,
// for a CNI plugin). Callers serialise concurrent calls for one bridge.
type BridgeRepairer interface {
	Repair(bridge string, subnet netip.Prefix, ipamDir string) error
}

// linkLocal4 addresses are never a flannel gateway and are left alone.
var linkLocal4 = netip.MustParsePrefix("169.254.0.0/16")

// StaleAddrs returns the IPv4 addresses among addrs that cannot be the
// gateway of subnet: those whose network differs from subnet (another
// subnet, or the same address with another prefix length). An address in
// the right network but not the gateway one is not stale: no flannel
// subnet change produces it, so someone put it there and the bridge
// plugin's own error is the right answer.
func StaleAddrs(addrs []netip.Prefix, subnet netip.Prefix) []netip.Prefix {
	var stale []netip.Prefix
	for _, a := range addrs {
		if !a.Addr().Is4() || linkLocal4.Contains(a.Addr()) {
			continue
		}
		if a.Masked() != subnet.Masked() {
			stale = append(stale, a)
		}
	}
	return stale
}

// StaleBridgeError says that the bridge still has an address of an old
// subnet that pods still use, so it cannot be moved to the new subnet.
type StaleBridgeError struct {
	Bridge string
	Stale  []netip.Prefix // the bridge's addresses outside Subnet
	Subnet netip.Prefix   // the node's current subnet
	Ports  []string       // interfaces attached to the bridge
	Pods   []Reservation  // host-local reservations inside the stale subnets
}

// maxListed bounds the pods and interfaces spelled out in the message.
const maxListed = 10

func (e *StaleBridgeError) Error() string {
	var old, oldNets []string
	for _, p := range e.Stale {
		old = append(old, p.String())
		oldNets = append(oldNets, p.Masked().String())
	}
	var b strings.Builder
	fmt.Fprintf(&b, "bridge %q still has %s from this node's previous pod subnet %s, but the node's subnet is now %s (FLANNEL_SUBNET), and ",
		e.Bridge, strings.Join(old, ", "), strings.Join(oldNets, ", "), e.Subnet)
	if len(e.Pods) > 0 {
		var pods []string
		for _, r := range e.Pods {
			s := r.IP.String() + " (container " + r.ContainerID
			if r.IfName != "" {
				s += ", " + r.IfName
			}
			pods = append(pods, s+")")
		}
		fmt.Fprintf(&b, "pods still use the old subnet: %s, attached as %s. ", list(pods), list(e.Ports))
	} else {
		fmt.Fprintf(&b, "interfaces %s are still attached to it (no host-local reservation in the old subnet names their pods). ", list(e.Ports))
	}
	gw := ""
	if e.Subnet.IsValid() {
		gw = netip.PrefixFrom(e.Subnet.Masked().Addr().Next(), e.Subnet.Bits()).String()
	}
	fmt.Fprintf(&b, "Delete those pods so that they are recreated in %s (the plugin then moves %s to %s by itself), or give this node back its old subnet %s",
		e.Subnet, e.Bridge, gw, strings.Join(oldNets, ", "))
	return b.String()
}

func list(items []string) string {
	if len(items) > maxListed {
		return strings.Join(items[:maxListed], ", ") + fmt.Sprintf(" and %d more", len(items)-maxListed)
	}
	return strings.Join(items, ", ")
}

// podsIn keeps the reservations that lie in one of the stale subnets.
func podsIn(rs []Reservation, stale []netip.Prefix) []Reservation {
	var out []Reservation
	for _, r := range rs {
		for _, p := range stale {
			if p.Masked().Contains(r.IP) {
				out = append(out, r)
				break
			}
		}
	}
	return out
}
