// Package rules keeps the host's traffic rules for the cluster network:
// masquerading of pod traffic that leaves the network (--ip-masq),
// acceptance of cluster traffic in the forward hook
// (--iptables-forward-rules), and the one thing flannel never did, keeping
// the pod's source address on pod → remote-pod traffic when Docker (or
// anything else) masquerades the pod subnet. It writes flannel's chains in
// iptables mode (package iptables) and flannel's tables in nftables mode
// (package nftables); docs/rules.md explains both and the Docker story.
//
// A Manager is desired-state: Sync makes the installed rules equal a Spec
// (missing ones restored, order and duplicates fixed, an old subnet's rules
// removed), Run re-applies the last Spec on a timer (--iptables-resync),
// and Cleanup removes everything weft or flannel installed, in both modes.
//
// Typical use in the agent:
//
//	m, err := rules.New(rules.ModeFor(cfg.EnableNFTables), log)
//	err = m.Sync(ctx, rules.Spec{Network: n, Subnet: s, Masq: o.IPMasq,
//		FullyRandom: !o.IPMasqFullyRandomDisable, Forward: o.IPTablesForwardRules,
//		KeepSource: true})
//	go m.Run(ctx, time.Duration(o.IPTablesResync)*time.Second)
package rules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/weftnet/weft/internal/rules/iptables"
	"github.com/weftnet/weft/internal/rules/nftables"
	"github.com/weftnet/weft/internal/rules/ruleexec"
	"github.com/weftnet/weft/internal/rules/rulespec"
)

// Spec is the desired rule set; see rulespec.Spec.
type Spec = rulespec.Spec

// Runner runs iptables-save, iptables-restore and nft; see ruleexec.Runner.
type Runner = ruleexec.Runner

// DefaultResync is flanneld's --iptables-resync default.
const DefaultResync = 5 * time.Second

// Mode is the rule back end.
type Mode string

const (
	IPTables Mode = "iptables"
	NFTables Mode = "nftables"
)

// ModeFor maps the network config's EnableNFTables to a Mode.
func ModeFor(enableNFTables bool) Mode {
	if enableNFTables {
		return NFTables
	}
	return IPTables
}

// Manager keeps one host's rules. Its methods may be called concurrently;
// they take effect one at a time.
type Manager interface {
	// Sync makes the installed rules equal spec and remembers spec for
	// Run. The first successful Sync also removes the other mode's rules
	// (and, in iptables mode, the other iptables variant's).
	Sync(ctx context.Context, spec Spec) error
	// Run re-applies the Spec of the latest Sync every period (0 means
	// DefaultResync) until ctx is done, then returns nil. Ticks before the
	// first Sync or after Cleanup do nothing. Failures are logged and
	// retried at the next tick.
	Run(ctx context.Context, period time.Duration) error
	// Cleanup removes every rule, chain and table weft or flannel
	// installed, in both modes, both iptables variants and both families,
	// and makes Run idle until the next Sync. Other programs' rules stay.
	Cleanup(ctx context.Context) error
}

// Option adjusts New.
type Option func(*config)

type config struct {
	runner  Runner
	variant iptables.Variant
	err     error
}

// WithRunner makes the Manager run its programs through r (a fake in unit
// tests).
func WithRunner(r Runner) Option { return func(c *config) { c.runner = r } }

// WithNetns makes the Manager run its programs inside the named network
// namespace (ip netns exec NAME); integration tests point it at a virtual
// host this way. The agent leaves it unset and works where it runs.
func WithNetns(name string) Option {
	return func(c *config) { c.runner = ruleexec.Exec{Netns: name} }
}

// WithIPTablesVariant forces "nft" or "legacy" instead of detecting which
// one the host uses; "" detects.
func WithIPTablesVariant(v string) Option {
	return func(c *config) {
		var err error
		c.variant, err = iptables.ParseVariant(v)
		c.err = errors.Join(c.err, err)
	}
}

// New returns a Manager for mode. It touches nothing until Sync; the
// iptables variant is detected (and logged) at the first Sync.
func New(mode Mode, log *slog.Logger, opts ...Option) (Manager, error) {
	c := config{runner: ruleexec.Exec{}}
	for _, o := range opts {
		o(&c)
	}
	if c.err != nil {
		return nil, c.err
	}
	ipt := iptables.New(log.With("rules", "iptables"), iptables.Options{Runner: c.runner, Variant: c.variant})
	nft := nftables.New(log.With("rules", "nftables"), nftables.Options{Runner: c.runner})
	m := &manager{mode: mode, log: log}
	switch mode {
	case IPTables:
		m.active, m.other = ipt, nft
	case NFTables:
		m.active, m.other = nft, ipt
	default:
		return nil, fmt.Errorf("unknown rules mode %q (want %q or %q)", mode, IPTables, NFTables)
	}
	return m, nil
}

// backend is what each mode's manager offers.
type backend interface {
	Sync(ctx context.Context, spec rulespec.Spec) error
	Cleanup(ctx context.Context) error
}

type manager struct {
	mode          Mode
	log           *slog.Logger
	active, other backend

	mu          sync.Mutex // guards the fields below; held across every Sync so a stale tick never undoes a newer Sync
	spec        Spec
	haveSpec    bool
	otherClean  bool
	otherWarned bool // a failed cleanup of the other mode is retried every Sync but logged as a warning once
}

func (m *manager) Sync(ctx context.Context, spec Spec) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.spec, m.haveSpec = spec, true
	return m.syncLocked(ctx)
}

func (m *manager) syncLocked(ctx context.Context) error {
	if err := m.active.Sync(ctx, m.spec); err != nil {
		return fmt.Errorf("%s rules: %w", m.mode, err)
	}
	if !m.otherClean {
		if err := m.other.Cleanup(ctx); err != nil {
			level := slog.LevelWarn
			if m.otherWarned {
				level = slog.LevelDebug
			}
			m.log.Log(ctx, level, "remove the other mode's rules", "mode", m.mode, "err", err)
			m.otherWarned = true
		} else {
			m.otherClean = true
		}
	}
	return nil
}

func (m *manager) Run(ctx context.Context, period time.Duration) error {
	if period <= 0 {
		period = DefaultResync
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		m.mu.Lock()
		var err error
		if m.haveSpec {
			err = m.syncLocked(ctx)
		}
		m.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			m.log.Error("resync traffic rules", "err", err)
		}
	}
}

func (m *manager) Cleanup(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.haveSpec = false
	return errors.Join(m.active.Cleanup(ctx), m.other.Cleanup(ctx))
}
