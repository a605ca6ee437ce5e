package iptables

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/weftnet/weft/internal/rules/rulespec"
)

// Tables are the tables weft writes to, in the order scripts list them.
var Tables = []string{"nat", "filter"}

// Want is the desired state of weft's rules in one family's tables. A
// table without an entry wants none of weft's rules.
type Want map[string]TableWant

// TableWant is weft's part of one table.
type TableWant struct {
	// Own are chains weft owns wholly, each with exactly these rules in
	// this order. Own-named chains not listed here are removed.
	Own []Chain
	// Shared are weft's rules in built-in chains it shares with others.
	// Rules of weft's (see isOwnRule) not listed here are removed.
	Shared []Chain
	// First lists the shared chains whose weft rules must be the chain's
	// first rules, in order; in the others each must appear exactly once,
	// anywhere.
	First map[string]bool
}

// Chain is a chain name and its rule specs.
type Chain struct {
	Name  string
	Rules []string
}

// Desired renders the rules Spec s wants for family f. fullyRandom says
// whether the tools support --random-fully; it is used only if s asks for
// it. A disabled family wants nothing.
func Desired(f rulespec.Family, s rulespec.Spec, fullyRandom bool) Want {
	w := Want{}
	if !f.Enabled() {
		return w
	}
	n, sub := f.Network.Masked().String(), f.Subnet.Masked().String()
	masq := func(matches string) string { return commented(matches, CommentMasq) }
	fwd := func(matches string) string { return commented(matches, CommentForward) }
	mark := "-m mark --mark " + KubeProxyMark
	masquerade := "-j MASQUERADE"
	if s.FullyRandom && fullyRandom {
		masquerade += " --random-fully"
	}

	var nat TableWant
	var post []string
	if s.Masq {
		nat.Own = append(nat.Own, Chain{ChainMasq, []string{
			masq(mark) + " -j RETURN",
			masq("-s "+sub+" -d "+n) + " -j RETURN",
			masq("-s "+n+" -d "+sub) + " -j RETURN",
			masq("! -s "+n+" -d "+sub) + " -j RETURN",
			masq("-s "+n+" ! -d "+f.Multicast().String()) + " " + masquerade,
			masq("! -s "+n+" -d "+n) + " " + masquerade,
		}})
		post = append(post, masq("")+" -j "+ChainMasq)
	}
	if s.KeepSourceFor(f) {
		nat.Own = append(nat.Own, Chain{ChainKeepSource, []string{
			masq(mark) + " -j RETURN",
			masq("-d "+sub) + " -j RETURN",
			masq("-s "+sub+" -d "+n) + " -j ACCEPT",
		}})
		post = append(post, masq("")+" -j "+ChainKeepSource)
	}
	if len(post) > 0 {
		nat.Shared = []Chain{{"POSTROUTING", post}}
		nat.First = map[string]bool{"POSTROUTING": true}
		w["nat"] = nat
	}
	if s.ForwardFor(f) {
		w["filter"] = TableWant{
			Own: []Chain{{ChainForward, []string{
				fwd("-s "+n) + " -j ACCEPT",
				fwd("-d "+n) + " -j ACCEPT",
			}}},
			Shared: []Chain{{"FORWARD", []string{fwd("") + " -j " + ChainForward}}},
		}
	}
	return w
}

// Plan is what Sync must do to one family's tables.
type Plan struct {
	// Problems says, one line each, how the installed rules differ from
	// the desired ones, e.g. "nat/POSTROUTING: weft's rules are at
	// positions 2,3, want 1,2".
	Problems []string
	// Script is the iptables-restore --noflush input that fixes them, or
	// "" when nothing differs.
	Script string
}

// MakePlan compares the installed rules with the desired ones. A chain of
// weft's that differs in any way is rewritten whole (declaring it in the
// script flushes it); in a shared chain all of weft's rules are deleted
// and put back in place. Both happen inside one transaction per table, so
// no packet ever sees a half-written set.
func MakePlan(have Dump, want Want) Plan {
	var p Plan
	var script strings.Builder
	for _, table := range Tables {
		tw := want[table]
		ht := have[table]
		if ht == nil {
			ht = &Table{Name: table, Chains: map[string][]string{}, Builtin: map[string]bool{}}
		}
		var declare, fix, body, tail []string

		// Shared chains: delete every rule of weft's in a chain that is
		// not exactly right, then put the wanted ones back.
		shared := map[string][]string{}
		for _, c := range tw.Shared {
			shared[c.Name] = c.Rules
		}
		for _, name := range sharedChainNames(ht, tw) {
			rules := ht.Chains[name]
			problems := checkShared(table, name, rules, shared[name], tw.First[name])
			if len(problems) == 0 {
				continue
			}
			p.Problems = append(p.Problems, problems...)
			for _, r := range rules {
				if isOwnRule(r) {
					fix = append(fix, "-D "+name+" "+r)
				}
			}
			for i, r := range shared[name] {
				if tw.First[name] {
					fix = append(fix, "-I "+name+" "+strconv.Itoa(i+1)+" "+r)
				} else {
					fix = append(fix, "-A "+name+" "+r)
				}
			}
		}

		// Chains weft owns: rewrite any that differ, drop unwanted ones.
		wanted := map[string]bool{}
		for _, c := range tw.Own {
			wanted[c.Name] = true
			rules, exists := ht.Chains[c.Name]
			problems := checkOwn(table, c.Name, rules, exists, c.Rules)
			if len(problems) == 0 {
				continue
			}
			p.Problems = append(p.Problems, problems...)
			declare = append(declare, ":"+c.Name+" - [0:0]")
			for _, r := range c.Rules {
				body = append(body, "-A "+c.Name+" "+r)
			}
		}
		for _, name := range sortedChains(ht) {
			if ownChains[name] && !wanted[name] && !ht.Builtin[name] {
				p.Problems = append(p.Problems, fmt.Sprintf("%s/%s: chain not wanted", table, name))
				tail = append(tail, "-F "+name, "-X "+name)
			}
		}

		if len(declare)+len(fix)+len(body)+len(tail) == 0 {
			continue
		}
		script.WriteString("*" + table + "\n")
		for _, part := range [][]string{declare, fix, body, tail} {
			for _, l := range part {
				script.WriteString(l + "\n")
			}
		}
		script.WriteString("COMMIT\n")
	}
	p.Script = script.String()
	return p
}

// sharedChainNames lists, in a stable order, every non-owned chain that
// holds a rule of weft's or should.
func sharedChainNames(ht *Table, tw TableWant) []string {
	var names []string
	seen := map[string]bool{}
	for _, c := range tw.Shared {
		names = append(names, c.Name)
		seen[c.Name] = true
	}
	for _, name := range sortedChains(ht) {
		if seen[name] || ownChains[name] {
			continue
		}
		if slices.ContainsFunc(ht.Chains[name], isOwnRule) {
			names = append(names, name)
		}
	}
	return names
}

func sortedChains(t *Table) []string {
	names := make([]string, 0, len(t.Chains))
	for name := range t.Chains {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// checkShared describes how weft's rules in a shared chain differ from
// want. With first set they must be the chain's opening rules in order;
// otherwise each must appear once, anywhere.
func checkShared(table, chain string, rules, want []string, first bool) []string {
	where := table + "/" + chain
	var problems []string
	var pos []string
	var mine []string
	for i, r := range rules {
		if isOwnRule(r) {
			mine = append(mine, r)
			pos = append(pos, strconv.Itoa(i+1))
		}
	}
	problems = append(problems, multisetDiff(where, mine, want)...)
	if len(problems) == 0 && first && !slices.Equal(rules[:min(len(want), len(rules))], want) {
		wantPos := make([]string, len(want))
		for i := range want {
			wantPos[i] = strconv.Itoa(i + 1)
		}
		problems = append(problems, fmt.Sprintf("%s: weft's rules are at positions %s, want %s",
			where, strings.Join(pos, ","), strings.Join(wantPos, ",")))
	}
	return problems
}

// checkOwn describes how an owned chain differs from want.
func checkOwn(table, chain string, rules []string, exists bool, want []string) []string {
	where := table + "/" + chain
	if !exists {
		return []string{where + ": chain missing"}
	}
	problems := multisetDiff(where, rules, want)
	if len(problems) == 0 && !slices.Equal(rules, want) {
		problems = append(problems, where+": rules out of order")
	}
	return problems
}

// multisetDiff names rules missing from have, rules have holds that want
// does not, and rules have holds more often than want.
func multisetDiff(where string, have, want []string) []string {
	count := map[string]int{}
	for _, r := range want {
		count[r]++
	}
	seen := map[string]int{}
	for _, r := range have {
		seen[r]++
	}
	var out []string
	for _, r := range want {
		if seen[r] == 0 {
			out = append(out, where+": missing rule: "+r)
			seen[r] = -1 // report once
		}
	}
	reported := map[string]bool{}
	for _, r := range have {
		if reported[r] {
			continue
		}
		switch {
		case count[r] == 0:
			out = append(out, where+": unexpected rule: "+r)
		case seen[r] > count[r]:
			out = append(out, fmt.Sprintf("%s: rule present %d times: %s", where, seen[r], r))
		}
		reported[r] = true
	}
	return out
}

// commented appends weft's comment match to a rule's matches, where
// iptables-save prints it: after the other matches, before the target.
func commented(matches, comment string) string {
	c := `-m comment --comment "` + comment + `"`
	if matches == "" {
		return c
	}
	return matches + " " + c
}
