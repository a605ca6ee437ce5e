package udp

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/lease"
)

// peerTable maps destination addresses to peers. It is immutable once
// built: Apply builds a new one and publishes it with one atomic store, so
// the packet loops look up without locks and always see one whole lease
// set, never half of an update.
type peerTable struct {
	// groups holds one map per subnet prefix length, longest first. A
	// cluster has one SubnetLen, so a lookup is one masked map access;
	// leases of another length (an old SubnetLen, a reservation) still
	// resolve by longest match.
	groups []prefixGroup
	peers  []peer // sorted by subnet, for logs and diffs
}

type prefixGroup struct {
	bits int
	mask uint32
	m    map[uint32]endpoint // subnet network address → peer
}

// peer is one udp peer's subnet and where its packets go.
type peer struct {
	subnet netip.Prefix
	ep     endpoint
}

func (p peer) publicIP() netip.Addr { return netip.AddrFrom4(p.ep.ip) }

// lookup returns the peer whose subnet holds dst (an IPv4 address in host
// byte order). A nil table has no peers.
func (t *peerTable) lookup(dst uint32) (endpoint, bool) {
	if t == nil {
		return endpoint{}, false
	}
	for i := range t.groups {
		g := &t.groups[i]
		if ep, ok := g.m[dst&g.mask]; ok {
			return ep, true
		}
	}
	return endpoint{}, false
}

func newPeerTable(peers []peer) *peerTable {
	t := &peerTable{peers: slices.Clone(peers)}
	slices.SortFunc(t.peers, func(a, b peer) int {
		return cmp.Or(a.subnet.Addr().Compare(b.subnet.Addr()), cmp.Compare(a.subnet.Bits(), b.subnet.Bits()))
	})
	byBits := map[int]int{} // bits → index in groups
	for _, p := range t.peers {
		bits := p.subnet.Bits()
		i, ok := byBits[bits]
		if !ok {
			i = len(t.groups)
			byBits[bits] = i
			t.groups = append(t.groups, prefixGroup{
				bits: bits,
				mask: ^uint32(0) << (32 - bits),
				m:    make(map[uint32]endpoint),
			})
		}
		a := p.subnet.Addr().As4()
		t.groups[i].m[binary.BigEndian.Uint32(a[:])] = p.ep
	}
	slices.SortFunc(t.groups, func(a, b prefixGroup) int { return cmp.Compare(b.bits, a.bits) })
	return t
}

// acceptsType reports whether a lease of this BackendType is a udp peer.
// Flannel's udp backend publishes no BackendType at all, and weft's does
// the same; "udp" is accepted too, should any implementation set it.
func acceptsType(t string) bool { return t == "" || t == BackendType }

// desiredPeers is what one set of leases asks of the data path.
type desiredPeers struct {
	table   *peerTable
	ignored map[netip.Prefix]lease.Attrs // leases of another backend type
	errs    []error                      // udp leases that get no entry, and why
	refused map[netip.Prefix]string      // the same leases by subnet: the reason alone
}

// desire computes the peer table for leases: every udp lease other than
// own, reached at its PublicIP on port. Pure.
func desire(network netip.Prefix, own lease.Lease, ownPublicIP netip.Addr, port int, leases []lease.Lease) desiredPeers {
	st := desiredPeers{ignored: make(map[netip.Prefix]lease.Attrs), refused: make(map[netip.Prefix]string)}
	var peers []peer
	seen := make(map[netip.Prefix]bool)
	for _, l := range leases {
		subnet := l.Subnet.Masked()
		if subnet == own.Subnet.Masked() {
			continue
		}
		if !acceptsType(l.Attrs.BackendType) {
			st.ignored[subnet] = l.Attrs
			continue
		}
		pub := l.Attrs.PublicIP
		reason := backend.PeerProblem(l, network, own, ownPublicIP)
		switch {
		case reason != "":
		case seen[subnet]:
			reason = "another lease has the same subnet"
		}
		if reason != "" {
			p := backend.PeerName(l)
			st.errs = append(st.errs, fmt.Errorf("peer %s (subnet %s): not reachable over udp: %s", p, subnet, reason))
			if !seen[subnet] {
				st.refused[subnet] = reason
			}
			continue
		}
		seen[subnet] = true
		peers = append(peers, peer{subnet: subnet, ep: endpoint{ip: pub.As4(), port: uint16(port)}})
	}
	st.table = newPeerTable(peers)
	return st
}

// peerChange is one difference between two peer tables, for the log.
type peerChange struct {
	kind string // "added", "removed", "changed"
	peer peer
	was  peer // for "changed"
}

// diffPeers lists how next differs from prev, by subnet, in subnet order.
func diffPeers(prev, next *peerTable) []peerChange {
	var old, cur []peer
	if prev != nil {
		old = prev.peers
	}
	if next != nil {
		cur = next.peers
	}
	was := make(map[netip.Prefix]peer, len(old))
	for _, p := range old {
		was[p.subnet] = p
	}
	var out []peerChange
	for _, p := range cur {
		o, ok := was[p.subnet]
		switch {
		case !ok:
			out = append(out, peerChange{kind: "added", peer: p})
		case o.ep != p.ep:
			out = append(out, peerChange{kind: "changed", peer: p, was: o})
		}
		delete(was, p.subnet)
	}
	for _, p := range old {
		if _, gone := was[p.subnet]; gone {
			out = append(out, peerChange{kind: "removed", peer: p})
		}
	}
	return out
}
