package lab

import (
	"fmt"
	"strings"

	"github.com/weftnet/weft/internal/kernel/neightable"
)

// NeighNeed is what a lab asks of each kernel neighbour table it fills:
// the IPv4 one (ARP), and with --ip-family dual or ipv6 the IPv6 one (NDP).
//
// Every namespace of every lab shares the kernel's one ARP table, whose
// stock thresholds (gc_thresh1/2/3 = 128/512/1024) a lab of a few dozen
// hosts outgrows: each host resolves every peer on its segment, so the
// table grows with the square of the hosts, and once it holds gc_thresh3
// entries that are all in use the kernel refuses new ones and the probes
// waiting on them time out ("neighbor table overflow!").
type NeighNeed struct {
	Hosts    int64 // host eth0: peers on the segment, etcd, the router
	Pods     int64 // cni0: one per local pod; each pod: its gateway
	Underlay int64 // etcd's switch, the router and the internet host
	Margin   int64 // the lab's own resolutions we did not count, and others'
}

// Total is the entries the lab may hold at once, margin included.
func (n NeighNeed) Total() int64 { return n.Hosts + n.Pods + n.Underlay + n.Margin }

// PlanNeighNeed counts the dynamic ARP entries a lab of this topology holds
// at its peak, in all its namespaces together, when every pair has been
// checked:
//
//   - a host resolves on eth0 every other host of its segment: host-gw and
//     vxlan's DirectRouting route to them as next hops, and vxlan and udp
//     send their encapsulated packets to them; peers behind the router are
//     reached through one entry for the router. Plus etcd (or the
//     Kubernetes control plane) and, with --ip-masq, the internet host,
//     when they are on its segment.
//   - a host resolves each of its pods on cni0, and each pod its gateway.
//   - etcd's namespace resolves the hosts of segment 1 and the router; the
//     router every host and etcd; the internet host the hosts of segment 1
//     and the router.
//
// vxlan's entries for the peers' VTEPs on flannel.1 are permanent, which
// the kernel (since 4.19) does not count against the thresholds, so they
// are left out. A dual-stack lab fills the IPv6 table the same way (the
// underlay's ULAs beside the IPv4 addresses, a pod address of each
// family, host-gw's and vxlan's IPv6 next hops), and an IPv6-only lab
// only that one, so one count serves each table the lab uses.
func PlanNeighNeed(t Topology) NeighNeed {
	perSegment := map[int]int64{}
	for _, h := range t.Hosts {
		perSegment[h.Segment]++
	}
	routed := len(t.Segments) > 1
	var n NeighNeed
	for _, h := range t.Hosts {
		n.Hosts += perSegment[h.Segment] - 1
		if routed {
			n.Hosts++ // the router, for everything off the segment
		}
		if h.Segment == 1 || !routed {
			n.Hosts++ // etcd or the apiserver
			if t.Internet.NS != "" {
				n.Hosts++
			}
		}
		n.Pods += 2 * int64(len(h.Pods))
	}
	seg1 := perSegment[1]
	n.Underlay = seg1
	if routed {
		n.Underlay++                          // etcd's default route
		n.Underlay += int64(len(t.Hosts)) + 1 // the router: every host, etcd
		if t.Internet.NS != "" {
			n.Underlay++
		}
	}
	if t.Internet.NS != "" {
		n.Underlay += seg1
		if routed {
			n.Underlay++
		}
	}
	sum := n.Hosts + n.Pods + n.Underlay
	n.Margin = 64 + sum/20
	return n
}

// neighChange describes one raise or restore of a table's thresholds for
// people: "gc_thresh3 1024 → 106496, gc_thresh2 512 → 53248, ..." with
// the changed ones only, the hard limit first.
func neighChange(f neightable.Family, from, to neightable.Thresholds) string {
	var parts []string
	for _, c := range []struct {
		n        int
		from, to int64
	}{{3, from.GC3, to.GC3}, {2, from.GC2, to.GC2}, {1, from.GC1, to.GC1}} {
		if c.from != c.to {
			parts = append(parts, fmt.Sprintf("%s %d → %d", f.Sysctl(c.n), c.from, c.to))
		}
	}
	return strings.Join(parts, ", ")
}
