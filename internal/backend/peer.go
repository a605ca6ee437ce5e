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

// LeaseProblem is the part of PeerProblem that looks at the lease alone: a
// subnet strictly inside network and a PublicIP, both of network's family
// (an IPv6 network is asked of a lease's IPv6 half, as vxlan's IPv6 side
// sees it). "" when it has both.
func LeaseProblem(l lease.Lease, network netip.Prefix) string {
	subnet := l.Subnet.Masked()
	pub := l.Attrs.PublicIP
	is6 := network.Addr().Is6()
	family := "IPv4"
	if is6 {
		family = "IPv6"
	}
	switch {
	case !subnet.IsValid() || subnet.Addr().Is6() != is6:
		return "no " + family + " subnet"
	case subnet.Bits() <= network.Bits() || !network.Contains(subnet.Addr()):
		return fmt.Sprintf("its subnet is not inside the network %s", network)
	case !pub.IsValid() || pub.Is6() != is6 || pub.Is4In6() || pub.IsUnspecified():
		return "it has no " + family + " PublicIP"
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
