package vxlan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/backend/backendtest"
	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/kernel/kerneltest"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/netconf"
	"github.com/weftnet/weft/internal/nstest"
)

// These tests run the backend against kerneltest's fake kernel, without
// root: which calls it makes, in which order, what it reads back, and how
// it repairs. vxlan_linux_test.go holds the same behaviour to the real
// kernel in namespaces.

// fakeHost is one backend on a fake kernel with eth0 192.168.70.1.
type fakeHost struct {
	k *kerneltest.Netlink
	b *Backend
}

func newFakeHost(t *testing.T) fakeHost {
	t.Helper()
	return newFakeHostWith(t, `{"Type":"vxlan"}`)
}

func newFakeHostWith(t *testing.T, conf string) fakeHost {
	t.Helper()
	return newFakeHostFull(t, conf, 0, nil)
}

func newFakeHostFull(t *testing.T, conf string, period time.Duration, m *metrics.Metrics) fakeHost {
	t.Helper()
	k := kerneltest.New()
	eth0 := k.AddDevice("eth0", 1500)
	addr := netip.MustParseAddr("192.168.70.1")
	b, err := NewWithOptions(backend.Config{
		Ext:      backend.ExternalInterface{Name: "eth0", Index: eth0, MTU: 1500, Addr: addr},
		Network:  &netconf.Config{EnableIPv4: true, Network: testNetwork, SubnetLen: 24, BackendType: BackendType, Backend: json.RawMessage(conf)},
		StateDir: t.TempDir(),
		Metrics:  m,
	}, Options{Handle: k, NoSubscribe: true, ReconcilePeriod: period})
	if err != nil {
		t.Fatal(err)
	}
	own := lease.Lease{Subnet: netip.MustParsePrefix("10.244.1.0/24"), Attrs: lease.Attrs{PublicIP: addr, BackendType: BackendType}}
	if err := b.Start(t.Context(), own); err != nil {
		t.Fatal(err)
	}
	return fakeHost{k: k, b: b}
}

// apply applies leases, failing the test on an error, and returns the
// calls the Apply made.
func (h fakeHost) apply(t *testing.T, leases ...lease.Lease) []string {
	t.Helper()
	h.k.ResetCalls()
	if err := h.b.Apply(t.Context(), leases); err != nil {
		t.Fatal(err)
	}
	return h.k.Calls()
}

// fakePeer is host i's lease: subnet 10.244.i.0/24, PublicIP 192.168.70.i
// and VTEP MAC 0a:00:00:00:00:0i.
func fakePeer(i byte) lease.Lease {
	mac := kernel.MAC{0x0a, 0, 0, 0, 0, i}
	return lease.Lease{
		Subnet: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, i, 0}), 24),
		Attrs: lease.Attrs{
			PublicIP:    netip.AddrFrom4([4]byte{192, 168, 70, i}),
			BackendType: BackendType,
			BackendData: leaseData(1, mac),
		},
	}
}

// changes are the calls that changed something, without reads.
func changes(calls []string) []string {
	return slices.DeleteFunc(slices.Clone(calls), func(c string) bool {
		return strings.Contains(c, " list") || strings.Contains(c, " get")
	})
}

// dumps are the reads of neighbours, FDB and routes, the tables a cached
// plan saves reading; the device and its addresses are read every time.
func dumps(calls []string) []string {
	return slices.DeleteFunc(slices.Clone(calls), func(c string) bool {
		return !strings.Contains(c, " list") || strings.HasPrefix(c, "addr ")
	})
}

func wantCalls(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\ngot  %q\nwant %q", what, got, want)
	}
}

func TestFakeStartCreatesTheDeviceInOrder(t *testing.T) {
	h := newFakeHost(t)
	mac := h.b.VtepMAC().String()
	wantCalls(t, "New and Start", changes(h.k.Calls()), []string{
		"link add flannel.1 type vxlan",
		"link set flannel.1 up",
		"addr add 10.244.1.0/32 dev flannel.1",
	})
	state := strings.Join(h.k.State(), "\n")
	if !strings.Contains(state, "link flannel.1 mtu 1450 address "+mac+" up") {
		t.Errorf("device not as wanted:\n%s", state)
	}
}

func TestFakeApplyProgramsNeighbourThenFDBThenRoute(t *testing.T) {
	h := newFakeHost(t)
	wantCalls(t, "Apply of one peer", changes(h.apply(t, fakePeer(2))), []string{
		"neigh replace 10.244.2.0 lladdr 0a:00:00:00:00:02 dev flannel.1",
		"fdb replace 0a:00:00:00:00:02 dev flannel.1 dst 192.168.70.2",
		"route replace 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink",
	})

	// The peer leaves: its route goes first, then FDB, then neighbour.
	wantCalls(t, "Apply without the peer", changes(h.apply(t)), []string{
		"route del 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink",
		"fdb del 0a:00:00:00:00:02 dev flannel.1 dst 192.168.70.2",
		"neigh del 10.244.2.0 dev flannel.1",
	})
}

func TestFakeApplyPlansAgainstTheCache(t *testing.T) {
	h := newFakeHost(t)
	h.apply(t, fakePeer(2))
	calls := h.apply(t, fakePeer(2), fakePeer(3))
	wantCalls(t, "reads of an Apply after a clean one", dumps(calls), nil)
	wantCalls(t, "the second Apply", changes(calls), []string{
		"neigh replace 10.244.3.0 lladdr 0a:00:00:00:00:03 dev flannel.1",
		"fdb replace 0a:00:00:00:00:03 dev flannel.1 dst 192.168.70.3",
		"route replace 10.244.3.0/24 via 10.244.3.0 dev flannel.1 onlink",
	})

	// A failure invalidates the cache: the next Apply reads the kernel.
	h.k.Fail("route replace 10.244.4.0/24", kerneltest.ErrInjected)
	if err := h.b.Apply(t.Context(), []lease.Lease{fakePeer(2), fakePeer(3), fakePeer(4)}); err == nil {
		t.Fatal("Apply with a refused route succeeded")
	}
	h.k.Fail("route replace 10.244.4.0/24", nil)
	wantCalls(t, "reads after a failed Apply", dumps(h.apply(t, fakePeer(2), fakePeer(3), fakePeer(4))), []string{
		"neigh list dev flannel.1", "fdb list dev flannel.1", "route list",
	})
}

func TestFakeRefusedFDBEntryGetsNoRouteAndNamesThePeer(t *testing.T) {
	h := newFakeHost(t)
	h.k.Fail("fdb replace 0a:00:00:00:00:03", kerneltest.ErrInjected)
	err := h.b.Apply(t.Context(), []lease.Lease{fakePeer(2), fakePeer(3)})
	if err == nil || !strings.Contains(err.Error(), "peer 192.168.70.3 (subnet 10.244.3.0/24)") || !errors.Is(err, kerneltest.ErrInjected) {
		t.Errorf("Apply = %v, want the refusal, naming peer 192.168.70.3", err)
	}
	state := strings.Join(h.k.State(), "\n")
	if !strings.Contains(state, "route 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink") {
		t.Errorf("the healthy peer got no route:\n%s", state)
	}
	if strings.Contains(state, "route 10.244.3.0/24") {
		t.Errorf("the peer whose fdb entry was refused got a route:\n%s", state)
	}
}

func TestFakeRepairRestoresDeletedEntriesAndCountsThem(t *testing.T) {
	h := newFakeHost(t)
	if got := h.b.repair("timer"); got != nil {
		t.Errorf("repair before the first Apply = %v, want nothing done", got)
	}
	h.apply(t, fakePeer(2), fakePeer(3))
	want := h.k.State()
	if got := h.b.repair("timer"); len(got) != 0 {
		t.Errorf("repair of a converged kernel = %v, want nothing", got)
	}

	h.k.DeleteNeigh(netip.MustParseAddr("10.244.2.0"))
	h.k.DeleteFDB(kernel.MAC{0x0a, 0, 0, 0, 0, 3})
	h.k.DeleteRoute(netip.MustParsePrefix("10.244.3.0/24"))
	got := h.b.repair("neighbour deleted")
	wantCounts := backend.Counts{metrics.KindNeighbour: 1, metrics.KindFDB: 1, metrics.KindRoute: 1}
	if !mapsEqual(got, wantCounts) {
		t.Errorf("repair counts = %v, want %v", got, wantCounts)
	}
	wantCalls(t, "state after the repair", h.k.State(), want)
	if c := h.b.RepairCounts(); c != (RepairCounts{Neighbour: 1, FDB: 1, Route: 1}) {
		t.Errorf("RepairCounts = %+v", c)
	}

	// The device goes, and takes everything on it along.
	h.k.DeleteLink("flannel.1")
	got = h.b.repair("device deleted")
	wantCounts = backend.Counts{metrics.KindDevice: 2, metrics.KindAddress: 1, metrics.KindNeighbour: 2, metrics.KindFDB: 2, metrics.KindRoute: 2}
	if !mapsEqual(got, wantCounts) {
		t.Errorf("repair counts after the device's deletion = %v, want %v (created, up)", got, wantCounts)
	}
	if g := h.k.State(); len(g) != len(want) {
		t.Errorf("state after re-creating the device:\n%q\nwant as many entries as\n%q", g, want)
	}
}

// TestFakeRepairReplacesChangedEntries: entries changed in place (not
// deleted) are replaced with the planned ones, and counted by kind.
func TestFakeRepairReplacesChangedEntries(t *testing.T) {
	h := newFakeHost(t)
	h.apply(t, fakePeer(2), fakePeer(3))
	want := h.k.State()
	dev := int(h.b.devIndex.Load())
	wrongNeigh := kernel.Neigh{LinkIndex: dev, IP: netip.MustParseAddr("10.244.2.0"), MAC: kernel.MAC{0x0e, 0, 0, 0, 0, 0x99}, Permanent: true}
	wrongFDB := kernel.FDB{LinkIndex: dev, MAC: kernel.MAC{0x0a, 0, 0, 0, 0, 3}, Dst: netip.MustParseAddr("192.168.70.99"), Permanent: true}
	wrongRoute := kernel.Route{Dst: netip.MustParsePrefix("10.244.3.0/24"), Gw: netip.MustParseAddr("192.168.70.3"), LinkIndex: h.b.ext.Index, Proto: 3}
	if err := kernel.ApplyNeighOps(h.k, []kernel.NeighOp{{Kind: kernel.Replace, Neigh: wrongNeigh}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := kernel.ApplyFDBOps(h.k, []kernel.FDBOp{{Kind: kernel.Replace, Entry: wrongFDB}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := kernel.ApplyOps(h.k, []kernel.Op{{Kind: kernel.Replace, Route: wrongRoute}}).Err(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what string
		got  string
	}{
		{"the changed neighbour", h.b.neighTrigger(kernel.NeighEvent{LinkIndex: dev, IP: wrongNeigh.IP, MAC: wrongNeigh.MAC, Permanent: true})},
		{"the changed fdb entry", h.b.neighTrigger(kernel.NeighEvent{LinkIndex: dev, FDB: true, IP: wrongFDB.Dst, MAC: wrongFDB.MAC, Permanent: true})},
		{"the changed route", h.b.routeTrigger(kernel.RouteEvent{Route: wrongRoute})},
	} {
		if c.got == "" {
			t.Errorf("%s calls for no repair", c.what)
		}
	}
	got := h.b.repair("neighbour changed")
	wantCounts := backend.Counts{metrics.KindNeighbour: 1, metrics.KindFDB: 1, metrics.KindRoute: 1}
	if !mapsEqual(got, wantCounts) {
		t.Errorf("repair counts = %v, want %v", got, wantCounts)
	}
	wantCalls(t, "state after the repair", h.k.State(), want)
}

func TestFakeDirectRoutingRoutesReachablePeersWithoutEncapsulation(t *testing.T) {
	h := newFakeHostWith(t, `{"Type":"vxlan","DirectRouting":true}`)
	eth0 := h.b.ext.Index
	// 192.168.70.2 is on eth0's network; 192.168.80.3 is behind a router.
	h.k.SetRouteGet(func(dst net.IP) ([]netlink.Route, error) {
		if dst.Equal(net.ParseIP("192.168.70.2")) {
			return []netlink.Route{{LinkIndex: eth0, Type: unix.RTN_UNICAST}}, nil
		}
		return []netlink.Route{{LinkIndex: eth0, Gw: net.ParseIP("192.168.70.254"), Type: unix.RTN_UNICAST}}, nil
	})
	far := fakePeer(3)
	far.Attrs.PublicIP = netip.MustParseAddr("192.168.80.3")
	wantCalls(t, "Apply with one direct and one encapsulated peer", changes(h.apply(t, fakePeer(2), far)), []string{
		"neigh replace 10.244.3.0 lladdr 0a:00:00:00:00:03 dev flannel.1",
		"fdb replace 0a:00:00:00:00:03 dev flannel.1 dst 192.168.80.3",
		"route replace 10.244.2.0/24 via 192.168.70.2 dev eth0",
		"route replace 10.244.3.0/24 via 10.244.3.0 dev flannel.1 onlink",
	})
}

// TestFakeWatchFilters holds the rules that say which kernel reports call
// for a repair to the state of an applied backend.
func TestFakeWatchFilters(t *testing.T) {
	h := newFakeHost(t)
	h.apply(t, fakePeer(2))
	dev := int(h.b.devIndex.Load())
	mac2 := kernel.MAC{0x0a, 0, 0, 0, 0, 2}
	neigh := kernel.NeighEvent{LinkIndex: dev, IP: netip.MustParseAddr("10.244.2.0"), MAC: mac2, Permanent: true}
	entry := kernel.NeighEvent{LinkIndex: dev, FDB: true, IP: netip.MustParseAddr("192.168.70.2"), MAC: mac2, Permanent: true}
	route := kernel.Route{Dst: netip.MustParsePrefix("10.244.2.0/24"), Gw: netip.MustParseAddr("10.244.2.0"), LinkIndex: dev, OnLink: true, Proto: kernel.ProtoWeft}
	with := func(e kernel.NeighEvent, f func(*kernel.NeighEvent)) kernel.NeighEvent { f(&e); return e }
	withRoute := func(f func(*kernel.Route)) kernel.Route { r := route; f(&r); return r }
	for _, c := range []struct {
		what string
		got  string
		want string
	}{
		{"the peer's neighbour as planned (Apply's echo)", h.b.neighTrigger(neigh), ""},
		{"the peer's neighbour with another MAC", h.b.neighTrigger(with(neigh, func(e *kernel.NeighEvent) { e.MAC = kernel.MAC{0x0e, 0, 0, 0, 0, 0x99} })), "neighbour changed"},
		{"the peer's neighbour failing (ip neigh del)", h.b.neighTrigger(with(neigh, func(e *kernel.NeighEvent) { e.MAC = kernel.MAC{}; e.Permanent = false })), "neighbour deleted"},
		{"the peer's neighbour deleted", h.b.neighTrigger(with(neigh, func(e *kernel.NeighEvent) { e.Deleted = true })), "neighbour deleted"},
		{"the peer's fdb entry as planned", h.b.neighTrigger(entry), ""},
		{"the peer's fdb entry with another dst", h.b.neighTrigger(with(entry, func(e *kernel.NeighEvent) { e.IP = netip.MustParseAddr("192.168.70.99") })), "fdb entry changed"},
		{"the peer's fdb entry deleted", h.b.neighTrigger(with(entry, func(e *kernel.NeighEvent) { e.Deleted = true })), "fdb entry deleted"},
		{"a neighbour of no peer", h.b.neighTrigger(with(neigh, func(e *kernel.NeighEvent) { e.IP = netip.MustParseAddr("10.244.7.0"); e.Deleted = true })), ""},
		{"the peer's address on another link", h.b.neighTrigger(with(neigh, func(e *kernel.NeighEvent) { e.LinkIndex = dev + 100; e.Deleted = true })), ""},
		{"the peer's route as planned", h.b.routeTrigger(kernel.RouteEvent{Route: route}), ""},
		{"the peer's route via another gateway", h.b.routeTrigger(kernel.RouteEvent{Route: withRoute(func(r *kernel.Route) { r.Gw = netip.MustParseAddr("192.168.70.50"); r.OnLink = false })}), "route changed"},
		{"the peer's route deleted", h.b.routeTrigger(kernel.RouteEvent{Route: route, Deleted: true}), "route deleted"},
		{"a route of no peer deleted", h.b.routeTrigger(kernel.RouteEvent{Route: withRoute(func(r *kernel.Route) { r.Dst = netip.MustParsePrefix("10.244.7.0/24") }), Deleted: true}), ""},
		{"a route outside the network deleted", h.b.routeTrigger(kernel.RouteEvent{Route: kernel.Route{Dst: netip.MustParsePrefix("172.16.0.0/24"), Gw: netip.MustParseAddr("192.168.70.254")}, Deleted: true}), ""},
	} {
		if c.got != c.want {
			t.Errorf("%s: trigger %q, want %q", c.what, c.got, c.want)
		}
	}
	for _, c := range []struct {
		ev   kernel.LinkEvent
		want string
	}{
		{kernel.LinkEvent{Index: dev, Name: "flannel.1", Deleted: true}, "device deleted"},
		{kernel.LinkEvent{Index: dev, Name: "flannel.1"}, "device changed"},
		{kernel.LinkEvent{Index: h.b.ext.Index, Name: "eth0", Up: true}, "external interface changed"},
		{kernel.LinkEvent{Index: h.b.ext.Index, Name: "eth0"}, ""},
		{kernel.LinkEvent{Index: 99, Name: "veth9", Up: true}, ""},
	} {
		if got := h.b.linkTrigger(c.ev); got != c.want {
			t.Errorf("linkTrigger(%+v) = %q, want %q", c.ev, got, c.want)
		}
	}
}

// TestFakeRunRepairsOnTheTimerAndCountsInMetrics runs Run itself on the
// fake kernel: deleted entries come back on the timer, and the repairs show
// in weft_reconcile_repairs_total by kind.
func TestFakeRunRepairsOnTheTimerAndCountsInMetrics(t *testing.T) {
	m := metrics.New()
	h := newFakeHostFull(t, `{"Type":"vxlan"}`, 5*time.Millisecond, m)
	h.apply(t, fakePeer(2))
	want := h.k.State()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- h.b.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v when its context ended, want nil", err)
		}
	}()

	h.k.DeleteNeigh(netip.MustParseAddr("10.244.2.0"))
	h.k.DeleteFDB(kernel.MAC{0x0a, 0, 0, 0, 0, 2})
	nstest.Eventually(t, 5*time.Second, func() error {
		n, f := backendtest.Repairs(t, m, metrics.KindNeighbour), backendtest.Repairs(t, m, metrics.KindFDB)
		if n != 1 || f != 1 || !slices.Equal(h.k.State(), want) {
			return fmt.Errorf("neighbour repairs %v, fdb repairs %v, state\n%q\nwant\n%q", n, f, h.k.State(), want)
		}
		return nil
	})
}

func mapsEqual(a, b backend.Counts) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
