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
	// forward hook (--iptables-forward-rules). Like KeepSource it is a
	// request: the accept rules matter only where something in the forward
	// hook could drop (Docker's FORWARD policy DROP, a firewall), and a
	// forward hook of weft's own would put every forwarded packet through
	// netfilter where nothing did before. rules.Manager defers them
	// (ForwardDeferred) in a family with no forward filter chain at all.
	Forward bool
	// KeepSource asks that no other NAT rule on the host (Docker's
	// `-s <subnet> ! -o docker0 -j MASQUERADE`) masquerade traffic from
	// local pods to pods on other hosts. It has no flanneld flag and does
	// not depend on Masq; the agent always asks.
	//
	// The keep-source chains are NAT chains, and the first NAT hook in a
	// network namespace turns on connection tracking for all forwarded
	// traffic there (about 7 % of single-stream throughput). Where no NAT
	// exists there is nothing to keep the source from, so rules.Manager
	// treats KeepSource as a request and defers the chains of a family
	// (KeepSourceDeferred) until --ip-masq, NAT of someone else's, or its
	// own earlier install makes them useful at no extra cost.
	KeepSource bool
	// KeepSourceDeferred leaves out the keep-source chains of a family
	// ([0] IPv4, [1] IPv6, as Family.Index) although KeepSource asks for
	// them. rules.Manager sets it; the zero value installs them wherever
	// KeepSource asks. Renderers read both through KeepSourceFor.
	KeepSourceDeferred [2]bool
	// ForwardDeferred leaves out a family's forward rules although
	// Forward asks for them; rules.Manager sets it. Renderers read both
	// through ForwardFor.
	ForwardDeferred [2]bool
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

// Index is the family's position in Families and in per-family arrays
// such as KeepSourceDeferred: 0 for IPv4, 1 for IPv6.
func (f Family) Index() int {
	if f.IPv6 {
		return 1
	}
	return 0
}

// KeepSourceFor reports whether family f's keep-source chain is to be
// installed now: asked for and not deferred.
func (s Spec) KeepSourceFor(f Family) bool {
	return s.KeepSource && !s.KeepSourceDeferred[f.Index()]
}

// ForwardFor reports whether family f's forward rules are to be installed
// now: asked for and not deferred.
func (s Spec) ForwardFor(f Family) bool {
	return s.Forward && !s.ForwardDeferred[f.Index()]
}

// AnyNAT reports whether the spec wants NAT rules in any configured
// family.
func (s Spec) AnyNAT() bool {
	for _, f := range s.Families() {
		if f.Enabled() && (s.Masq || s.KeepSourceFor(f)) {
			return true
		}
	}
	return false
}

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
