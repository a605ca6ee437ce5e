package hostfacts

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/kernel/neightable"
	"github.com/weftnet/weft/internal/lease"
)

func peer(subnet, publicIP, typ string) lease.Lease {
	l := lease.Lease{Subnet: netip.MustParsePrefix(subnet)}
	if publicIP != "" {
		l.Attrs.PublicIP = netip.MustParseAddr(publicIP)
	}
	l.Attrs.BackendType = typ
	return l
}

func route(dst, gw string, metric int) kernel.Route {
	r := kernel.Route{Dst: netip.MustParsePrefix(dst), Metric: metric}
	if gw != "" {
		r.Gw = netip.MustParseAddr(gw)
	}
	return r
}

// A host on 10.4.7.0/24 whose default route goes through 10.4.7.1; the
// cluster's own routes (host-gw's, vxlan's) are inside 10.244.0.0/16.
var underlay = []kernel.Route{
	route("0.0.0.0/0", "10.4.7.1", 100),
	route("10.4.7.0/24", "", 0),
	route("10.4.9.0/24", "10.4.7.254", 0), // a second segment behind a router
	route("10.244.2.0/24", "10.4.7.22", 0),
	route("10.244.0.0/16", "", 0), // udp's route for the whole network
	route("fd00::/64", "", 0),
}

func TestNeedFor(t *testing.T) {
	own := peer("10.244.1.0/24", "10.4.7.21", "vxlan")
	for _, tc := range []struct {
		name   string
		in     NeedInput
		hops   int
		pods   int
		reason string
	}{
		{
			name: "flat segment: every peer is a next hop",
			in: NeedInput{Leases: []lease.Lease{own, peer("10.244.2.0/24", "10.4.7.22", "vxlan"), peer("10.244.3.0/24", "10.4.7.23", "vxlan")},
				Routes: underlay, RoutesKnown: true},
			hops: 2,
		},
		{
			name: "peers behind routers share their gateway",
			in: NeedInput{Leases: []lease.Lease{own, peer("10.244.2.0/24", "10.4.9.2", "vxlan"), peer("10.244.3.0/24", "10.4.9.3", "vxlan"),
				peer("10.244.4.0/24", "192.0.2.4", "vxlan"), peer("10.244.5.0/24", "192.0.2.5", "vxlan"), peer("10.244.6.0/24", "10.4.7.26", "vxlan")},
				Routes: underlay, RoutesKnown: true},
			hops: 3, // 10.4.7.254 for 10.4.9.0/24, 10.4.7.1 for the rest, 10.4.7.26 itself
		},
		{
			name: "without a routing table every peer counts",
			in:   NeedInput{Leases: []lease.Lease{own, peer("10.244.2.0/24", "10.4.9.2", "vxlan"), peer("10.244.3.0/24", "192.0.2.3", "vxlan")}},
			hops: 2,
		},
		{
			name: "a peer without a route needs no entry",
			in: NeedInput{Leases: []lease.Lease{own, peer("10.244.2.0/24", "192.0.2.2", "vxlan")},
				Routes: []kernel.Route{route("10.4.7.0/24", "", 0)}, RoutesKnown: true},
			hops: 0,
		},
		{
			name: "the cluster's own routes do not lead to PublicIPs",
			in: NeedInput{Leases: []lease.Lease{own, peer("10.244.2.0/24", "10.244.9.9", "vxlan")},
				Routes: underlay, RoutesKnown: true},
			hops:   1,
			reason: "a PublicIP inside the network still goes by the default route, not udp's",
		},
		{
			name: "leases the backend ignores, without a PublicIP, or the own one are not peers",
			in: NeedInput{Leases: []lease.Lease{own, peer("10.244.2.0/24", "10.4.7.22", "host-gw"), peer("10.244.3.0/24", "", "vxlan"),
				peer("10.244.4.0/24", "10.4.7.21", "vxlan"), peer("10.244.5.0/24", "10.4.7.25", "vxlan"), peer("10.244.6.0/24", "10.4.7.25", "vxlan")},
				LeaseTypes: []string{"vxlan"}, Routes: underlay, RoutesKnown: true},
			hops:   1,
			reason: "two leases with one PublicIP are one neighbour",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			in.Own, in.OwnPublicIP, in.Network = own.Subnet, own.Attrs.PublicIP, netip.MustParsePrefix("10.244.0.0/16")
			n := NeedFor(in)
			if n.NextHops != tc.hops || n.Pods != 253 || n.Margin != Margin {
				t.Errorf("NeedFor = %+v, want %d next hops, 253 pods, margin %d %s", n, tc.hops, Margin, tc.reason)
			}
			if n.Total() != int64(tc.hops+253+Margin) {
				t.Errorf("Total = %d", n.Total())
			}
		})
	}
}

// The IPv6 table is counted from the peers' PublicIPv6s and IPv6 subnets
// and the IPv6 routes alone: a peer without IPv6 needs no entry there, and
// the IPv4 count does not see the IPv6 halves.
func TestNeedForIPv6(t *testing.T) {
	dual := func(subnet, publicIP, subnet6, publicIP6 string) lease.Lease {
		l := peer(subnet, publicIP, "vxlan")
		if subnet6 != "" {
			l.IPv6Subnet = netip.MustParsePrefix(subnet6)
			l.Attrs.PublicIPv6 = netip.MustParseAddr(publicIP6)
		}
		return l
	}
	own := dual("10.244.1.0/24", "10.4.7.21", "fd00:10:244:1::/64", "fd00:10:4:7::21")
	leases := []lease.Lease{
		own,
		dual("10.244.2.0/24", "10.4.7.22", "fd00:10:244:2::/64", "fd00:10:4:7::22"),
		dual("10.244.3.0/24", "10.4.7.23", "fd00:10:244:3::/64", "fd00:10:4:9::23"), // behind fd00:10:4:7::fe
		dual("10.244.4.0/24", "10.4.7.24", "fd00:10:244:4::/64", "fd00:10:4:9::24"),
		dual("10.244.5.0/24", "10.4.7.25", "", ""), // IPv4 only
	}
	routes := append(slices.Clone(underlay),
		route("fd00:10:4:7::/64", "", 0),
		route("fd00:10:4:9::/64", "fd00:10:4:7::fe", 0),
		route("fd00:10:244:2::/64", "fd00:10:4:7::22", 0), // host-gw's, inside IPv6Network
	)
	v6 := NeedFor(NeedInput{
		Family: neightable.IPv6, Own: own.IPv6Subnet, OwnPublicIP: own.Attrs.PublicIPv6,
		Network: netip.MustParsePrefix("fd00:10:244::/56"), Leases: leases, Routes: routes, RoutesKnown: true,
	})
	if v6.NextHops != 2 || v6.Pods != MaxPods {
		t.Errorf("IPv6 NeedFor = %+v, want 2 next hops (fd00:10:4:7::22 and the router fd00:10:4:7::fe) and %d pods", v6, MaxPods)
	}
	v4 := NeedFor(NeedInput{
		Own: own.Subnet, OwnPublicIP: own.Attrs.PublicIP,
		Network: netip.MustParsePrefix("10.244.0.0/16"), Leases: leases, Routes: routes, RoutesKnown: true,
	})
	if v4.NextHops != 4 || v4.Pods != 253 {
		t.Errorf("IPv4 NeedFor = %+v, want 4 next hops and 253 pods", v4)
	}
}

func TestPodAddrs(t *testing.T) {
	for p, want := range map[string]int{
		"10.244.1.0/24": 253,
		"10.244.1.0/26": 61,
		"10.244.1.0/30": 1,
		"10.244.1.0/31": 0,
		"10.244.0.0/22": MaxPods,
		"10.0.0.0/8":    MaxPods,
		"fd00::/64":     MaxPods,
		"fd00::/120":    253,
	} {
		if got := podAddrs(netip.MustParsePrefix(p)); got != want {
			t.Errorf("podAddrs(%s) = %d, want %d", p, got, want)
		}
	}
	if got := podAddrs(netip.Prefix{}); got != 0 {
		t.Errorf("podAddrs(unknown) = %d", got)
	}
}

func TestNextHopLongestPrefixThenMetric(t *testing.T) {
	rs := []kernel.Route{
		route("0.0.0.0/0", "10.0.0.1", 100),
		route("0.0.0.0/0", "10.0.0.2", 50),
		route("10.0.0.0/24", "", 0),
		route("10.0.0.128/25", "10.0.0.3", 0),
	}
	for ip, want := range map[string]string{
		"192.0.2.1":  "10.0.0.2", // the default route of the lower metric
		"10.0.0.7":   "10.0.0.7", // on-link
		"10.0.0.200": "10.0.0.3", // the longer prefix wins over on-link
	} {
		got, ok := NextHop(rs, netip.MustParseAddr(ip))
		if !ok || got.String() != want {
			t.Errorf("NextHop(%s) = %v, %v; want %s", ip, got, ok, want)
		}
	}
	if _, ok := NextHop(rs[2:3], netip.MustParseAddr("192.0.2.1")); ok {
		t.Error("NextHop without a matching route: ok")
	}
}

var stock = neightable.Thresholds{GC1: 128, GC2: 512, GC3: 1024}

func TestNeighFindingsCrossings(t *testing.T) {
	for _, tc := range []struct {
		hops int
		code string
		sev  Severity
		cur  string
		sugg string
		fix  string
	}{
		{hops: 200}, // 200 + 253 + 16 = 469 ≤ 512
		{hops: 300, code: CodeNeighThresh2, sev: Warn, cur: "512", sugg: "1024",
			fix: "sysctl -w net.ipv4.neigh.default.gc_thresh1=569 net.ipv4.neigh.default.gc_thresh2=1024 net.ipv4.neigh.default.gc_thresh3=2048"},
		{hops: 900, code: CodeNeighThresh3, sev: Error, cur: "1024", sugg: "4096",
			fix: "sysctl -w net.ipv4.neigh.default.gc_thresh1=1169 net.ipv4.neigh.default.gc_thresh2=2048 net.ipv4.neigh.default.gc_thresh3=4096"},
	} {
		t.Run(fmt.Sprint(tc.hops), func(t *testing.T) {
			need := Need{NextHops: tc.hops, Pods: 253, Margin: Margin}
			fs := NeighFindings(neightable.IPv4, need, stock)
			if tc.code == "" {
				if len(fs) != 0 {
					t.Fatalf("findings %+v, want none", fs)
				}
				return
			}
			if len(fs) != 1 {
				t.Fatalf("findings %+v, want one", fs)
			}
			f := fs[0]
			if f.Code != tc.code || f.Severity != tc.sev || f.Current != tc.cur || f.Suggested != tc.sugg || f.Fix != tc.fix {
				t.Errorf("finding = %+v\nwant %s %s current %s suggested %s fix %q", f, tc.code, tc.sev, tc.cur, tc.sugg, tc.fix)
			}
			if !strings.Contains(f.Message, need.Parts()) || !strings.Contains(f.Message, f.Sysctl) {
				t.Errorf("message %q lacks the need's parts or the sysctl", f.Message)
			}
		})
	}
}

// Fit never lowers, so thresholds an operator set high stay and only the
// one short of the need is named.
func TestNeighFindingsNeverSuggestLowering(t *testing.T) {
	cur := neightable.Thresholds{GC1: 4096, GC2: 1000, GC3: 65536}
	fs := NeighFindings(neightable.IPv4, Need{NextHops: 1500}, cur)
	if len(fs) != 1 || fs[0].Code != CodeNeighThresh2 {
		t.Fatalf("findings %+v", fs)
	}
	if fs[0].Fix != "sysctl -w net.ipv4.neigh.default.gc_thresh2=2048" {
		t.Errorf("fix %q, want only gc_thresh2 raised", fs[0].Fix)
	}
}

func TestTableFullFinding(t *testing.T) {
	s := neightable.Stats{Entries: 1024, TableFulls: 40}
	f := TableFullFinding(neightable.IPv4, 7, stock, 300, s)
	if f.Severity != Error || f.Code != CodeNeighTableFull || !strings.HasPrefix(f.Message, "the kernel dropped neighbour entries") {
		t.Errorf("rising table_fulls: %+v", f)
	}
	// Sized for the 1024 entries seen (gc_thresh2 1280 rounded up to 2048,
	// twice that for gc_thresh3), not only the 300 needed.
	if f.Suggested != "4096" {
		t.Errorf("suggested %q, want 4096", f.Suggested)
	}
	big := neightable.Thresholds{GC1: 4096, GC2: 8192, GC3: 16384}
	if f := TableFullFinding(neightable.IPv4, 1, big, 300, neightable.Stats{Entries: 12}); f.Suggested != "" || !strings.Contains(f.Fix, "ip -s neigh") {
		t.Errorf("with room now: %+v", f)
	}
}

func TestRaise(t *testing.T) {
	r := fakeProc(t, healthy())
	to := neightable.Thresholds{GC1: 128, GC2: 1024, GC3: 2048}
	if err := r.Raise(neightable.IPv4, stock, to); err != nil {
		t.Fatal(err)
	}
	got, err := r.Thresholds(neightable.IPv4)
	if err != nil || got != to {
		t.Fatalf("after Raise: %+v, %v; want %+v", got, err, to)
	}
	err = r.Raise(neightable.IPv4, to, stock)
	if !errors.Is(err, ErrWouldLower) {
		t.Fatalf("lowering: %v, want ErrWouldLower", err)
	}
	if got, _ := r.Thresholds(neightable.IPv4); got != to {
		t.Errorf("a refused Raise changed the thresholds to %+v", got)
	}
	if err := fakeProc(t, nil).Raise(neightable.IPv4, stock, to); err == nil {
		t.Error("Raise without the sysctls: no error")
	}
}

func TestThresholdFindingsOfOneTableShareAKey(t *testing.T) {
	w := NeighFindings(neightable.IPv4, Need{NextHops: 600}, stock)[0]
	e := NeighFindings(neightable.IPv4, Need{NextHops: 1100}, stock)[0]
	v6 := NeighFindings(neightable.IPv6, Need{NextHops: 1100}, stock)[0]
	if w.Code == e.Code || w.Key() != e.Key() {
		t.Errorf("keys %q (%s) and %q (%s): want one key for the IPv4 table", w.Key(), w.Code, e.Key(), e.Code)
	}
	if v6.Key() == e.Key() {
		t.Errorf("IPv6 and IPv4 share key %q", e.Key())
	}
}
