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
