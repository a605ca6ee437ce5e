package rules_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/rules"
)

// countingHandler passes records on and counts them by message and
// "trigger" attribute, so a test can see how often the Manager resynced.
type countingHandler struct {
	slog.Handler
	mu     *sync.Mutex
	counts map[string]int
}

func newCountingLog(t *testing.T) (*slog.Logger, func(key string) int) {
	h := countingHandler{Handler: testLog(t).Handler(), mu: &sync.Mutex{}, counts: map[string]int{}}
	count := func(key string) int {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.counts[key]
	}
	return slog.New(h), count
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	key := r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "trigger" {
			key += "/" + a.Value.String()
		}
		return true
	})
	h.mu.Lock()
	h.counts[key]++
	h.mu.Unlock()
	return h.Handler.Handle(ctx, r)
}

func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h.Handler = h.Handler.WithAttrs(as)
	return h
}

func (h countingHandler) WithGroup(name string) slog.Handler {
	h.Handler = h.Handler.WithGroup(name)
	return h
}

const notifiedResync = "resync traffic rules/nftables change"

// assertNoNAT fails unless the namespace has no NAT hook of any kind: no
// nft chain of type nat (which includes iptables-nft's nat table), no
// iptables-legacy nat table in either family.
func assertNoNAT(t *testing.T, ns string) {
	t.Helper()
	if out := nstest.Exec(t, ns, "nft", "list", "ruleset"); strings.Contains(out, "type nat") || strings.Contains(out, "table ip nat") {
		t.Errorf("nft shows NAT:\n%s", out)
	}
	for _, prog := range []string{"iptables-legacy-save", "ip6tables-legacy-save"} {
		if out := nstest.Exec(t, ns, prog); strings.Contains(out, "*nat") {
			t.Errorf("%s shows a nat table:\n%s", prog, out)
		}
	}
	for _, f := range []string{"/proc/net/ip_tables_names", "/proc/net/ip6_tables_names"} {
		out, err := nstest.ExecErr(ns, "cat", f)
		if err != nil {
			if _, statErr := os.Stat(f); errors.Is(statErr, os.ErrNotExist) {
				continue // ip_tables not loaded at all
			}
			t.Fatalf("read %s: %v %s", f, err, out)
		}
		if strings.Contains(out, "nat") {
			t.Errorf("%s lists nat: %q", f, out)
		}
	}
}

// weftJumpFirst reports whether nat POSTROUTING starts with a jump of
// weft's (iptables-save without -t, which creates no table).
func weftJumpFirst(t *testing.T, ns, variant string) bool {
	t.Helper()
	return strings.Contains(firstPostrouting(t, ns, "iptables-"+variant), `--comment "flanneld masq"`)
}

// firstPostrouting is the first rule of nat POSTROUTING as prog-save
// (iptables-nft, ip6tables-legacy...) prints it, or "".
func firstPostrouting(t *testing.T, ns, prog string) string {
	t.Helper()
	for _, l := range strings.Split(nstest.Exec(t, ns, prog+"-save"), "\n") {
		if strings.HasPrefix(l, "-A POSTROUTING ") {
			return l
		}
	}
	return ""
}

// TestKeepSourceOnDemand: without --ip-masq and without NAT or forward
// filtering of anyone else's, weft adds no NAT hook and no forward hook at
// all; when "Docker starts" while Run is running, the keep-source and
// forward rules appear without a Sync — within
// milliseconds where the change notifies (iptables-nft, nft; the resync
// period is a minute there, so only the notification explains it), by
// the next tick with iptables-legacy — and pod B sees pod A's address.
// Weft's own writes cause no resync loop. A Docker restart in iptables-nft
// mode is repaired as fast. Removing Docker's NAT keeps the rules
// (sticky), also across an agent restart, until Cleanup.
func TestKeepSourceOnDemand(t *testing.T) {
	type kcase struct {
		modeCase
		notifies bool // Docker's writes cause nftables notifications
	}
	for _, kc := range []kcase{
		{modeCases[0], true},  // iptables-nft
		{modeCases[1], false}, // iptables-legacy
		{modeCases[3], true},  // nftables, Docker on iptables-nft
	} {
		mc := kc.modeCase
		t.Run(mc.name, func(t *testing.T) {
			requireTools(t, append(tools(mc), "nft", "iptables-legacy-save", "ip6tables-legacy-save", "ip6tables-"+mc.docker)...)
			c := newCluster(t)
			iptablesMode := mc.mode == rules.IPTables
			spec := dualSpec
			spec.Masq = false

			log, count := newCountingLog(t)
			m, err := rules.New(mc.mode, log, rules.WithNetns(c.hostA), rules.WithIPTablesVariant(mc.variant))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if err := m.Sync(ctx, spec); err != nil {
				t.Fatal(err)
			}
			assertNoNAT(t, c.hostA)
			keepSourceIn := func(f family) bool {
				if iptablesMode {
					return strings.Contains(nstest.Exec(t, c.hostA, f.ipt+"-"+mc.docker+"-save"), "-A WEFT-KEEPSRC")
				}
				out, _ := nstest.ExecErr(c.hostA, "nft", "list", "table", f.nft, f.table)
				return strings.Contains(out, "chain keepsrc")
			}
			keepSource := func() bool { return keepSourceIn(ipv4) }
			forwardRules := func() bool {
				if iptablesMode {
					return strings.Contains(nstest.Exec(t, c.hostA, "iptables-"+mc.docker+"-save"), "-A FLANNEL-FWD -s 10.244.0.0/16")
				}
				out, _ := nstest.ExecErr(c.hostA, "nft", "list", "table", "ip", "flannel-ipv4")
				return strings.Contains(out, "chain forward")
			}
			// Nothing filters forwarded traffic yet either, so weft adds no
			// forward hook: the host's data path is exactly the kernel's.
			if forwardRules() {
				t.Error("forward rules installed although nothing filters forwarded traffic")
			}
			if out := nstest.Exec(t, c.hostA, "nft", "list", "ruleset"); strings.Contains(out, "hook forward") {
				t.Errorf("a forward hook exists although nothing asked for one:\n%s", out)
			}
			if keepSource() || keepSourceIn(ipv6) {
				t.Fatal("keep-source installed without NAT")
			}
			for _, f := range bothFamilies {
				expectSource(t, f.name+": no NAT anywhere", c.podA, f.podB, f.podA)
			}

			period := time.Minute
			deadline := 3 * time.Second
			if !kc.notifies {
				period = 300 * time.Millisecond
				deadline = period + 3*time.Second
			}
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); _ = m.Run(ctx, period) }()
			defer wg.Wait()
			defer cancel()

			// Docker starts after weft: its MASQUERADE, and its FORWARD
			// policy DROP. (In nftables mode weft's accept cannot overrule
			// a drop in iptables' chain, docs/rules.md; there "Docker"
			// leaves the policy at ACCEPT, which still creates the chain.)
			policy := "DROP"
			if !iptablesMode {
				policy = "ACCEPT"
			}
			docker(t, c.hostA, mc.docker, "-I", ipv4)
			nstest.Exec(t, c.hostA, "iptables-"+mc.docker, "-w", "-P", "FORWARD", policy)
			start := time.Now()
			nstest.Eventually(t, deadline, func() error {
				if !keepSource() {
					return errors.New("keep-source not installed after Docker's NAT appeared")
				}
				if !forwardRules() {
					return errors.New("forward rules not installed after Docker's FORWARD chain appeared")
				}
				return nil
			})
			t.Logf("keep-source and forward rules installed %v after Docker's rules appeared (resync period %v)", time.Since(start).Round(time.Millisecond), period)
			if iptablesMode {
				nstest.Eventually(t, deadline, func() error {
					if !weftJumpFirst(t, c.hostA, mc.docker) {
						return errors.New("weft's jump is not on top of POSTROUTING")
					}
					return nil
				})
			}
			expectSource(t, "Docker started after weft", c.podA, podBAddr, podAAddr)
			expectSource(t, "pod to internet, Docker's masquerade", c.podA, inetAddr, hostAAddr)

			// The decision is per family: Docker's IPv4 NAT leaves IPv6
			// without a NAT hook of weft's, until Docker's IPv6 is turned
			// on too.
			if keepSourceIn(ipv6) {
				t.Error("IPv6 keep-source installed although only IPv4 has NAT")
			}
			docker(t, c.hostA, mc.docker, "-I", ipv6)
			start = time.Now()
			nstest.Eventually(t, deadline, func() error {
				if !keepSourceIn(ipv6) {
					return errors.New("IPv6 keep-source not installed after Docker's ip6tables NAT appeared")
				}
				return nil
			})
			t.Logf("IPv6 keep-source installed %v after Docker's ip6tables rule appeared (resync period %v)", time.Since(start).Round(time.Millisecond), period)
			if iptablesMode {
				nstest.Eventually(t, deadline, func() error {
					if !strings.HasPrefix(firstPostrouting(t, c.hostA, ipv6.ipt+"-"+mc.docker), `-A POSTROUTING -m comment --comment "flanneld masq"`) {
						return errors.New("weft's jump is not on top of ip6tables POSTROUTING")
					}
					return nil
				})
			}
			expectSource(t, "IPv6: Docker started after weft", c.podA, ipv6.podB, ipv6.podA)
			expectSource(t, "IPv6: pod to internet, Docker's masquerade", c.podA, ipv6.inet, ipv6.hostA)
			docker(t, c.hostA, mc.docker, "-D", ipv6)

			if kc.notifies {
				// Weft's own writes notify too; the resync they cause finds
				// nothing to do, writes nothing, and the notifications stop.
				last, since := count(notifiedResync), time.Now()
				nstest.Eventually(t, 3*time.Second, func() error {
					if n := count(notifiedResync); n != last {
						last, since = n, time.Now()
					}
					if time.Since(since) < 300*time.Millisecond {
						return fmt.Errorf("notification-driven resyncs still going on (%d so far)", last)
					}
					return nil
				})
				t.Logf("notification-driven resyncs so far: %d", last)
			}

			// Docker restarts: its rule is deleted and inserted on top again.
			docker(t, c.hostA, mc.docker, "-D", ipv4)
			docker(t, c.hostA, mc.docker, "-I", ipv4)
			start = time.Now()
			if iptablesMode {
				nstest.Eventually(t, deadline, func() error {
					if !weftJumpFirst(t, c.hostA, mc.docker) {
						return errors.New("weft's jump is not back on top of POSTROUTING")
					}
					return nil
				})
				t.Logf("weft's jump back on top %v after Docker's re-insert (resync period %v)", time.Since(start).Round(time.Millisecond), period)
			}
			expectSource(t, "after a Docker restart", c.podA, podBAddr, podAAddr)

			// Docker goes away. In nftables mode its whole iptables-nft nat
			// table goes too, so that nothing but stickiness keeps keepsrc.
			docker(t, c.hostA, mc.docker, "-D", ipv4)
			if !iptablesMode {
				nstest.Exec(t, c.hostA, "nft", "delete", "table", "ip", "nat")
			}
			// A breakage made after Docker's removal and repaired by Run
			// proves that a resync ran since.
			if iptablesMode {
				nstest.Exec(t, c.hostA, "iptables-"+mc.docker, "-w", "-F", "FLANNEL-FWD")
			} else {
				nstest.Exec(t, c.hostA, "nft", "flush", "chain", "ip", "flannel-ipv4", "forward")
			}
			nstest.Eventually(t, deadline, func() error {
				var out string
				if iptablesMode {
					out = nstest.Exec(t, c.hostA, "iptables-"+mc.docker+"-save")
				} else {
					out, _ = nstest.ExecErr(c.hostA, "nft", "list", "chain", "ip", "flannel-ipv4", "forward")
				}
				if !strings.Contains(out, "10.244.0.0/16") {
					return errors.New("forward rules not repaired yet")
				}
				return nil
			})
			if !keepSource() {
				t.Fatal("keep-source removed after Docker's NAT went away; it must stay until cleanup")
			}
			expectSource(t, "Docker gone, keep-source kept", c.podA, podBAddr, podAAddr)

			// The agent restarts: a new Manager finds the rules installed.
			cancel()
			wg.Wait()
			m2, err := rules.New(mc.mode, testLog(t), rules.WithNetns(c.hostA), rules.WithIPTablesVariant(mc.variant))
			if err != nil {
				t.Fatal(err)
			}
			if err := m2.Sync(context.Background(), spec); err != nil {
				t.Fatal(err)
			}
			if !keepSource() {
				t.Fatal("a restarted Manager removed the keep-source rules")
			}

			if err := m2.Cleanup(context.Background()); err != nil {
				t.Fatal(err)
			}
			assertNoWeftRules(t, c.hostA)
		})
	}
}
