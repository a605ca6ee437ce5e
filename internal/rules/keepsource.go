package rules

import (
	"fmt"
	"slices"

	"github.com/weftnet/weft/internal/rules/iptables"
	"github.com/weftnet/weft/internal/rules/nftables"
)

// Keep-source on demand. The keep-source chains are NAT chains, and the
// first NAT hook of a family in a network namespace turns on connection
// tracking for all forwarded traffic of that family there, which costs
// about 7 % of single-stream TCP throughput in host-gw (docs/benchmarks.md).
// Without NAT in the namespace nothing can rewrite a pod's source, so the
// chains would buy nothing. The Manager therefore installs them in a family
// only when that family already has NAT: weft's own masquerading
// (--ip-masq), someone else's NAT table or chain (Docker, kube-proxy), or
// weft's keep-source chains from before (sticky until Cleanup, so a Docker
// restart that deletes and re-adds its rule causes no flapping).

// NFPROTO_* values of the nftables families that can hold NAT chains, as
// the kernel reports a table's family.
const (
	nfprotoInet = 1
	nfprotoIPv4 = 2
	nfprotoIPv6 = 10
)

// nftChain is one nftables chain as the kernel lists it. iptables-nft's
// tables and chains are among them.
type nftChain struct {
	family uint8 // NFPROTO_* of its table
	table  string
	name   string
	typ    string // "nat", "filter" or "route" for a base chain; "" for a regular chain
	hook   int    // NF_INET_* hook of a base chain; -1 for a regular chain
}

// natFound is what a look at a network namespace found, per family
// (index 0 IPv4, 1 IPv6).
type natFound struct {
	// keepSource says weft's keep-source chain is installed: keepsrc in
	// weft's nftables table, or WEFT-KEEPSRC in an iptables-nft table.
	// (WEFT-KEEPSRC in iptables-legacy needs the legacy nat table, which
	// counts as foreign NAT anyway.)
	keepSource [2]bool
	// foreign names each NAT table or chain that is not weft's, for the
	// log. Weft's own chains in iptables' nat table do not make the table
	// weft's: the table's base chains hook NAT either way.
	foreign [2][]string
	// forward names each filter chain on the forward hook, weft's own
	// included (an agent restarting finds its rules from before and keeps
	// them): where there is one, something may drop forwarded pod
	// traffic, and weft's accept rules cost nothing more.
	forward [2][]string
}

// nfInetForward is NF_INET_FORWARD.
const nfInetForward = 2

// hookNames are the NF_INET_* hooks by number, as nft prints them.
var hookNames = []string{"prerouting", "input", "forward", "output", "postrouting", "ingress"}

func familyName(f uint8) string {
	switch f {
	case nfprotoInet:
		return "inet"
	case nfprotoIPv4:
		return "ip"
	case nfprotoIPv6:
		return "ip6"
	}
	return fmt.Sprintf("family %d", f)
}

// familyIndexes says which of weft's families an nftables family's NAT
// chains act on: inet tables act on both.
func familyIndexes(f uint8) []int {
	switch f {
	case nfprotoInet:
		return []int{0, 1}
	case nfprotoIPv4:
		return []int{0}
	case nfprotoIPv6:
		return []int{1}
	}
	return nil
}

// isWeftTable reports whether an nftables table is weft's (flannel's
// names, which weft owns in nftables mode).
func isWeftTable(family uint8, table string) bool {
	return (family == nfprotoIPv4 && table == nftables.TableIPv4) || (family == nfprotoIPv6 && table == nftables.TableIPv6)
}

// classifyNAT sorts what the kernel listed into weft's keep-source chains
// and other NAT. chains are all nftables chains; legacy holds the table
// names in /proc/net/ip_tables_names and ip6_tables_names (x_tables
// creates a table in a namespace when it is first used, and its nat table
// hooks NAT from then on, rules or not).
func classifyNAT(chains []nftChain, legacy [2][]string) natFound {
	var found natFound
	seen := map[string]bool{}
	add := func(fam int, what string) {
		if !seen[fmt.Sprint(fam, what)] {
			seen[fmt.Sprint(fam, what)] = true
			found.foreign[fam] = append(found.foreign[fam], what)
		}
	}
	for _, c := range chains {
		fams := familyIndexes(c.family)
		switch {
		case isWeftTable(c.family, c.table):
			if c.name == nftables.ChainKeepSource {
				for _, i := range fams {
					found.keepSource[i] = true
				}
			}
			continue
		case c.name == iptables.ChainKeepSource && c.typ == "":
			for _, i := range fams {
				found.keepSource[i] = true
			}
		}
		if c.typ == "filter" && c.hook == nfInetForward {
			what := fmt.Sprintf("nft table %s %s chain %s (type filter hook forward)", familyName(c.family), c.table, c.name)
			if c.table == "filter" && c.name == "FORWARD" && (c.family == nfprotoIPv4 || c.family == nfprotoIPv6) {
				what = fmt.Sprintf("iptables-nft FORWARD chain (nft table %s filter)", familyName(c.family))
			}
			for _, i := range fams {
				found.forward[i] = append(found.forward[i], what)
			}
			continue
		}
		if c.typ != "nat" {
			continue
		}
		var what string
		if c.table == "nat" && (c.family == nfprotoIPv4 || c.family == nfprotoIPv6) {
			// iptables-nft keeps iptables' nat table under this name.
			prog := "iptables"
			if c.family == nfprotoIPv6 {
				prog = "ip6tables"
			}
			what = fmt.Sprintf("%s-nft nat table (nft table %s nat)", prog, familyName(c.family))
		} else {
			hook := fmt.Sprintf("hook %d", c.hook)
			if c.hook >= 0 && c.hook < len(hookNames) {
				hook = "hook " + hookNames[c.hook]
			}
			what = fmt.Sprintf("nft table %s %s chain %s (type nat %s)", familyName(c.family), c.table, c.name, hook)
		}
		for _, i := range fams {
			add(i, what)
		}
	}
	for i, prog := range []string{"iptables", "ip6tables"} {
		if slices.Contains(legacy[i], "nat") {
			add(i, prog+"-legacy nat table")
		}
		if slices.Contains(legacy[i], "filter") {
			// x_tables' filter table hooks forward as soon as it exists.
			found.forward[i] = append(found.forward[i], prog+"-legacy filter table")
		}
	}
	return found
}

// keepState is what the Manager last decided for one family's
// keep-source chains.
type keepState int8

const (
	keepUndecided keepState = iota // no decision yet, or not asked for
	keepDeferred                   // asked for, not installed: no NAT here
	keepOn                         // installed, and stays until Cleanup
)

// keepDecision is the decision for one family and why, for the log.
type keepDecision struct {
	on     bool
	reason string
	found  []string // the foreign NAT that decided it, if that was the reason
}

// decideKeepSource decides whether family fam of spec gets its
// keep-source chains now. installed says the Manager installed them
// before (its own memory); found is a look at the namespace, which the
// caller may skip (zero) when masquerading or installed decide anyway;
// scanErr is the failure of that look, which errs on the side of keeping
// sources.
func decideKeepSource(spec Spec, fam int, installed bool, found natFound, scanErr error) keepDecision {
	f := spec.Families()[fam]
	switch {
	case !spec.KeepSource || !f.Enabled():
		return keepDecision{reason: "not asked for"}
	case spec.Masq:
		return keepDecision{on: true, reason: "--ip-masq installs NAT chains anyway"}
	case installed || found.keepSource[fam]:
		return keepDecision{on: true, reason: "already installed; kept until weft cleanup"}
	case scanErr != nil:
		return keepDecision{on: true, reason: "cannot tell whether NAT is in use here, so keeping pod sources safe: " + scanErr.Error()}
	case len(found.foreign[fam]) > 0:
		return keepDecision{on: true, reason: "NAT is in use here, so connection tracking is on already", found: found.foreign[fam]}
	}
	return keepDecision{reason: "no NAT in this network namespace"}
}

// needsScan reports whether deciding family fam requires a look at the
// namespace: only while the chains are asked for, not installed, and not
// implied by --ip-masq.
func needsScan(spec Spec, fam int, installed bool) bool {
	return spec.KeepSource && spec.Families()[fam].Enabled() && !spec.Masq && !installed
}

// decideForward decides whether family fam of spec gets its forward
// accept rules now: where asked for, once any filter chain hooks forward
// (someone's FORWARD policy or rules could drop pod traffic, and the hook
// is there anyway), and for good once installed. A failed look installs
// them, as flannel always does.
func decideForward(spec Spec, fam int, installed bool, found natFound, scanErr error) keepDecision {
	f := spec.Families()[fam]
	switch {
	case !spec.Forward || !f.Enabled():
		return keepDecision{reason: "not asked for"}
	case installed:
		return keepDecision{on: true, reason: "already installed; kept until weft cleanup"}
	case scanErr != nil:
		return keepDecision{on: true, reason: "cannot tell whether anything filters forwarded traffic here: " + scanErr.Error()}
	case len(found.forward[fam]) > 0:
		return keepDecision{on: true, reason: "a filter chain on the forward hook may drop pod traffic", found: found.forward[fam]}
	}
	return keepDecision{reason: "nothing filters forwarded traffic in this network namespace"}
}

// needsForwardScan is needsScan for the forward rules.
func needsForwardScan(spec Spec, fam int, installed bool) bool {
	return spec.Forward && spec.Families()[fam].Enabled() && !installed
}
