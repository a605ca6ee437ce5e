package kernel

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"
)

// applyRoutes is the main table's response to ops, as the kernel gives
// it: a replace overwrites the first route at its destination and metric,
// or adds one; a delete removes the route equal to it, if any.
func applyRoutes(table []Route, ops []Op) []Route {
	t := make([]Route, len(table))
	for i, r := range table {
		r.Dst = r.Dst.Masked()
		t[i] = r
	}
	for _, op := range ops {
		switch op.Kind {
		case Replace:
			if i := slices.IndexFunc(t, func(r Route) bool { return r.key() == op.Route.key() }); i >= 0 {
				t[i] = op.Route
			} else {
				t = append(t, op.Route)
			}
		case Delete:
			if i := slices.Index(t, op.Route); i >= 0 {
				t = slices.Delete(t, i, i+1)
			}
		}
	}
	return t
}

// TestPlanRoutesProperties checks PlanRoutes on random tables with
// duplicate keys (ip route append), unowned routes, unmasked destinations
// and unsorted input, by what its plan does to the table rather than by
// what it looks like: applied to installed it yields every desired route
// and no other owned one; it never deletes an unowned route nor touches
// one at a key nobody wants; and planning again on the result, or on a
// table that already is the desired one, gives nothing to do.
func TestPlanRoutesProperties(t *testing.T) {
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
	list := func(owned bool) []Route {
		rs := make([]Route, r.IntN(15))
		for i := range rs {
			rs[i] = route()
			if owned && !rs[i].Gw.IsValid() {
				rs[i].Gw = netip.MustParseAddr("192.168.1.9")
			}
		}
		return rs
	}
	for round := range 3000 {
		// What weft asks for is always its own; the table holds anything.
		desired, installed := list(true), list(false)
		want := map[key]Route{} // the later of two desired routes at a key wins
		for _, d := range desired {
			d.Dst = d.Dst.Masked()
			want[d.key()] = d
		}
		plan := PlanRoutes(desired, installed, owned)
		got := applyRoutes(installed, plan)
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("round %d: %s\ndesired   %v\ninstalled %v\nplan      %v\nresult    %v",
				round, fmt.Sprintf(format, args...), desired, installed, plan, got)
		}
		for _, w := range want {
			if !slices.Contains(got, w) {
				fail("desired route %v is missing", w)
			}
		}
		for _, g := range got {
			if owned(g) && want[g.key()] != g {
				fail("owned route %v is left but not desired", g)
			}
		}
		for _, op := range plan {
			if op.Kind == Delete && !owned(op.Route) {
				fail("deletes unowned route %v", op.Route)
			}
			if op.Kind == Replace && want[op.Route.key()] != op.Route {
				fail("replaces at %v with %v, which is not desired", op.Route.Dst, op.Route)
			}
		}
		for _, in := range installed {
			in.Dst = in.Dst.Masked()
			if _, wanted := want[in.key()]; !wanted && !owned(in) && !slices.Contains(got, in) {
				fail("unowned route %v at an undesired key is gone", in)
			}
		}
		if again := PlanRoutes(desired, got, owned); len(again) != 0 {
			fail("planning again on the result gives %v", again)
		}
		converged := slices.Collect(maps.Values(want))
		if again := PlanRoutes(desired, converged, owned); len(again) != 0 {
			fail("planning on the desired table itself gives %v", again)
		}
	}
}

// TestPlanNeighsProperties is TestPlanRoutesProperties for neighbours:
// keyed by link and address, owned when permanent, as vxlan owns them.
func TestPlanNeighsProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	owned := func(n Neigh) bool { return n.Permanent }
	neigh := func() Neigh {
		return Neigh{
			LinkIndex: 1 + r.IntN(2),
			IP:        netip.AddrFrom4([4]byte{10, 5, byte(1 + r.IntN(10)), 0}),
			MAC:       MAC{0x02, 0, 0, 0, 0, byte(1 + r.IntN(4))},
			Permanent: r.IntN(4) > 0,
		}
	}
	for round := range 3000 {
		want := map[neighKey]Neigh{}
		for range r.IntN(10) {
			n := neigh()
			n.Permanent = true
			want[neighKey{n.LinkIndex, n.IP}] = n
		}
		desired := slices.Collect(maps.Values(want)) // unsorted, one per key
		have := map[neighKey]Neigh{}
		for range r.IntN(10) {
			n := neigh()
			have[neighKey{n.LinkIndex, n.IP}] = n
		}
		installed := slices.Collect(maps.Values(have))
		plan := PlanNeighs(desired, installed, owned)
		got := maps.Clone(have)
		for _, op := range plan {
			k := neighKey{op.Neigh.LinkIndex, op.Neigh.IP}
			if op.Kind == Delete {
				if !owned(got[k]) {
					t.Fatalf("round %d: deletes unowned %v", round, got[k])
				}
				delete(got, k)
			} else {
				got[k] = op.Neigh
			}
		}
		for k, g := range got {
			w, wanted := want[k]
			switch {
			case wanted && g != w:
				t.Fatalf("round %d: %v left where %v is desired", round, g, w)
			case !wanted && owned(g):
				t.Fatalf("round %d: owned %v left but not desired", round, g)
			case !wanted && g != have[k]:
				t.Fatalf("round %d: unowned %v changed to %v", round, have[k], g)
			}
		}
		for k, w := range want {
			if got[k] != w {
				t.Fatalf("round %d: desired %v missing", round, w)
			}
		}
		if again := PlanNeighs(desired, slices.Collect(maps.Values(got)), owned); len(again) != 0 {
			t.Fatalf("round %d: planning again on the result gives %v", round, again)
		}
	}
}

// TestPlanNeighsAndFDBMergesMatchMaps holds the merging neighbour and FDB
// planners to the map-based ones on random sorted lists (FDB with several
// remotes per MAC, in the kernel's order), and checks that PlanNeighs and
// PlanFDB give the maps' answer for unsorted or duplicate input too.
func TestPlanNeighsAndFDBMergesMatchMaps(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	mac := func() MAC { return MAC{0x02, 0, 0, 0, 0, byte(1 + r.IntN(6))} }
	addr := func(n int) netip.Addr { return netip.AddrFrom4([4]byte{10, 5, byte(1 + r.IntN(n)), 0}) }
	ownedN := func(n Neigh) bool { return n.Permanent }
	ownedF := func(f FDB) bool { return f.Permanent }
	neighs := func() []Neigh {
		ns := make([]Neigh, r.IntN(12))
		for i := range ns {
			ns[i] = Neigh{LinkIndex: 1 + r.IntN(2), IP: addr(10), MAC: mac(), Permanent: r.IntN(4) > 0}
		}
		return ns
	}
	fdbs := func() []FDB {
		fs := make([]FDB, r.IntN(12))
		for i := range fs {
			fs[i] = FDB{LinkIndex: 1 + r.IntN(2), MAC: mac(), Dst: netip.AddrFrom4([4]byte{192, 168, 1, byte(1 + r.IntN(3))}), VNI: r.IntN(2), Permanent: r.IntN(4) > 0}
		}
		return fs
	}
	uniqueSorted := func(ns []Neigh) []Neigh {
		slices.SortStableFunc(ns, cmpNeigh)
		return slices.CompactFunc(ns, func(a, b Neigh) bool { return cmpNeigh(a, b) == 0 })
	}
	for round := range 3000 {
		d, in := uniqueSorted(neighs()), uniqueSorted(neighs())
		if got, want := planNeighsSorted(d, in, ownedN), planNeighsMaps(d, in, ownedN); !(len(got) == 0 && len(want) == 0) && !reflect.DeepEqual(got, want) {
			t.Fatalf("neigh round %d:\ndesired %v\ninstalled %v\nmerge: %v\nmaps:  %v", round, d, in, got, want)
		}
		d, in = neighs(), neighs()
		if got, want := PlanNeighs(d, in, ownedN), planNeighsMaps(d, in, ownedN); !(len(got) == 0 && len(want) == 0) && !reflect.DeepEqual(got, want) {
			t.Fatalf("neigh round %d, any order:\ndesired %v\ninstalled %v\ngot:  %v\nmaps: %v", round, d, in, got, want)
		}

		fd := fdbs()
		slices.SortStableFunc(fd, cmpFDBKey)
		fd = slices.CompactFunc(fd, func(a, b FDB) bool { return cmpFDBKey(a, b) == 0 })
		fi := fdbs()
		slices.SortStableFunc(fi, cmpFDBKey) // remotes of a MAC keep their order
		if got, want := planFDBSorted(fd, fi, ownedF), planFDBMaps(fd, fi, ownedF); !(len(got) == 0 && len(want) == 0) && !reflect.DeepEqual(got, want) {
			t.Fatalf("fdb round %d:\ndesired %v\ninstalled %v\nmerge: %v\nmaps:  %v", round, fd, fi, got, want)
		}
		fd, fi = fdbs(), fdbs()
		if got, want := PlanFDB(fd, fi, ownedF), planFDBMaps(fd, fi, ownedF); !(len(got) == 0 && len(want) == 0) && !reflect.DeepEqual(got, want) {
			t.Fatalf("fdb round %d, any order:\ndesired %v\ninstalled %v\ngot:  %v\nmaps: %v", round, fd, fi, got, want)
		}
	}
}
