package hostgw

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/kernel/kerneltest"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/metrics"
)

// These tests run the backend against kerneltest's fake kernel, without
// root; hostgw_linux_test.go holds the same behaviour to the real kernel.

func newFake(t *testing.T) (*kerneltest.Netlink, *Backend) {
	t.Helper()
	k := kerneltest.New()
	cfg := testConfig()
	cfg.Ext.Index = k.AddDevice("eth0", 1500)
	b, err := NewWithOptions(cfg, Options{Handle: k, NoSubscribe: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t.Context(), hgLease("10.244.1.0/24", "192.168.1.1")); err != nil {
		t.Fatal(err)
	}
	return k, b
}

func routeCalls(calls []string) []string {
	return slices.DeleteFunc(slices.Clone(calls), func(c string) bool { return !strings.HasPrefix(c, "route ") })
}

func TestFakeApplyReplacesRoutesAndPlansAgainstTheCache(t *testing.T) {
	k, b := newFake(t)
	// A stale route of a peer that left while no agent ran, and a route
	// weft does not own (no gateway), both already in the table.
	stale := kernel.Route{Dst: netip.MustParsePrefix("10.244.9.0/24"), Gw: netip.MustParseAddr("192.168.1.9"), LinkIndex: b.ext.Index}
	foreign := kernel.Route{Dst: netip.MustParsePrefix("10.244.8.0/24"), LinkIndex: b.ext.Index}
	if res := kernel.ApplyOps(k, []kernel.Op{{Kind: kernel.Replace, Route: stale}, {Kind: kernel.Replace, Route: foreign}}); res.Err() != nil {
		t.Fatal(res.Err())
	}
	k.ResetCalls()
	if err := b.Apply(t.Context(), []lease.Lease{hgLease("10.244.2.0/24", "192.168.1.2")}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"route list",
		"route replace 10.244.2.0/24 via 192.168.1.2 dev eth0",
		"route del 10.244.9.0/24 via 192.168.1.9 dev eth0",
	}
	if got := routeCalls(k.Calls()); !slices.Equal(got, want) {
		t.Errorf("first Apply:\ngot  %q\nwant %q", got, want)
	}
	if !slices.Contains(k.State(), "route 10.244.8.0/24 dev eth0") {
		t.Errorf("the route weft does not own was touched: %q", k.State())
	}

	k.ResetCalls()
	if err := b.Apply(t.Context(), []lease.Lease{hgLease("10.244.2.0/24", "192.168.1.2"), hgLease("10.244.3.0/24", "192.168.1.3")}); err != nil {
		t.Fatal(err)
	}
	want = []string{"route replace 10.244.3.0/24 via 192.168.1.3 dev eth0"}
	if got := routeCalls(k.Calls()); !slices.Equal(got, want) {
		t.Errorf("second Apply, planned against the cache:\ngot  %q\nwant %q", got, want)
	}
}

func TestFakeUnreachableGatewaySaysWhy(t *testing.T) {
	k, b := newFake(t)
	k.Fail("route replace 10.244.3.0/24", unix.ENETUNREACH)
	err := b.Apply(t.Context(), []lease.Lease{hgLease("10.244.2.0/24", "192.168.1.2"), hgLease("10.244.3.0/24", "192.168.9.3")})
	if !errors.Is(err, unix.ENETUNREACH) || !strings.Contains(err.Error(), "host-gw can only route to hosts on the same L2 segment") {
		t.Errorf("Apply = %v, want ENETUNREACH explained", err)
	}
	if !slices.Contains(k.State(), "route 10.244.2.0/24 via 192.168.1.2 dev eth0") {
		t.Errorf("the reachable peer got no route: %q", k.State())
	}
}

func TestFakeRepairRestoresADeletedRouteAndCountsIt(t *testing.T) {
	k, b := newFake(t)
	if got := b.repair("timer"); got != nil {
		t.Errorf("repair before the first Apply = %v, want nothing done", got)
	}
	if err := b.Apply(t.Context(), []lease.Lease{hgLease("10.244.2.0/24", "192.168.1.2")}); err != nil {
		t.Fatal(err)
	}
	if got := b.repair("timer"); got[metrics.KindRoute] != 0 {
		t.Errorf("repair of a converged table = %v, want nothing", got)
	}
	k.DeleteRoute(netip.MustParsePrefix("10.244.2.0/24"))
	if got := b.repair("route deleted"); got[metrics.KindRoute] != 1 {
		t.Errorf("repair after a deletion = %v, want one route", got)
	}
	if !slices.Contains(k.State(), "route 10.244.2.0/24 via 192.168.1.2 dev eth0") || b.Repairs() != 1 {
		t.Errorf("after the repair: %q, Repairs %d", k.State(), b.Repairs())
	}
	// A deleted route the last Apply did not ask for calls for nothing.
	if got := b.routeTrigger(kernel.RouteEvent{Route: kernel.Route{Dst: netip.MustParsePrefix("10.244.7.0/24"), Gw: netip.MustParseAddr("192.168.1.7")}, Deleted: true}); got != "" {
		t.Errorf("a deleted route of no peer calls for %q", got)
	}
}

// TestFakeRouteTriggerComparesWithThePlan: the echo of Apply's own route
// calls for nothing, the same route with another gateway for a repair,
// and that repair puts the planned route back and says what was wrong.
func TestFakeRouteTriggerComparesWithThePlan(t *testing.T) {
	k, b := newFake(t)
	if err := b.Apply(t.Context(), []lease.Lease{hgLease("10.244.2.0/24", "192.168.1.2")}); err != nil {
		t.Fatal(err)
	}
	planned := b.plan[netip.MustParsePrefix("10.244.2.0/24")]
	for _, c := range []struct {
		name string
		e    kernel.RouteEvent
		want string
	}{
		{"Apply's own route echoed", kernel.RouteEvent{Route: planned}, ""},
		{"another gateway", kernel.RouteEvent{Route: kernel.Route{Dst: planned.Dst, Gw: netip.MustParseAddr("192.168.1.9"), LinkIndex: planned.LinkIndex, Proto: 3}}, "route changed"},
		{"the planned route deleted", kernel.RouteEvent{Route: planned, Deleted: true}, "route deleted"},
	} {
		if got := b.routeTrigger(c.e); got != c.want {
			t.Errorf("%s: trigger %q, want %q", c.name, got, c.want)
		}
	}
	k.ResetCalls()
	wrong := kernel.Route{Dst: planned.Dst, Gw: netip.MustParseAddr("192.168.1.9"), LinkIndex: planned.LinkIndex, Proto: 3}
	if res := kernel.ApplyOps(k, []kernel.Op{{Kind: kernel.Replace, Route: wrong}}); res.Err() != nil {
		t.Fatal(res.Err())
	}
	if got := b.repair("route changed"); got[metrics.KindRoute] != 1 {
		t.Errorf("repair of the changed route = %v, want one route", got)
	}
	if !slices.Contains(k.State(), "route 10.244.2.0/24 via 192.168.1.2 dev eth0") {
		t.Errorf("after the repair: %q", k.State())
	}
}
