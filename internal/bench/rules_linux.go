package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"strings"
	"time"

	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/rules"
)

// rulesSizes are how much a rules-resync measurement loads and times.
type rulesSizes struct {
	other   int // kube-proxy-like rules, split evenly between nat and filter
	resyncs int // converged resyncs timed
	repairs int // repair resyncs timed
}

// rulesRun is what the bench measures: kube-proxy keeps a few rules per
// service endpoint in nat and filter, and 10 000 is a cluster of some
// thousand services.
var rulesRun = rulesSizes{other: 10000, resyncs: 30, repairs: 10}

// rulesModes are the rule back ends measured: which weft mode, which
// iptables variant weft uses, and which iptables program holds the
// kube-proxy-like rules (nftables mode sits beside kube-proxy in
// iptables-nft, the common case).
var rulesModes = []struct {
	name, variant, loader string
	mode                  rules.Mode
}{
	{"iptables-nft", "nft", "iptables-nft-restore", rules.IPTables},
	{"iptables-legacy", "legacy", "iptables-legacy-restore", rules.IPTables},
	{"nftables", "", "iptables-nft-restore", rules.NFTables},
}

// rulesResync measures each mode whose programs are installed.
func (r *runner) rulesResync(ctx context.Context) error {
	var errs []error
	for _, m := range rulesModes {
		need := []string{m.loader}
		if m.mode == rules.NFTables {
			need = append(need, "nft")
		}
		missing := false
		for _, p := range need {
			if _, err := exec.LookPath(p); err != nil {
				r.say("rules-resync: %s skipped: %s not installed", m.name, p)
				missing = true
			}
		}
		if missing {
			continue
		}
		r.say("rules-resync: %s, %d other rules", m.name, rulesRun.other)
		res, err := measureRulesResync(ctx, r.o.Prefix+"rr", m.mode, m.variant, m.loader, rulesRun)
		if err != nil {
			errs = append(errs, fmt.Errorf("rules-resync %s: %w", m.name, err))
			continue
		}
		res.Mode = m.name
		r.res.RulesResync = append(r.res.RulesResync, res)
	}
	return errors.Join(errs...)
}

// kubeProxyLike is an iptables-restore script of n rules shaped like
// kube-proxy's: per service a KUBE-SVC chain with a jump from
// KUBE-SERVICES and a KUBE-SEP chain that DNATs, in nat; per service a
// KUBE-SERVICES match and a KUBE-FORWARD accept in filter.
func kubeProxyLike(n int) string {
	var nat, filter strings.Builder
	nat.WriteString("*nat\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -j KUBE-SERVICES\n-A OUTPUT -j KUBE-SERVICES\n")
	filter.WriteString("*filter\n:KUBE-SERVICES - [0:0]\n:KUBE-FORWARD - [0:0]\n-A FORWARD -j KUBE-FORWARD\n-A FORWARD -j KUBE-SERVICES\n")
	natRules, filterRules := 2, 2
	for i := 0; natRules < n/2 || filterRules < n-n/2; i++ {
		ip := fmt.Sprintf("10.96.%d.%d", i/250, i%250+1)
		pod := fmt.Sprintf("10.245.%d.%d", i/250, i%250+1)
		if natRules < n/2 {
			fmt.Fprintf(&nat, ":KUBE-SVC-%06d - [0:0]\n:KUBE-SEP-%06d - [0:0]\n", i, i)
			fmt.Fprintf(&nat, "-A KUBE-SERVICES -d %s/32 -p tcp -m comment --comment \"ns/svc-%d:http\" -m tcp --dport 80 -j KUBE-SVC-%06d\n", ip, i, i)
			fmt.Fprintf(&nat, "-A KUBE-SVC-%06d -m comment --comment \"ns/svc-%d:http\" -j KUBE-SEP-%06d\n", i, i, i)
			fmt.Fprintf(&nat, "-A KUBE-SEP-%06d -s %s/32 -j MARK --set-xmark 0x4000/0x4000\n", i, pod)
			fmt.Fprintf(&nat, "-A KUBE-SEP-%06d -p tcp -m tcp -j DNAT --to-destination %s:8080\n", i, pod)
			natRules += 4
		}
		if filterRules < n-n/2 {
			fmt.Fprintf(&filter, "-A KUBE-SERVICES -d %s/32 -p tcp -m comment --comment \"ns/svc-%d:https has no endpoints\" -m tcp --dport 443 -j REJECT --reject-with icmp-port-unreachable\n", ip, i)
			fmt.Fprintf(&filter, "-A KUBE-FORWARD -d %s/32 -m comment --comment \"ns/svc-%d\" -j ACCEPT\n", pod, i)
			filterRules += 2
		}
	}
	nat.WriteString("COMMIT\n")
	filter.WriteString("COMMIT\n")
	return nat.String() + filter.String()
}

// measureRulesResync loads the kube-proxy-like rules into a fresh
// namespace, installs weft's rules, and times resyncs: converged ones,
// then ones that find a rule of weft's deleted.
func measureRulesResync(ctx context.Context, ns string, mode rules.Mode, variant, loader string, size rulesSizes) (RulesResync, error) {
	_ = netns.Delete(ns) // a leftover of an interrupted run
	if err := netns.Create(ns); err != nil {
		return RulesResync{}, err
	}
	defer netns.Delete(ns)
	script := kubeProxyLike(size.other)
	load := exec.CommandContext(ctx, "ip", "netns", "exec", ns, loader, "-w", "5")
	load.Stdin = strings.NewReader(script)
	if out, err := load.CombinedOutput(); err != nil {
		return RulesResync{}, fmt.Errorf("load %d rules with %s: %w: %s", size.other, loader, err, out)
	}
	opts := []rules.Option{rules.WithNetns(ns)}
	if variant != "" {
		opts = append(opts, rules.WithIPTablesVariant(variant))
	}
	m, err := rules.New(mode, slog.New(slog.DiscardHandler), opts...)
	if err != nil {
		return RulesResync{}, err
	}
	defer m.Cleanup(context.WithoutCancel(ctx))
	spec := rules.Spec{Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix("10.244.1.0/24"),
		Masq: true, FullyRandom: true, Forward: true, KeepSource: true}
	// The first Sync installs and cleans the other mode; the second
	// settles anything that first one decided late.
	for range 2 {
		if err := m.Sync(ctx, spec); err != nil {
			return RulesResync{}, fmt.Errorf("install: %w", err)
		}
	}
	timed := func() (float64, error) {
		start := time.Now()
		err := m.Sync(ctx, spec)
		return float64(time.Since(start).Microseconds()) / 1000, err
	}
	res := RulesResync{OtherRules: size.other, Resyncs: size.resyncs}
	var converged, repair []float64
	for range size.resyncs {
		ms, err := timed()
		if err != nil {
			return RulesResync{}, fmt.Errorf("resync: %w", err)
		}
		converged = append(converged, ms)
	}
	del := []string{"iptables-" + variant, "-w", "-t", "filter", "-D", "FLANNEL-FWD", "1"}
	if mode == rules.NFTables {
		del = []string{"nft", "flush", "chain", "ip", "flannel-ipv4", "forward"}
	}
	for range size.repairs {
		if out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, del...)...).CombinedOutput(); err != nil {
			return RulesResync{}, fmt.Errorf("delete a rule of weft's: %w: %s", err, out)
		}
		ms, err := timed()
		if err != nil {
			return RulesResync{}, fmt.Errorf("repair: %w", err)
		}
		repair = append(repair, ms)
	}
	res.ConvergedMs, res.RepairMs = Summarize(converged), Summarize(repair)
	return res, nil
}
