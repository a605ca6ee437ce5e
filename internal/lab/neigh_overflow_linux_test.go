package lab

import (
	"context"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/kernel/neightable"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/sysctl"
)

// A lab that does not size the table (--tune-neigh=false) on a table
// lowered below what it needs really overflows it, and the report names
// that cause once instead of listing each timeout.
//
// This is the one test that changes host-wide sysctls, which every
// namespace of the machine shares with other tests: it lowers gc_thresh3
// only to the entries the machine holds now plus half of what the lab
// needs, so others keep room for what they hold, keeps it lowered only for
// the demo's few seconds, and restores the values it found right after
// the demo and again in t.Cleanup, so a failure or panic half-way still
// puts them back.
func TestDemoOverflowsALoweredNeighTable(t *testing.T) {
	nstest.Serial(t)
	nstest.RequireRoot(t)
	spec := Spec{Prefix: testPrefix(), Hosts: 8, Pods: 1, Backend: "host-gw", StateRoot: t.TempDir()}
	topo, err := Plan(spec)
	if err != nil {
		t.Fatal(err)
	}
	downOnCleanup(t, spec)

	orig, err := neightable.ReadThresholds(sysctl.Host, neightable.IPv4)
	if err != nil {
		t.Fatal(err)
	}
	restore := func() {
		cur, err := neightable.ReadThresholds(sysctl.Host, neightable.IPv4)
		if err == nil && cur != orig {
			err = writeThresholds(sysctl.Host, neightable.IPv4, cur, orig)
		}
		if err != nil {
			t.Errorf("restore the neighbour thresholds %+v: %v", orig, err)
		}
	}
	t.Cleanup(restore)

	st, err := neightable.ReadStats("", neightable.IPv4)
	if err != nil {
		t.Fatal(err)
	}
	n := PlanNeighNeed(topo)
	need := n.Hosts + n.Pods + n.Underlay
	low := neightable.Thresholds{GC3: int64(st.Entries) + need/2}
	low.GC2 = min(orig.GC2, low.GC3)
	low.GC1 = min(orig.GC1, low.GC2)
	if low.GC3 >= orig.GC3 {
		t.Skipf("the table (gc_thresh3 %d) is already below what the test would lower it to (%d)", orig.GC3, low.GC3)
	}
	out := &syncBuffer{}
	opts := labOptions(t, spec, out)
	opts.KeepNeighThresholds = true
	if err := writeThresholds(sysctl.Host, neightable.IPv4, orig, low); err != nil {
		t.Fatal(err)
	}
	res, err := Demo(context.Background(), opts)
	restore()
	t.Logf("lowered gc_thresh3 %d → %d (%d entries in the table, the lab needs about %d)\ndemo output:\n%s",
		orig.GC3, low.GC3, st.Entries, need, out.String())

	if res.Overflow == nil {
		t.Fatalf("Demo = %v; no overflow seen", err)
	}
	if res.Overflow.Refused == 0 || res.Overflow.Limit != low.GC3 {
		t.Errorf("overflow %+v, want refused entries at the limit %d", *res.Overflow, low.GC3)
	}
	if err == nil || !strings.Contains(err.Error(), "neighbour table overflow") {
		t.Errorf("Demo error = %v, want the overflow named", err)
	}
	if c := strings.Count(out.String(), "neighbour table (arp_cache) overflowed"); c != 1 {
		t.Errorf("the output names the overflow %d times, want once", c)
	}
	if strings.Contains(out.String(), "FAIL:") {
		t.Error("the output lists failed checks one by one")
	}
	if strings.Contains(out.String(), "agent log") {
		t.Error("the output dumps agent logs for an overflow")
	}
	if got, _ := neightable.ReadThresholds(sysctl.Host, neightable.IPv4); got != orig {
		t.Errorf("thresholds after the test %+v, want the original %+v", got, orig)
	}
}
