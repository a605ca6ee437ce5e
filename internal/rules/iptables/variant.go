package iptables

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/weftnet/weft/internal/rules/ruleexec"
)

// tools are the programs of one variant, indexed by family (0 IPv4, 1 IPv6).
type tools struct {
	variant       Variant
	save, restore [2]string
}

// toolsFor names a variant's explicit programs (iptables-nft-save...).
func toolsFor(v Variant) tools {
	return tools{
		variant: v,
		save:    [2]string{"iptables-" + string(v) + "-save", "ip6tables-" + string(v) + "-save"},
		restore: [2]string{"iptables-" + string(v) + "-restore", "ip6tables-" + string(v) + "-restore"},
	}
}

// plainTools names the unsuffixed programs, for hosts that ship only one
// variant without the -nft/-legacy names.
func plainTools(v Variant) tools {
	return tools{
		variant: v,
		save:    [2]string{"iptables-save", "ip6tables-save"},
		restore: [2]string{"iptables-restore", "ip6tables-restore"},
	}
}

// Observation is what detection learned about one variant on this host.
type Observation struct {
	Available bool
	Rules     int  // rules in all tables, both families
	Hint      bool // kubelet's KUBE-IPTABLES-HINT or KUBE-KUBELET-CANARY chain is there
}

// kubeletHints are the chains kubelet creates in the variant it uses;
// kubernetes-sigs/iptables-wrapper trusts them before counting rules.
var kubeletHints = []string{"KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"}

// ChooseVariant picks the variant weft should write to: the one kubelet
// marked, else the one holding more rules (ties and empty hosts go to
// nft, the modern default), else the only one installed. It says why, for
// the log. ok is false when neither is installed.
func ChooseVariant(legacy, nft Observation) (v Variant, reason string, ok bool) {
	switch {
	case !legacy.Available && !nft.Available:
		return "", "", false
	case !legacy.Available:
		return NFT, "only iptables-nft is installed", true
	case !nft.Available:
		return Legacy, "only iptables-legacy is installed", true
	case nft.Hint && !legacy.Hint:
		return NFT, "kubelet's hint chain is in iptables-nft", true
	case legacy.Hint && !nft.Hint:
		return Legacy, "kubelet's hint chain is in iptables-legacy", true
	case legacy.Rules > nft.Rules:
		return Legacy, fmt.Sprintf("iptables-legacy holds more rules (%d vs %d)", legacy.Rules, nft.Rules), true
	case nft.Rules > 0:
		return NFT, fmt.Sprintf("iptables-nft holds more rules (%d vs %d)", nft.Rules, legacy.Rules), true
	default:
		return NFT, "no rules in either variant; nft is the default", true
	}
}

// observe dumps both families of variant t (iptables-save without -t,
// which never loads a table module that is not already there) and counts.
func observe(ctx context.Context, r ruleexec.Runner, t tools) (Observation, error) {
	var o Observation
	for fam := range t.save {
		out, err := r.Run(ctx, nil, t.save[fam])
		if err != nil {
			if fam == 0 {
				if errors.Is(err, ruleexec.ErrNotFound) {
					return Observation{}, nil
				}
				return Observation{}, err
			}
			continue // no ip6tables is fine
		}
		o.Available = true
		d, err := ParseSave(string(out))
		if err != nil {
			return Observation{}, fmt.Errorf("%s: %w", t.save[fam], err)
		}
		o.Rules += d.RuleCount()
		for _, h := range kubeletHints {
			o.Hint = o.Hint || d.HasChain(h)
		}
	}
	return o, nil
}

// Detection is the outcome of detect, for logging.
type Detection struct {
	Variant       Variant
	Reason        string
	Legacy, NFT   Observation
	Plain         bool // only the unsuffixed programs exist
	BothHaveRules bool
}

// detect chooses the variant and its programs.
func detect(ctx context.Context, r ruleexec.Runner) (tools, Detection, error) {
	legacy, err := observe(ctx, r, toolsFor(Legacy))
	if err != nil {
		return tools{}, Detection{}, fmt.Errorf("inspect iptables-legacy: %w", err)
	}
	nft, err := observe(ctx, r, toolsFor(NFT))
	if err != nil {
		return tools{}, Detection{}, fmt.Errorf("inspect iptables-nft: %w", err)
	}
	d := Detection{Legacy: legacy, NFT: nft, BothHaveRules: legacy.Rules > 0 && nft.Rules > 0}
	if v, reason, ok := ChooseVariant(legacy, nft); ok {
		d.Variant, d.Reason = v, reason
		return toolsFor(v), d, nil
	}
	// Older distributions ship only iptables-save, whose --version says
	// which variant it is.
	out, err := r.Run(ctx, nil, "iptables-save", "--version")
	if err != nil {
		return tools{}, Detection{}, fmt.Errorf("no iptables found (tried iptables-nft-save, iptables-legacy-save, iptables-save): %w", err)
	}
	d.Plain = true
	d.Variant, d.Reason = Legacy, "only iptables-save is installed and it is legacy"
	if strings.Contains(string(out), "nf_tables") {
		d.Variant, d.Reason = NFT, "only iptables-save is installed and it is nf_tables"
	}
	return plainTools(d.Variant), d, nil
}

var versionRE = regexp.MustCompile(`v(\d+)\.(\d+)\.(\d+)`)

// supportsRandomFully reports whether an iptables --version line names a
// release with MASQUERADE --random-fully (1.6.2 and later), as flannel
// checks before using it.
func supportsRandomFully(version string) bool {
	m := versionRE.FindStringSubmatch(version)
	if m == nil {
		return false
	}
	var v [3]int
	for i := range v {
		v[i], _ = strconv.Atoi(m[i+1])
	}
	return v[0] > 1 || (v[0] == 1 && (v[1] > 6 || (v[1] == 6 && v[2] >= 2)))
}
