package kernel

import (
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"
)

// TestPlanRoutesMatchesMaps holds the merging PlanRoutes to the map-based
// one it replaced, on random tables with duplicate keys (ip route append),
// unowned routes and unsorted input.
func TestPlanRoutesMatchesMaps(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	network := netip.MustParsePrefix("10.5.0.0/16")
	own := netip.MustParsePrefix("10.5.0.0/24")
	owned := PeerRouteOwner(network, own)
	route := func() Route {
		rt := Route{
			Dst:       netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 5, byte(1 + r.IntN(12)), byte(r.IntN(2))}), 24),
			Gw:        netip.AddrFrom4([4]byte{192, 168, 1, byte(1 + r.IntN(3))}),
			LinkIndex: 2,
			Metric:    r.IntN(2) * 100,
			Proto:     ProtoWeft,
		}
		if r.IntN(6) == 0 {
			rt.Gw = netip.Addr{} // connected: not owned
		}
		return rt
	}
	list := func() []Route {
		rs := make([]Route, r.IntN(15))
		for i := range rs {
			rs[i] = route()
		}
		return rs
	}
	for round := range 2000 {
		desired, installed := list(), list()
		got, want := PlanRoutes(desired, installed, owned), planRoutesMaps(desired, installed, owned)
		if len(got) == 0 && len(want) == 0 {
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d:\ndesired %v\ninstalled %v\nmerge: %v\nmaps:  %v", round, desired, installed, got, want)
		}
	}
}

// planRoutesMaps is PlanRoutes as it was first written, with maps.
func planRoutesMaps(desired, installed []Route, owned func(Route) bool) []Op {
	want := make(map[key]Route, len(desired))
	for _, d := range desired {
		d.Dst = d.Dst.Masked()
		want[d.key()] = d
	}
	have := make(map[key][]Route)
	for _, r := range installed {
		r.Dst = r.Dst.Masked()
		have[r.key()] = append(have[r.key()], r)
	}

	var replaces, deletes []Op
	for k, d := range want {
		rs := have[k]
		keep := slices.Index(rs, d)
		if keep < 0 {
			op := Op{Kind: Replace, Route: d}
			if len(rs) > 0 {
				op.Prev = rs[0]
				keep = 0
			}
			replaces = append(replaces, op)
		}
		// More than one entry per key exists only after `ip route append`;
		// drop our extra ones so the desired route is the only one we own.
		for i, r := range rs {
			if i != keep && owned(r) {
				deletes = append(deletes, Op{Kind: Delete, Route: r})
			}
		}
	}
	for k, rs := range have {
		if _, ok := want[k]; ok {
			continue
		}
		for _, r := range rs {
			if owned(r) {
				deletes = append(deletes, Op{Kind: Delete, Route: r})
			}
		}
	}
	sortOps(replaces)
	sortOps(deletes)
	return append(replaces, deletes...)
}
