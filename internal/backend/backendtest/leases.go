package backendtest

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/lease"
)

// Own is the lease RandomLeases treats as this host's: 10.244.1.0/24 at
// 192.168.1.1 (OwnPublicIP), inside Network.
var (
	OwnPublicIP = netip.MustParseAddr("192.168.1.1")
	Own         = lease.Lease{Subnet: netip.MustParsePrefix("10.244.1.0/24"), Attrs: lease.Attrs{PublicIP: OwnPublicIP}}
)

// RandomLeases returns n leases of the kinds a store may deliver, for
// property tests of the pure planners: mostly usable peers in Network, and
// among them subnets outside it or overlapping Own, duplicate subnets and
// PublicIPs, missing or IPv6 PublicIPs, each with a BackendType drawn from
// types and BackendData from a small set of vxlan forms (VNI 1 or 2, a
// VtepMAC from a pool with duplicates and a multicast one, or none).
func RandomLeases(r *rand.Rand, n int, types []string) []lease.Lease {
	macs := []string{"aa:bb:cc:dd:ee:01", "aa:bb:cc:dd:ee:02", "aa:bb:cc:dd:ee:03", "01:00:5e:00:00:01", "not a mac"}
	for i := range 20 {
		macs = append(macs, fmt.Sprintf("0a:00:00:00:01:%02x", i))
	}
	out := make([]lease.Lease, n)
	for i := range out {
		var l lease.Lease
		switch k := r.IntN(20); {
		case k == 0:
			l.Subnet = netip.MustParsePrefix(fmt.Sprintf("10.9.%d.0/24", r.IntN(4))) // outside
		case k == 1:
			l.Subnet = netip.MustParsePrefix("10.244.0.0/16") // the whole network
		case k == 2:
			l.Subnet = netip.MustParsePrefix("10.244.1.128/25") // inside Own
		case k == 3:
			// no subnet
		default:
			l.Subnet = netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", r.IntN(40)))
		}
		switch k := r.IntN(20); {
		case k == 0:
			// no PublicIP
		case k == 1:
			l.Attrs.PublicIP = netip.MustParseAddr("fd00::1")
		case k == 2:
			l.Attrs.PublicIP = OwnPublicIP
		default:
			l.Attrs.PublicIP = netip.AddrFrom4([4]byte{192, 168, 1, byte(2 + r.IntN(40))})
		}
		l.Attrs.BackendType = types[r.IntN(len(types))]
		if r.IntN(10) > 0 {
			l.Attrs.BackendData = fmt.Appendf(nil, `{"VNI":%d,"VtepMAC":%q}`, 1+r.IntN(10)/9, macs[r.IntN(len(macs))])
		}
		out[i] = l
	}
	return out
}

// SameWants reports whether a and b hold the same Wants, counting
// repeats, in any order.
func SameWants(a, b []backend.Want) bool {
	count := make(map[string]int)
	for _, w := range a {
		count[w.Kind+" "+w.String()]++
	}
	for _, w := range b {
		count[w.Kind+" "+w.String()]--
	}
	for _, n := range count {
		if n != 0 {
			return false
		}
	}
	return len(a) == len(b)
}

// PeerWants checks what the property tests hold every backend's Wants to,
// whatever the leases: a refused peer has no entries, each entry is filed
// under the subnet it serves (filed says whether it is), and every lease
// whose BackendType is one of types has an answer, but for own's. It
// returns every peer's entries, to compare with the planner's (SameWants).
func PeerWants(w backend.Wants, leases []lease.Lease, own netip.Prefix, types []string, filed func(subnet netip.Prefix, e backend.Want) bool) ([]backend.Want, error) {
	var all []backend.Want
	for subnet, pw := range w.Peers {
		if pw.Refused != "" && len(pw.Entries) != 0 {
			return nil, fmt.Errorf("%s refused (%s) with entries %v", subnet, pw.Refused, pw.Entries)
		}
		for _, e := range pw.Entries {
			if !filed(subnet, e) {
				return nil, fmt.Errorf("entry %v filed under %s", e, subnet)
			}
		}
		all = append(all, pw.Entries...)
	}
	for _, l := range leases {
		s := l.Subnet.Masked()
		if !slices.Contains(types, l.Attrs.BackendType) || s == own {
			continue
		}
		if _, ok := w.Peers[s]; !ok {
			return nil, fmt.Errorf("no answer for lease %v", l)
		}
	}
	return all, nil
}
