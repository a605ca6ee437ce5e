package rules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/knftables"

	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/rules/nftables"
	"github.com/weftnet/weft/internal/rules/ruleexec"
)

// driftingNFT is nft on a host without iptables (knftables' fake behind
// nftables.Fake), whose IPv4 table the test can change behind weft's back.
type driftingNFT struct {
	fake *nftables.Fake

	mu      sync.Mutex
	written []string // the IPv4 table (knftables dump) after every write
	syncs   int      // reads of the IPv6 table: one per Sync, as the tests' specs are IPv4 only
}

// newDriftingNFT returns the fake and the Options that put a Manager on
// it: nft on the fake, iptables programs missing.
func newDriftingNFT() (*driftingNFT, []Option) {
	d := &driftingNFT{fake: nftables.NewFake()}
	d.fake.AfterWrite = func(int) {
		dump := d.fake.Tables[0].Dump()
		d.mu.Lock()
		d.written = append(d.written, dump)
		d.mu.Unlock()
	}
	noPrograms := &ruleexec.Fake{Handle: func(c ruleexec.Call) ([]byte, error) { return nil, ruleexec.NotFound(c.Name) }}
	return d, []Option{WithRunner(noPrograms), withNFT(func(o *nftables.Options) {
		d.fake.Options(o)
		read := o.Read
		o.Read = func(family knftables.Family, table string) (nftables.State, error) {
			if family == knftables.IPv6Family {
				d.mu.Lock()
				d.syncs++
				d.mu.Unlock()
			}
			return read(family, table)
		}
	})}
}

// tamper deletes the first rule of one of weft's IPv4 chains.
func (d *driftingNFT) tamper() {
	t := d.fake.Tables[0]
	t.Lock()
	defer t.Unlock()
	for _, c := range t.Table.Chains {
		if len(c.Rules) > 0 {
			c.Rules = c.Rules[1:]
			return
		}
	}
}

func (d *driftingNFT) last() (int, string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.written) == 0 {
		return 0, ""
	}
	return len(d.written), d.written[len(d.written)-1]
}

func (d *driftingNFT) syncCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.syncs
}

// noNAT is a namespace without NAT of anyone's.
func noNAT() (natFound, error) { return natFound{}, nil }

func TestRunResyncsLatestSpec(t *testing.T) {
	nft, opts := newDriftingNFT()
	// Without nftables notifications Run works on its timer alone.
	noEvents := func(context.Context) (<-chan struct{}, error) { return nil, errors.New("no notifications here") }
	m, err := New(NFTables, slog.New(slog.DiscardHandler), append(opts, withNATScan(noNAT), withEvents(noEvents))...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.Run(ctx, 10*time.Millisecond) }()

	s := Spec{Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix("10.244.1.0/24"), Masq: true}
	if err := m.Sync(ctx, s); err != nil {
		t.Fatal(err)
	}
	s.Subnet = netip.MustParsePrefix("10.244.9.0/24")
	if err := m.Sync(ctx, s); err != nil {
		t.Fatal(err)
	}
	n, _ := nft.last()
	nft.tamper()
	nstest.Eventually(t, 2*time.Second, func() error {
		if got, def := nft.last(); got <= n || !strings.Contains(def, "10.244.9.0/24") {
			return fmt.Errorf("Run has not rewritten the drifted table with the latest spec (%d writes)", got)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run returned %v after cancel, want nil", err)
	}
}

func TestNewRejects(t *testing.T) {
	if _, err := New("ipvs", slog.New(slog.DiscardHandler)); err == nil {
		t.Error("unknown mode accepted")
	}
	if _, err := New(IPTables, slog.New(slog.DiscardHandler), WithIPTablesVariant("nf")); err == nil {
		t.Error("unknown variant accepted")
	}
	if ModeFor(true) != NFTables || ModeFor(false) != IPTables {
		t.Error("ModeFor")
	}
}

// fakeNAT is what a test says the namespace holds; it counts the looks.
type fakeNAT struct {
	mu    sync.Mutex
	found natFound
	err   error
	scans int
}

func (f *fakeNAT) set(found natFound, err error) {
	f.mu.Lock()
	f.found, f.err = found, err
	f.mu.Unlock()
}

func (f *fakeNAT) scan() (natFound, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scans++
	return f.found, f.err
}

func (f *fakeNAT) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.scans
}

// fakeEvents stands in for the nftables notification socket.
type fakeEvents struct{ ch chan struct{} }

func newFakeEvents() *fakeEvents { return &fakeEvents{ch: make(chan struct{}, 1)} }

// watch hands Run a channel that forwards the test's signals and is
// closed when Run's context ends, as the real watcher's is.
func (e *fakeEvents) watch(ctx context.Context) (<-chan struct{}, error) {
	out := make(chan struct{}, 1)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case <-e.ch:
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out, nil
}

// notify signals an nftables change without blocking, as the kernel's
// notifications coalesce in the real watcher.
func (e *fakeEvents) notify() {
	select {
	case e.ch <- struct{}{}:
	default:
	}
}

// hostForward is a host whose FORWARD chain exists (Docker's, a
// firewall's), so that the forward rules are installed.
var hostForward = [2][]string{{"iptables-nft FORWARD chain (nft table ip filter)"}}

var dockerNAT = natFound{foreign: [2][]string{{"iptables-nft nat table (nft table ip nat)"}}, forward: hostForward}

func hasKeepSource(def string) bool { return strings.Contains(def, "chain ip flannel-ipv4 keepsrc") }

// runOnDemand starts an nftables Manager on fakes, with Run's period far
// too long to matter: only Sync and notifications (ev) make it act. done
// receives Run's result once cancel is called.
func runOnDemand(t *testing.T) (Manager, *driftingNFT, *fakeNAT, *fakeEvents, context.Context, context.CancelFunc, chan error) {
	t.Helper()
	nft, opts := newDriftingNFT()
	nat := &fakeNAT{}
	ev := newFakeEvents()
	m, err := New(NFTables, slog.New(slog.DiscardHandler), append(opts, withNATScan(nat.scan), withEvents(ev.watch))...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, time.Hour) }()
	return m, nft, nat, ev, ctx, cancel, done
}

// TestKeepSourceOnDemand drives the Manager's keep-source decision
// through Sync and notification-driven resyncs: deferred without NAT,
// installed within the debounce when NAT appears (with a resync period
// far too long to explain it), kept when the NAT goes again, dropped only
// by Cleanup; --ip-masq installs it without looking, and a failed look
// installs it to be safe.
func TestKeepSourceOnDemand(t *testing.T) {
	m, nft, nat, ev, ctx, cancel, done := runOnDemand(t)
	defer cancel()

	s := Spec{Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix("10.244.1.0/24"),
		Forward: true, KeepSource: true}
	nat.set(natFound{forward: hostForward}, nil)
	if err := m.Sync(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, def := nft.last(); def == "" || hasKeepSource(def) {
		t.Fatalf("without NAT the table must hold the forward chain only:\n%s", def)
	}

	nat.set(dockerNAT, nil)
	start := time.Now()
	ev.notify()
	nstest.Eventually(t, 2*time.Second, func() error {
		if _, def := nft.last(); !hasKeepSource(def) {
			return errors.New("keepsrc not installed after Docker's NAT appeared")
		}
		return nil
	})
	t.Logf("keep-source installed %v after the notification", time.Since(start).Round(time.Millisecond))

	// Docker removes its rule: nothing NATs, but keep-source stays.
	nat.set(natFound{}, nil)
	writes, _ := nft.last()
	syncs := nft.syncCount()
	ev.notify()
	nstest.Eventually(t, 2*time.Second, func() error {
		if nft.syncCount() == syncs {
			return errors.New("no resync after the notification")
		}
		return nil
	})
	if n, def := nft.last(); n != writes || !hasKeepSource(def) {
		t.Errorf("keep-source not sticky: %d writes (was %d), last:\n%s", n, writes, def)
	}
	scans := nat.count()
	if err := m.Sync(ctx, s); err != nil {
		t.Fatal(err)
	}
	if nat.count() != scans {
		t.Error("looked for NAT although keep-source is installed")
	}

	// A burst of notifications is one resync (two at most, should the
	// burst straddle the debounce).
	syncs = nft.syncCount()
	for range 50 {
		ev.notify()
	}
	nstest.Eventually(t, 2*time.Second, func() error {
		if nft.syncCount() == syncs {
			return errors.New("no resync after the burst")
		}
		return nil
	})
	if got := nft.syncCount() - syncs; got > 2 {
		t.Errorf("a burst of 50 notifications caused %d resyncs", got)
	}

	// Cleanup forgets the decision.
	if err := m.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, def := nft.last(); hasKeepSource(def) {
		t.Errorf("keep-source survived Cleanup without NAT:\n%s", def)
	}

	// --ip-masq: installed without a look (for keep-source; the forward
	// rules would still need one, so they are off here).
	scans = nat.count()
	masq := s
	masq.Masq = true
	masq.Forward = false
	if err := m.Sync(ctx, masq); err != nil {
		t.Fatal(err)
	}
	if _, def := nft.last(); !hasKeepSource(def) || nat.count() != scans {
		t.Errorf("--ip-masq: keepsrc installed %v, looks %d → %d", hasKeepSource(def), scans, nat.count())
	}

	// A look that fails installs it to be safe.
	if err := m.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	nat.set(natFound{}, errors.New("netlink: operation not permitted"))
	if err := m.Sync(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, def := nft.last(); !hasKeepSource(def) {
		t.Errorf("failed look: keepsrc not installed:\n%s", def)
	}

	// Not asked for: never installed, NAT or not.
	if err := m.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	nat.set(dockerNAT, nil)
	off := s
	off.KeepSource = false
	if err := m.Sync(ctx, off); err != nil {
		t.Fatal(err)
	}
	if _, def := nft.last(); hasKeepSource(def) {
		t.Errorf("keepsrc installed although not asked for:\n%s", def)
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run returned %v after cancel, want nil", err)
	}
}

// TestEventLimiter: a burst of notification-driven resyncs goes through
// at once, then they are spaced eventEvery apart; idle time refills.
func TestEventLimiter(t *testing.T) {
	var l eventLimiter
	now := time.Unix(1000, 0)
	for i := range eventBurst {
		if w := l.wait(now); w != 0 {
			t.Fatalf("resync %d of a burst waits %v", i+1, w)
		}
		l.take(now)
	}
	if w := l.wait(now); w != eventEvery {
		t.Errorf("after the burst: wait %v, want %v", w, eventEvery)
	}
	now = now.Add(eventEvery / 2)
	if w := l.wait(now); w != eventEvery/2 {
		t.Errorf("half a period later: wait %v, want %v", w, eventEvery/2)
	}
	now = now.Add(eventEvery / 2)
	l.take(now)
	if w := l.wait(now); w != eventEvery {
		t.Errorf("sustained: wait %v, want %v", w, eventEvery)
	}
	now = now.Add(time.Hour)
	for i := range eventBurst {
		if w := l.wait(now); w != 0 {
			t.Fatalf("after idling, resync %d waits %v", i+1, w)
		}
		l.take(now)
	}
}

// TestForwardOnDemand: the forward accept rules wait for a filter chain on
// the forward hook (weft would otherwise add the only one), appear on the
// notification that one exists, and stay when it goes again.
func TestForwardOnDemand(t *testing.T) {
	m, nft, nat, ev, ctx, cancel, done := runOnDemand(t)
	defer cancel()

	hasForward := func(def string) bool { return strings.Contains(def, "chain ip flannel-ipv4 forward") }
	s := Spec{Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix("10.244.1.0/24"),
		Forward: true, KeepSource: true}
	if err := m.Sync(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, def := nft.last(); hasForward(def) || hasKeepSource(def) {
		t.Fatalf("nothing filters or NATs here, yet weft wrote:\n%s", def)
	}

	nat.set(natFound{forward: hostForward}, nil)
	ev.notify()
	nstest.Eventually(t, 2*time.Second, func() error {
		if _, def := nft.last(); !hasForward(def) {
			return errors.New("forward chain not installed after a FORWARD chain appeared")
		}
		return nil
	})
	if _, def := nft.last(); hasKeepSource(def) {
		t.Errorf("a filter chain alone installed keep-source:\n%s", def)
	}

	nat.set(natFound{}, nil)
	syncs := nft.syncCount()
	ev.notify()
	nstest.Eventually(t, 2*time.Second, func() error {
		if nft.syncCount() == syncs {
			return errors.New("no resync after the notification")
		}
		return nil
	})
	if _, def := nft.last(); !hasForward(def) {
		t.Errorf("forward rules not sticky:\n%s", def)
	}

	// A failed look installs them, as flannel always does.
	_, opts := newDriftingNFT()
	m2, err := New(NFTables, slog.New(slog.DiscardHandler),
		append(opts, withNATScan(func() (natFound, error) { return natFound{}, errors.New("netlink says no") }))...)
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.Sync(ctx, s); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}
