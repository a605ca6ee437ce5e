package lease

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"

	"github.com/weftnet/weft/internal/netconf"
)

// maxPoolIndex bounds the subnets a pool counts: an IPv6 pool can hold
// more subnets than a uint64 counts (a /16 IPv6Network of /126 subnets),
// and no cluster has 2^62 hosts, so a larger pool is cut to its first 2^62
// subnets from the minimum on.
const maxPoolIndex = 1<<62 - 1

// pool is one family's subnet space in index form: subnet i is
// min + i<<shift, and the allocatable ones are 0..hi inclusive. Indices are
// counted from the minimum rather than from the network address so that
// they fit a uint64 whatever the family.
type pool struct {
	name     string // "" for IPv4, "IPv6" for IPv6: prefixes the config's field names
	network  netip.Prefix
	subLen   int
	min, max netip.Addr
	bitLen   int
	first    u128 // min as a number
	shift    uint
	hi       uint64
	subnetOf func(Lease) netip.Prefix // the lease's subnet of this family
}

func v4Subnet(l Lease) netip.Prefix { return l.Subnet }
func v6Subnet(l Lease) netip.Prefix { return l.IPv6Subnet }

// newPool is the IPv4 pool of cfg.
func newPool(cfg *netconf.Config) (pool, error) {
	switch {
	case cfg == nil:
		return pool{}, errors.New("no network config")
	case !cfg.EnableIPv4:
		return pool{}, errors.New("the network config does not enable IPv4; IPv6-only networks (EnableIPv4 false) are supported with the Kubernetes store only, as in flannel")
	}
	return makePool("", cfg.Network, cfg.SubnetLen, cfg.SubnetMin, cfg.SubnetMax, 32, v4Subnet)
}

// newPool6 is the IPv6 pool of cfg, which must enable IPv6.
func newPool6(cfg *netconf.Config) (pool, error) {
	if !cfg.EnableIPv6 {
		return pool{}, errors.New("the network config does not enable IPv6")
	}
	return makePool("IPv6", cfg.IPv6Network, cfg.IPv6SubnetLen, cfg.IPv6SubnetMin, cfg.IPv6SubnetMax, 128, v6Subnet)
}

func makePool(name string, network netip.Prefix, subLen int, min, max netip.Addr, bitLen int, of func(Lease) netip.Prefix) (pool, error) {
	fam := map[int]string{32: "IPv4", 128: "IPv6"}[bitLen]
	switch {
	case !network.IsValid() || network.Addr().BitLen() != bitLen || network.Addr().Is4In6():
		return pool{}, fmt.Errorf("network config: %sNetwork %s is not an %s network", name, network, fam)
	case subLen < network.Bits() || subLen > bitLen:
		return pool{}, fmt.Errorf("network config: %sSubnetLen %d does not fit %sNetwork %s", name, subLen, name, network)
	}
	p := pool{name: name, network: network.Masked(), subLen: subLen, min: min, max: max, bitLen: bitLen, shift: uint(bitLen - subLen), subnetOf: of}
	for _, a := range []struct {
		field string
		addr  netip.Addr
	}{{name + "SubnetMin", min}, {name + "SubnetMax", max}} {
		if !a.addr.IsValid() || a.addr.BitLen() != bitLen || !network.Contains(a.addr) || netip.PrefixFrom(a.addr, subLen).Masked().Addr() != a.addr {
			return pool{}, fmt.Errorf("network config: %s %s is not a /%d subnet of %s (was the config validated by netconf.Parse?)", a.field, a.addr, subLen, network)
		}
	}
	if max.Less(min) {
		return pool{}, fmt.Errorf("network config: %sSubnetMin %s is above %sSubnetMax %s", name, min, name, max)
	}
	p.first = fromAddr(min)
	n := fromAddr(max).sub(p.first).shr(p.shift)
	if n.hi != 0 || n.lo > maxPoolIndex {
		n = u128{lo: maxPoolIndex}
	}
	p.hi = n.lo
	return p, nil
}

func (p pool) size() uint64 { return p.hi + 1 }

func (p pool) subnet(i uint64) netip.Prefix {
	return netip.PrefixFrom(p.first.add(u128{lo: i}.shl(p.shift)).toAddr(p.bitLen), p.subLen)
}

// misfit says why sn is not an allocatable subnet of the pool ("" if it is).
func (p pool) misfit(sn netip.Prefix) string {
	if why := p.misfitReservation(sn); why != "" {
		return why
	}
	if a := sn.Addr(); a.Less(p.min) || p.max.Less(a) {
		return fmt.Sprintf("outside %sSubnetMin..%sSubnetMax (%s..%s)", p.name, p.name, p.min, p.max)
	}
	return ""
}

// misfitReservation says why a reserved subnet cannot be used: reservations
// only need to be a subnet of the network of the configured length.
func (p pool) misfitReservation(sn netip.Prefix) string {
	fam := map[int]string{32: "IPv4", 128: "IPv6"}[p.bitLen]
	switch {
	case !sn.IsValid() || sn.Addr().BitLen() != p.bitLen || sn.Addr().Is4In6():
		return "not an " + fam + " subnet"
	case sn.Bits() != p.subLen:
		return fmt.Sprintf("length /%d is not %sSubnetLen /%d", sn.Bits(), p.name, p.subLen)
	case sn.Masked() != sn:
		return "host bits set"
	case !p.network.Contains(sn.Addr()):
		return fmt.Sprintf("outside %sNetwork %s", p.name, p.network)
	}
	return ""
}

// overlapping returns the first lease whose subnet of the pool's family
// overlaps sn.
func (p pool) overlapping(existing []Lease, sn netip.Prefix) *Lease {
	for i := range existing {
		if s := p.subnetOf(existing[i]); s.IsValid() && s.Overlaps(sn) {
			return &existing[i]
		}
	}
	return nil
}

// random picks uniformly among the free subnets of the pool. It works on
// the taken index intervals, so its cost does not depend on the pool size.
func (p pool) random(existing []Lease, r *rand.Rand) (netip.Prefix, uint64, error) {
	first := p.first
	last := p.first.add(u128{lo: p.hi}.shl(p.shift)).add(ones(p.shift))
	type span struct{ a, b uint64 }
	var taken []span
	var leases, reservations int
	for _, l := range existing {
		sn := p.subnetOf(l)
		if !sn.IsValid() || sn.Addr().BitLen() != p.bitLen || sn.Addr().Is4In6() {
			continue
		}
		sn = sn.Masked()
		lf := fromAddr(sn.Addr())
		ll := lf.add(ones(uint(p.bitLen - sn.Bits())))
		if ll.less(first) || last.less(lf) {
			continue
		}
		if l.Reservation() {
			reservations++
		} else {
			leases++
		}
		if lf.less(first) {
			lf = first
		}
		if last.less(ll) {
			ll = last
		}
		taken = append(taken, span{lf.sub(first).shr(p.shift).lo, ll.sub(first).shr(p.shift).lo})
	}
	slices.SortFunc(taken, func(x, y span) int { return cmp.Compare(x.a, y.a) })
	merged := taken[:0]
	for _, s := range taken {
		if n := len(merged); n > 0 && s.a <= merged[n-1].b+1 {
			merged[n-1].b = max(merged[n-1].b, s.b)
			continue
		}
		merged = append(merged, s)
	}
	var used uint64
	for _, s := range merged {
		used += s.b - s.a + 1
	}
	free := p.size() - used
	if free == 0 {
		kind := "subnets"
		if p.name != "" {
			kind = p.name + " subnets"
		}
		return netip.Prefix{}, 0, fmt.Errorf("all %d %s of %s between %s and %s are leased (%d leases, %d reservations): %w",
			p.size(), kind, p.network, p.min, p.max, leases, reservations, ErrPoolExhausted)
	}
	var k uint64
	if r != nil {
		k = r.Uint64N(free)
	} else {
		k = rand.Uint64N(free)
	}
	// Walk the gaps between taken spans to the k-th free index.
	var idx uint64
	for _, s := range merged {
		if gap := s.a - idx; k < gap {
			break
		} else {
			k -= gap
		}
		idx = s.b + 1
	}
	return p.subnet(idx + k), free, nil
}
