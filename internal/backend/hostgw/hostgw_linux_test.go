package hostgw

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/backend/backendtest"
	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/netconf"
	"github.com/weftnet/weft/internal/nstest"
)

// The integration tests run on backendtest.Hosts with the underlay
// 192.168.77.0/24: host i has eth0 192.168.77.i and pod address
// 10.244.i.1 on cni0, and leases 10.244.i.0/24.

var network = backendtest.Network

type host struct {
	*backendtest.Host
	lease   lease.Lease
	logBuf  *backendtest.LogBuffer
	metrics *metrics.Metrics // nil unless a test counts repairs
}

func segment(t *testing.T, n int) []*host {
	t.Helper()
	var hosts []*host
	for _, bh := range backendtest.Hosts(t, n, backendtest.Options{Underlay: netip.MustParsePrefix("192.168.77.0/24")}) {
		hosts = append(hosts, &host{
			Host: bh,
			lease: lease.Lease{
				Subnet: bh.Subnet,
				Attrs:  lease.Attrs{PublicIP: bh.Ext.PublicIP, BackendType: BackendType},
			},
			logBuf: &backendtest.LogBuffer{},
		})
	}
	return hosts
}

// start builds and starts hg's backend with o; Handle and Netns are filled
// in unless o says otherwise.
func (hg *host) start(t *testing.T, o Options) *Backend {
	t.Helper()
	o.Handle = hg.Handle
	if !o.NoSubscribe {
		o.Netns = &hg.Netns
	}
	if o.ReconcilePeriod == 0 {
		o.ReconcilePeriod = time.Minute
	}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), hg.logBuf), nil)).With("host", hg.NS)
	b, err := NewWithOptions(backend.Config{
		Ext:     hg.Ext,
		Network: &netconf.Config{EnableIPv4: true, Network: network, SubnetLen: 24, BackendType: BackendType},
		Log:     log,
		Metrics: hg.metrics,
	}, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t.Context(), hg.lease); err != nil {
		t.Fatal(err)
	}
	return b
}

func leases(hosts ...*host) []lease.Lease {
	var ls []lease.Lease
	for _, h := range hosts {
		ls = append(ls, h.lease)
	}
	return ls
}

// routes is `ip route show table main` in ns, one trimmed line per route,
// without "linkdown": whether the portless cni0 has carrier yet is racy.
func routes(t *testing.T, ns string) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(nstest.Exec(t, ns, "ip", "route", "show", "table", "main"), "\n") {
		l = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(l), " linkdown"))
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// weftRoutes is `ip route show proto 87` in ns.
func weftRoutes(t *testing.T, ns string) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(nstest.Exec(t, ns, "ip", "route", "show", "proto", "87"), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func TestApplyProgramsPeersAndRemovesDeparted(t *testing.T) {
	hs := segment(t, 3)
	a := hs[0]
	b := a.start(t, Options{})
	vx := lease.Lease{
		Subnet: netip.MustParsePrefix("10.244.4.0/24"),
		Attrs:  lease.Attrs{PublicIP: netip.MustParseAddr("192.168.77.4"), BackendType: "vxlan"},
	}

	if err := b.Apply(t.Context(), append(leases(hs...), vx)); err != nil {
		t.Fatal(err)
	}
	backendtest.WantLines(t, "routes after Apply(A, B, C, vxlan D)", weftRoutes(t, a.NS), []string{
		"10.244.2.0/24 via 192.168.77.2 dev eth0",
		"10.244.3.0/24 via 192.168.77.3 dev eth0",
	})

	// C leaves; D stays and must not be logged again.
	if err := b.Apply(t.Context(), append(leases(hs[0], hs[1]), vx)); err != nil {
		t.Fatal(err)
	}
	backendtest.WantLines(t, "routes after C left", routes(t, a.NS), []string{
		"10.244.1.0/24 dev cni0 proto kernel scope link src 10.244.1.1",
		"10.244.2.0/24 via 192.168.77.2 dev eth0 proto 87",
		"192.168.77.0/24 dev eth0 proto kernel scope link src 192.168.77.1",
	})

	logs := a.logBuf.String()
	if n := strings.Count(logs, "ignoring peer of another backend type"); n != 1 {
		t.Errorf("the vxlan peer was logged %d times over two Applies, want once:\n%s", n, logs)
	}
	for _, want := range [][]string{
		{`msg="route added"`, `subnet=10.244.2.0/24 peer=192.168.77.2`},
		{`msg="route added"`, `subnet=10.244.3.0/24 peer=192.168.77.3`},
		{`msg="route removed"`, `subnet=10.244.3.0/24 peer=192.168.77.3`},
	} {
		if backendtest.LogLines(logs, want...) != 1 {
			t.Errorf("want exactly one log line with %q; logs:\n%s", want, logs)
		}
	}
}

func TestApplyReplacesConflictsAndRemovesStaleRoutes(t *testing.T) {
	hs := segment(t, 2)
	a := hs[0]
	// Left over from before: a route to B's subnet via a wrong gateway, a
	// flannel route to a peer that left while no agent ran, and routes
	// that are not weft's to touch.
	nstest.Exec(t, a.NS, "ip", "route", "add", "10.244.2.0/24", "via", "192.168.77.99", "dev", "eth0")
	nstest.Exec(t, a.NS, "ip", "route", "add", "10.244.9.0/24", "via", "192.168.77.9", "dev", "eth0")
	nstest.Exec(t, a.NS, "ip", "route", "add", "10.99.0.0/24", "via", "192.168.77.5", "dev", "eth0")
	nstest.Exec(t, a.NS, "ip", "route", "add", "10.244.6.0/24", "dev", "eth0")
	nstest.Exec(t, a.NS, "ip", "route", "add", "default", "via", "192.168.77.254", "dev", "eth0")

	b := a.start(t, Options{})
	if err := b.Apply(t.Context(), leases(hs...)); err != nil {
		t.Fatal(err)
	}
	backendtest.WantLines(t, "routes", routes(t, a.NS), []string{
		"default via 192.168.77.254 dev eth0",
		"10.99.0.0/24 via 192.168.77.5 dev eth0",
		"10.244.1.0/24 dev cni0 proto kernel scope link src 10.244.1.1",
		"10.244.2.0/24 via 192.168.77.2 dev eth0 proto 87",
		"10.244.6.0/24 dev eth0 scope link",
		"192.168.77.0/24 dev eth0 proto kernel scope link src 192.168.77.1",
	})
	logs := a.logBuf.String()
	for _, want := range [][]string{
		{`msg="route replaced"`, `subnet=10.244.2.0/24 peer=192.168.77.2`, `was="10.244.2.0/24 via 192.168.77.99 dev eth0 proto boot"`},
		{`msg="route removed"`, `subnet=10.244.9.0/24 peer=192.168.77.9`},
	} {
		if backendtest.LogLines(logs, want...) != 1 {
			t.Errorf("want one log line with %q; logs:\n%s", want, logs)
		}
	}
}

func TestApplyReportsUnreachablePeerAndProgramsTheRest(t *testing.T) {
	hs := segment(t, 2)
	a := hs[0]
	b := a.start(t, Options{})
	far := lease.Lease{
		Subnet: netip.MustParsePrefix("10.244.5.0/24"),
		Attrs:  lease.Attrs{PublicIP: netip.MustParseAddr("10.99.0.5"), BackendType: BackendType},
	}
	err := b.Apply(t.Context(), append(leases(hs...), far))
	if err == nil {
		t.Fatal("Apply with a peer off the segment succeeded")
	}
	for _, want := range []string{
		"peer 10.99.0.5 (subnet 10.244.5.0/24): replace route 10.244.5.0/24 via 10.99.0.5 dev eth0 proto weft: network is unreachable",
		"host-gw can only route to hosts on the same L2 segment",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	backendtest.WantLines(t, "routes", weftRoutes(t, a.NS), []string{"10.244.2.0/24 via 192.168.77.2 dev eth0"})
}

func TestRunRepairsDeletedRouteAtOnce(t *testing.T) {
	hs := segment(t, 3)
	a := hs[0]
	// With a one-minute period, only the deletion watch can repair in time.
	b := a.start(t, Options{ReconcilePeriod: time.Minute})
	if err := b.Apply(t.Context(), leases(hs...)); err != nil {
		t.Fatal(err)
	}
	backendtest.Run(t, b.Run)
	want := []string{
		"10.244.2.0/24 via 192.168.77.2 dev eth0",
		"10.244.3.0/24 via 192.168.77.3 dev eth0",
	}
	// The first deletion may race Run's start-up repair; once it is back,
	// the watch is certainly running, and the second is the watch's alone.
	for i := 1; i <= 2; i++ {
		nstest.Exec(t, a.NS, "ip", "route", "del", "10.244.3.0/24")
		nstest.Eventually(t, 2*time.Second, func() error {
			if got := weftRoutes(t, a.NS); !slices.Equal(got, want) {
				return fmt.Errorf("routes after deletion %d: %q", i, got)
			}
			return nil
		})
		if got := b.Repairs(); got != uint64(i) {
			t.Errorf("Repairs = %d after %d deletions", got, i)
		}
	}
	if backendtest.LogLines(a.logBuf.String(), `msg="route added"`, `subnet=10.244.3.0/24 peer=192.168.77.3`, `trigger="route deleted"`) == 0 {
		t.Errorf("repair not logged as triggered by the deletion:\n%s", a.logBuf.String())
	}
}

// TestRunRepairsChangedRouteAtOnce changes a peer's route to another
// gateway, which the kernel reports as a new route and not as a deletion.
// The period is an hour, so only the change notification can repair it:
// the route must be back within 2 s, counted in the metric, and logged
// with what was wrong. Then it times 20 such repairs.
func TestRunRepairsChangedRouteAtOnce(t *testing.T) {
	hs := segment(t, 3)
	a := hs[0]
	a.metrics = metrics.New()
	b := a.start(t, Options{ReconcilePeriod: time.Hour})
	if err := b.Apply(t.Context(), leases(hs...)); err != nil {
		t.Fatal(err)
	}
	want := weftRoutes(t, a.NS)
	backendtest.Run(t, b.Run)
	count := func() float64 { return backendtest.Repairs(t, a.metrics, metrics.KindRoute) }
	// The first change may race Run's start-up repair; once a deletion is
	// repaired, the watch certainly runs.
	nstest.Exec(t, a.NS, "ip", "route", "del", "10.244.3.0/24")
	nstest.Eventually(t, 2*time.Second, func() error {
		if count() < 1 {
			return errors.New("the warm-up deletion is not repaired yet")
		}
		return nil
	})
	base := count()

	nstest.Exec(t, a.NS, "ip", "route", "replace", "10.244.3.0/24", "via", "192.168.77.2", "dev", "eth0")
	nstest.Eventually(t, 2*time.Second, func() error {
		if got := weftRoutes(t, a.NS); !slices.Equal(got, want) {
			return fmt.Errorf("routes after the change: %q, want %q", got, want)
		}
		if n := count() - base; n != 1 {
			return fmt.Errorf("route repairs counted: +%v, want +1", n)
		}
		return nil
	})
	if backendtest.LogLines(a.logBuf.String(), `msg="route replaced"`, "subnet=10.244.3.0/24",
		`wrong="route 10.244.3.0/24 had via 192.168.77.2 proto boot, want via 192.168.77.3 proto weft"`, `trigger="route changed"`) != 1 {
		t.Errorf("the repair is not logged once with what was wrong:\n%s", a.logBuf.String())
	}

	events, err := kernel.WatchRoutes(t.Context(), &a.Netns, func(err error) { t.Log(err) })
	if err != nil {
		t.Fatal(err)
	}
	planned := kernel.Route{Dst: netip.MustParsePrefix("10.244.3.0/24"), Gw: netip.MustParseAddr("192.168.77.3"), LinkIndex: a.Ext.Index, Proto: kernel.ProtoWeft}
	wrong := planned
	wrong.Gw = netip.MustParseAddr("192.168.77.2")
	const tries = 20
	took := backendtest.RepairTimes(t, tries, events,
		func() error {
			return kernel.ApplyOps(a.Handle, []kernel.Op{{Kind: kernel.Replace, Route: wrong}}).Err()
		},
		func(e kernel.RouteEvent) bool { return !e.Deleted && e.Route == wrong },
		func(e kernel.RouteEvent) bool { return !e.Deleted && e.Route == planned })
	t.Logf("host-gw route with a wrong gateway repaired in %v (median of %d; min %v, max %v)",
		backendtest.Median(took), tries, slices.Min(took), slices.Max(took))
	// Run counts a repair just after the kernel has reported it.
	nstest.Eventually(t, 2*time.Second, func() error {
		if n := count() - base; n != 1+tries {
			return fmt.Errorf("route repairs counted: +%v, want +%d", n, 1+tries)
		}
		return nil
	})
}

func TestRunRepairsOnTimerWithoutWatch(t *testing.T) {
	hs := segment(t, 2)
	a := hs[0]
	b := a.start(t, Options{ReconcilePeriod: 100 * time.Millisecond, NoSubscribe: true})
	if err := b.Apply(t.Context(), leases(hs...)); err != nil {
		t.Fatal(err)
	}
	backendtest.Run(t, b.Run)
	want := []string{"10.244.2.0/24 via 192.168.77.2 dev eth0"}
	nstest.Exec(t, a.NS, "ip", "route", "del", "10.244.2.0/24")
	nstest.Eventually(t, 2*time.Second, func() error {
		if got := weftRoutes(t, a.NS); !slices.Equal(got, want) {
			return fmt.Errorf("routes: %q", got)
		}
		return nil
	})
	// A route changed in place sends no deletion; the timer fixes it too.
	nstest.Exec(t, a.NS, "ip", "route", "replace", "10.244.2.0/24", "via", "192.168.77.50", "dev", "eth0")
	nstest.Eventually(t, 2*time.Second, func() error {
		if got := weftRoutes(t, a.NS); !slices.Equal(got, want) {
			return fmt.Errorf("routes: %q", got)
		}
		return nil
	})
	if got := b.Repairs(); got != 2 {
		t.Errorf("Repairs = %d, want 2", got)
	}
}

func TestRunLeavesTableAloneBeforeFirstApply(t *testing.T) {
	hs := segment(t, 1)
	a := hs[0]
	nstest.Exec(t, a.NS, "ip", "route", "add", "10.244.9.0/24", "via", "192.168.77.9", "dev", "eth0")
	b := a.start(t, Options{ReconcilePeriod: 20 * time.Millisecond})
	backendtest.Run(t, b.Run)
	// Deleting an unrelated route wakes the watch; the timer fires many
	// times within the wait. Neither may remove the stale route yet.
	nstest.Exec(t, a.NS, "ip", "route", "add", "10.99.1.0/24", "via", "192.168.77.8", "dev", "eth0")
	nstest.Exec(t, a.NS, "ip", "route", "del", "10.99.1.0/24")
	deadline := time.Now().Add(300 * time.Millisecond)
	nstest.Eventually(t, time.Second, func() error {
		if !slices.Contains(routes(t, a.NS), "10.244.9.0/24 via 192.168.77.9 dev eth0") {
			t.Fatal("Run removed a route before any Apply")
		}
		if time.Now().Before(deadline) {
			return errors.New("still watching")
		}
		return nil
	})
	// The first Apply, a complete snapshot, removes it.
	if err := b.Apply(t.Context(), leases(a)); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(routes(t, a.NS), "10.244.9.0/24 via 192.168.77.9 dev eth0") {
		t.Error("Apply left the stale route")
	}
	if b.Repairs() != 0 {
		t.Errorf("Repairs = %d, want 0", b.Repairs())
	}
}

func TestConcurrentApplyAndRun(t *testing.T) {
	hs := segment(t, 3)
	a := hs[0]
	b := a.start(t, Options{ReconcilePeriod: 5 * time.Millisecond})
	if err := b.Apply(t.Context(), leases(hs...)); err != nil {
		t.Fatal(err)
	}
	backendtest.Run(t, b.Run)
	for i := range 50 {
		ls := leases(hs...)
		if i%2 == 1 {
			ls = leases(hs[0], hs[1])
		}
		if err := b.Apply(t.Context(), ls); err != nil {
			t.Fatal(err)
		}
	}
	backendtest.WantLines(t, "routes after the last Apply(A, B)", weftRoutes(t, a.NS), []string{"10.244.2.0/24 via 192.168.77.2 dev eth0"})
	if b.Repairs() != 0 {
		t.Errorf("Repairs = %d: Run fought Apply", b.Repairs())
	}
}

// TestPodTraffic checks the data plane end to end: an address in A's pod
// subnet reaches one in B's over TCP only once both hosts applied.
func TestPodTraffic(t *testing.T) {
	hs := segment(t, 2)
	a, bh := hs[0], hs[1]

	target := bh.EchoServer(t)

	dial := func() error { return a.Echo(target, time.Second) }

	if err := dial(); err == nil {
		t.Fatal("pod-to-pod connection worked before any route was programmed")
	}
	for _, hg := range hs {
		if err := hg.start(t, Options{}).Apply(t.Context(), leases(hs...)); err != nil {
			t.Fatal(err)
		}
	}
	if err := dial(); err != nil {
		t.Fatalf("%s -> %s after Apply: %v", a.PodIP, target, err)
	}
}
