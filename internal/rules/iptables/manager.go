package iptables

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/weftnet/weft/internal/rules/ruleexec"
	"github.com/weftnet/weft/internal/rules/rulespec"
)

// restoreWait is how long iptables-restore waits for the xtables lock that
// kube-proxy, Docker and others hold while they write.
const restoreWait = "5"

// Options are Manager's knobs.
type Options struct {
	// Runner runs the iptables programs; nil means ruleexec.Exec{} (this
	// host, this namespace).
	Runner ruleexec.Runner
	// Variant forces iptables-nft or iptables-legacy; empty detects it at
	// the first Sync.
	Variant Variant
	// LegacyTables, if set, names the iptables-legacy tables that exist,
	// per family, without creating any (the kernel lists them in
	// /proc/net/ip{,6}_tables_names). With it Sync reads only the legacy
	// tables weft writes to that exist, table by table; without it, it
	// reads all of them at once, since iptables-legacy-save -t creates
	// the table it names, and a nat table turns on connection tracking.
	LegacyTables func() ([2][]string, error)
	// Repaired, if set, is told how many problems (a rule or chain of
	// weft's missing, altered, added or out of place) a Sync fixed while
	// the desired rules were those of the previous successful Sync:
	// repairs, not installs or changes.
	Repaired func(n int)
}

// Manager keeps weft's iptables rules. Its methods may be called from
// several goroutines; they run one at a time.
type Manager struct {
	log *slog.Logger
	run ruleexec.Runner

	mu          sync.Mutex // guards the fields below and serialises Sync/Cleanup
	forced      Variant
	tools       *tools // nil until the first Sync detects them
	fullyRandom bool   // the chosen tools support --random-fully
	installed   bool   // a Sync has completed, so later changes are repairs
	otherClean  bool   // the other variant's rules of ours have been removed
	otherWarned bool   // a failure to do so was logged as a warning (later ones at debug)
	famClean    [2]bool
	synced      [2]string // per family, the desired rules of the last successful sync
	legacy      func() ([2][]string, error)
	repaired    func(n int)
}

// New returns a Manager; it touches nothing until Sync.
func New(log *slog.Logger, opts Options) *Manager {
	r := opts.Runner
	if r == nil {
		r = ruleexec.Exec{}
	}
	return &Manager{log: log, run: r, forced: opts.Variant, legacy: opts.LegacyTables, repaired: opts.Repaired}
}

// Variant returns the variant in use, detecting it if Sync has not yet.
func (m *Manager) Variant(ctx context.Context) (Variant, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, err := m.chooseTools(ctx)
	if err != nil {
		return "", err
	}
	return t.variant, nil
}

func (m *Manager) chooseTools(ctx context.Context) (tools, error) {
	if m.tools != nil {
		return *m.tools, nil
	}
	var t tools
	if m.forced != "" {
		t = toolsFor(m.forced)
		m.log.Info("iptables variant", "variant", "iptables-"+string(t.variant), "reason", "configured")
	} else {
		var d Detection
		var err error
		t, d, err = detect(ctx, m.run)
		if err != nil {
			return tools{}, err
		}
		m.log.Info("iptables variant", "variant", "iptables-"+string(d.Variant), "reason", d.Reason,
			"legacy_rules", d.Legacy.Rules, "nft_rules", d.NFT.Rules)
		if d.BothHaveRules {
			m.log.Warn("both iptables variants hold rules; NAT rules in the other variant run in separate kernel tables "+
				"that weft's rules cannot override, and may still masquerade pod traffic",
				"variant", "iptables-"+string(d.Variant), "legacy_rules", d.Legacy.Rules, "nft_rules", d.NFT.Rules)
		}
	}
	out, err := m.run.Run(ctx, nil, t.save[0], "--version")
	if err != nil {
		return tools{}, fmt.Errorf("check %s version: %w", t.save[0], err)
	}
	m.fullyRandom = supportsRandomFully(string(out))
	m.tools = &t
	return t, nil
}

// Sync makes weft's rules in the chosen variant equal to what spec wants:
// missing rules and chains added, wrong order and duplicates fixed, rules
// for a previous subnet or for switched-off groups removed. On its first
// success it also removes rules of weft's (or flannel's) from the other
// variant. A change is verified by reading the rules back.
func (m *Manager) Sync(ctx context.Context, spec rulespec.Spec) error {
	if err := spec.Validate(); err != nil {
		return fmt.Errorf("invalid spec: %w", err)
	}
	spec = spec.Normalized()
	m.mu.Lock()
	defer m.mu.Unlock()
	t, err := m.chooseTools(ctx)
	if err != nil {
		return err
	}
	if spec.FullyRandom && !m.fullyRandom && !m.installed {
		m.log.Warn("this iptables cannot masquerade with --random-fully; masquerading without it", "variant", "iptables-"+string(t.variant))
	}
	var errs []error
	for i, fam := range spec.Families() {
		if !fam.Enabled() && m.famClean[i] {
			continue
		}
		want := Desired(fam, spec, m.fullyRandom)
		key := fmt.Sprint(want)
		fixed, err := m.syncFamily(ctx, t, i, want)
		if err == nil && m.installed && key == m.synced[i] && m.repaired != nil {
			m.repaired(fixed)
		}
		// A failed sync (a read cut short by a stopping Run, a write
		// lost to another writer) leaves the memory of the last good one:
		// while the desired rules stay the same, what the next sync fixes
		// is still a repair.
		if err == nil {
			m.synced[i] = key
		}
		if err != nil && !fam.Enabled() && i == 1 {
			// A host without ip6tables cannot hold IPv6 rules to remove.
			m.log.Debug("skip IPv6 cleanup", "err", err)
			err = nil
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		m.famClean[i] = !fam.Enabled()
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	m.installed = true
	if !m.otherClean {
		other := Legacy
		if t.variant == Legacy {
			other = NFT
		}
		if err := m.cleanTools(ctx, toolsFor(other)); err != nil {
			level := slog.LevelWarn
			if m.otherWarned {
				level = slog.LevelDebug
			}
			m.log.Log(ctx, level, "remove rules from the other iptables variant", "variant", "iptables-"+string(other), "err", err)
			m.otherWarned = true
		} else {
			m.otherClean = true
		}
	}
	return nil
}

// writeAttempts bounds how often one Sync rewrites a family whose rules
// still differ after a write: others (kube-proxy, Docker) may be writing
// at the same moment, but rules that never come out as wanted are a bug.
const writeAttempts = 3

// syncFamily brings one family's tables to want, reading them back after
// every write. It returns how many problems it found and fixed.
func (m *Manager) syncFamily(ctx context.Context, t tools, fam int, want Want) (fixed int, err error) {
	var writeErr error // the last failed write: it may have raced with another writer
	for attempt := 0; ; attempt++ {
		have, err := m.save(ctx, t, fam)
		if err != nil {
			return 0, err
		}
		plan := MakePlan(have, want)
		if plan.Script == "" {
			return fixed, nil
		}
		if attempt == 0 {
			fixed = len(plan.Problems)
		}
		if attempt == writeAttempts {
			if writeErr != nil {
				return 0, writeErr
			}
			return 0, fmt.Errorf("%s: rules still differ after %d writes: %s", t.restore[fam], attempt, strings.Join(plan.Problems, "; "))
		}
		msg := "repairing iptables rules"
		switch {
		case attempt > 0:
			msg = "iptables rules changed while being written; writing again"
		case !m.installed:
			msg = "installing iptables rules"
		}
		m.log.Info(msg, "program", t.restore[fam], "problems", plan.Problems)
		writeErr = m.restore(ctx, t, fam, plan.Script)
		if writeErr != nil {
			m.log.Debug("write iptables rules", "program", t.restore[fam], "err", writeErr)
		}
	}
}

// save reads the rules of one family. iptables-legacy is read table by
// table (iptables-save -t), only the tables weft writes to (Tables) that
// exist: each is a separate kernel blob, so the others (kube-proxy's
// mangle, raw) are never copied or parsed, and a table that does not
// exist is known to be empty without reading it, which would create it.
// iptables-nft is read whole in one call: each iptables-nft-save run
// fetches the nftables ruleset anew, and beside 10 000 kube-proxy rules
// in nat and filter the two -t runs took 143 ms against 93 ms for one
// (docs/benchmarks.md).
func (m *Manager) save(ctx context.Context, t tools, fam int) (Dump, error) {
	if t.variant != Legacy || m.legacy == nil {
		return m.saveAll(ctx, t, fam)
	}
	names, err := m.legacy()
	if err != nil {
		return nil, fmt.Errorf("list iptables-legacy tables: %w", err)
	}
	d := Dump{}
	for _, table := range Tables {
		if !slices.Contains(names[fam], table) {
			continue
		}
		out, err := m.run.Run(ctx, nil, t.save[fam], "-t", table)
		if err != nil {
			return nil, fmt.Errorf("read %s rules: %w", table, err)
		}
		part, err := ParseSave(string(out))
		if err != nil {
			return nil, fmt.Errorf("%s -t %s: %w", t.save[fam], table, err)
		}
		if pt := part[table]; pt != nil {
			d[table] = pt
		}
	}
	return d, nil
}

// saveAll reads every table of a family at once.
func (m *Manager) saveAll(ctx context.Context, t tools, fam int) (Dump, error) {
	out, err := m.run.Run(ctx, nil, t.save[fam])
	if err != nil {
		return nil, fmt.Errorf("read rules: %w", err)
	}
	d, err := ParseSave(string(out))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.save[fam], err)
	}
	return d, nil
}

func (m *Manager) restore(ctx context.Context, t tools, fam int, script string) error {
	if _, err := m.run.Run(ctx, []byte(script), t.restore[fam], "-w", restoreWait, "--noflush"); err != nil {
		return fmt.Errorf("write rules: %w", err)
	}
	return nil
}

// Cleanup removes every rule and chain of weft's and flannel's from both
// variants and both families, for `weft cleanup`. Variants or families
// whose programs are missing are skipped. Rules of others are untouched.
func (m *Manager) Cleanup(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for _, v := range []Variant{NFT, Legacy} {
		if err := m.cleanTools(ctx, toolsFor(v)); err != nil {
			errs = append(errs, err)
		}
	}
	if m.tools != nil && *m.tools == plainTools(m.tools.variant) {
		if err := m.cleanTools(ctx, *m.tools); err != nil {
			errs = append(errs, err)
		}
	}
	m.installed = false
	return errors.Join(errs...)
}

// cleanTools removes weft's rules from one variant's tables.
func (m *Manager) cleanTools(ctx context.Context, t tools) error {
	var errs []error
	for fam := range t.save {
		have, err := m.save(ctx, t, fam)
		if errors.Is(err, ruleexec.ErrNotFound) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		plan := MakePlan(have, Want{})
		if plan.Script == "" {
			continue
		}
		m.log.Info("removing iptables rules", "program", t.restore[fam], "rules", plan.Problems)
		if err := m.restore(ctx, t, fam, plan.Script); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
