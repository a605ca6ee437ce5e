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
// with the same words.
func PeerProblem(l lease.Lease, network netip.Prefix, own lease.Lease, ownPublicIP netip.Addr) string {
	subnet := l.Subnet.Masked()
	pub := l.Attrs.PublicIP
	switch {
	case !subnet.IsValid() || !subnet.Addr().Is4():
		return "no IPv4 subnet"
	case subnet.Bits() <= network.Bits() || !network.Contains(subnet.Addr()):
		return fmt.Sprintf("its subnet is not inside the network %s", network)
	case subnet.Overlaps(own.Subnet):
		return fmt.Sprintf("its subnet overlaps this host's %s", own.Subnet)
	case !pub.IsValid() || !pub.Is4() || pub.IsUnspecified():
		return "it has no IPv4 PublicIP"
	case pub == ownPublicIP:
		return "it carries this host's own PublicIP but is not this host's lease"
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
