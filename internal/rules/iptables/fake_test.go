package iptables

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/rules/ruleexec"
)

// fakeTables is a small model of one variant's kernel tables for one
// family: enough of iptables-restore --noflush and iptables-save for the
// manager's unit tests to converge against.
type fakeTables struct {
	d Dump
}

func newFakeTables(save string) *fakeTables {
	d, err := ParseSave(save)
	if err != nil {
		panic(err)
	}
	return &fakeTables{d: d}
}

func (f *fakeTables) table(name string) *Table {
	t := f.d[name]
	if t == nil {
		t = &Table{Name: name, Chains: map[string][]string{}, Builtin: map[string]bool{}}
		for _, c := range map[string][]string{
			"nat":    {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
			"filter": {"INPUT", "FORWARD", "OUTPUT"},
		}[name] {
			t.Chains[c], t.Builtin[c] = nil, true
		}
		f.d[name] = t
	}
	return t
}

// restore applies a --noflush script; like the real thing, a table's
// changes only land at its COMMIT and a bad line fails the table.
func (f *fakeTables) restore(script string) error {
	var cur *Table
	var work map[string][]string
	for n, line := range strings.Split(script, "\n") {
		line = strings.TrimSpace(line)
		fail := func(why string) error { return fmt.Errorf("line %d %q: %s", n+1, line, why) }
		switch {
		case line == "":
		case strings.HasPrefix(line, "*"):
			cur = f.table(line[1:])
			work = map[string][]string{}
			for k, v := range cur.Chains {
				work[k] = slices.Clone(v)
			}
		case line == "COMMIT":
			cur.Chains = work
		case strings.HasPrefix(line, ":"):
			work[strings.Fields(line[1:])[0]] = nil
		default:
			op, rest, _ := strings.Cut(line, " ")
			chain, spec, _ := strings.Cut(rest, " ")
			rules, ok := work[chain]
			if !ok {
				return fail("no such chain")
			}
			switch op {
			case "-A":
				work[chain] = append(rules, spec)
			case "-I":
				num, s, _ := strings.Cut(spec, " ")
				i, _ := strconv.Atoi(num)
				if i < 1 || i > len(rules)+1 {
					return fail("bad position")
				}
				work[chain] = slices.Insert(rules, i-1, s)
			case "-D":
				i := slices.Index(rules, spec)
				if i < 0 {
					return fail("no such rule")
				}
				work[chain] = slices.Delete(rules, i, i+1)
			case "-F":
				work[chain] = nil
			case "-X":
				if len(rules) > 0 {
					return fail("chain not empty")
				}
				for _, rs := range work {
					for _, r := range rs {
						if _, target := ruleFields(r); target == chain {
							return fail("chain in use")
						}
					}
				}
				delete(work, chain)
			default:
				return fail("unknown op")
			}
		}
	}
	return nil
}

func (f *fakeTables) save() string { return f.saveTables([]string{"filter", "nat"}, false) }

// saveTables prints the named tables; builtins makes a missing table
// print as its empty built-in chains (iptables-nft-save -t) rather than
// not at all.
func (f *fakeTables) saveTables(names []string, builtins bool) string {
	var b strings.Builder
	for _, name := range names {
		t := f.d[name]
		if t == nil && builtins {
			t = (&fakeTables{d: Dump{}}).table(name)
		}
		if t == nil {
			continue
		}
		b.WriteString("*" + name + "\n")
		for _, c := range sortedChains(t) {
			pol := "-"
			if t.Builtin[c] {
				pol = "ACCEPT"
			}
			fmt.Fprintf(&b, ":%s %s [0:0]\n", c, pol)
		}
		for _, c := range sortedChains(t) {
			for _, r := range t.Chains[c] {
				b.WriteString("-A " + c + " " + r + "\n")
			}
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

// fakeHost answers the iptables programs of the variants it has, IPv4
// only; ip6tables and everything else are "not installed".
type fakeHost struct {
	t       *testing.T
	version string
	v       map[Variant]*fakeTables
	// saveErr, if set, fails every iptables-save that reads rules.
	saveErr error
}

func (h *fakeHost) handle(c ruleexec.Call) ([]byte, error) {
	if h.saveErr != nil && strings.Contains(c.Name, "-save") && !slices.Contains(c.Args, "--version") {
		return nil, h.saveErr
	}
	for v, ft := range h.v {
		tl := toolsFor(v)
		switch c.Name {
		case tl.save[0]:
			if slices.Contains(c.Args, "--version") {
				return []byte(h.version), nil
			}
			if len(c.Args) == 2 && c.Args[0] == "-t" {
				if v == Legacy {
					ft.table(c.Args[1]) // iptables-legacy-save -t creates the table
				}
				return []byte(ft.saveTables(c.Args[1:], true)), nil
			}
			return []byte(ft.save()), nil
		case tl.restore[0]:
			if !slices.Equal(c.Args, []string{"-w", "5", "--noflush"}) {
				h.t.Errorf("%s args %q, want -w 5 --noflush", c.Name, c.Args)
			}
			return nil, ft.restore(c.Stdin)
		}
	}
	return nil, ruleexec.NotFound(c.Name)
}

// legacyTables lists the legacy tables that exist, as /proc does.
func (h *fakeHost) legacyTables() ([2][]string, error) {
	var names [2][]string
	if ft := h.v[Legacy]; ft != nil {
		for n := range ft.d {
			names[0] = append(names[0], n)
		}
	}
	return names, nil
}
