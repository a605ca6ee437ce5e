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
// Sync replaces a whole table atomically (one nft -f transaction). nft
// lists a table the way Render writes it, so each Sync compares the
// listing with the rendering, indentation aside; any difference (rule
// deleted, reordered, added, table gone) makes it write the table again.
package nftables

import (
	"fmt"
	"strings"

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
func TableName(f rulespec.Family) (family, name string) {
	if f.IPv6 {
		return "ip6", TableIPv6
	}
	return "ip", TableIPv4
}

// Render returns the definition of f's table that spec s wants, in nft
// syntax, or "" when it wants no table. fullyRandom says whether nft can
// masquerade fully-random; it is used only if s asks for it.
func Render(f rulespec.Family, s rulespec.Spec, fullyRandom bool) string {
	keep := s.KeepSourceFor(f)
	if !f.Enabled() || !(s.Masq || keep || s.ForwardFor(f)) {
		return ""
	}
	fam, name := TableName(f)
	n, sub := f.Network.Masked().String(), f.Subnet.Masked().String()
	mark := "meta mark & " + kubeProxyMark + " == " + kubeProxyMark + " return"
	masq := "masquerade"
	if s.FullyRandom && fullyRandom {
		masq += " fully-random"
	}
	var b strings.Builder
	line := func(indent int, format string, args ...any) {
		b.WriteString(strings.Repeat("\t", indent))
		fmt.Fprintf(&b, format, args...)
		b.WriteByte('\n')
	}
	line(0, "table %s %s {", fam, name)
	line(1, "comment %q", "rules for "+name)
	if s.Masq {
		line(1, "chain %s {", ChainMasq)
		line(2, "comment %q", "chain to manage traffic masquerading by flannel")
		line(2, "type nat hook postrouting priority srcnat; policy accept;")
		line(2, "%s", mark)
		line(2, "%s saddr %s %s daddr %s return", fam, sub, fam, n)
		line(2, "%s saddr %s %s daddr %s return", fam, n, fam, sub)
		line(2, "%s saddr != %s %s daddr %s return", fam, n, fam, sub)
		line(2, "%s saddr %s %s daddr != %s %s", fam, n, fam, f.Multicast(), masq)
		line(2, "%s saddr != %s %s daddr %s %s", fam, n, fam, n, masq)
		line(1, "}")
	}
	if keep {
		line(1, "chain %s {", ChainKeepSource)
		line(2, "comment %q", "keep pod source addresses inside the cluster network (weft)")
		line(2, "type nat hook postrouting priority srcnat - 1; policy accept;")
		line(2, "%s", mark)
		line(2, "%s daddr %s return", fam, sub)
		line(2, "%s saddr %s %s daddr %s snat to %s saddr", fam, sub, fam, n, fam)
		line(1, "}")
	}
	if s.ForwardFor(f) {
		line(1, "chain %s {", ChainForward)
		line(2, "comment %q", "chain to accept flannel traffic")
		line(2, "type filter hook forward priority filter; policy accept;")
		line(2, "%s saddr %s accept", fam, n)
		line(2, "%s daddr %s accept", fam, n)
		line(1, "}")
	}
	line(0, "}")
	return b.String()
}

// replaceScript makes nft -f swap in a table in one transaction: create it
// if missing (so the delete cannot fail), delete it, define it anew.
func replaceScript(family, name, def string) string {
	return deleteScript(family, name) + def
}

// deleteScript removes a table whether or not it exists (nft before 1.0.8
// has no "destroy").
func deleteScript(family, name string) string {
	return fmt.Sprintf("add table %s %s\ndelete table %s %s\n", family, name, family, name)
}

// describeChange says how a table's listing moved away from the one
// recorded after weft wrote it.
func describeChange(was, now string) []string {
	count := map[string]int{}
	for _, l := range listingLines(now) {
		count[l]++
	}
	var out []string
	for _, l := range listingLines(was) {
		if count[l] > 0 {
			count[l]--
			continue
		}
		out = append(out, "missing: "+l)
	}
	for _, l := range listingLines(now) {
		if count[l] > 0 {
			out = append(out, "unexpected: "+l)
			count[l]--
		}
	}
	if len(out) == 0 {
		out = append(out, "rules out of order")
	}
	return out
}

func listingLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}
