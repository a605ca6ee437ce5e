package lease

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"

	"github.com/weftnet/weft/internal/netconf"
)

// ErrPoolExhausted is wrapped by PickSubnet when no subnet is free.
var ErrPoolExhausted = errors.New("no free subnet left in the pool")

// PickInput is everything PickSubnet decides from.
type PickInput struct {
	Config   *netconf.Config
	Existing []Lease // every lease and reservation in the store
	PublicIP netip.Addr
	Previous netip.Prefix // from subnet.env; zero if none
	// HostID is this host's identity (Attrs.HostID); "" turns the
	// duplicate-PublicIP check off.
	HostID string
	// NewHostID says HostID was generated on this start because the
	// state directory held none (it was wiped): a live lease with another
	// ID is then still ours if it is Previous, since subnet.env lives on
	// tmpfs and names it only if this host has held it since boot.
	NewHostID bool
	Rand      *rand.Rand // nil: math/rand/v2's global source, which the runtime seeds randomly
}

// Pick is PickSubnet's decision.
type Pick struct {
	Subnet netip.Prefix
	// Existing is the store's lease that already carries our PublicIP and is
	// being reused (nil when the subnet is new to us). Reservation() on it
	// tells the store to keep it without a TTL: a reservation must never be
	// turned into an expiring lease.
	Existing *Lease
	// Stale are leases (never reservations) carrying our PublicIP that are
	// not reused: they no longer fit the config (outside SubnetMin..SubnetMax,
	// wrong length, an IPv6 part the config does not enable), or they
	// duplicate the one being reused. The store deletes them.
	Stale []Lease
	// Reason says in words why this subnet was chosen, for the log.
	Reason string
	// Warning, when set, says why the choice deserves an operator's
	// attention (the host moves to a reservation away from the subnet its
	// pods use); the store logs it at WARN.
	Warning string
}

// PickSubnet chooses this host's subnet in flannel's order:
//
//  1. A lease or reservation that already carries our PublicIP. A
//     reservation wins over a lease and only has to lie in Network with
//     SubnetLen (an administrator may pin a subnet outside SubnetMin..Max);
//     a lease must also lie within SubnetMin..SubnetMax. Reservations of
//     other hosts are never given to us.
//  2. Previous (the subnet in subnet.env), if it fits the config and no
//     existing lease or reservation overlaps it.
//  3. A subnet chosen uniformly at random among all free subnets between
//     SubnetMin and SubnetMax (flannel picks among the first 100 free ones;
//     choosing among all spreads hosts over the pool and makes collisions
//     between hosts racing for a subnet less likely). Any existing lease
//     that overlaps a subnet, whatever its length, makes it taken.
//
// It runs in O(n log n) in the number of existing leases, independent of
// the pool size. It fails with an error wrapping ErrPoolExhausted, saying
// how many subnets are leased and how many the pool has, when nothing is
// free. Only the IPv4 subnet is chosen; IPv6 allocation is not implemented.
func PickSubnet(in PickInput) (Pick, error) {
	p, err := newPool(in.Config)
	if err != nil {
		return Pick{}, fmt.Errorf("pick a subnet: %w", err)
	}

	if err := publicIPInUse(in); err != nil {
		return Pick{}, err
	}
	pick, notes := reuseOwn(in, p)
	if ex := pick.Existing; ex != nil && ex.Reservation() {
		pick.Subnet = ex.Subnet
		pick.Reason = joinNotes(pick.Reason, notes)
		pick.Warning = reservationWarning(in, *ex)
		return pick, nil
	}
	if err := keepLiveSubnet(in, p, pick.Existing); err != nil {
		return Pick{}, err
	}
	if pick.Existing != nil {
		pick.Subnet = pick.Existing.Subnet
		pick.Reason = joinNotes(pick.Reason, notes)
		if adopted(in, *pick.Existing) {
			pick.Warning = fmt.Sprintf("taking back lease %s, which carries host ID %s: subnet.env names it and this host's ID %s is new (was its state directory wiped?)",
				pick.Existing.Subnet, pick.Existing.Attrs.HostID, in.HostID)
		}
		return pick, nil
	}

	if prev := in.Previous; prev.IsValid() {
		prev = prev.Masked()
		if why := p.misfit(prev); why != "" {
			notes = append(notes, fmt.Sprintf("previous subnet %s from subnet.env not reused: %s", prev, why))
		} else if other := overlapping(in.Existing, prev); other != nil {
			notes = append(notes, fmt.Sprintf("previous subnet %s from subnet.env not reused: taken by %s", prev, other))
		} else {
			pick.Subnet = prev
			pick.Reason = joinNotes(fmt.Sprintf("previous subnet %s from subnet.env is free", prev), notes)
			return pick, nil
		}
	}

	sn, free, err := p.random(in.Existing, in.Rand)
	if err != nil {
		return Pick{}, fmt.Errorf("pick a subnet for %s: %w", in.PublicIP, err)
	}
	pick.Subnet = sn
	pick.Reason = joinNotes(fmt.Sprintf("random free subnet (%d of %d in the pool are free)", free, p.size()), notes)
	return pick, nil
}

// reuseOwn is step 1 of PickSubnet. notes explain what was not reused.
func reuseOwn(in PickInput, p pool) (pick Pick, notes []string) {
	if !in.PublicIP.IsValid() {
		return Pick{}, nil
	}
	var ours []Lease
	for _, l := range in.Existing {
		if isOurs(in, l) {
			ours = append(ours, l)
		}
	}
	pub := in.PublicIP.Unmap()
	chosen := -1
	for i, l := range ours {
		if !l.Reservation() {
			continue
		}
		if why := p.misfitReservation(l.Subnet); why != "" {
			notes = append(notes, fmt.Sprintf("reservation %s for %s ignored: %s", l.Subnet, pub, why))
			continue
		}
		chosen = i
		pick.Reason = fmt.Sprintf("reservation %s for %s", l.Subnet, pub)
		break
	}
	if chosen < 0 {
		// Among several fitting leases of ours prefer the one subnet.env
		// names, so that a restart never renumbers the host.
		for i, l := range ours {
			if l.Reservation() || p.misfitLease(l) != "" {
				continue
			}
			if chosen < 0 || (in.Previous.IsValid() && l.Subnet == in.Previous.Masked()) {
				chosen = i
			}
		}
		if chosen >= 0 {
			pick.Reason = fmt.Sprintf("existing lease %s for %s", ours[chosen].Subnet, pub)
		}
	}
	for i, l := range ours {
		switch {
		case i == chosen:
			reused := l
			pick.Existing = &reused
		case l.Reservation():
		default:
			why := p.misfitLease(l)
			if why == "" {
				why = "duplicate of the reused lease"
			}
			notes = append(notes, fmt.Sprintf("lease %s for %s is stale: %s", l.Subnet, pub, why))
			pick.Stale = append(pick.Stale, l)
		}
	}
	return pick, notes
}

func joinNotes(reason string, notes []string) string {
	for _, n := range notes {
		reason += "; " + n
	}
	return reason
}

// overlapping returns the first existing lease whose subnet overlaps sn.
func overlapping(existing []Lease, sn netip.Prefix) *Lease {
	for i := range existing {
		if existing[i].Subnet.IsValid() && existing[i].Subnet.Overlaps(sn) {
			return &existing[i]
		}
	}
	return nil
}

// pool is the config's IPv4 subnet space in index form: subnet i is
// base + i<<shift, and the allocatable ones are lo..hi inclusive.
type pool struct {
	cfg    *netconf.Config
	base   uint64
	shift  uint
	lo, hi uint64
}

func newPool(cfg *netconf.Config) (pool, error) {
	switch {
	case cfg == nil:
		return pool{}, errors.New("no network config")
	case !cfg.EnableIPv4:
		return pool{}, errors.New("the network config does not enable IPv4; IPv6-only networks are not supported")
	case !cfg.Network.IsValid() || !cfg.Network.Addr().Is4():
		return pool{}, fmt.Errorf("network config: Network %s is not an IPv4 network", cfg.Network)
	case cfg.SubnetLen < cfg.Network.Bits() || cfg.SubnetLen > 32:
		return pool{}, fmt.Errorf("network config: SubnetLen %d does not fit Network %s", cfg.SubnetLen, cfg.Network)
	}
	p := pool{cfg: cfg, base: u32(cfg.Network.Masked().Addr()), shift: uint(32 - cfg.SubnetLen)}
	for _, a := range []struct {
		name string
		addr netip.Addr
		idx  *uint64
	}{{"SubnetMin", cfg.SubnetMin, &p.lo}, {"SubnetMax", cfg.SubnetMax, &p.hi}} {
		if !a.addr.Is4() || !cfg.Network.Contains(a.addr) || netip.PrefixFrom(a.addr, cfg.SubnetLen).Masked().Addr() != a.addr {
			return pool{}, fmt.Errorf("network config: %s %s is not a /%d subnet of %s (was the config validated by netconf.Parse?)", a.name, a.addr, cfg.SubnetLen, cfg.Network)
		}
		*a.idx = (u32(a.addr) - p.base) >> p.shift
	}
	if p.lo > p.hi {
		return pool{}, fmt.Errorf("network config: SubnetMin %s is above SubnetMax %s", cfg.SubnetMin, cfg.SubnetMax)
	}
	return p, nil
}

func (p pool) size() uint64 { return p.hi - p.lo + 1 }

func (p pool) subnet(i uint64) netip.Prefix {
	return netip.PrefixFrom(addr4(p.base+i<<p.shift), p.cfg.SubnetLen)
}

// misfit says why sn is not an allocatable subnet of the pool ("" if it is).
func (p pool) misfit(sn netip.Prefix) string {
	if why := p.misfitReservation(sn); why != "" {
		return why
	}
	if i := (u32(sn.Addr()) - p.base) >> p.shift; i < p.lo || i > p.hi {
		return fmt.Sprintf("outside SubnetMin..SubnetMax (%s..%s)", p.cfg.SubnetMin, p.cfg.SubnetMax)
	}
	return ""
}

// misfitReservation says why a reserved subnet cannot be used: reservations
// only need to be a subnet of Network of length SubnetLen.
func (p pool) misfitReservation(sn netip.Prefix) string {
	switch {
	case !sn.IsValid() || !sn.Addr().Is4():
		return "not an IPv4 subnet"
	case sn.Bits() != p.cfg.SubnetLen:
		return fmt.Sprintf("length /%d is not SubnetLen /%d", sn.Bits(), p.cfg.SubnetLen)
	case sn.Masked() != sn:
		return "host bits set"
	case !p.cfg.Network.Contains(sn.Addr()):
		return fmt.Sprintf("outside Network %s", p.cfg.Network)
	}
	return ""
}

// misfitLease says why one of our leases cannot be reused ("" if it can).
func (p pool) misfitLease(l Lease) string {
	if why := p.misfit(l.Subnet); why != "" {
		return why
	}
	c := p.cfg
	v6 := l.IPv6Subnet
	switch {
	case !v6.IsValid():
	case !c.EnableIPv6:
		return fmt.Sprintf("has IPv6 subnet %s but the config does not enable IPv6", v6)
	case v6.Bits() != c.IPv6SubnetLen || !c.IPv6Network.Contains(v6.Addr()) ||
		v6.Addr().Less(c.IPv6SubnetMin) || c.IPv6SubnetMax.Less(v6.Addr()):
		return fmt.Sprintf("IPv6 subnet %s is not a /%d between IPv6SubnetMin %s and IPv6SubnetMax %s", v6, c.IPv6SubnetLen, c.IPv6SubnetMin, c.IPv6SubnetMax)
	}
	return ""
}

// random picks uniformly among the free subnets of the pool. It works on
// the taken index intervals, so its cost does not depend on the pool size.
func (p pool) random(existing []Lease, r *rand.Rand) (netip.Prefix, uint64, error) {
	first := p.base + p.lo<<p.shift
	last := p.base + (p.hi+1)<<p.shift - 1
	type span struct{ a, b uint64 }
	var taken []span
	var leases, reservations int
	for _, l := range existing {
		sn := l.Subnet
		if !sn.IsValid() || !sn.Addr().Is4() {
			continue
		}
		sn = sn.Masked()
		lf := u32(sn.Addr())
		ll := lf + 1<<(32-sn.Bits()) - 1
		if ll < first || lf > last {
			continue
		}
		if l.Reservation() {
			reservations++
		} else {
			leases++
		}
		taken = append(taken, span{(max(lf, first) - p.base) >> p.shift, (min(ll, last) - p.base) >> p.shift})
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
		return netip.Prefix{}, 0, fmt.Errorf("all %d subnets of %s between %s and %s are leased (%d leases, %d reservations): %w",
			p.size(), p.cfg.Network, p.cfg.SubnetMin, p.cfg.SubnetMax, leases, reservations, ErrPoolExhausted)
	}
	var k uint64
	if r != nil {
		k = r.Uint64N(free)
	} else {
		k = rand.Uint64N(free)
	}
	// Walk the gaps between taken spans to the k-th free index.
	idx := p.lo
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

func u32(a netip.Addr) uint64 {
	b := a.As4()
	return uint64(binary.BigEndian.Uint32(b[:]))
}

func addr4(v uint64) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(v))
	return netip.AddrFrom4(b)
}
