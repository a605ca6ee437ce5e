package lease

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"

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
	// PreviousIPv6 is FLANNEL_IPV6_SUBNET from subnet.env; zero if none.
	// It is reused, as Previous is, when the config enables IPv6.
	PreviousIPv6 netip.Prefix
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
	// IPv6Subnet is the IPv6 subnet chosen when the config enables IPv6
	// (zero otherwise). When Existing is set and its IPv6Subnet differs,
	// the lease changes its key (flannel's key names both subnets): the
	// store replaces the old key with the new one in one transaction. A
	// reservation's key is never changed: its IPv6Subnet is kept as is.
	IPv6Subnet netip.Prefix
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
// free. With IPv6 enabled, the IPv6 subnet is chosen after the IPv4 one
// (pickIPv6).
func PickSubnet(in PickInput) (Pick, error) {
	pick, err := pickIPv4(in)
	if err != nil {
		return Pick{}, err
	}
	if err := pickIPv6(in, &pick); err != nil {
		return Pick{}, err
	}
	return pick, nil
}

func pickIPv4(in PickInput) (Pick, error) {
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
		} else if other := p.overlapping(in.Existing, prev); other != nil {
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

// misfitLease says why one of our leases cannot be reused ("" if it can).
// Only its IPv4 subnet counts: an IPv6 subnet that no longer fits (or that
// a config without IPv6 does not want) is replaced by pickIPv6 while the
// IPv4 subnet, which the running pods use, is kept.
func (p pool) misfitLease(l Lease) string { return p.misfit(l.Subnet) }
