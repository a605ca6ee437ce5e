package kernel

import "net/netip"

// PeerRouteOwner is the ownership rule of every backend that routes each
// peer's pod subnet through a gateway (host-gw; vxlan, whose routes name the
// peer subnet's network address as an onlink gateway, and its direct
// routes): a main-table route is the backend's when it has a gateway, its
// destination lies inside network and is smaller than it, and it does not
// overlap own (this host's subnet). That is also exactly what flannel's
// host-gw and vxlan leave behind, whatever their protocol number, so stale
// routes of peers that left while no agent ran are cleaned up. It never
// matches connected routes, the default route, or anything outside the
// network.
func PeerRouteOwner(network, own netip.Prefix) func(Route) bool {
	return func(r Route) bool {
		return r.Gw.IsValid() && network.IsValid() && r.Dst.Addr().Is4() == network.Addr().Is4() &&
			r.Dst.Bits() > network.Bits() && network.Contains(r.Dst.Addr()) &&
			!r.Dst.Overlaps(own)
	}
}
