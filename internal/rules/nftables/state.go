package nftables

import (
	"fmt"
	"slices"
	"strconv"

	"sigs.k8s.io/knftables"
)

// State is what one of weft's tables holds, as read back from the
// kernel: two States are equal exactly when nothing in the table changed.
type State struct {
	Exists bool
	// Chains in the kernel's order.
	Chains []ChainState
}

// ChainState is one chain of a State. Type and Hook are empty and
// Priority zero for a regular chain.
type ChainState struct {
	Name     string
	Type     string // "nat", "filter"
	Hook     string // "postrouting", "forward"...
	Priority int
	// Rules holds one opaque key per rule, in order: equal keys mean
	// equal rules. The netlink reader uses the rule's expressions as the
	// kernel encodes them; the unit tests' reader the rule text.
	Rules []string
}

// Equal reports whether s and o describe the same table.
func (s State) Equal(o State) bool {
	return s.Exists == o.Exists && slices.EqualFunc(s.Chains, o.Chains, func(a, b ChainState) bool {
		return a.Name == b.Name && a.Type == b.Type && a.Hook == b.Hook && a.Priority == b.Priority &&
			slices.Equal(a.Rules, b.Rules)
	})
}

// shapeProblems says how a table read right after weft wrote it differs
// in shape (chains, their hooks, rule counts) from what weft wrote. The
// read cannot tell rule texts from expressions, so it checks the shape;
// anyone who writes to weft's table in that moment adds, deletes or
// moves rules or chains, which changes it.
func shapeProblems(got State, w Want) []string {
	if !got.Exists {
		return []string{"table missing"}
	}
	var out []string
	byName := map[string]ChainState{}
	for _, c := range got.Chains {
		byName[c.Name] = c
	}
	wanted := map[string]bool{}
	for _, wc := range w.Chains {
		c := wc.Chain
		wanted[c.Name] = true
		have, ok := byName[c.Name]
		if !ok {
			out = append(out, "chain "+c.Name+" missing")
			continue
		}
		prio, err := knftables.ParsePriority(w.Family, string(*c.Priority))
		if err != nil {
			out = append(out, fmt.Sprintf("chain %s: priority %q: %v", c.Name, *c.Priority, err))
		}
		if have.Type != string(*c.Type) || have.Hook != string(*c.Hook) || have.Priority != prio {
			out = append(out, fmt.Sprintf("chain %s: type %s hook %s priority %d, want %s %s %d",
				c.Name, have.Type, have.Hook, have.Priority, *c.Type, *c.Hook, prio))
		}
		if len(have.Rules) != len(wc.Rules) {
			out = append(out, fmt.Sprintf("chain %s: %d rules, want %d", c.Name, len(have.Rules), len(wc.Rules)))
		}
	}
	for _, c := range got.Chains {
		if !wanted[c.Name] {
			out = append(out, "unexpected chain "+c.Name)
		}
	}
	return out
}

// reference is the State read right after weft wrote a table, with the
// text weft wrote for each rule key, so that changes can be logged in
// nft's words.
type reference struct {
	state State
	text  map[string]string // rule key → the rule weft wrote
}

// newReference pairs the rules of got with those of w, chain by chain;
// got must have w's shape (shapeProblems empty).
func newReference(got State, w Want) reference {
	ref := reference{state: got, text: map[string]string{}}
	rules := map[string][]*knftables.Rule{}
	for _, wc := range w.Chains {
		rules[wc.Chain.Name] = wc.Rules
	}
	for _, c := range got.Chains {
		for i, k := range c.Rules {
			if i < len(rules[c.Name]) {
				ref.text[k] = rules[c.Name][i].Rule
			}
		}
	}
	return ref
}

// describeChange says how now differs from the reference: rules missing
// (named by the text weft wrote), rules unexpected (by position), chains
// missing or unexpected, or only the order.
func (r reference) describeChange(now State) []string {
	if !now.Exists {
		return []string{"table missing"}
	}
	var out []string
	nowChains := map[string]ChainState{}
	for _, c := range now.Chains {
		nowChains[c.Name] = c
	}
	refChains := map[string]bool{}
	for _, rc := range r.state.Chains {
		refChains[rc.Name] = true
		nc, ok := nowChains[rc.Name]
		if !ok {
			out = append(out, "missing: chain "+rc.Name)
			continue
		}
		if nc.Type != rc.Type || nc.Hook != rc.Hook || nc.Priority != rc.Priority {
			out = append(out, fmt.Sprintf("chain %s: type %s hook %s priority %d, was %s %s %d",
				rc.Name, nc.Type, nc.Hook, nc.Priority, rc.Type, rc.Hook, rc.Priority))
		}
		count := map[string]int{}
		for _, k := range nc.Rules {
			count[k]++
		}
		for _, k := range rc.Rules {
			if count[k] > 0 {
				count[k]--
				continue
			}
			out = append(out, "missing: "+r.ruleText(k))
		}
		// The extra copies of a rule are its last ones.
		var extra []string
		for i := len(nc.Rules) - 1; i >= 0; i-- {
			if k := nc.Rules[i]; count[k] > 0 {
				count[k]--
				extra = append(extra, "unexpected: chain "+rc.Name+" rule "+strconv.Itoa(i+1)+r.known(k))
			}
		}
		slices.Reverse(extra)
		out = append(out, extra...)
	}
	for _, c := range now.Chains {
		if !refChains[c.Name] {
			out = append(out, "unexpected: chain "+c.Name)
		}
	}
	if len(out) == 0 {
		out = append(out, "rules out of order")
	}
	return out
}

func (r reference) ruleText(k string) string {
	if t, ok := r.text[k]; ok {
		return t
	}
	return "rule " + k
}

// known names a duplicate of one of weft's rules.
func (r reference) known(k string) string {
	if t, ok := r.text[k]; ok {
		return " (again: " + t + ")"
	}
	return ""
}
