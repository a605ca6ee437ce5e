package lab

import (
	"testing"

	"github.com/weftnet/weft/internal/kernel/neightable"
)

func TestPlanNeighNeed(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec Spec
		want NeighNeed
	}{
		{
			// Each host: 2 peers + etcd; cni0 2 pods, each pod its
			// gateway; etcd's switch resolves the 3 hosts.
			name: "3 hosts × 2 pods, host-gw",
			spec: Spec{Hosts: 3, Pods: 2},
			want: NeighNeed{Hosts: 9, Pods: 12, Underlay: 3, Margin: 65},
		},
		{
			name: "200 hosts × 1 pod, host-gw",
			spec: Spec{Hosts: 200, Pods: 1},
			want: NeighNeed{Hosts: 200 * 200, Pods: 400, Underlay: 200, Margin: 64 + 40600/20},
		},
		{
			name: "200 hosts × 1 pod, vxlan: the same underlay next hops",
			spec: Spec{Hosts: 200, Pods: 1, Backend: "vxlan"},
			want: NeighNeed{Hosts: 200 * 200, Pods: 400, Underlay: 200, Margin: 64 + 40600/20},
		},
		{
			// h1 h2 | h3 h4: one peer on the segment and the router each,
			// etcd for h1 and h2; etcd's namespace: h1, h2, the router;
			// the router: 4 hosts and etcd.
			name: "4 hosts on 2 segments, vxlan DirectRouting",
			spec: Spec{Hosts: 4, Pods: 1, Segments: 2, Backend: "vxlan", DirectRouting: true},
			want: NeighNeed{Hosts: 3 + 3 + 2 + 2, Pods: 8, Underlay: 2 + 1 + 5, Margin: 65},
		},
		{
			// The internet host on segment 1: every host resolves it and
			// it resolves every host.
			name: "3 hosts, --ip-masq",
			spec: Spec{Hosts: 3, Pods: 1, IPMasq: true},
			want: NeighNeed{Hosts: 3 * 4, Pods: 6, Underlay: 3 + 3, Margin: 65},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topo, err := Plan(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if got := PlanNeighNeed(topo); got != tc.want {
				t.Errorf("PlanNeighNeed = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// The largest lab does not fit the stock table by a factor of forty; the
// thresholds the lab raises it to hold it with the margin Fit adds.
func TestLargestLabOutgrowsTheStockTable(t *testing.T) {
	topo, err := Plan(Spec{Hosts: MaxHosts, Pods: 1})
	if err != nil {
		t.Fatal(err)
	}
	need := PlanNeighNeed(topo).Total()
	stock := neightable.Thresholds{GC1: 128, GC2: 512, GC3: 1024}
	got := neightable.Fit(stock, need)
	if got.GC3 != 108544 || got.GC2 != 54272 || got.GC1 != need {
		t.Errorf("Fit(stock, %d) = %+v, want gc_thresh3 108544, gc_thresh2 54272, gc_thresh1 %d", need, got, need)
	}
	if want := "net.ipv4.neigh.default.gc_thresh3 1024 → 108544, net.ipv4.neigh.default.gc_thresh2 512 → 54272, " +
		"net.ipv4.neigh.default.gc_thresh1 128 → 42694"; neighChange(neightable.IPv4, stock, got) != want {
		t.Errorf("neighChange = %q, want %q", neighChange(neightable.IPv4, stock, got), want)
	}
}
