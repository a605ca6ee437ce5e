// Package rulespec is the desired state of weft's traffic rules, shared by
// the iptables and nftables renderers: which cluster network and pod subnet
// to write rules for, per address family, and which rule groups are on.
// It is pure; the renderers turn a Spec into their own syntax.
package rulespec

import (
	"errors"
	"fmt"
	"net/netip"
)

// Spec is the complete set of traffic rules one host wants. A zero Network
// (or IPv6Network) means no rules for that family; rules a previous Spec
// installed for it are removed. Host bits in the prefixes are ignored.
type Spec struct {
	// Network and Subnet are the IPv4 cluster network and this host's pod
	// subnet inside it.
	Network, Subnet netip.Prefix
	// IPv6Network and IPv6Subnet are the same for IPv6.
	IPv6Network, IPv6Subnet netip.Prefix

	// Masq masquerades pod traffic leaving the cluster network and host
	// traffic to remote pods (flanneld --ip-masq).
	Masq bool
	// FullyRandom asks for fully-random source ports when masquerading
	// (unless --ip-masq-fully-random-disable); it is dropped, with a log
	// line, where the tools cannot do it.
	FullyRandom bool
	// Forward accepts traffic from and to the cluster network in the
	// forward hook (--iptables-forward-rules).
	Forward bool
	// KeepSource stops every other NAT rule on the host (Docker's
	// `-s <subnet> ! -o docker0 -j MASQUERADE`) from masquerading traffic
	// from local pods to pods on other hosts. It has no flanneld flag and
	// does not depend on Masq; the agent sets it always.
	KeepSource bool
}

// Family is one address family's part of a Spec.
type Family struct {
	IPv6            bool
	Network, Subnet netip.Prefix
}

// Name is "ipv4" or "ipv6", as flannel names its nftables tables.
func (f Family) Name() string {
	if f.IPv6 {
		return "ipv6"
	}
	return "ipv4"
}

// Multicast is the destination range masquerading leaves alone, as
// flannel's rules do.
func (f Family) Multicast() netip.Prefix {
	if f.IPv6 {
		return netip.MustParsePrefix("ff00::/8")
	}
	return netip.MustParsePrefix("224.0.0.0/4")
}

// Families returns both families in order (IPv4, IPv6) and whether each is
// configured; an unconfigured family gets no rules.
func (s Spec) Families() [2]Family {
	return [2]Family{
		{IPv6: false, Network: s.Network, Subnet: s.Subnet},
		{IPv6: true, Network: s.IPv6Network, Subnet: s.IPv6Subnet},
	}
}

// Enabled reports whether the family has a network to write rules for.
func (f Family) Enabled() bool { return f.Network.IsValid() }

// AnyNAT reports whether the spec wants NAT rules at all.
func (s Spec) AnyNAT() bool { return s.Masq || s.KeepSource }

// Normalized returns the spec with host bits cleared from every prefix, so
// that subnet.env's "10.244.1.1/24" and the lease's "10.244.1.0/24" give the
// same rules.
func (s Spec) Normalized() Spec {
	s.Network, s.Subnet = s.Network.Masked(), s.Subnet.Masked()
	s.IPv6Network, s.IPv6Subnet = s.IPv6Network.Masked(), s.IPv6Subnet.Masked()
	return s
}

// Validate checks that each configured family has a subnet inside its
// network, of the right address family.
func (s Spec) Validate() error {
	var errs []error
	for _, f := range s.Families() {
		if !f.Network.IsValid() {
			if f.Subnet.IsValid() {
				errs = append(errs, fmt.Errorf("%s subnet %s given without a network", f.Name(), f.Subnet))
			}
			continue
		}
		if !f.Subnet.IsValid() {
			errs = append(errs, fmt.Errorf("%s network %s given without a subnet", f.Name(), f.Network))
			continue
		}
		if f.Network.Addr().Is6() != f.IPv6 || f.Subnet.Addr().Is6() != f.IPv6 {
			errs = append(errs, fmt.Errorf("%s rules: network %s and subnet %s must both be %s", f.Name(), f.Network, f.Subnet, f.Name()))
			continue
		}
		if f.Subnet.Bits() < f.Network.Bits() || !f.Network.Contains(f.Subnet.Addr()) {
			errs = append(errs, fmt.Errorf("%s rules: subnet %s is not inside network %s", f.Name(), f.Subnet, f.Network))
		}
	}
	return errors.Join(errs...)
}
