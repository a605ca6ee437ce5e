package lease

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"
)

// TestDiffSortedMatchesMaps: for snapshots sorted by subnet (as stores
// deliver them) Diff merges instead of indexing; both ways must agree,
// duplicates included (the later entry of a subnet counts).
func TestDiffSortedMatchesMaps(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	snapshot := func() []Lease {
		var ls []Lease
		for i := range 40 {
			if r.IntN(3) == 0 {
				continue
			}
			l := Lease{
				Subnet: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i), 0}), 24),
				Attrs:  Attrs{PublicIP: netip.AddrFrom4([4]byte{192, 168, 0, byte(r.IntN(3))}), BackendType: "host-gw"},
			}
			ls = append(ls, l)
			if r.IntN(10) == 0 { // the same subnet again, maybe with other attributes
				l.Attrs.PublicIP = netip.AddrFrom4([4]byte{192, 168, 1, byte(r.IntN(2))})
				ls = append(ls, l)
			}
		}
		return ls
	}
	for round := range 200 {
		prev, next := snapshot(), snapshot()
		if !bySubnet(prev) || !bySubnet(next) {
			t.Fatal("test snapshots are not sorted")
		}
		got, want := diffSorted(prev, next), diffMaps(prev, next)
		for _, c := range []*Changes{&got, &want} {
			for _, l := range []*[]Lease{&c.Added, &c.Removed, &c.Changed} {
				if len(*l) == 0 {
					*l = nil
				}
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: merge %s, maps %s", round, show(got), show(want))
		}
	}
	// Unsorted input still works (through the maps).
	prev := snapshot()
	slices.Reverse(prev)
	if d := Diff(prev, prev); !d.Empty() {
		t.Errorf("Diff of an unsorted snapshot with itself = %s", show(d))
	}
}

func show(c Changes) string {
	f := func(ls []Lease) []string {
		var s []string
		for _, l := range ls {
			s = append(s, l.Subnet.String()+"="+l.Attrs.PublicIP.String())
		}
		return s
	}
	return fmt.Sprintf("added %v removed %v changed %v", f(c.Added), f(c.Removed), f(c.Changed))
}
