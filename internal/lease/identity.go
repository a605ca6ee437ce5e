package lease

import (
	"errors"
	"fmt"
	"net/netip"
)

// ErrPublicIPInUse is wrapped by PickSubnet when another live host
// publishes this host's PublicIP under another host ID.
var ErrPublicIPInUse = errors.New("another live host uses this PublicIP")

// ErrSubnetMisfit is wrapped by PickSubnet when the subnet this host holds
// (its live lease, or the subnet.env its pods were started with) does not
// fit the network config any more.
var ErrSubnetMisfit = errors.New("this host's subnet does not fit the network config")

// PublicIPInUseError names the live lease of the other host.
type PublicIPInUseError struct {
	PublicIP netip.Addr
	HostID   string // ours
	Other    Lease  // its lease; Other.Attrs.HostID is its ID
}

func (e *PublicIPInUseError) Error() string {
	return fmt.Sprintf("two hosts use public IP %s: the live lease %s carries host ID %s, this host is %s",
		e.PublicIP, e.Other.Subnet, e.Other.Attrs.HostID, e.HostID)
}

func (e *PublicIPInUseError) Unwrap() error { return ErrPublicIPInUse }

// SubnetMisfitError says which subnet no longer fits, where it was found
// and why.
type SubnetMisfitError struct {
	Subnet netip.Prefix
	// Source is where the subnet comes from: "subnet.env" or "lease".
	Source    string
	Why       string
	Network   netip.Prefix // the config's
	SubnetLen int
}

func (e *SubnetMisfitError) Error() string {
	return fmt.Sprintf("this host's subnet %s (from its %s) does not fit the network config (Network %s, SubnetLen %d): %s",
		e.Subnet, e.Source, e.Network, e.SubnetLen, e.Why)
}

func (e *SubnetMisfitError) Unwrap() error { return ErrSubnetMisfit }

// isOurs reports whether l is a lease this host may take as its own: it
// carries our PublicIP and either no host ID (flannel, older weft, our own
// lease from before an upgrade: taken by PublicIP alone, as flannel does)
// or ours. A reservation is an administrator's pin to the address, so it is
// ours whatever ID a host wrote into it.
func isOurs(in PickInput, l Lease) bool {
	if !in.PublicIP.IsValid() || l.Attrs.PublicIP.Unmap() != in.PublicIP.Unmap() {
		return false
	}
	return l.Reservation() || !foreign(in, l)
}

// foreign reports whether l carries another host's ID.
func foreign(in PickInput, l Lease) bool {
	return in.HostID != "" && l.Attrs.HostID != "" && l.Attrs.HostID != in.HostID && !adopted(in, l)
}

// adopted reports whether l, though it carries another ID, is this host's
// own from before its state directory was wiped (PickInput.NewHostID).
func adopted(in PickInput, l Lease) bool {
	return in.NewHostID && in.Previous.IsValid() && l.Subnet == in.Previous.Masked() &&
		l.Attrs.HostID != "" && l.Attrs.HostID != in.HostID
}

// publicIPInUse fails when a live lease (one with a TTL: etcd deletes it
// when it expires) carries our PublicIP and another host's ID: two hosts
// share one address, and taking the lease over would cut the other off.
func publicIPInUse(in PickInput) error {
	if !in.PublicIP.IsValid() {
		return nil
	}
	for _, l := range in.Existing {
		if !l.Reservation() && l.Attrs.PublicIP.Unmap() == in.PublicIP.Unmap() && foreign(in, l) {
			return &PublicIPInUseError{PublicIP: in.PublicIP.Unmap(), HostID: in.HostID, Other: l}
		}
	}
	return nil
}

// keepLiveSubnet fails when the config no longer fits the subnet this host
// holds: the one in subnet.env (pods on cni0 use it), or, when no lease of
// ours fits to be reused, a live lease of ours. flannel deletes such a
// lease and takes a random subnet, which cuts the running pods off for
// good after a config change that may be a mistake; weft keeps the lease
// and waits for the config to change back or for the operator to renumber
// the host on purpose. reused is the fitting lease reuseOwn chose, if any.
func keepLiveSubnet(in PickInput, p pool, reused *Lease) error {
	misfit := func(sn netip.Prefix, source, why string) error {
		return &SubnetMisfitError{Subnet: sn, Source: source, Why: why, Network: in.Config.Network, SubnetLen: in.Config.SubnetLen}
	}
	if prev := in.Previous; prev.IsValid() {
		if why := p.misfit(prev.Masked()); why != "" {
			return misfit(prev.Masked(), "subnet.env", why)
		}
	}
	if reused != nil {
		return nil
	}
	for _, l := range in.Existing {
		if l.Reservation() || !isOurs(in, l) {
			continue
		}
		if why := p.misfitLease(l); why != "" {
			return misfit(l.Subnet, "lease", why)
		}
	}
	return nil
}

// reservationWarning says, when the host is moved to a reservation away
// from the subnet it holds, what that costs; "" when it is not moved.
// flannel moves the host too (a reservation is an administrator's
// decision), but silently.
func reservationWarning(in PickInput, r Lease) string {
	from := ""
	if prev := in.Previous; prev.IsValid() && prev.Masked() != r.Subnet {
		from = fmt.Sprintf("subnet %s (from subnet.env)", prev.Masked())
	} else {
		for _, l := range in.Existing {
			if !l.Reservation() && isOurs(in, l) && l.Subnet != r.Subnet {
				from = fmt.Sprintf("its live lease %s", l.Subnet)
				break
			}
		}
	}
	other := ""
	if foreign(in, r) {
		other = fmt.Sprintf("; the reservation carries host ID %s of another host: if that host still runs with public IP %s, both now use %s (set --public-ip or --iface on one of them)",
			r.Attrs.HostID, in.PublicIP, r.Subnet)
	}
	if from == "" {
		if other != "" {
			return "reservation " + r.Subnet.String() + other[1:]
		}
		return ""
	}
	return fmt.Sprintf("this host moves from %s to the reservation %s for public IP %s, as flannel does: pods started on the old subnet lose their network until they are restarted%s",
		from, r.Subnet, in.PublicIP, other)
}
