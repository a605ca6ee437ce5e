package rules_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/rules"
)

// The integration tests run the real iptables and nft programs inside
// namespaces built per test, a dual-stack cluster:
//
//	[podA 10.244.1.2 fd10:0:0:1::2]          [podB 10.244.2.2 fd10:0:0:2::2]
//	      | veth                                   | veth
//	[hostA cni0 10.244.1.1 fd10:0:0:1::1]    [hostB cni0 10.244.2.1 fd10:0:0:2::1]    [inet]
//	[hostA eth0 192.168.77.1 fd77::1]        [hostB eth0 192.168.77.2 fd77::2]        [eth0 192.168.77.100 fd77::100]
//	      \_______________________________ br0 (underlay ns) _______________________________/
//
// hostA routes podB's subnet of each family via hostB and hostB podA's via
// hostA (static routes: these tests are about rules, not backends). inet
// has no route to either cluster network, so a pod reaches it only when
// masqueraded. podB and inet run a TCP server on each family's address
// that answers each connection with the client address it saw. Only
// hostA gets weft's rules, and plays "Docker" too: `-I POSTROUTING 1 -s
// <pod subnet> ! -o cni0 -j MASQUERADE`, the rule of seed 000 §3, in
// iptables and, as Docker with IPv6 on writes it, in ip6tables.

const (
	echoPort  = 7000
	hostAAddr = "192.168.77.1"
	podAAddr  = "10.244.1.2"
	podBAddr  = "10.244.2.2"
	inetAddr  = "192.168.77.100"
)

var clusterSpec = rules.Spec{
	Network: netip.MustParsePrefix("10.244.0.0/16"),
	Subnet:  netip.MustParsePrefix("10.244.1.0/24"),
	Masq:    true, FullyRandom: true, Forward: true, KeepSource: true,
}

// dualSpec is clusterSpec with the cluster's IPv6 network added.
var dualSpec = func() rules.Spec {
	s := clusterSpec
	s.IPv6Network = netip.MustParsePrefix("fd10::/48")
	s.IPv6Subnet = netip.MustParsePrefix("fd10:0:0:1::/64")
	return s
}()

// family is one address family of the test cluster: its programs, weft's
// nftables table, and the addresses of the picture above.
type family struct {
	name    string // for messages
	ipt     string // iptables program prefix: iptables, ip6tables
	nft     string // nftables family: ip, ip6
	table   string // weft's nftables table
	network string // the cluster network
	subnet  string // hostA's pod subnet
	hostA   string // hostA's underlay address, what masquerading gives
	podA    string
	podB    string
	inet    string
	podAGW  string // hostA's cni0 address
	podBGW  string // hostB's cni0 address
	hostB   string
	plen    string // prefix length of the pod subnets and the underlay
}

var (
	ipv4 = family{name: "IPv4", ipt: "iptables", nft: "ip", table: "flannel-ipv4",
		network: "10.244.0.0/16", subnet: "10.244.1.0/24",
		hostA: hostAAddr, podA: podAAddr, podB: podBAddr, inet: inetAddr,
		podAGW: "10.244.1.1", podBGW: "10.244.2.1", hostB: "192.168.77.2", plen: "24"}
	ipv6 = family{name: "IPv6", ipt: "ip6tables", nft: "ip6", table: "flannel-ipv6",
		network: "fd10::/48", subnet: "fd10:0:0:1::/64",
		hostA: "fd77::1", podA: "fd10:0:0:1::2", podB: "fd10:0:0:2::2", inet: "fd77::100",
		podAGW: "fd10:0:0:1::1", podBGW: "fd10:0:0:2::1", hostB: "fd77::2", plen: "64"}
	bothFamilies = []family{ipv4, ipv6}
)

// podSubnet is the pod subnet holding pod, which the other host routes
// via pod's host.
func (f family) podSubnet(pod string) string {
	p := netip.MustParsePrefix(pod + "/" + f.plen)
	return p.Masked().String()
}

type cluster struct {
	hostA, podA, podB, inet string
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	nstest.RequireRoot(t)
	c := &cluster{
		hostA: nstest.NewNS(t, "ra"),
		podA:  nstest.NewNS(t, "rpa"),
		podB:  nstest.NewNS(t, "rpb"),
		inet:  nstest.NewNS(t, "ri"),
	}
	under := nstest.NewNS(t, "ru")
	hostB := nstest.NewNS(t, "rb")
	for _, ns := range []string{c.hostA, c.podA, c.podB, c.inet, hostB} {
		nstest.Exec(t, ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0", "net.ipv6.conf.default.disable_ipv6=0")
	}
	nstest.Exec(t, under, "ip", "link", "add", "br0", "type", "bridge")
	nstest.Exec(t, under, "ip", "link", "set", "br0", "up")
	for i, h := range []struct {
		ns   string
		addr func(family) string
	}{
		{c.hostA, func(f family) string { return f.hostA }},
		{hostB, func(f family) string { return f.hostB }},
		{c.inet, func(f family) string { return f.inet }},
	} {
		port := fmt.Sprintf("u%d", i)
		nstest.Exec(t, under, "ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", h.ns)
		nstest.Exec(t, under, "ip", "link", "set", port, "master", "br0", "up")
		for _, f := range bothFamilies {
			addAddr(t, h.ns, h.addr(f)+"/"+f.plen, "eth0")
		}
		nstest.Exec(t, h.ns, "ip", "link", "set", "eth0", "up")
	}
	for _, hp := range []struct {
		host, pod           string
		gw, addr, peer, via func(family) string
	}{
		{c.hostA, c.podA, func(f family) string { return f.podAGW }, func(f family) string { return f.podA },
			func(f family) string { return f.podSubnet(f.podB) }, func(f family) string { return f.hostB }},
		{hostB, c.podB, func(f family) string { return f.podBGW }, func(f family) string { return f.podB },
			func(f family) string { return f.podSubnet(f.podA) }, func(f family) string { return f.hostA }},
	} {
		nstest.Exec(t, hp.host, "ip", "link", "add", "cni0", "type", "bridge")
		nstest.Exec(t, hp.host, "ip", "link", "add", "vpod", "type", "veth", "peer", "name", "eth0", "netns", hp.pod)
		nstest.Exec(t, hp.host, "ip", "link", "set", "vpod", "master", "cni0", "up")
		nstest.Exec(t, hp.host, "ip", "link", "set", "cni0", "up")
		nstest.Exec(t, hp.pod, "ip", "link", "set", "eth0", "up")
		for _, f := range bothFamilies {
			addAddr(t, hp.host, hp.gw(f)+"/"+f.plen, "cni0")
			addAddr(t, hp.pod, hp.addr(f)+"/"+f.plen, "eth0")
			nstest.Exec(t, hp.pod, "ip", "route", "add", "default", "via", hp.gw(f))
			nstest.Exec(t, hp.host, "ip", "route", "add", hp.peer(f), "via", hp.via(f))
		}
		nstest.Exec(t, hp.host, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	}
	for _, f := range bothFamilies {
		startEcho(t, c.podB, f.podB)
		startEcho(t, c.inet, f.inet)
	}
	return c
}

// addAddr adds an address without IPv6 duplicate address detection, so
// that it is usable at once.
func addAddr(t *testing.T, ns, addr, dev string) {
	t.Helper()
	args := []string{"ip", "addr", "add", addr, "dev", dev}
	if netip.MustParsePrefix(addr).Addr().Is6() {
		args = append(args, "nodad")
	}
	nstest.Exec(t, ns, args...)
}

// startEcho runs a TCP server on addr:echoPort inside ns that writes the
// client address it sees and closes; it stops when the test ends.
func startEcho(t *testing.T, ns, addr string) {
	t.Helper()
	var ln net.Listener
	if err := netns.Do(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(addr, fmt.Sprint(echoPort)))
		return err
	}); err != nil {
		t.Fatalf("listen in %s: %v", ns, err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s\n", c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap())
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
}

// seenSource connects from inside ns to the echo server at dst and returns
// the source address the server saw.
func seenSource(ns, dst string) (string, error) {
	var line string
	err := netns.Do(ns, func() error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(dst, fmt.Sprint(echoPort)), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		line, err = bufio.NewReader(c).ReadString('\n')
		return err
	})
	if err != nil {
		return "", fmt.Errorf("connect from %s to %s: %w", ns, dst, err)
	}
	return strings.TrimSpace(line), nil
}

// expectSource fails the test unless a connection from ns to dst arrives
// with source want.
func expectSource(t *testing.T, what, ns, dst, want string) {
	t.Helper()
	got, err := seenSource(ns, dst)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if got != want {
		t.Fatalf("%s: %s saw source %s, want %s", what, dst, got, want)
	}
}

func requireTools(t *testing.T, names ...string) {
	t.Helper()
	nstest.RequireTools(t, names...)
}

// testLog sends a manager's log lines to the test log.
func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// dockerRule is the masquerade rule Docker writes for a bridge on hostA's
// pod subnet.
func dockerRule(f family) string { return "-s " + f.subnet + " ! -o cni0 -j MASQUERADE" }

// docker plays Docker's part on a host: its MASQUERADE rule for each of
// fams, inserted at the top as dockerd does at every start, in the given
// iptables variant.
func docker(t *testing.T, ns, variant string, op string, fams ...family) {
	t.Helper()
	for _, f := range fams {
		args := []string{f.ipt + "-" + variant, "-w", "-t", "nat", op, "POSTROUTING"}
		if op == "-I" {
			args = append(args, "1")
		}
		nstest.Exec(t, ns, append(args, strings.Fields(dockerRule(f))...)...)
	}
}

type modeCase struct {
	name    string
	mode    rules.Mode
	variant string // forced iptables variant; "" detects
	docker  string // the iptables variant "Docker" writes with
}

var modeCases = []modeCase{
	{"iptables-nft", rules.IPTables, "nft", "nft"},
	{"iptables-legacy", rules.IPTables, "legacy", "legacy"},
	{"iptables-detects-legacy", rules.IPTables, "", "legacy"},
	{"nftables/docker-on-iptables-nft", rules.NFTables, "", "nft"},
	{"nftables/docker-on-iptables-legacy", rules.NFTables, "", "legacy"},
}

func tools(mc modeCase) []string {
	names := []string{"iptables-" + mc.docker}
	if mc.mode == rules.NFTables {
		names = append(names, "nft")
	} else {
		names = append(names, "iptables-legacy-save", "iptables-nft-save")
	}
	return names
}

// TestPodSourceKept is seed 000 §3 end to end, in every mode and both
// families: Docker's MASQUERADE (and, with Docker's IPv6 on, its ip6tables
// MASQUERADE) turns pod → remote-pod sources into the host's address until
// weft's rules are in; then pods keep their addresses with Docker's rule
// present from the start, re-added on top by a "Docker restart", and
// absent; pods reaching the "internet" are masqueraded to the host's
// address throughout; and after Cleanup Docker's rule bites again.
func TestPodSourceKept(t *testing.T) {
	for _, mc := range modeCases {
		t.Run(mc.name, func(t *testing.T) {
			requireTools(t, append(tools(mc), "ip6tables-"+mc.docker)...)
			c := newCluster(t)
			iptablesMode := mc.mode == rules.IPTables
			// expect checks, in each family, the source a connection from
			// podA to dst arrives with.
			expect := func(what string, dst, want func(family) string) {
				t.Helper()
				for _, f := range bothFamilies {
					expectSource(t, f.name+": "+what, c.podA, dst(f), want(f))
				}
			}
			podB := func(f family) string { return f.podB }
			inet := func(f family) string { return f.inet }
			podA := func(f family) string { return f.podA }
			hostA := func(f family) string { return f.hostA }

			docker(t, c.hostA, mc.docker, "-I", bothFamilies...)
			expect("control: Docker's rule without weft", podB, hostA)
			if iptablesMode {
				// Docker also sets FORWARD to DROP; weft's FLANNEL-FWD must
				// let cluster traffic through.
				for _, f := range bothFamilies {
					nstest.Exec(t, c.hostA, f.ipt+"-"+mc.docker, "-w", "-P", "FORWARD", "DROP")
				}
			}

			m, err := rules.New(mc.mode, testLog(t), rules.WithNetns(c.hostA), rules.WithIPTablesVariant(mc.variant))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if err := m.Sync(ctx, dualSpec); err != nil {
				t.Fatal(err)
			}
			if iptablesMode {
				// Detection must have picked Docker's variant.
				for _, f := range bothFamilies {
					if out := nstest.Exec(t, c.hostA, f.ipt+"-"+mc.docker+"-save", "-t", "nat"); !strings.Contains(out, "WEFT-KEEPSRC") {
						t.Fatalf("weft's rules are not in %s-%s, Docker's variant:\n%s", f.ipt, mc.docker, out)
					}
				}
			}
			expect("Docker's rule present before weft", podB, podA)
			expect("pod to internet", inet, hostA)

			// Docker restarts: its rule is deleted and inserted at the top
			// again, above weft's jumps.
			docker(t, c.hostA, mc.docker, "-D", bothFamilies...)
			docker(t, c.hostA, mc.docker, "-I", bothFamilies...)
			if iptablesMode {
				expect("Docker's rule back on top, before weft's resync", podB, hostA)
			} else {
				// In nftables mode keepsrc runs before every iptables nat
				// table: no resync is needed at all.
				expect("Docker's rule back on top, nftables mode, no resync", podB, podA)
			}
			const period = 300 * time.Millisecond
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); _ = m.Run(ctx, period) }()
			defer wg.Wait()
			defer cancel()
			start := time.Now()
			nstest.Eventually(t, period+10*time.Second, func() error {
				for _, f := range bothFamilies {
					got, err := seenSource(c.podA, f.podB)
					if err != nil {
						return err
					}
					if got != f.podA {
						return fmt.Errorf("%s: podB saw %s", f.name, got)
					}
				}
				return nil
			})
			t.Logf("pod source kept again %v after Docker's re-insert", time.Since(start).Round(time.Millisecond))

			docker(t, c.hostA, mc.docker, "-D", bothFamilies...)
			expect("no Docker rule", podB, podA)
			expect("pod to internet, no Docker rule", inet, hostA)

			cancel()
			wg.Wait()
			docker(t, c.hostA, mc.docker, "-I", bothFamilies...)
			if err := m.Cleanup(context.Background()); err != nil {
				t.Fatal(err)
			}
			assertNoWeftRules(t, c.hostA)
			for _, f := range bothFamilies {
				if out := nstest.Exec(t, c.hostA, f.ipt+"-"+mc.docker+"-save", "-t", "nat"); !strings.Contains(out, "-A POSTROUTING "+dockerRule(f)) {
					t.Errorf("Cleanup removed Docker's %s rule:\n%s", f.name, out)
				}
				if iptablesMode {
					nstest.Exec(t, c.hostA, f.ipt+"-"+mc.docker, "-w", "-P", "FORWARD", "ACCEPT")
				}
			}
			expect("after Cleanup Docker's rule applies again", podB, hostA)
		})
	}
}

// ownRE matches anything weft or flannel installs.
var ownRE = regexp.MustCompile(`FLANNEL|WEFT|flanneld|flannel-ipv`)

// assertNoWeftRules checks every variant, family and nft for leftovers.
func assertNoWeftRules(t *testing.T, ns string) {
	t.Helper()
	for _, prog := range []string{"iptables-nft-save", "iptables-legacy-save", "ip6tables-nft-save", "ip6tables-legacy-save"} {
		if _, err := exec.LookPath(prog); err != nil {
			continue
		}
		if out := nstest.Exec(t, ns, prog); ownRE.MatchString(out) {
			t.Errorf("%s still shows weft's rules:\n%s", prog, out)
		}
	}
	if _, err := exec.LookPath("nft"); err == nil {
		if out := nstest.Exec(t, ns, "nft", "list", "ruleset"); ownRE.MatchString(out) {
			t.Errorf("nft still shows weft's tables:\n%s", out)
		}
	}
}

// hostNS is a lone host namespace for tests that only look at rules.
func hostNS(t *testing.T) string {
	t.Helper()
	nstest.RequireRoot(t)
	return nstest.NewNS(t, "rh")
}

var counters = regexp.MustCompile(`(?m)^#.*\n|\[\d+:\d+\]`)

// iptablesState is everything prog-save (iptables-nft, ip6tables-legacy...)
// shows, without comments and
// counters, so two states compare equal exactly when the rules do.
func iptablesState(t *testing.T, ns, prog string) string {
	t.Helper()
	return counters.ReplaceAllString(nstest.Exec(t, ns, prog+"-save"), "")
}

// ruleRepairs reads weft_reconcile_repairs_total{kind="rule"} as /metrics
// serves it.
func ruleRepairs(t *testing.T, m *metrics.Metrics) float64 {
	t.Helper()
	rr := httptest.NewRecorder()
	m.Handler().ServeHTTP(rr, httptest.NewRequest("GET", "/metrics", nil))
	var n float64
	for _, l := range strings.Split(rr.Body.String(), "\n") {
		if v, ok := strings.CutPrefix(l, `weft_reconcile_repairs_total{kind="rule"} `); ok {
			if _, err := fmt.Sscan(v, &n); err != nil {
				t.Fatalf("metric line %q: %v", l, err)
			}
			return n
		}
	}
	t.Fatalf("no rule repairs counter in\n%s", rr.Body.String())
	return 0
}

// TestRepairWithinResync breaks installed dual-stack rules the ways people
// and other daemons do, in each family, and checks that Run restores
// exactly the installed state within one resync period of starting (plus
// the time the programs take), and counts each restoration in
// weft_reconcile_repairs_total{kind="rule"}.
func TestRepairWithinResync(t *testing.T) {
	const period = 500 * time.Millisecond
	// Two families, each read back after its write, on a shared machine.
	const deadline = period + 10*time.Second
	type breakage struct {
		name string
		cmds [][]string
	}
	iptablesBreaks := func(v string) []breakage {
		var out []breakage
		for _, f := range bothFamilies {
			ipt := f.ipt + "-" + v
			out = append(out, []breakage{
				{f.name + ": rule deleted", [][]string{{ipt, "-w", "-t", "nat", "-D", "FLANNEL-POSTRTG", "3"}}},
				{f.name + ": rules reordered", [][]string{
					{ipt, "-w", "-I", "FLANNEL-FWD", "1", "-d", f.network, "-m", "comment", "--comment", "flanneld forward", "-j", "ACCEPT"},
					{ipt, "-w", "-D", "FLANNEL-FWD", "3"},
				}},
				{f.name + ": jump duplicated", [][]string{{ipt, "-w", "-A", "FORWARD", "-m", "comment", "--comment", "flanneld forward", "-j", "FLANNEL-FWD"}}},
				{f.name + ": chain flushed", [][]string{{ipt, "-w", "-t", "nat", "-F", "WEFT-KEEPSRC"}}},
				{f.name + ": jump moved to the end, as flannel appends it", [][]string{
					{ipt, "-w", "-t", "nat", "-D", "POSTROUTING", "1"},
					{ipt, "-w", "-t", "nat", "-A", "POSTROUTING", "-m", "comment", "--comment", "flanneld masq", "-j", "FLANNEL-POSTRTG"},
				}},
				{f.name + ": everything flushed", [][]string{{ipt, "-w", "-t", "nat", "-F"}, {ipt, "-w", "-F"}}},
			}...)
		}
		return out
	}
	nftHandle := func(t *testing.T, ns string, f family, chain, rule string) string {
		out := nstest.Exec(t, ns, "nft", "-a", "list", "chain", f.nft, f.table, chain)
		m := regexp.MustCompile(regexp.QuoteMeta(rule) + ` # handle (\d+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no rule %q in\n%s", rule, out)
		}
		return m[1]
	}
	for _, mc := range []modeCase{modeCases[0], modeCases[1], modeCases[3]} {
		t.Run(mc.name, func(t *testing.T) {
			requireTools(t, append(tools(mc), "ip6tables-nft")...)
			ns := hostNS(t)
			nstest.Exec(t, ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0")
			met := metrics.New()
			m, err := rules.New(mc.mode, testLog(t), rules.WithNetns(ns), rules.WithIPTablesVariant(mc.variant), rules.WithMetrics(met))
			if err != nil {
				t.Fatal(err)
			}
			// A host whose FORWARD chains exist (as on any host with Docker
			// or a firewall), so that weft installs its forward rules.
			for _, f := range bothFamilies {
				nstest.Exec(t, ns, f.ipt+"-nft", "-w", "-P", "FORWARD", "ACCEPT")
			}
			ctx, cancel := context.WithCancel(context.Background())
			if err := m.Sync(ctx, dualSpec); err != nil {
				t.Fatal(err)
			}
			var state func() string
			var breaks []breakage
			if mc.mode == rules.IPTables {
				state = func() string {
					var b strings.Builder
					for _, f := range bothFamilies {
						b.WriteString(iptablesState(t, ns, f.ipt+"-"+mc.variant))
					}
					return b.String()
				}
				breaks = iptablesBreaks(mc.variant)
			} else {
				state = func() string {
					var b strings.Builder
					for _, f := range bothFamilies {
						out, _ := nstest.ExecErr(ns, "nft", "list", "table", f.nft, f.table)
						b.WriteString(out)
					}
					return b.String()
				}
				for _, f := range bothFamilies {
					breaks = append(breaks, []breakage{
						{f.name + ": rule deleted", [][]string{{"nft", "delete", "rule", f.nft, f.table, "keepsrc", "handle",
							nftHandle(t, ns, f, "keepsrc", "snat to "+f.nft+" saddr")}}},
						{f.name + ": rule added", [][]string{{"nft", "insert", "rule", f.nft, f.table, "postrtg", f.nft, "saddr", f.network, "accept"}}},
						{f.name + ": table deleted", [][]string{{"nft", "delete", "table", f.nft, f.table}}},
					}...)
				}
			}
			installed := state()
			if n := ruleRepairs(t, met); n != 0 {
				t.Errorf("installing counted %v repairs", n)
			}
			// Run is stopped while a breakage is made, so that it cannot
			// repair half of it, and started again to time the repair.
			startRun := func() (stop func()) {
				ctx, cancel := context.WithCancel(ctx)
				done := make(chan struct{})
				go func() { defer close(done); _ = m.Run(ctx, period) }()
				return func() { cancel(); <-done }
			}
			restored := func(name string) {
				t.Helper()
				if state() == installed {
					t.Fatalf("%s: breaking changed nothing", name)
				}
				before := ruleRepairs(t, met)
				stop := startRun()
				defer stop()
				start := time.Now()
				nstest.Eventually(t, deadline, func() error {
					if got := state(); got != installed {
						return fmt.Errorf("%s: not restored yet:\n%s", name, got)
					}
					return nil
				})
				t.Logf("%s: restored %v after Run started (period %v)", name, time.Since(start).Round(time.Millisecond), period)
				nstest.Eventually(t, deadline, func() error {
					if n := ruleRepairs(t, met); n <= before {
						return fmt.Errorf("%s: restored, but the rule repairs counter stayed at %v", name, n)
					}
					return nil
				})
			}
			for _, b := range breaks {
				for _, cmd := range b.cmds {
					nstest.Exec(t, ns, cmd...)
				}
				restored(b.name)
			}
			if mc.mode == rules.NFTables {
				// A reordering: the forward chain's accept for the source
				// moves behind the one for the destination.
				for _, f := range bothFamilies {
					h := nftHandle(t, ns, f, "forward", f.nft+" saddr "+f.network+" accept")
					nstest.Exec(t, ns, "nft", "delete", "rule", f.nft, f.table, "forward", "handle", h)
					nstest.Exec(t, ns, "nft", "add", "rule", f.nft, f.table, "forward", f.nft, "saddr", f.network, "accept")
					restored(f.name + ": rules reordered")
				}
			}
			cancel()
		})
	}
}

// TestCleanupAndModeSwitch installs dual-stack rules in one mode, switches
// to the other and back, and cleans up: each switch must leave only the
// new mode's rules, Cleanup none at all, and others' rules must survive.
// It starts from a host where an old flannel left its rules in
// iptables-legacy while weft is told to use iptables-nft.
func TestCleanupAndModeSwitch(t *testing.T) {
	requireTools(t, "iptables-nft-save", "iptables-legacy-save", "ip6tables-nft-save", "nft")
	ns := hostNS(t)
	nstest.Exec(t, ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0")
	spec := clusterSpec
	spec.IPv6Network = netip.MustParsePrefix("fd10::/48")
	spec.IPv6Subnet = netip.MustParsePrefix("fd10:0:0:1::/64")
	ctx := context.Background()

	oldFlannel := "*nat\n:FLANNEL-POSTRTG - [0:0]\n" +
		"-A POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG\n" +
		"-A FLANNEL-POSTRTG -s 10.244.1.0/24 -d 10.244.0.0/16 -m comment --comment \"flanneld masq\" -j RETURN\nCOMMIT\n"
	cmd := exec.Command("ip", "netns", "exec", ns, "iptables-legacy-restore", "--noflush")
	cmd.Stdin = strings.NewReader(oldFlannel)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("seed old flannel rules: %v\n%s", err, out)
	}
	nstest.Exec(t, ns, "iptables-nft", "-w", "-t", "nat", "-A", "POSTROUTING", "-s", "172.17.0.0/16", "!", "-o", "docker0", "-j", "MASQUERADE")
	// Docker's FORWARD chains, in both families: weft's forward rules go
	// where something filters forwarded traffic.
	nstest.Exec(t, ns, "iptables-nft", "-w", "-P", "FORWARD", "DROP")
	nstest.Exec(t, ns, "ip6tables-nft", "-w", "-P", "FORWARD", "DROP")

	ipt, err := rules.New(rules.IPTables, testLog(t), rules.WithNetns(ns), rules.WithIPTablesVariant("nft"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ipt.Sync(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if out := nstest.Exec(t, ns, "iptables-legacy-save"); ownRE.MatchString(out) {
		t.Errorf("old flannel rules left in iptables-legacy:\n%s", out)
	}
	for _, prog := range []string{"iptables-nft-save", "ip6tables-nft-save"} {
		if out := nstest.Exec(t, ns, prog); !strings.Contains(out, "-A WEFT-KEEPSRC") || !strings.Contains(out, "-A FLANNEL-FWD") {
			t.Errorf("%s lacks weft's rules:\n%s", prog, out)
		}
	}

	nft, err := rules.New(rules.NFTables, testLog(t), rules.WithNetns(ns))
	if err != nil {
		t.Fatal(err)
	}
	if err := nft.Sync(ctx, spec); err != nil {
		t.Fatal(err)
	}
	for _, prog := range []string{"iptables-nft-save", "ip6tables-nft-save", "iptables-legacy-save"} {
		if out := nstest.Exec(t, ns, prog); strings.Contains(out, "FLANNEL") || strings.Contains(out, "WEFT") {
			t.Errorf("switch to nftables left iptables rules in %s:\n%s", prog, out)
		}
	}
	tables := nstest.Exec(t, ns, "nft", "list", "tables")
	if !strings.Contains(tables, "table ip flannel-ipv4") || !strings.Contains(tables, "table ip6 flannel-ipv6") {
		t.Errorf("nftables mode tables missing:\n%s", tables)
	}

	ipt2, err := rules.New(rules.IPTables, testLog(t), rules.WithNetns(ns), rules.WithIPTablesVariant("nft"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ipt2.Sync(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if tables := nstest.Exec(t, ns, "nft", "list", "tables"); strings.Contains(tables, "flannel-ipv") {
		t.Errorf("switch back to iptables left nft tables:\n%s", tables)
	}

	if err := ipt2.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	assertNoWeftRules(t, ns)
	if out := nstest.Exec(t, ns, "iptables-nft-save", "-t", "nat"); !strings.Contains(out, "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE") {
		t.Errorf("Cleanup removed Docker's rule:\n%s", out)
	}
	if err := ipt2.Cleanup(ctx); err != nil {
		t.Errorf("second Cleanup: %v", err)
	}
}
