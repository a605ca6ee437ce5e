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
	if why := LeaseProblem(l, network); why != "" {
		return why
	}
	switch {
	case l.Subnet.Masked().Overlaps(own.Subnet):
		return fmt.Sprintf("its subnet overlaps this host's %s", own.Subnet)
	case l.Attrs.PublicIP == ownPublicIP:
		return "it carries this host's own PublicIP but is not this host's lease"
	}
	return ""
}

// LeaseProblem is the part of PeerProblem that looks at the lease alone: an
// IPv4 subnet strictly inside network and an IPv4 PublicIP. "" when it has
// both.
func LeaseProblem(l lease.Lease, network netip.Prefix) string {
	subnet := l.Subnet.Masked()
	pub := l.Attrs.PublicIP
	switch {
	case !subnet.IsValid() || !subnet.Addr().Is4():
		return "no IPv4 subnet"
	case subnet.Bits() <= network.Bits() || !network.Contains(subnet.Addr()):
		return fmt.Sprintf("its subnet is not inside the network %s", network)
	case !pub.IsValid() || !pub.Is4() || pub.IsUnspecified():
		return "it has no IPv4 PublicIP"
	}
	return ""
}

// PeerV6Problem is PeerProblem for the IPv6 half of a dual-stack lease:
// why the backend cannot program a route to l.IPv6Subnet, "" when it can.
// network6 is the IPv6Network, own this host's lease and ownPublicIPv6 its
// PublicIPv6. A lease without an IPv6 subnet (a host on an IPv4-only
// config) has no IPv6 half to judge and is not asked about: callers check
// l.IPv6Subnet first.
func PeerV6Problem(l lease.Lease, network6 netip.Prefix, own lease.Lease, ownPublicIPv6 netip.Addr) string {
	if why := LeaseV6Problem(l, network6); why != "" {
		return why
	}
	switch {
	case own.IPv6Subnet.IsValid() && l.IPv6Subnet.Masked().Overlaps(own.IPv6Subnet):
		return fmt.Sprintf("its IPv6 subnet overlaps this host's %s", own.IPv6Subnet)
	case ownPublicIPv6.IsValid() && l.Attrs.PublicIPv6 == ownPublicIPv6:
		return "it carries this host's own PublicIPv6 but is not this host's lease"
	}
	return ""
}

// LeaseV6Problem is the part of PeerV6Problem that looks at the lease
// alone: an IPv6 subnet strictly inside network6 and an IPv6 PublicIPv6,
// which every backend needs to reach the peer over IPv6. "" when it has
// both.
func LeaseV6Problem(l lease.Lease, network6 netip.Prefix) string {
	subnet := l.IPv6Subnet.Masked()
	pub := l.Attrs.PublicIPv6
	switch {
	case !subnet.IsValid() || subnet.Addr().Is4():
		return "no IPv6 subnet"
	case !network6.IsValid():
		return "the network config does not enable IPv6"
	case subnet.Bits() <= network6.Bits() || !network6.Contains(subnet.Addr()):
		return fmt.Sprintf("its IPv6 subnet is not inside the IPv6Network %s", network6)
	case !pub.IsValid() || pub.Is4() || pub.IsUnspecified():
		return "it has no PublicIPv6, which IPv6 routes to it need (its host has no global IPv6 address and no --public-ipv6)"
	}
	return ""
}

// PeerName is how logs and errors name a peer: its public IP, or "none".
func PeerName(l lease.Lease) string {
	if l.Attrs.PublicIP.IsValid() {
		return l.Attrs.PublicIP.String()
	}
	return "none"
}
