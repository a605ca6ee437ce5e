// Package nftables keeps weft's traffic rules in nftables, in flannel's
// tables (ip flannel-ipv4, ip6 flannel-ipv6) and chains (postrtg, forward),
// plus a keepsrc chain of weft's own:
//
//	table ip flannel-ipv4 {
//		chain postrtg {   # nat postrouting, priority srcnat (100)   (Masq)
//			meta mark & 0x00004000 == 0x00004000 return
//			ip saddr S ip daddr N return
//			ip saddr N ip daddr S return
//			ip saddr != N ip daddr S return
//			ip saddr N ip daddr != 224.0.0.0/4 masquerade fully-random
//			ip saddr != N ip daddr N masquerade fully-random
//		}
//		chain keepsrc {   # nat postrouting, priority srcnat - 1 (99) (KeepSourceFor)
//			meta mark & 0x00004000 == 0x00004000 return
//			ip daddr S return
//			ip saddr S ip daddr N snat to ip saddr
//		}
//		chain forward {   # filter forward, priority filter           (Forward)
//			ip saddr N accept
//			ip daddr N accept
//		}
//	}
//
// Two of flannel's nftables quirks are fixed: its fourth postrtg rule reads
// "ip saddr != S ip daddr N return", which leaves host → remote pod traffic
// unmasqueraded unlike its iptables rules, and it matches the kube-proxy
// mark exactly rather than as a bit.
//
// keepsrc is why nftables mode needs more than a return or an accept to
// beat Docker. Every NAT chain of the postrouting hook, nftables or
// iptables (legacy or nft), sits in one list the kernel walks in priority
// order for the first packet of a connection until one of them binds a
// NAT mapping; an accept only ends its own chain, and the walk goes on to
// the next table, where Docker's MASQUERADE binds. "snat to ip saddr" binds
// the identity mapping, so the walk stops there and the source stays the
// pod's. At priority srcnat - 1, keepsrc runs before every iptables nat
// table (priority 100) whenever it was loaded, and Docker re-adding its
// rule changes nothing. rules.Manager defers keepsrc in a family that has
// no NAT yet (see rulespec.Spec.KeepSource), since a nat chain turns on
// connection tracking for all forwarded traffic.
//
// Sync writes a table through knftables (one nft -f transaction that
// deletes and redefines it) and reads it back over netlink with
// google/nftables, which only dumps and so neither creates tables nor
// causes notifications. The chains and rule expressions read right after
// weft's write are the reference for later Syncs: any difference (rule
// deleted, reordered, added or altered, chain or table gone) makes it
// write the table again.
package nftables

import (
	"sigs.k8s.io/knftables"

	"github.com/weftnet/weft/internal/rules/rulespec"
)

// Table and chain names; all but ChainKeepSource are flannel's.
const (
	TableIPv4       = "flannel-ipv4"
	TableIPv6       = "flannel-ipv6"
	ChainMasq       = "postrtg"
	ChainForward    = "forward"
	ChainKeepSource = "keepsrc"
)

// kubeProxyMark is kube-proxy's masquerade mark bit.
const kubeProxyMark = "0x00004000"

// TableName returns the nft family and table name of f, e.g. "ip", "flannel-ipv4".
func TableName(f rulespec.Family) (family knftables.Family, name string) {
	if f.IPv6 {
		return knftables.IPv6Family, TableIPv6
	}
	return knftables.IPv4Family, TableIPv4
}

// Want is the table one family needs: the table, then its chains in the
// order they are created, each with its rules in order.
type Want struct {
	Family knftables.Family
	Name   string
	Table  *knftables.Table
	Chains []WantChain
}

// WantChain is one chain of a Want and its rules.
type WantChain struct {
	Chain *knftables.Chain
	Rules []*knftables.Rule
}

// Desired returns the table that spec s wants for family f, or ok false
// when it wants none. fullyRandom says whether nft can masquerade
// fully-random; it is used only if s asks for it.
func Desired(f rulespec.Family, s rulespec.Spec, fullyRandom bool) (w Want, ok bool) {
	keep := s.KeepSourceFor(f)
	if !f.Enabled() || !(s.Masq || keep || s.ForwardFor(f)) {
		return Want{}, false
	}
	fam, name := TableName(f)
	n, sub := f.Network.Masked().String(), f.Subnet.Masked().String()
	ip := string(fam) // the address match keyword is the family's name: ip, ip6
	mark := knftables.Concat("meta mark &", kubeProxyMark, "==", kubeProxyMark, "return")
	masq := "masquerade"
	if s.FullyRandom && fullyRandom {
		masq += " fully-random"
	}
	w.Family, w.Name = fam, name
	w.Table = &knftables.Table{Comment: knftables.PtrTo("rules for " + name)}
	chain := func(cname, comment string, typ knftables.BaseChainType, hook knftables.BaseChainHook,
		prio knftables.BaseChainPriority, rules ...string) {
		c := WantChain{Chain: &knftables.Chain{
			Name: cname, Comment: knftables.PtrTo(comment),
			Type: knftables.PtrTo(typ), Hook: knftables.PtrTo(hook), Priority: knftables.PtrTo(prio),
		}}
		for _, r := range rules {
			c.Rules = append(c.Rules, &knftables.Rule{Chain: cname, Rule: r})
		}
		w.Chains = append(w.Chains, c)
	}
	if s.Masq {
		chain(ChainMasq, "chain to manage traffic masquerading by flannel",
			knftables.NATType, knftables.PostroutingHook, knftables.SNATPriority,
			mark,
			knftables.Concat(ip, "saddr", sub, ip, "daddr", n, "return"),
			knftables.Concat(ip, "saddr", n, ip, "daddr", sub, "return"),
			knftables.Concat(ip, "saddr !=", n, ip, "daddr", sub, "return"),
			knftables.Concat(ip, "saddr", n, ip, "daddr !=", f.Multicast().String(), masq),
			knftables.Concat(ip, "saddr !=", n, ip, "daddr", n, masq),
		)
	}
	if keep {
		chain(ChainKeepSource, "keep pod source addresses inside the cluster network (weft)",
			knftables.NATType, knftables.PostroutingHook, knftables.SNATPriority+"-1",
			mark,
			knftables.Concat(ip, "daddr", sub, "return"),
			knftables.Concat(ip, "saddr", sub, ip, "daddr", n, "snat to", ip, "saddr"),
		)
	}
	if s.ForwardFor(f) {
		chain(ChainForward, "chain to accept flannel traffic",
			knftables.FilterType, knftables.ForwardHook, knftables.FilterPriority,
			knftables.Concat(ip, "saddr", n, "accept"),
			knftables.Concat(ip, "daddr", n, "accept"),
		)
	}
	return w, true
}

// replace adds to tx (of w's table's Interface) what swaps in w's table
// in one transaction: create the table if missing (so the delete cannot
// fail; nft before 1.0.8 has no "destroy"), delete it, define it anew.
func replace(tx *knftables.Transaction, w Want) {
	remove(tx)
	tx.Add(w.Table)
	for _, c := range w.Chains {
		tx.Add(c.Chain)
	}
	for _, c := range w.Chains {
		for _, r := range c.Rules {
			tx.Add(r)
		}
	}
}

// remove adds to tx what deletes its table whether or not it exists.
func remove(tx *knftables.Transaction) {
	tx.Add(&knftables.Table{})
	tx.Delete(&knftables.Table{})
}
