package iptables

import (
	"bufio"
	"fmt"
	"strings"
)

// Dump is the parsed output of iptables-save: tables by name.
type Dump map[string]*Table

// Table is one table of a dump.
type Table struct {
	Name string
	// Chains holds each chain's rules in order, as rule specs: the text
	// after "-A CHAIN ". A declared chain without rules has a nil entry.
	Chains map[string][]string
	// Builtin holds the chains that have a policy (INPUT, POSTROUTING...).
	Builtin map[string]bool
}

// ParseSave parses iptables-save output. Comment lines and counters are
// ignored; a rule line must follow its table header.
func ParseSave(text string) (Dump, error) {
	d := Dump{}
	var cur *Table
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "*"):
			name := line[1:]
			if name == "" {
				return nil, fmt.Errorf("parse iptables-save line %d: table without a name", n)
			}
			// A table listed twice goes on where it left off rather than
			// losing what came first.
			if cur = d[name]; cur == nil {
				cur = &Table{Name: name, Chains: map[string][]string{}, Builtin: map[string]bool{}}
				d[name] = cur
			}
		case line == "COMMIT":
			cur = nil
		case strings.HasPrefix(line, ":"):
			if cur == nil {
				return nil, fmt.Errorf("parse iptables-save line %d: chain outside a table: %q", n, line)
			}
			f := strings.Fields(line[1:])
			if len(f) < 2 {
				return nil, fmt.Errorf("parse iptables-save line %d: bad chain line %q", n, line)
			}
			if _, ok := cur.Chains[f[0]]; !ok {
				cur.Chains[f[0]] = nil
			}
			if f[1] != "-" {
				cur.Builtin[f[0]] = true
			}
		case strings.HasPrefix(line, "-A "):
			if cur == nil {
				return nil, fmt.Errorf("parse iptables-save line %d: rule outside a table: %q", n, line)
			}
			chain, spec, _ := strings.Cut(line[len("-A "):], " ")
			cur.Chains[chain] = append(cur.Chains[chain], spec)
		default:
			return nil, fmt.Errorf("parse iptables-save line %d: unexpected %q", n, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse iptables-save: %w", err)
	}
	return d, nil
}

// RuleCount counts the rules of all tables, for variant detection.
func (d Dump) RuleCount() int {
	n := 0
	for _, t := range d {
		for _, rules := range t.Chains {
			n += len(rules)
		}
	}
	return n
}

// HasChain reports whether any table declares the chain.
func (d Dump) HasChain(name string) bool {
	for _, t := range d {
		if _, ok := t.Chains[name]; ok {
			return true
		}
	}
	return false
}

// ruleFields extracts what ownership depends on from a rule spec: its
// comment and its jump (or goto) target.
func ruleFields(spec string) (comment, target string) {
	toks := tokenize(spec)
	for i := 0; i+1 < len(toks); i++ {
		switch toks[i] {
		case "--comment":
			comment = toks[i+1]
		case "-j", "--jump", "-g", "--goto":
			target = toks[i+1]
		}
	}
	return comment, target
}

// isOwnRule reports whether a rule in a chain weft shares (POSTROUTING,
// FORWARD) belongs to weft or flannel: it carries one of their comments or
// jumps to one of their chains.
func isOwnRule(spec string) bool {
	comment, target := ruleFields(spec)
	return ownComments[comment] || ownChains[target]
}

// tokenize splits a rule spec like iptables-restore does: on blanks, with
// double quotes grouping and backslash escaping inside them.
func tokenize(s string) []string {
	var toks []string
	var b strings.Builder
	in, quoted := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quoted && c == '\\' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
		case c == '"':
			quoted = !quoted
			in = true
		case !quoted && (c == ' ' || c == '\t'):
			if in {
				toks = append(toks, b.String())
				b.Reset()
				in = false
			}
		default:
			b.WriteByte(c)
			in = true
		}
	}
	if in {
		toks = append(toks, b.String())
	}
	return toks
}
