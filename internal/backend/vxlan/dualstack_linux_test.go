package vxlan

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/backend/backendtest"
	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/nstest"
)

// Dual-stack: besides the IPv4 addresses of vxlan_linux_test.go, host i
// has fd70:0:0:s::i on eth0 (segment s) and fd00:10:244:i::1 on cni0, and
// leases fd00:10:244:i::/64; its backend makes flannel-v6.1 with
// fd00:10:244:i:: over the IPv6 underlay.

// dualCluster is cluster with IPv6 enabled on every host.
func dualCluster(t *testing.T, perSegment ...int) []*host {
	t.Helper()
	return clusterWith(t, func(hg *host) { hg.ipv6 = true }, perSegment...)
}

// clusterWith is cluster with set applied to every host.
func clusterWith(t *testing.T, set func(*host), perSegment ...int) []*host {
	t.Helper()
	hs := cluster(t, perSegment...)
	for _, hg := range hs {
		set(hg)
	}
	return hs
}

// wantV6Peers checks A's (hs[0]'s) IPv6 entries in a cluster of two
// hosts on one segment and one behind the router: per peer a neighbour,
// an FDB entry to its PublicIPv6 and an onlink route on flannel-v6.1, or
// with direct, B's route via its PublicIPv6 on eth0 and C's entries alone.
func wantV6Peers(t *testing.T, a *host, bs []*Backend, direct bool) {
	t.Helper()
	macB, macC := bs[1].IPv6().VtepMAC().String(), bs[2].IPv6().VtepMAC().String()
	routeB := "fd00:10:244:2::/64 via fd00:10:244:2:: dev flannel-v6.1 metric 1024 onlink pref medium"
	neighs := []string{"fd00:10:244:2:: lladdr " + macB + " PERMANENT", "fd00:10:244:3:: lladdr " + macC + " PERMANENT"}
	fdbs := sorted(macB+" dst fd70::2 self permanent", macC+" dst fd70:0:0:1::3 self permanent")
	if direct {
		routeB = "fd00:10:244:2::/64 via fd70::2 dev eth0 metric 1024 pref medium"
		neighs, fdbs = neighs[1:], []string{macC + " dst fd70:0:0:1::3 self permanent"}
	}
	backendtest.WantLines(t, "A's IPv6 routes", weftRoutes6(t, a.NS), []string{
		routeB,
		"fd00:10:244:3::/64 via fd00:10:244:3:: dev flannel-v6.1 metric 1024 onlink pref medium",
	})
	backendtest.WantLines(t, "A's IPv6 neighbours", neighs6(t, a.NS), neighs)
	backendtest.WantLines(t, "A's IPv6 fdb", fdb6(t, a.NS), fdbs)
}

func neighs6(t *testing.T, ns string) []string     { return neighsOf(t, ns, ipv6) }
func fdb6(t *testing.T, ns string) []string        { return fdbOf(t, ns, ipv6) }
func weftRoutes6(t *testing.T, ns string) []string { return weftRoutesOf(t, ns, ipv6) }
func state6(t *testing.T, ns string) string        { return stateOf(t, ns, ipv6) }

// echoAll checks that every host's pods reach every other's over IPv6
// (and IPv4 when v4 is set).
func echoAll(t *testing.T, hs []*host, v4 bool) {
	t.Helper()
	for _, to := range hs {
		targets := []string{to.EchoServer6(t)}
		if v4 {
			targets = append(targets, to.EchoServer(t))
		}
		for _, from := range hs {
			if from == to {
				continue
			}
			for _, target := range targets {
				// IPv6 neighbour discovery on the underlay and the pods'
				// segments may still be settling for the first packet;
				// each pair gets a deadline, not one attempt.
				nstest.Eventually(t, 10*time.Second, func() error { return from.Echo(target, 2*time.Second) })
			}
		}
	}
}

// TestDualStackPodTrafficThroughFlannelV6 checks the IPv6 data plane end
// to end on three hosts, one behind a router: flannel-v6.1 over the IPv6
// underlay with its own VTEP MAC, flannel's entries per peer, pods of
// every pair reach each other over IPv6 through it (and over IPv4 as
// before), pods get the MTU of VXLAN over IPv6, and a departed peer's
// IPv6 entries go with its IPv4 ones.
func TestDualStackPodTrafficThroughFlannelV6(t *testing.T) {
	hs := dualCluster(t, 2, 1)
	a := hs[0]
	bs, ls := startAll(t, hs, plainConfig)

	v6 := bs[0].IPv6()
	if v6 == nil {
		t.Fatal("no IPv6 side with IPv6 enabled and an IPv6 underlay address")
	}
	dev := linkOf(t, a, "flannel-v6.1").(*netlink.Vxlan)
	mac6, _ := kernel.MACFrom(dev.HardwareAddr)
	if mac6 != v6.VtepMAC() || mac6 == bs[0].VtepMAC() {
		t.Errorf("flannel-v6.1 MAC %s; want the IPv6 side's %s, not flannel.1's %s", mac6, v6.VtepMAC(), bs[0].VtepMAC())
	}
	if src := netip.MustParseAddr(dev.SrcAddr.String()); src != a.Ext.Addr6 || dev.VxlanId != 1 || dev.Learning || dev.VtepDevIndex != a.Ext.Index {
		t.Errorf("flannel-v6.1 = local %s id %d learning %v dev %d; want local %s id 1 nolearning dev eth0", src, dev.VxlanId, dev.Learning, dev.VtepDevIndex, a.Ext.Addr6)
	}
	ext := a.Ext.MTU
	if dev.MTU != ext-70 || linkOf(t, a, "flannel.1").Attrs().MTU != ext-50 || bs[0].MTU() != ext-70 {
		t.Errorf("MTUs: flannel-v6.1 %d, flannel.1 %d, pods %d; want %d, %d, %d",
			dev.MTU, linkOf(t, a, "flannel.1").Attrs().MTU, bs[0].MTU(), ext-70, ext-50, ext-70)
	}
	if want := fmt.Sprintf(`{"VNI":1,"VtepMAC":"%s"}`, mac6); string(ls[0].Attrs.BackendV6Data) != want {
		t.Errorf("BackendV6Data = %s, want %s", ls[0].Attrs.BackendV6Data, want)
	}

	macB := bs[1].IPv6().VtepMAC().String()
	wantV6Peers(t, a, bs, false)
	if got := nstest.Exec(t, a.NS, "ip", "-6", "addr", "show", "dev", "flannel-v6.1", "scope", "global"); !strings.Contains(got, "inet6 fd00:10:244:1::/128") {
		t.Errorf("flannel-v6.1 addresses:\n%s\nwant fd00:10:244:1::/128", got)
	}

	echoAll(t, hs, true)

	// C leaves: its IPv6 entries go with its IPv4 ones.
	if err := bs[0].Apply(t.Context(), ls[:2]); err != nil {
		t.Fatal(err)
	}
	backendtest.WantLines(t, "A's IPv6 routes after C left", weftRoutes6(t, a.NS), []string{
		"fd00:10:244:2::/64 via fd00:10:244:2:: dev flannel-v6.1 metric 1024 onlink pref medium",
	})
	backendtest.WantLines(t, "A's IPv6 neighbours after C left", neighs6(t, a.NS), []string{"fd00:10:244:2:: lladdr " + macB + " PERMANENT"})
	backendtest.WantLines(t, "A's IPv6 fdb after C left", fdb6(t, a.NS), []string{macB + " dst fd70::2 self permanent"})
	if n := len(weftRoutes(t, a.NS)); n != 1 {
		t.Errorf("A keeps %d IPv4 routes after C left, want 1", n)
	}
	if backendtest.LogLines(a.logBuf.String(), `msg="peer removed"`, "family=ipv6", "subnet=fd00:10:244:3::/64") != 1 {
		t.Errorf("C's IPv6 half not logged as removed:\n%s", a.logBuf.String())
	}
}

// TestDualStackPeerWithoutIPv6 is a mixed cluster: a peer that leases no
// IPv6 subnet (IPv6 not enabled in its config) keeps its IPv4 entries
// and gets no IPv6 ones; its pods reach A's over IPv4.
func TestDualStackPeerWithoutIPv6(t *testing.T) {
	hs := cluster(t, 2)
	a, b := hs[0], hs[1]
	a.ipv6 = true
	bs, _ := startAll(t, hs, plainConfig)
	if bs[1].IPv6() != nil {
		t.Fatal("B has an IPv6 side without IPv6 enabled")
	}
	if len(weftRoutes(t, a.NS)) != 1 || len(neighs(t, a.NS)) != 1 {
		t.Errorf("A's IPv4 entries for B: routes %v, neighbours %v", weftRoutes(t, a.NS), neighs(t, a.NS))
	}
	backendtest.WantLines(t, "A's IPv6 routes", weftRoutes6(t, a.NS), nil)
	backendtest.WantLines(t, "A's IPv6 neighbours", neighs6(t, a.NS), nil)
	if err := b.Echo(a.EchoServer(t), 2*time.Second); err != nil {
		t.Errorf("B -> A over IPv4: %v", err)
	}
}

// TestDualStackRunRepairsIPv6Entries deletes or changes each IPv6 entry,
// and flannel-v6.1 itself, behind the backend's back: Run puts each back
// as it was, and pods reach each other over IPv6 again.
func TestDualStackRunRepairsIPv6Entries(t *testing.T) {
	hs := dualCluster(t, 2)
	a, b := hs[0], hs[1]
	bs, _ := startAll(t, hs, plainConfig)
	stop := backendtest.Run(t, bs[0].Run)
	defer stop()
	want := state6(t, a.NS)
	wantV4 := state(t, a.NS)
	macB := bs[1].IPv6().VtepMAC().String()

	for _, breakIt := range [][]string{
		{"ip", "-6", "neigh", "del", "fd00:10:244:2::", "dev", "flannel-v6.1"},
		{"ip", "-6", "neigh", "replace", "fd00:10:244:2::", "lladdr", "0e:00:00:00:00:99", "dev", "flannel-v6.1", "nud", "permanent"},
		{"bridge", "fdb", "del", macB, "dev", "flannel-v6.1", "dst", "fd70::2", "self"},
		{"bridge", "fdb", "replace", macB, "dev", "flannel-v6.1", "dst", "fd70::99", "self", "permanent"},
		{"ip", "-6", "route", "del", "fd00:10:244:2::/64"},
		{"ip", "-6", "addr", "flush", "dev", "flannel-v6.1", "scope", "global"},
		{"ip", "link", "del", "flannel-v6.1"},
	} {
		nstest.Exec(t, a.NS, breakIt...)
		nstest.Eventually(t, 10*time.Second, func() error {
			if got := state6(t, a.NS); got != want {
				return fmt.Errorf("after %q:\n%s\nwant:\n%s", strings.Join(breakIt, " "), got, want)
			}
			return nil
		})
	}
	if got := state(t, a.NS); got != wantV4 {
		t.Errorf("IPv4 state changed by the IPv6 repairs:\n%s\nwant:\n%s", got, wantV4)
	}
	if c := bs[0].RepairCounts(); c.Neighbour < 2 || c.FDB < 2 || c.Route < 1 || c.Device < 1 || c.Address < 1 {
		t.Errorf("RepairCounts = %+v; want the IPv6 repairs counted", c)
	}
	nstest.Eventually(t, 10*time.Second, func() error { return a.Echo(b.EchoServer6(t), time.Second) })
}

// TestDualStackDirectRouting: with DirectRouting, A and B share a segment
// and route IPv6 to each other via their PublicIPv6 on eth0; C, behind
// the router, is reached through flannel-v6.1. Every pair of pods
// connects over both families.
func TestDualStackDirectRouting(t *testing.T) {
	hs := dualCluster(t, 2, 1)
	a := hs[0]
	bs, _ := startAll(t, hs, `{"Type":"vxlan","DirectRouting":true}`)
	wantV6Peers(t, a, bs, true)
	echoAll(t, hs, true)
}

// TestDualStackKeepsIPv6MAC: the IPv6 VTEP MAC is persisted in its own
// file, kept across a restart, and taken back from what the store
// published (PublishedV6) when a reboot wiped both the file and the
// device.
func TestDualStackKeepsIPv6MAC(t *testing.T) {
	hs := dualCluster(t, 1)
	a := hs[0]
	b1 := a.start(t, plainConfig, Options{NoSubscribe: true})
	mac6 := b1.IPv6().VtepMAC()
	raw, err := os.ReadFile(filepath.Join(a.stateDir, "weft-vtep-flannel-v6.1.mac"))
	if err != nil || strings.TrimSpace(string(raw)) != mac6.String() {
		t.Fatalf("MAC file = %q, %v; want %s", raw, err, mac6)
	}
	b2 := a.start(t, plainConfig, Options{NoSubscribe: true})
	if got := b2.IPv6().VtepMAC(); got != mac6 {
		t.Errorf("after a restart the IPv6 VTEP MAC is %s, want %s", got, mac6)
	}

	published := b2.LeaseV6Data()
	if err := os.Remove(filepath.Join(a.stateDir, "weft-vtep-flannel-v6.1.mac")); err != nil {
		t.Fatal(err)
	}
	nstest.Exec(t, a.NS, "ip", "link", "del", "flannel-v6.1")
	b3, err := a.buildWith(t, plainConfig, Options{NoSubscribe: true}, published)
	if err != nil {
		t.Fatal(err)
	}
	if got := b3.IPv6().VtepMAC(); got != mac6 {
		t.Errorf("after a reboot the IPv6 VTEP MAC is %s, want the published %s", got, mac6)
	}
	if got := linkOf(t, a, "flannel-v6.1").Attrs().HardwareAddr.String(); got != mac6.String() {
		t.Errorf("flannel-v6.1 MAC %s, want %s", got, mac6)
	}

	// A copied state directory copied both MACs: readdressing replaces both.
	old4 := b3.VtepMAC()
	if _, _, err := b3.Readdress(); err != nil {
		t.Fatal(err)
	}
	if b3.VtepMAC() == old4 || b3.IPv6().VtepMAC() == mac6 {
		t.Errorf("Readdress kept a MAC: IPv4 %s (was %s), IPv6 %s (was %s)", b3.VtepMAC(), old4, b3.IPv6().VtepMAC(), mac6)
	}
	var d backendData
	if err := json.Unmarshal(b3.LeaseV6Data(), &d); err != nil || d.VtepMAC != b3.IPv6().VtepMAC().String() {
		t.Errorf("LeaseV6Data after Readdress = %s, %v", b3.LeaseV6Data(), err)
	}
}

// TestDualStackApplyWithoutOwnIPv6Subnet: IPv6 enabled but the own lease
// has no IPv6 subnet (the store leased none): IPv4 works on, and the IPv6
// side says so and programs nothing.
func TestDualStackApplyWithoutOwnIPv6Subnet(t *testing.T) {
	hs := dualCluster(t, 2)
	a := hs[0]
	ba, err := a.build(t, plainConfig, Options{NoSubscribe: true})
	if err != nil {
		t.Fatal(err)
	}
	bb := hs[1].start(t, plainConfig, Options{NoSubscribe: true})
	own := a.lease(ba)
	own.IPv6Subnet = netip.Prefix{}
	if err := ba.Start(t.Context(), own); err != nil {
		t.Fatal(err)
	}
	if err := ba.Apply(t.Context(), []lease.Lease{own, hs[1].lease(bb)}); err != nil {
		t.Fatal(err)
	}
	if len(weftRoutes(t, a.NS)) != 1 || len(weftRoutes6(t, a.NS)) != 0 {
		t.Errorf("routes: IPv4 %v, IPv6 %v; want one IPv4 route only", weftRoutes(t, a.NS), weftRoutes6(t, a.NS))
	}
	if !slices.ContainsFunc(strings.Split(a.logBuf.String(), "\n"), func(l string) bool {
		return strings.Contains(l, "level=ERROR") && strings.Contains(l, "no IPv6 subnet")
	}) {
		t.Errorf("no ERROR about the missing IPv6 subnet:\n%s", a.logBuf.String())
	}
}
