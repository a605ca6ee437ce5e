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
// removed), Run re-applies the last Spec on a timer (--iptables-resync)
// and within milliseconds of any nftables change in the namespace, and
// Cleanup removes everything weft or flannel installed, in both modes.
//
// Spec.KeepSource is a request: the Manager installs a family's keep-source
// chains only when that family already has NAT (--ip-masq, someone else's
// NAT table or chain, or its own earlier install), because the first NAT
// hook in a namespace turns on connection tracking for all forwarded
// traffic; see keepsource.go and docs/rules.md.
//
// Typical use in the agent:
//
//	m, err := rules.New(rules.ModeFor(cfg.EnableNFTables), log)
//	err = m.Sync(ctx, rules.Spec{Network: n, Subnet: s,
//		IPv6Network: n6, IPv6Subnet: s6, // zero unless EnableIPv6 and a v6 lease
//		Masq: o.IPMasq,
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

	"github.com/weftnet/weft/internal/metrics"
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
	// Run. It decides per family whether the keep-source chains spec asks
	// for are needed now (see the package comment). The first successful
	// Sync also removes the other mode's rules (and, in iptables mode, the
	// other iptables variant's).
	Sync(ctx context.Context, spec Spec) error
	// Run re-applies the Spec of the latest Sync every period (0 means
	// DefaultResync), and a few tens of milliseconds after each burst of
	// nftables changes in the namespace (nft, iptables-nft; not
	// iptables-legacy, which the timer covers), until ctx is done; then it
	// returns nil. Resyncs before the first Sync or after Cleanup do
	// nothing. Failures are logged and retried at the next resync.
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
	netns   string
	metrics *metrics.Metrics
	err     error

	// Seams for unit tests; nil means the real thing in netns.
	scan  func() (natFound, error)
	watch func(ctx context.Context) (<-chan struct{}, error)
	nft   func(*nftables.Options)
}

// WithRunner makes the Manager run its iptables programs through r (a
// fake in unit tests).
func WithRunner(r Runner) Option { return func(c *config) { c.runner = r } }

// WithNetns makes the Manager work inside the named network namespace:
// it runs its programs there (ip netns exec NAME for iptables, nft from a
// thread in the namespace), reads nftables and looks for NAT there and
// listens to that namespace's nftables notifications. Integration tests
// point it at a virtual host this way. The agent leaves it unset and works
// where it runs.
func WithNetns(name string) Option {
	return func(c *config) { c.runner, c.netns = ruleexec.Exec{Netns: name}, name }
}

// WithMetrics counts in m each repair of a rule that changed behind
// weft's back (weft_reconcile_repairs_total{kind="rule"}); nil counts
// nothing.
func WithMetrics(m *metrics.Metrics) Option { return func(c *config) { c.metrics = m } }

// withNFT adjusts the nftables manager's options (unit tests: fakes).
func withNFT(adjust func(*nftables.Options)) Option { return func(c *config) { c.nft = adjust } }

// withNATScan replaces the look for NAT in the namespace (unit tests).
func withNATScan(scan func() (natFound, error)) Option {
	return func(c *config) { c.scan = scan }
}

// withEvents replaces the nftables notifications (unit tests): watch
// returns a channel that signals changes and is closed when ctx ends.
func withEvents(watch func(ctx context.Context) (<-chan struct{}, error)) Option {
	return func(c *config) { c.watch = watch }
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
	if c.scan == nil {
		c.scan = func() (natFound, error) { return scanNAT(c.netns) }
	}
	if c.watch == nil {
		c.watch = func(ctx context.Context) (<-chan struct{}, error) { return watchNFT(ctx, c.netns, log) }
	}
	repaired := func(n int) { c.metrics.Repaired(metrics.KindRule, n) }
	iptOpts := iptables.Options{Runner: c.runner, Variant: c.variant, Repaired: repaired}
	if _, real := c.runner.(ruleexec.Exec); real {
		// Unit tests' fake runners have no /proc to go with them.
		iptOpts.LegacyTables = func() ([2][]string, error) { return legacyTables(c.netns) }
	}
	ipt := iptables.New(log.With("rules", "iptables"), iptOpts)
	nftOpts := nftables.Options{Netns: c.netns, Repaired: repaired}
	if c.nft != nil {
		c.nft(&nftOpts)
	}
	nft := nftables.New(log.With("rules", "nftables"), nftOpts)
	m := &manager{mode: mode, log: log, scan: c.scan, watch: c.watch}
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

// debounce is how long Run lets nftables notifications gather before it
// resyncs: one iptables or Docker command commits several changes in a
// row, and a resync per change would only repeat the same comparison.
const debounce = 30 * time.Millisecond

// Notification-driven resyncs come in bursts of up to eventBurst at the
// debounce; beyond that, one per eventEvery. A program that undoes weft's
// rules whenever they change (an old flanneld, a firewall daemon) would
// otherwise make each side rewrite the rules within milliseconds of the
// other, forever.
const (
	eventBurst = 10
	eventEvery = 500 * time.Millisecond
)

// eventLimiter is a token bucket for notification-driven resyncs.
type eventLimiter struct {
	tokens float64
	last   time.Time
}

func (l *eventLimiter) refill(now time.Time) {
	if l.last.IsZero() {
		l.tokens = eventBurst
	} else {
		l.tokens = min(eventBurst, l.tokens+float64(now.Sub(l.last))/float64(eventEvery))
	}
	l.last = now
}

// wait is how long a resync must wait for its token, from now.
func (l *eventLimiter) wait(now time.Time) time.Duration {
	l.refill(now)
	if l.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - l.tokens) * float64(eventEvery))
}

// take spends a token on a resync happening now.
func (l *eventLimiter) take(now time.Time) {
	l.refill(now)
	l.tokens--
}

type manager struct {
	mode          Mode
	log           *slog.Logger
	active, other backend
	scan          func() (natFound, error)
	watch         func(ctx context.Context) (<-chan struct{}, error)

	mu          sync.Mutex // guards the fields below; held across every Sync so a stale tick never undoes a newer Sync
	spec        Spec
	haveSpec    bool
	otherClean  bool
	otherWarned bool         // a failed cleanup of the other mode is retried every Sync but logged as a warning once
	keep        [2]keepState // per family: the keep-source decision, sticky once on
	fwd         [2]keepState // per family: the forward rules' decision, sticky once on
	scanWarned  bool         // a failed look for NAT was logged as a warning (later ones at debug)
}

func (m *manager) Sync(ctx context.Context, spec Spec) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.spec, m.haveSpec = spec, true
	return m.syncLocked(ctx)
}

func (m *manager) syncLocked(ctx context.Context) error {
	if err := m.active.Sync(ctx, m.effectiveSpec(ctx)); err != nil {
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

// effectiveSpec is the latest Spec with the keep-source chains deferred in
// each family that does not need them now. It logs each change of
// decision; since a decision to install is sticky, that is at most twice
// per family (deferred, then installed).
func (m *manager) effectiveSpec(ctx context.Context) Spec {
	spec := m.spec
	var found natFound
	var scanErr error
	for fam := range m.keep {
		if needsScan(spec, fam, m.keep[fam] == keepOn) || needsForwardScan(spec, fam, m.fwd[fam] == keepOn) {
			found, scanErr = m.scan()
			break
		}
	}
	if scanErr != nil {
		level := slog.LevelWarn
		if m.scanWarned {
			level = slog.LevelDebug
		}
		m.log.Log(ctx, level, "cannot look for NAT and forward filters in this network namespace; installing the keep-source and forward rules to be safe", "err", scanErr)
		m.scanWarned = true
	}
	for fam, f := range spec.Families() {
		d := decideKeepSource(spec, fam, m.keep[fam] == keepOn, found, scanErr)
		m.record(&m.keep[fam], d, spec.KeepSource, f, keepSourceLog)
		spec.KeepSourceDeferred[fam] = !d.on

		d = decideForward(spec, fam, m.fwd[fam] == keepOn, found, scanErr)
		m.record(&m.fwd[fam], d, spec.Forward, f, forwardLog)
		spec.ForwardDeferred[fam] = !d.on
	}
	return spec
}

// decisionLog is what record says when an on-demand rule group of one
// family changes state.
type decisionLog struct {
	found    string // installed because something was found (named in "found")
	on       string // installed for another reason
	deferred string // asked for but not installed
}

var (
	keepSourceLog = decisionLog{
		found: "NAT found in this network namespace; installing the keep-source rules so that it cannot rewrite pod → remote-pod sources",
		on:    "keep-source rules on: pod → remote-pod traffic keeps its source address",
		deferred: "keep-source rules deferred: nothing NATs here, and a NAT hook would turn on connection tracking " +
			"for all forwarded traffic; they are installed as soon as NAT appears",
	}
	forwardLog = decisionLog{
		found: "forward filtering found in this network namespace; installing the forward accept rules for the cluster network",
		on:    "forward accept rules on",
		deferred: "forward accept rules deferred: nothing filters forwarded traffic here, and a forward hook of weft's " +
			"would be the only one; they are installed as soon as one appears",
	}
)

// record moves one family's state for a rule group to what decision d
// says (asked tells "not asked for" from "deferred") and logs the change;
// since installing is sticky, that is at most twice per family.
func (m *manager) record(state *keepState, d keepDecision, asked bool, f rulespec.Family, say decisionLog) {
	next := keepDeferred
	switch {
	case d.on:
		next = keepOn
	case !asked || !f.Enabled():
		next = keepUndecided
	}
	if next == *state {
		return
	}
	switch {
	case next == keepOn && len(d.found) > 0:
		m.log.Info(say.found, "family", f.Name(), "found", d.found, "reason", d.reason)
	case next == keepOn:
		m.log.Info(say.on, "family", f.Name(), "reason", d.reason)
	case next == keepDeferred:
		m.log.Info(say.deferred, "family", f.Name(), "reason", d.reason)
	}
	*state = next
}

func (m *manager) Run(ctx context.Context, period time.Duration) error {
	if period <= 0 {
		period = DefaultResync
	}
	t := time.NewTicker(period)
	defer t.Stop()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := m.watch(ctx)
	if err != nil {
		m.log.Warn("cannot subscribe to nftables notifications; traffic rules are checked on the resync timer only",
			"period", period, "err", err)
	} else {
		m.log.Debug("resyncing traffic rules on nftables notifications and every period", "period", period)
		watcher := events
		defer func() {
			cancel()
			for range watcher { // closed once the watcher has stopped
			}
		}()
	}
	// pending fires debounce after the first notification of a burst (or
	// when the limiter allows); nil while none is pending.
	var pending <-chan time.Time
	var limit eventLimiter
	for {
		trigger := "timer"
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case _, ok := <-events:
			if !ok {
				events = nil // the watcher logged why; the timer goes on
			} else if pending == nil {
				pending = time.After(max(debounce, limit.wait(time.Now())))
			}
			continue
		case <-pending:
			pending, trigger = nil, "nftables change"
			limit.take(time.Now())
		}
		m.resync(ctx, trigger)
	}
}

// resync re-applies the latest Spec, if any. A resync that finds the
// rules as wanted writes nothing, so it causes no nftables notification
// of its own: weft's writes cause at most one more, idle resync.
func (m *manager) resync(ctx context.Context, trigger string) {
	m.mu.Lock()
	var err error
	if m.haveSpec {
		if trigger != "timer" { // the timer's resyncs are too regular to be news
			m.log.Debug("resync traffic rules", "trigger", trigger)
		}
		err = m.syncLocked(ctx)
	}
	m.mu.Unlock()
	if err != nil && ctx.Err() == nil {
		m.log.Error("resync traffic rules", "trigger", trigger, "err", err)
	}
}

func (m *manager) Cleanup(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.haveSpec = false
	m.keep = [2]keepState{}
	m.fwd = [2]keepState{}
	return errors.Join(m.active.Cleanup(ctx), m.other.Cleanup(ctx))
}
