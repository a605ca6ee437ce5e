package lease

import (
	"fmt"
	"net/netip"
)

// pickIPv6 chooses pick's IPv6 subnet once its IPv4 one is decided, in
// the IPv4 order:
//
//  1. the reused lease's IPv6 subnet, if it fits the config;
//  2. PreviousIPv6 (FLANNEL_IPV6_SUBNET of subnet.env), if it fits and no
//     other lease's IPv6 subnet overlaps it;
//  3. a random free IPv6 subnet between IPv6SubnetMin and IPv6SubnetMax.
//
// The IPv6 subnet of the reused lease and of stale leases does not count
// as taken: they are ours, and replaced in the same write.
//
// A reservation is an administrator's key and keeps its name, so it keeps
// its IPv6 subnet, or its lack of one: a reservation without one (or with
// one that does not fit) gives the host no IPv6 subnet, with a warning
// saying how to add it. Without IPv6 in the config a lease loses its IPv6
// subnet (the key becomes IPv4-only) and keeps its IPv4 one.
func pickIPv6(in PickInput, pick *Pick) error {
	ex := pick.Existing
	if ex != nil && ex.Reservation() {
		pick.IPv6Subnet = ex.IPv6Subnet
		if !in.Config.EnableIPv6 {
			return nil
		}
		p6, err := newPool6(in.Config)
		if err != nil {
			return fmt.Errorf("pick an IPv6 subnet: %w", err)
		}
		switch why := p6.misfitReservation(ex.IPv6Subnet); {
		case !ex.IPv6Subnet.IsValid():
			pick.Warning = joinWarning(pick.Warning, fmt.Sprintf("reservation %s has no IPv6 subnet, so this host gets none: add one to the reservation's key (%s)",
				ex.Subnet, KeyName(ex.Subnet, netip.PrefixFrom(in.Config.IPv6SubnetMin, in.Config.IPv6SubnetLen))))
		case why != "":
			pick.Warning = joinWarning(pick.Warning, fmt.Sprintf("reservation %s has IPv6 subnet %s, which is not used: %s", ex.Subnet, ex.IPv6Subnet, why))
			pick.IPv6Subnet = netip.Prefix{}
		}
		return nil
	}
	if !in.Config.EnableIPv6 {
		if ex != nil && ex.IPv6Subnet.IsValid() {
			pick.Reason += fmt.Sprintf("; IPv6 subnet %s dropped: the config does not enable IPv6", ex.IPv6Subnet)
		}
		return nil
	}
	p6, err := newPool6(in.Config)
	if err != nil {
		return fmt.Errorf("pick an IPv6 subnet: %w", err)
	}
	if ex != nil && ex.IPv6Subnet.IsValid() {
		why := p6.misfit(ex.IPv6Subnet)
		if why == "" {
			pick.IPv6Subnet = ex.IPv6Subnet
			return nil
		}
		pick.Reason += fmt.Sprintf("; IPv6 subnet %s of the lease not kept: %s", ex.IPv6Subnet, why)
	}
	others := in.Existing
	if ex != nil || len(pick.Stale) > 0 {
		others = make([]Lease, 0, len(in.Existing))
		for _, l := range in.Existing {
			if !mine(l, ex, pick.Stale) {
				others = append(others, l)
			}
		}
	}
	if prev := in.PreviousIPv6; prev.IsValid() {
		prev = prev.Masked()
		if why := p6.misfit(prev); why != "" {
			pick.Reason += fmt.Sprintf("; previous IPv6 subnet %s from subnet.env not reused: %s", prev, why)
		} else if other := p6.overlapping(others, prev); other != nil {
			pick.Reason += fmt.Sprintf("; previous IPv6 subnet %s from subnet.env not reused: taken by %s", prev, other)
		} else {
			pick.IPv6Subnet = prev
			pick.Reason += fmt.Sprintf("; previous IPv6 subnet %s from subnet.env is free", prev)
			return nil
		}
	}
	sn, free, err := p6.random(others, in.Rand)
	if err != nil {
		return fmt.Errorf("pick an IPv6 subnet for %s: %w", in.PublicIP, err)
	}
	pick.IPv6Subnet = sn
	pick.Reason += fmt.Sprintf("; random free IPv6 subnet (%d of %d in the pool are free)", free, p6.size())
	return nil
}

// mine reports whether l is the reused lease or one of the stale ones.
func mine(l Lease, reused *Lease, stale []Lease) bool {
	same := func(x Lease) bool { return x.Subnet == l.Subnet && x.IPv6Subnet == l.IPv6Subnet }
	if reused != nil && same(*reused) {
		return true
	}
	for _, s := range stale {
		if same(s) {
			return true
		}
	}
	return false
}

func joinWarning(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}
