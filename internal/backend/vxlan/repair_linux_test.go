package vxlan

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
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

// TestRunRepairsEachChangedEntry changes, one at a time, a peer's
// neighbour to another MAC, its FDB entry to another dst and another
// peer's route to another path. None of these is a deletion; the period
// is an hour, so only the change notifications can repair them. Each must
// be back within 2 s, counted in weft_reconcile_repairs_total by its kind,
// and logged once with what was wrong. Then it times 20 repairs of each.
func TestRunRepairsEachChangedEntry(t *testing.T) {
	hs := cluster(t, 3)
	a := hs[0]
	a.metrics = metrics.New()
	ba := a.start(t, plainConfig, Options{ReconcilePeriod: time.Hour})
	leases := []lease.Lease{a.lease(ba)}
	for _, hg := range hs[1:] {
		b, err := hg.build(t, plainConfig, Options{NoSubscribe: true})
		if err != nil {
			t.Fatal(err)
		}
		leases = append(leases, hg.lease(b))
	}
	if err := ba.Apply(t.Context(), leases); err != nil {
		t.Fatal(err)
	}
	want := state(t, a.NS)
	backendtest.Run(t, ba.Run)
	count := func(kind string) float64 { return backendtest.Repairs(t, a.metrics, kind) }
	back := func(what string, kind string, base float64) {
		t.Helper()
		nstest.Eventually(t, 2*time.Second, func() error {
			if got := state(t, a.NS); got != want {
				return fmt.Errorf("after %s:\n%s\nwant:\n%s", what, got, want)
			}
			if n := count(kind) - base; n != 1 {
				return fmt.Errorf("%s repairs counted: +%v, want +1", kind, n)
			}
			return nil
		})
	}
	// The first change may race Run's start-up repair; once a deletion is
	// repaired, the watches certainly run.
	nstest.Exec(t, a.NS, "ip", "route", "del", "10.244.2.0/24")
	back("the warm-up deletion", metrics.KindRoute, 0)

	dev := linkOf(t, a, "flannel.1").Attrs().Index
	macB := leasedMAC(t, leases[1])
	planned := struct {
		neigh kernel.Neigh
		fdb   kernel.FDB
		route kernel.Route
	}{
		kernel.Neigh{LinkIndex: dev, IP: netip.MustParseAddr("10.244.2.0"), MAC: macB, Permanent: true},
		kernel.FDB{LinkIndex: dev, MAC: macB, Dst: netip.MustParseAddr("192.168.70.2"), Permanent: true},
		kernel.Route{Dst: netip.MustParsePrefix("10.244.3.0/24"), Gw: netip.MustParseAddr("10.244.3.0"), LinkIndex: dev, OnLink: true, Proto: kernel.ProtoWeft},
	}
	wrongMAC := kernel.MAC{0x0e, 0, 0, 0, 0, 0x99}
	wrongDst := netip.MustParseAddr("192.168.70.99")
	wrongRoute := kernel.Route{Dst: planned.route.Dst, Gw: netip.MustParseAddr("192.168.70.3"), LinkIndex: a.Ext.Index, Proto: kernel.ProtoWeft}

	for _, c := range []struct {
		what    string
		kind    string
		cmd     []string
		logged  string
		trigger string
	}{
		{"a neighbour with a wrong MAC", metrics.KindNeighbour,
			[]string{"ip", "neigh", "replace", "10.244.2.0", "lladdr", wrongMAC.String(), "dev", "flannel.1", "nud", "permanent"},
			"neighbour 10.244.2.0 on flannel.1 had lladdr " + wrongMAC.String() + ", want lladdr " + macB.String() + ", replaced", "neighbour changed"},
		{"an fdb entry with a wrong dst", metrics.KindFDB,
			[]string{"bridge", "fdb", "replace", macB.String(), "dev", "flannel.1", "dst", wrongDst.String(), "self", "permanent"},
			"fdb entry " + macB.String() + " on flannel.1 had dst 192.168.70.99, want dst 192.168.70.2, replaced", "fdb entry changed"},
		{"a route through the underlay instead of the device", metrics.KindRoute,
			[]string{"ip", "route", "replace", "10.244.3.0/24", "via", "192.168.70.3", "dev", "eth0"},
			"route 10.244.3.0/24 had via 192.168.70.3 dev eth0 proto boot onlink no, want via 10.244.3.0 dev flannel.1 proto weft onlink yes, replaced", "route changed"},
	} {
		base := count(c.kind)
		nstest.Exec(t, a.NS, c.cmd...)
		back(c.what, c.kind, base)
		if n := backendtest.LogLines(logs0(a), `msg="peer repaired"`, `changes="`+c.logged+`"`, `trigger="`+c.trigger+`"`); n != 1 {
			t.Errorf("%s: the repair is logged %d times with %q, want once:\n%s", c.what, n, c.logged, logs0(a))
		}
	}

	// Time the repairs, breaking the entries from this process.
	neighEvents, err := kernel.WatchNeighs(t.Context(), &a.Netns, func(err error) { t.Log(err) })
	if err != nil {
		t.Fatal(err)
	}
	routeEvents, err := kernel.WatchRoutes(t.Context(), &a.Netns, func(err error) { t.Log(err) })
	if err != nil {
		t.Fatal(err)
	}
	const tries = 20
	report := func(what string, took []time.Duration) {
		t.Logf("vxlan %s repaired in %v (median of %d; min %v, max %v)", what, backendtest.Median(took), tries, slices.Min(took), slices.Max(took))
	}
	wrongNeigh := planned.neigh
	wrongNeigh.MAC = wrongMAC
	report("neighbour with a wrong MAC", backendtest.RepairTimes(t, tries, neighEvents,
		func() error {
			return kernel.ApplyNeighOps(a.Handle, []kernel.NeighOp{{Kind: kernel.Replace, Neigh: wrongNeigh}}).Err()
		},
		func(e kernel.NeighEvent) bool { return !e.FDB && !e.Deleted && e.Neigh() == wrongNeigh },
		func(e kernel.NeighEvent) bool { return !e.FDB && !e.Deleted && e.Neigh() == planned.neigh }))
	wrongFDB := planned.fdb
	wrongFDB.Dst = wrongDst
	report("fdb entry with a wrong dst", backendtest.RepairTimes(t, tries, neighEvents,
		func() error {
			return kernel.ApplyFDBOps(a.Handle, []kernel.FDBOp{{Kind: kernel.Replace, Entry: wrongFDB}}).Err()
		},
		func(e kernel.NeighEvent) bool { return e.FDB && !e.Deleted && e.Entry() == wrongFDB },
		func(e kernel.NeighEvent) bool { return e.FDB && !e.Deleted && e.Entry() == planned.fdb }))
	report("route changed to the underlay", backendtest.RepairTimes(t, tries, routeEvents,
		func() error {
			return kernel.ApplyOps(a.Handle, []kernel.Op{{Kind: kernel.Replace, Route: wrongRoute}}).Err()
		},
		func(e kernel.RouteEvent) bool { return !e.Deleted && e.Route == wrongRoute },
		func(e kernel.RouteEvent) bool { return !e.Deleted && e.Route == planned.route }))
	// Run counts a repair just after the kernel has reported it.
	nstest.Eventually(t, 2*time.Second, func() error {
		for kind, want := range map[string]float64{metrics.KindNeighbour: 1 + tries, metrics.KindFDB: 1 + tries, metrics.KindRoute: 2 + tries} {
			if n := count(kind); n != want {
				return fmt.Errorf("%s repairs counted: %v, want %v", kind, n, want)
			}
		}
		return nil
	})
}

// leasedMAC is the VTEP MAC in l's backend data.
func leasedMAC(t *testing.T, l lease.Lease) kernel.MAC {
	t.Helper()
	mac, err := parsePeerData(l.Attrs.BackendData)
	if err != nil {
		t.Fatal(err)
	}
	return mac
}

// TestApplyOfManyPeersCausesNoRepairStorm applies 500 peers to a running
// backend. The kernel echoes each of the 1500 entries Apply writes as a
// change notification; they equal the plan, so they must not make Run
// reconcile, let alone once per entry. Two sentinel changes, one on each
// subscription that the Apply's echoes came on, are reported after all
// of them, so once both are repaired every echo has been seen; the count
// of repair passes then covers the whole storm.
func TestApplyOfManyPeersCausesNoRepairStorm(t *testing.T) {
	const peers = 500
	hs := cluster(t, 1)
	a := hs[0]
	// 500 /24 peers need more room than the other tests' /16.
	network := netip.MustParsePrefix("10.0.0.0/8")
	log := slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), a.logBuf), nil)).With("host", a.NS)
	b, err := NewWithOptions(backend.Config{
		Ext:      a.Ext,
		Network:  &netconf.Config{EnableIPv4: true, Network: network, SubnetLen: 24, BackendType: BackendType, Backend: json.RawMessage(plainConfig)},
		Log:      log,
		StateDir: a.stateDir,
	}, Options{Handle: a.Handle, Netns: &a.Netns, ReconcilePeriod: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	own := a.lease(b)
	if err := b.Start(t.Context(), own); err != nil {
		t.Fatal(err)
	}
	if err := b.Apply(t.Context(), []lease.Lease{own}); err != nil {
		t.Fatal(err)
	}
	backendtest.Run(t, b.Run)
	nstest.Eventually(t, 2*time.Second, func() error {
		if b.reconciles.Load() == 0 {
			return errors.New("Run's start-up repair has not run yet")
		}
		return nil
	})
	before := b.reconciles.Load()

	leases := []lease.Lease{own}
	for i := range peers {
		hi, lo := byte(i/250), byte(i%250)
		leases = append(leases, lease.Lease{
			Subnet: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 100 + hi, lo, 0}), 24),
			Attrs: lease.Attrs{
				PublicIP:    netip.AddrFrom4([4]byte{172, 20 + hi, lo, 1}),
				BackendType: BackendType,
				BackendData: leaseData(1, kernel.MAC{0x0e, 0, 0, 0, hi, lo}),
			},
		})
	}
	if err := b.Apply(t.Context(), leases); err != nil {
		t.Fatal(err)
	}
	want := state(t, a.NS)
	nstest.Exec(t, a.NS, "ip", "neigh", "replace", "10.100.0.0", "lladdr", "0e:00:00:00:00:99", "dev", "flannel.1", "nud", "permanent")
	nstest.Exec(t, a.NS, "ip", "route", "replace", "10.100.1.0/24", "via", "192.168.70.99", "dev", "eth0")
	nstest.Eventually(t, 2*time.Second, func() error {
		if got := state(t, a.NS); got != want {
			return errors.New("the sentinel changes are not repaired yet")
		}
		return nil
	})
	n := b.reconciles.Load() - before
	t.Logf("%d repair passes for an Apply of %d peers and two sentinel changes", n, peers)
	// One pass per sentinel; one more each if a sentinel's change and its
	// repair's echo straddle two passes.
	if n > 4 {
		t.Errorf("%d repair passes for an Apply of %d peers and two sentinel changes, want at most 4", n, peers)
	}

	// A repair reads every entry back, so its time grows with the peers:
	// time it here too.
	events, err := kernel.WatchNeighs(t.Context(), &a.Netns, func(err error) { t.Log(err) })
	if err != nil {
		t.Fatal(err)
	}
	dev := linkOf(t, a, "flannel.1").Attrs().Index
	planned := kernel.Neigh{LinkIndex: dev, IP: netip.MustParseAddr("10.100.0.0"), MAC: kernel.MAC{0x0e, 0, 0, 0, 0, 0}, Permanent: true}
	wrong := planned
	wrong.MAC = kernel.MAC{0x0e, 0, 0, 0, 0, 0x99}
	const tries = 20
	took := backendtest.RepairTimes(t, tries, events,
		func() error {
			return kernel.ApplyNeighOps(a.Handle, []kernel.NeighOp{{Kind: kernel.Replace, Neigh: wrong}}).Err()
		},
		func(e kernel.NeighEvent) bool { return !e.FDB && !e.Deleted && e.Neigh() == wrong },
		func(e kernel.NeighEvent) bool { return !e.FDB && !e.Deleted && e.Neigh() == planned })
	t.Logf("vxlan neighbour with a wrong MAC among %d peers repaired in %v (median of %d; min %v, max %v)",
		peers, backendtest.Median(took), tries, slices.Min(took), slices.Max(took))
}

// TestRunRepairsTheDeviceAtOnce sets the device down, changes its MTU and
// its local address, and deletes its address, with a period of an hour:
// link and address notifications alone must bring each back within 2 s,
// counted by kind.
func TestRunRepairsTheDeviceAtOnce(t *testing.T) {
	hs := cluster(t, 2)
	a := hs[0]
	a.metrics = metrics.New()
	ba := a.start(t, plainConfig, Options{ReconcilePeriod: time.Hour})
	bb, err := hs[1].build(t, plainConfig, Options{NoSubscribe: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := ba.Apply(t.Context(), []lease.Lease{a.lease(ba), hs[1].lease(bb)}); err != nil {
		t.Fatal(err)
	}
	want := state(t, a.NS)
	backendtest.Run(t, ba.Run)
	count := func(kind string) float64 { return backendtest.Repairs(t, a.metrics, kind) }
	// The first change may race Run's start-up repair; once a deletion is
	// repaired, the watches certainly run.
	nstest.Exec(t, a.NS, "ip", "route", "del", "10.244.2.0/24")
	nstest.Eventually(t, 2*time.Second, func() error {
		if count(metrics.KindRoute) < 1 {
			return errors.New("the warm-up deletion is not repaired yet")
		}
		return nil
	})
	for _, c := range []struct {
		what string
		cmd  []string
		kind string
	}{
		{"device down", []string{"ip", "link", "set", "flannel.1", "down"}, metrics.KindDevice},
		{"mtu changed", []string{"ip", "link", "set", "flannel.1", "mtu", "1300"}, metrics.KindDevice},
		{"local address changed", []string{"ip", "link", "set", "flannel.1", "type", "vxlan", "local", "192.168.70.50"}, metrics.KindDevice},
		{"address deleted", []string{"ip", "addr", "del", "10.244.1.0/32", "dev", "flannel.1"}, metrics.KindAddress},
	} {
		base := count(c.kind)
		nstest.Exec(t, a.NS, c.cmd...)
		nstest.Eventually(t, 2*time.Second, func() error {
			// The device first, without failing the test: a changed local
			// address makes the backend re-create it.
			l, err := a.Handle.LinkByName("flannel.1")
			if err != nil {
				return fmt.Errorf("after %s: %w", c.what, err)
			}
			if got := attrsOf(l); got.Local != a.Ext.Addr || l.Attrs().MTU != 1450 {
				return fmt.Errorf("after %s: local %s, mtu %d", c.what, got.Local, l.Attrs().MTU)
			}
			if got := state(t, a.NS); got != want {
				return fmt.Errorf("after %s:\n%s\nwant:\n%s", c.what, got, want)
			}
			if count(c.kind) == base {
				return fmt.Errorf("after %s: no %s repair counted", c.what, c.kind)
			}
			return nil
		})
	}
}
