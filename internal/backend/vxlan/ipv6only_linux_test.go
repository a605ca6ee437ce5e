package vxlan

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/backend/backendtest"
	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/kernel/kerneltest"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/nstest"
)

// An IPv6-only network ("EnableIPv4": false, Kubernetes mode): the
// backend makes flannel-v6.1 alone, publishes BackendV6Data and no
// BackendData, and programs each peer's IPv6 half as in dual-stack.

// v6onlyCluster is cluster with an IPv6-only network config on every host.
func v6onlyCluster(t *testing.T, perSegment ...int) []*host {
	t.Helper()
	return clusterWith(t, func(hg *host) { hg.v6only = true }, perSegment...)
}

// TestIPv6OnlyPodTrafficThroughFlannelV6: three hosts, one behind a
// router, on an IPv6-only network: no flannel.1 anywhere, flannel-v6.1
// with the MTU of VXLAN over IPv6, flannel's three IPv6 entries per peer,
// the lease's BackendV6Data naming the device's MAC and no BackendData,
// and pods of every pair reach each other over IPv6.
func TestIPv6OnlyPodTrafficThroughFlannelV6(t *testing.T) {
	hs := v6onlyCluster(t, 2, 1)
	a := hs[0]
	bs, ls := startAll(t, hs, plainConfig)

	if _, err := a.Handle.LinkByName("flannel.1"); err == nil {
		t.Error("flannel.1 exists on an IPv6-only network")
	}
	dev := linkOf(t, a, "flannel-v6.1").(*netlink.Vxlan)
	mac6, _ := kernel.MACFrom(dev.HardwareAddr)
	if src := netip.MustParseAddr(dev.SrcAddr.String()); src != a.Ext.Addr6 || mac6 != bs[0].IPv6().VtepMAC() {
		t.Errorf("flannel-v6.1 local %s MAC %s; want %s and the IPv6 side's %s", src, mac6, a.Ext.Addr6, bs[0].IPv6().VtepMAC())
	}
	if ext := a.Ext.MTU; dev.MTU != ext-70 || bs[0].MTU() != ext-70 {
		t.Errorf("MTUs: flannel-v6.1 %d, pods %d; want %d", dev.MTU, bs[0].MTU(), ext-70)
	}
	if want := fmt.Sprintf(`{"VNI":1,"VtepMAC":"%s"}`, mac6); ls[0].Attrs.BackendData != nil || string(ls[0].Attrs.BackendV6Data) != want {
		t.Errorf("lease BackendData %s, BackendV6Data %s; want none and %s", ls[0].Attrs.BackendData, ls[0].Attrs.BackendV6Data, want)
	}
	if got := bs[0].Address(); got != mac6.String() {
		t.Errorf("Address = %s, want flannel-v6.1's %s", got, mac6)
	}

	wantV6Peers(t, a, bs, false)
	backendtest.WantLines(t, "A's IPv4 routes", weftRoutes(t, a.NS), nil)

	echoAll(t, hs, false)

	// Run repairs the IPv6 side: a deleted route comes back.
	stop := backendtest.Run(t, bs[0].Run)
	defer stop()
	want := state6(t, a.NS)
	nstest.Exec(t, a.NS, "ip", "-6", "route", "del", "fd00:10:244:2::/64")
	nstest.Eventually(t, 10*time.Second, func() error {
		if got := state6(t, a.NS); got != want {
			return fmt.Errorf("after the route's deletion:\n%s\nwant:\n%s", got, want)
		}
		return nil
	})
	if c := bs[0].RepairCounts(); c.Route < 1 {
		t.Errorf("RepairCounts = %+v; want the route's repair counted", c)
	}
}

// TestIPv6OnlyDirectRouting: with DirectRouting on an IPv6-only network,
// A reaches B on its segment via B's PublicIPv6 on eth0 and C, behind
// the router, through flannel-v6.1; every pair of pods connects.
func TestIPv6OnlyDirectRouting(t *testing.T) {
	hs := v6onlyCluster(t, 2, 1)
	a := hs[0]
	bs, _ := startAll(t, hs, `{"Type":"vxlan","DirectRouting":true}`)
	wantV6Peers(t, a, bs, true)
	echoAll(t, hs, false)
}

// v6onlyFake is a backend on a fake kernel with eth0 fd70::1 alone, on
// an IPv6-only network, started with fd00:10:244:1::/64.
func v6onlyFake(t *testing.T) (*kerneltest.Netlink, *Backend) {
	t.Helper()
	k := kerneltest.New()
	eth0 := k.AddDevice("eth0", 1500)
	b, err := NewWithOptions(backend.Config{
		Ext:      backend.ExternalInterface{Name: "eth0", Index: eth0, MTU: 1500, Addr6: netip.MustParseAddr("fd70::1")},
		Network:  v6onlyConfig(t, `{"Type":"vxlan"}`),
		StateDir: t.TempDir(),
	}, Options{Handle: k, NoSubscribe: true})
	if err != nil {
		t.Fatal(err)
	}
	own := lease.Lease{IPv6Subnet: netip.MustParsePrefix("fd00:10:244:1::/64"),
		Attrs: lease.Attrs{PublicIPv6: netip.MustParseAddr("fd70::1"), BackendType: BackendType, BackendV6Data: b.LeaseV6Data()}}
	if err := b.Start(t.Context(), own); err != nil {
		t.Fatal(err)
	}
	return k, b
}

// v6onlyPeer is host i's IPv6-only lease: fd00:10:244:i::/64, PublicIPv6
// fd70::i, VTEP MAC 0a:00:00:00:06:0i.
func v6onlyPeer(i byte) lease.Lease {
	return lease.Lease{
		IPv6Subnet: netip.MustParsePrefix(fmt.Sprintf("fd00:10:244:%d::/64", i)),
		Attrs: lease.Attrs{
			PublicIPv6:    netip.MustParseAddr(fmt.Sprintf("fd70::%d", i)),
			BackendType:   BackendType,
			BackendV6Data: leaseData(1, kernel.MAC{0x0a, 0, 0, 0, 0x06, i}),
		},
	}
}

// TestFakeIPv6OnlyPlan: on an IPv6-only network New and Start make
// flannel-v6.1 alone (never flannel.1), LeaseAttrs publishes no
// BackendData, and Apply programs each peer's neighbour, FDB entry and
// onlink route on flannel-v6.1 in that order; a peer leaving takes them
// in the reverse order.
func TestFakeIPv6OnlyPlan(t *testing.T) {
	k, b := v6onlyFake(t)
	wantCalls(t, "New and Start", changes(k.Calls()), []string{
		"link add flannel-v6.1 type vxlan",
		"link set flannel-v6.1 up",
		"addr add fd00:10:244:1::/128 dev flannel-v6.1",
	})
	if typ, data := b.LeaseAttrs(); typ != BackendType || data != nil {
		t.Errorf("LeaseAttrs = %s, %s; want vxlan and no BackendData", typ, data)
	}
	var d backendData
	if err := json.Unmarshal(b.LeaseV6Data(), &d); err != nil || d.VNI != 1 || d.VtepMAC != b.IPv6().VtepMAC().String() {
		t.Errorf("LeaseV6Data = %s, %v", b.LeaseV6Data(), err)
	}
	if b.MTU() != 1430 {
		t.Errorf("MTU = %d, want 1500 - 70", b.MTU())
	}

	k.ResetCalls()
	if err := b.Apply(t.Context(), []lease.Lease{v6onlyPeer(1), v6onlyPeer(2)}); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, "Apply of one peer", changes(k.Calls()), []string{
		"neigh replace fd00:10:244:2:: lladdr 0a:00:00:00:06:02 dev flannel-v6.1",
		"fdb replace 0a:00:00:00:06:02 dev flannel-v6.1 dst fd70::2",
		"route replace fd00:10:244:2::/64 via fd00:10:244:2:: dev flannel-v6.1 onlink",
	})
	k.ResetCalls()
	if err := b.Apply(t.Context(), []lease.Lease{v6onlyPeer(1)}); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, "Apply without the peer", changes(k.Calls()), []string{
		"route del fd00:10:244:2::/64 via fd00:10:244:2:: dev flannel-v6.1 onlink",
		"fdb del 0a:00:00:00:06:02 dev flannel-v6.1 dst fd70::2",
		"neigh del fd00:10:244:2:: dev flannel-v6.1",
	})
	if strings.Contains(strings.Join(k.State(), "\n"), "flannel.1") {
		t.Errorf("the fake kernel holds flannel.1:\n%s", strings.Join(k.State(), "\n"))
	}
}

// TestFakeIPv6OnlyRepairAndReaddress: the repair loop's pass restores a
// deleted IPv6 entry, and a clash of VTEP MACs replaces flannel-v6.1's,
// the one an IPv6-only lease publishes and the agent compares.
func TestFakeIPv6OnlyRepairAndReaddress(t *testing.T) {
	k, b := v6onlyFake(t)
	if err := b.Apply(t.Context(), []lease.Lease{v6onlyPeer(2)}); err != nil {
		t.Fatal(err)
	}
	want := k.State()
	k.DeleteRoute(netip.MustParsePrefix("fd00:10:244:2::/64"))
	if got := b.v6.repair("route deleted"); got["route"] != 1 {
		t.Errorf("repair = %v, want one route", got)
	}
	if got := k.State(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("after the repair:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	peer := v6onlyPeer(2)
	if got := b.LeaseAddress(peer); got != "0a:00:00:00:06:02" {
		t.Errorf("LeaseAddress of an IPv6-only lease = %q, want its BackendV6Data's MAC", got)
	}
	old := b.Address()
	was, now, err := b.Readdress()
	if err != nil || was != old || now == old || b.Address() != now || b.IPv6().VtepMAC().String() != now {
		t.Errorf("Readdress = %s, %s, %v; Address %s (was %s)", was, now, err, b.Address(), old)
	}
	if !strings.Contains(string(b.LeaseV6Data()), now) {
		t.Errorf("LeaseV6Data after Readdress = %s, want %s", b.LeaseV6Data(), now)
	}
}

// TestIPv6OnlyNeedsAnIPv6Address: an IPv6-only network needs a global
// IPv6 address on the interface, for flannel-v6.1 to send from; the
// refusal names the interface.
func TestIPv6OnlyNeedsAnIPv6Address(t *testing.T) {
	k := kerneltest.New()
	eth0 := k.AddDevice("eth0", 1500)
	for _, ext := range []backend.ExternalInterface{
		{Name: "eth0", Index: eth0, MTU: 1500, Addr: netip.MustParseAddr("192.168.70.1")},
		{Name: "eth0", Index: eth0, MTU: 1500, PublicIPv6: netip.MustParseAddr("fd70::1")},
	} {
		_, err := NewWithOptions(backend.Config{Ext: ext, Network: v6onlyConfig(t, `{"Type":"vxlan"}`)}, Options{Handle: k, NoSubscribe: true})
		if err == nil || !strings.Contains(err.Error(), "IPv6 address on interface eth0") {
			t.Errorf("New with %+v = %v, want a refusal naming eth0's IPv6 address", ext, err)
		}
	}
	if strings.Contains(strings.Join(k.State(), "\n"), "flannel") {
		t.Errorf("a refused backend left a device:\n%s", strings.Join(k.State(), "\n"))
	}
}
