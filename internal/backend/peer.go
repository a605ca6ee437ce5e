package backend

import (
	"fmt"
	"net/netip"

	"github.com/weftnet/weft/internal/lease"
)

// PeerProblem says why a peer's lease cannot be programmed, whatever the
// backend, or returns "" when it can. network is the cluster network, own
// this host's lease and ownPublicIP its public address. Every backend
// applies the same rules, so a peer that one refuses the others refuse too,
// with the same words. The agent's admission step (package admit) applies
// LeaseProblem before any backend sees a lease; the backends keep calling
// PeerProblem so that each is safe on its own.
func PeerProblem(l lease.Lease, network netip.Prefix, own lease.Lease, ownPublicIP netip.Addr) string {
	return familyOf(network).peerProblem(l.Subnet, l.Attrs.PublicIP, network, own.Subnet, ownPublicIP)
}

// familyOf is the family whose rules judge a lease against network: the
// IPv6 ones for an IPv6 network, as vxlan's flannel-v6 side asks of the
// IPv6 half it has moved into a lease's IPv4 fields.
func familyOf(network netip.Prefix) family {
	if network.IsValid() && network.Addr().Is6() {
		return ipv6
	}
	return ipv4
}

// LeaseProblem is the part of PeerProblem that looks at the lease alone: a
// subnet strictly inside network and a PublicIP, both of network's family
// (an IPv6 network is asked of a lease's IPv6 half, as vxlan's IPv6 side
// sees it). "" when it has both.
func LeaseProblem(l lease.Lease, network netip.Prefix) string {
	return familyOf(network).leaseProblem(l.Subnet, l.Attrs.PublicIP, network)
}

// PeerV6Problem is PeerProblem for the IPv6 half of a dual-stack lease:
// why the backend cannot program a route to l.IPv6Subnet, "" when it can.
// network6 is the IPv6Network, own this host's lease and ownPublicIPv6 its
// PublicIPv6. A lease without an IPv6 subnet (a host on an IPv4-only
// config) has no IPv6 half to judge and is not asked about: callers check
// l.IPv6Subnet first.
func PeerV6Problem(l lease.Lease, network6 netip.Prefix, own lease.Lease, ownPublicIPv6 netip.Addr) string {
	return ipv6.peerProblem(l.IPv6Subnet, l.Attrs.PublicIPv6, network6, own.IPv6Subnet, ownPublicIPv6)
}

// LeaseV6Problem is the part of PeerV6Problem that looks at the lease
// alone: an IPv6 subnet strictly inside network6 and an IPv6 PublicIPv6,
// which every backend needs to reach the peer over IPv6. "" when it has
// both.
func LeaseV6Problem(l lease.Lease, network6 netip.Prefix) string {
	return ipv6.leaseProblem(l.IPv6Subnet, l.Attrs.PublicIPv6, network6)
}

// family holds the words the rules use for one address family's half of
// a lease; the rules are the same for both.
type family struct {
	is4                              bool
	noSubnet, outside, noPub, subnet string
	ownPub                           string
}

var (
	ipv4 = family{is4: true, noSubnet: "no IPv4 subnet", outside: "its subnet is not inside the network %s",
		noPub: "it has no IPv4 PublicIP", subnet: "its subnet overlaps this host's %s", ownPub: "PublicIP"}
	ipv6 = family{noSubnet: "no IPv6 subnet", outside: "its IPv6 subnet is not inside the IPv6Network %s",
		noPub:  "it has no PublicIPv6, which IPv6 routes to it need (its host has no global IPv6 address and no --public-ipv6)",
		subnet: "its IPv6 subnet overlaps this host's %s", ownPub: "PublicIPv6"}
)

func (f family) leaseProblem(subnet netip.Prefix, pub netip.Addr, network netip.Prefix) string {
	subnet = subnet.Masked()
	switch {
	case !subnet.IsValid() || subnet.Addr().Is4() != f.is4:
		return f.noSubnet
	case !network.IsValid() && !f.is4:
		return "the network config does not enable IPv6"
	case subnet.Bits() <= network.Bits() || !network.Contains(subnet.Addr()):
		return fmt.Sprintf(f.outside, network)
	case !pub.IsValid() || pub.Is4() != f.is4 || pub.IsUnspecified():
		return f.noPub
	}
	return ""
}

func (f family) peerProblem(subnet netip.Prefix, pub netip.Addr, network, own netip.Prefix, ownPub netip.Addr) string {
	if why := f.leaseProblem(subnet, pub, network); why != "" {
		return why
	}
	switch {
	case own.IsValid() && subnet.Masked().Overlaps(own):
		return fmt.Sprintf(f.subnet, own)
	case ownPub.IsValid() && pub == ownPub:
		return "it carries this host's own " + f.ownPub + " but is not this host's lease"
	}
	return ""
}

// PeerName is how logs and errors name a peer: its public IP (PublicIPv6
// in an IPv6-only network: lease.PublicAddr), or "none".
func PeerName(l lease.Lease) string {
	if a := l.PublicAddr(); a.IsValid() {
		return a.String()
	}
	return "none"
}
