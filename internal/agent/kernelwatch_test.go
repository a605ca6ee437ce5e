package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/health"
	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/kernel/hostfacts"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/options"
	"github.com/weftnet/weft/internal/store/storetest"
	"github.com/weftnet/weft/internal/sysctl/sysctltest"
)

// These tests drive the kernel watch through a whole agent (fake store,
// recording backend) with a fake /proc, so they need no root and never
// touch the host's sysctls. The thresholds are tiny so that a handful of
// peers crosses them: a host with a /24 needs 253 pod addresses and a
// margin of 16, 269 entries before its first peer.

// fakeProc is a /proc-like tree the test can change while the agent runs.
type fakeProc struct {
	root string
}

func newFakeProc(t *testing.T, files map[string]string) *fakeProc {
	t.Helper()
	p := &fakeProc{root: t.TempDir()}
	for rel, v := range files {
		p.write(t, rel, v)
	}
	return p
}

func (p *fakeProc) write(t *testing.T, rel, v string) {
	t.Helper()
	sysctltest.WriteFile(t, p.root, rel, v)
}

func (p *fakeProc) read(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func (p *fakeProc) reader() *hostfacts.Reader {
	r := hostfacts.FromProcRoot(p.root)
	r.NetDir = filepath.Join(p.root, "class-net")
	return &r
}

func statFile(fulls int) string {
	return fmt.Sprintf("entries  allocs destroys hash_grows lookups hits res_failed rcv_probes_mcast rcv_probes_ucast periodic_gc_runs forced_gc_runs unresolved_discards table_fulls\n"+
		"00000110 00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 %08x\n"+
		"00000110 00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000\n", fulls)
}

// smallTable: a host whose kernel crosses gc_thresh2 at 2 peers and
// gc_thresh3 at 6, and is otherwise in order.
func smallTable() map[string]string {
	return map[string]string{
		"sys/net/ipv4/neigh/default/gc_thresh1": "128",
		"sys/net/ipv4/neigh/default/gc_thresh2": "270",
		"sys/net/ipv4/neigh/default/gc_thresh3": "274",
		"sys/net/ipv4/ip_forward":               "1",
		"net/stat/arp_cache":                    statFile(0),
		"class-net/eth0/mtu":                    "1500",
	}
}

type watchFixture struct {
	st      *storetest.Fake
	own     netip.Prefix
	health  *health.Status
	metrics *metrics.Metrics
	logs    *syncBuffer
	done    chan error
}

func startWatched(t *testing.T, proc *fakeProc, mod func(*options.Options)) *watchFixture {
	t.Helper()
	return startWatchedConf(t, proc, fakeConf, testInterface, mod)
}

func startWatchedConf(t *testing.T, proc *fakeProc, conf string, ext func(*options.Options) (backend.ExternalInterface, error), mod func(*options.Options)) *watchFixture {
	t.Helper()
	st := storetest.New(nil)
	if err := st.SetConfig(conf); err != nil {
		t.Fatal(err)
	}
	opts := options.Defaults()
	opts.StateDir = t.TempDir() // never the host's /var/lib/weft
	opts.SubnetFile = filepath.Join(t.TempDir(), "subnet.env")
	if mod != nil {
		mod(&opts)
	}
	f := &watchFixture{st: st, health: &health.Status{}, metrics: metrics.New(), logs: &syncBuffer{}, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	rec := &recorder{}
	a := New(opts, Deps{
		Store:           st,
		Backends:        map[string]backend.Factory{"host-gw": func(backend.Config) (backend.Backend, error) { return rec, nil }},
		SelectInterface: ext,
		Health:          f.health,
		Metrics:         f.metrics,
		Log:             slog.New(slog.NewTextHandler(f.logs, nil)),
		KernelFacts:     proc.reader(),
		KernelEvery:     10 * time.Millisecond,
		// One flat segment: every peer is its own next hop.
		Routes: func() ([]kernel.Route, error) {
			return []kernel.Route{{Dst: netip.MustParsePrefix("10.4.7.0/24")}, {Dst: netip.MustParsePrefix("fd00:10:4:7::/64")}}, nil
		},
	})
	go func() { f.done <- a.Run(ctx) }()
	t.Cleanup(func() { awaitStop(t, cancel, f.done) })
	nstest.Eventually(t, 10*time.Second, func() error {
		if code := f.readyz(); code != 200 {
			return fmt.Errorf("/readyz = %d", code)
		}
		return nil
	})
	f.own = st.Leases()[0].Subnet
	return f
}

func (f *watchFixture) readyz() int {
	c, _ := (&fakeFixture{health: f.health}).readyz()
	return c
}

// addPeers puts the first n of a fixed list of peers, with PublicIPs
// 10.4.7.22 on, in subnets other than the own.
func (f *watchFixture) addPeers(n int) {
	for i := range n {
		subnet := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(100 + i), 0}), 24)
		if subnet == f.own {
			subnet = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(200 + i), 0}), 24)
		}
		f.st.Put(lease.Lease{
			Subnet:     subnet,
			Attrs:      lease.Attrs{PublicIP: netip.AddrFrom4([4]byte{10, 4, 7, byte(22 + i)}), BackendType: "host-gw"},
			Expiration: time.Now().Add(time.Hour),
		})
	}
}

// waitLog waits until the logs hold n lines containing every one of subs.
func (f *watchFixture) waitLog(t *testing.T, n int, subs ...string) {
	t.Helper()
	nstest.Eventually(t, 10*time.Second, func() error {
		if got := f.lines(subs...); got != n {
			return fmt.Errorf("%d log lines with %q, want %d; logs:\n%s", got, subs, n, f.logs.String())
		}
		return nil
	})
}

func (f *watchFixture) lines(subs ...string) int {
	n := 0
	for _, l := range strings.Split(f.logs.String(), "\n") {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(l, s)
		}
		if all {
			n++
		}
	}
	return n
}

func (f *watchFixture) waitMetric(t *testing.T, line string) {
	t.Helper()
	nstest.Eventually(t, 10*time.Second, func() error {
		rr := (&fixture{metrics: f.metrics}).scrape(t)
		if !strings.Contains(rr, line+"\n") {
			return fmt.Errorf("/metrics lacks %q", line)
		}
		return nil
	})
}

// Crossing gc_thresh2 is one WARN however often the kernel is read;
// crossing gc_thresh3 is an ERROR; a rising table_fulls counter is an
// ERROR that the kernel dropped entries. Each names the sysctl, its value
// and the fix, and readiness stays true throughout.
func TestKernelWatchWarnsThenErrorsAsPeersGrow(t *testing.T) {
	proc := newFakeProc(t, smallTable())
	f := startWatched(t, proc, nil)
	f.waitMetric(t, `weft_neighbour_entries_needed{family="ipv4"} 269`)
	f.waitMetric(t, `weft_neighbour_gc_thresh{family="ipv4",level="3"} 274`)
	if n := f.lines("level=WARN", "neigh_gc_thresh"); n != 0 {
		t.Fatalf("a warning before any peer:\n%s", f.logs.String())
	}

	f.addPeers(2) // 271 > gc_thresh2 270
	f.waitLog(t, 1, "level=WARN", "code=neigh_gc_thresh2", "sysctl=net.ipv4.neigh.default.gc_thresh2", "current=270", "suggested=1024",
		`fix="sysctl -w net.ipv4.neigh.default.gc_thresh1=271 net.ipv4.neigh.default.gc_thresh2=1024 net.ipv4.neigh.default.gc_thresh3=2048 (or run weft with --raise-neigh-gc-thresh)"`)

	// The kernel drops entries: one ERROR per check that sees the counter
	// rise, which also proves the watch has read the kernel again since
	// the warning.
	proc.write(t, "net/stat/arp_cache", statFile(3))
	f.waitLog(t, 1, "level=ERROR", "the kernel dropped neighbour entries", "code=neigh_table_full", "sysctl=net.ipv4.neigh.default.gc_thresh3")
	f.waitMetric(t, `weft_neighbour_table_fulls_total{family="ipv4"} 3`)
	if n := f.lines("level=WARN", "code=neigh_gc_thresh2"); n != 1 {
		t.Errorf("%d warnings for one crossing of gc_thresh2, want 1", n)
	}

	f.addPeers(6) // 275 > gc_thresh3 274
	f.waitLog(t, 1, "level=ERROR", "code=neigh_gc_thresh3", "current=274", "suggested=2048", "more than net.ipv4.neigh.default.gc_thresh3=274")
	f.waitMetric(t, `weft_neighbour_entries_needed{family="ipv4"} 275`)
	if n := f.lines("no longer a problem"); n != 0 {
		t.Errorf("getting worse was logged as solved:\n%s", f.logs.String())
	}
	if code := f.readyz(); code != 200 {
		t.Errorf("/readyz = %d with the table short; readiness must stay true", code)
	}

	// The operator raises the thresholds by hand: the finding goes away,
	// and a later crossing would be a new one.
	proc.write(t, "sys/net/ipv4/neigh/default/gc_thresh2", "1024")
	proc.write(t, "sys/net/ipv4/neigh/default/gc_thresh3", "2048")
	f.waitLog(t, 1, "level=INFO", "kernel setting no longer a problem", "code=neigh_gc_thresh3")
}

// With EnableIPv6 the IPv6 table is counted from the peers' PublicIPv6s
// and the pods' IPv6 addresses and judged against net.ipv6's thresholds,
// apart from the IPv4 table: peers without IPv6 add nothing to it, and
// IPv6 peers crossing its gc_thresh2 are a warning naming the IPv6 sysctl.
func TestKernelWatchCountsTheIPv6Table(t *testing.T) {
	files := smallTable()
	files["sys/net/ipv4/neigh/default/gc_thresh2"] = "4096"
	files["sys/net/ipv4/neigh/default/gc_thresh3"] = "8192"
	files["sys/net/ipv6/neigh/default/gc_thresh1"] = "128"
	files["sys/net/ipv6/neigh/default/gc_thresh2"] = "273"
	files["sys/net/ipv6/neigh/default/gc_thresh3"] = "4096"
	files["sys/net/ipv6/conf/all/forwarding"] = "1"
	files["net/stat/ndisc_cache"] = statFile(0)
	proc := newFakeProc(t, files)
	dual := func(*options.Options) (backend.ExternalInterface, error) {
		ip, ip6 := netip.MustParseAddr("10.4.7.21"), netip.MustParseAddr("fd00:10:4:7::21")
		return backend.ExternalInterface{Name: "eth0", Index: 2, MTU: 1500, Addr: ip, PublicIP: ip, Addr6: ip6, PublicIPv6: ip6}, nil
	}
	f := startWatchedConf(t, proc, `{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56", "Backend": {"Type": "host-gw"}}`, dual, nil)
	// A /64 gives pods MaxPods addresses; plus the margin.
	base := hostfacts.MaxPods + hostfacts.Margin
	f.waitMetric(t, fmt.Sprintf(`weft_neighbour_entries_needed{family="ipv6"} %d`, base))
	f.waitMetric(t, `weft_neighbour_entries_needed{family="ipv4"} 269`)

	f.addPeers(3) // IPv4 only: nothing for the IPv6 table
	f.waitMetric(t, `weft_neighbour_entries_needed{family="ipv4"} 272`)
	f.waitMetric(t, fmt.Sprintf(`weft_neighbour_entries_needed{family="ipv6"} %d`, base))

	for i := range 2 {
		f.st.Put(lease.Lease{
			Subnet:     netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(150 + i), 0}), 24),
			IPv6Subnet: netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, 0, 0x10, 0x2, 0x44, 0, byte(0x50 + i)}), 64),
			Attrs: lease.Attrs{
				PublicIP:    netip.AddrFrom4([4]byte{10, 4, 7, byte(50 + i)}),
				PublicIPv6:  netip.AddrFrom16([16]byte{0xfd, 0, 0, 0x10, 0, 0x4, 0, 0x7, 15: byte(0x50 + i)}),
				BackendType: "host-gw",
			},
			Expiration: time.Now().Add(time.Hour),
		})
	}
	f.waitMetric(t, fmt.Sprintf(`weft_neighbour_entries_needed{family="ipv6"} %d`, base+2))
	f.waitLog(t, 1, "level=WARN", "code=neigh_gc_thresh2", "sysctl=net.ipv6.neigh.default.gc_thresh2", "current=273")
	if n := f.lines("level=WARN", "sysctl=net.ipv4.neigh.default.gc_thresh2"); n != 0 {
		t.Errorf("the IPv4 table, far from its thresholds, was warned about:\n%s", f.logs.String())
	}
}

// A kernel the agent cannot read (a child network namespace has no
// neighbour thresholds or statistics) is one WARN at start, and the agent
// carries on.
func TestKernelWatchUnreadableIsOneWarning(t *testing.T) {
	// A statistics directory without arp_cache, as in a child namespace.
	proc := newFakeProc(t, map[string]string{"sys/net/ipv4/ip_forward": "1", "net/stat/rt_cache": ""})
	f := startWatched(t, proc, nil)
	f.waitLog(t, 1, "level=WARN", "cannot read some kernel settings", "gc_thresh1", "arp_cache", "initial network namespace")
	// Two more peer sets, each counted and checked, bring no more warnings.
	f.addPeers(1)
	f.waitMetric(t, `weft_neighbour_entries_needed{family="ipv4"} 270`)
	f.addPeers(2)
	f.waitMetric(t, `weft_neighbour_entries_needed{family="ipv4"} 271`)
	if n := f.lines("level=WARN"); n != 1 {
		t.Errorf("%d warnings, want the one:\n%s", n, f.logs.String())
	}
	if code := f.readyz(); code != 200 {
		t.Errorf("/readyz = %d", code)
	}
}

// --raise-neigh-gc-thresh raises the short thresholds to fit, logs old ->
// new, and never lowers one; the host then has no finding to report.
func TestKernelWatchRaisesThresholdsWhenAsked(t *testing.T) {
	files := smallTable()
	files["sys/net/ipv4/neigh/default/gc_thresh3"] = "100000" // already high: stays
	proc := newFakeProc(t, files)
	f := startWatched(t, proc, func(o *options.Options) { o.RaiseNeighGCThresh = true })
	f.addPeers(6) // 275
	f.waitLog(t, 1, "level=INFO", "raised the neighbour table's thresholds", `net.ipv4.neigh.default.gc_thresh2="270 -> 1024"`, `net.ipv4.neigh.default.gc_thresh1="128 -> 275"`)
	f.waitMetric(t, `weft_neighbour_gc_thresh{family="ipv4",level="2"} 1024`)
	for rel, want := range map[string]string{
		"sys/net/ipv4/neigh/default/gc_thresh1": "275",
		"sys/net/ipv4/neigh/default/gc_thresh2": "1024",
		"sys/net/ipv4/neigh/default/gc_thresh3": "100000",
	} {
		if got := proc.read(t, rel); got != want {
			t.Errorf("%s = %s, want %s", rel, got, want)
		}
	}
	if n := f.lines("neigh_gc_thresh"); n != 0 {
		t.Errorf("a neighbour finding although the thresholds were raised first:\n%s", f.logs.String())
	}
}

// Other facts come through the same watch: forwarding switched off while
// the agent runs is an ERROR with the fix.
func TestKernelWatchReportsForwardingOff(t *testing.T) {
	proc := newFakeProc(t, smallTable())
	f := startWatched(t, proc, nil)
	proc.write(t, "sys/net/ipv4/ip_forward", "0")
	f.waitLog(t, 1, "level=ERROR", "code=ip_forward", "sysctl=net.ipv4.ip_forward", "current=0", `fix="sysctl -w net.ipv4.ip_forward=1"`)
}
