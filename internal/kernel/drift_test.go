package kernel

import (
	"net/netip"
	"testing"
)

func TestRouteDrift(t *testing.T) {
	names := map[int]string{2: "eth0", 5: "flannel.1"}
	network := netip.MustParsePrefix("10.244.0.0/16")
	owned := PeerRouteOwner(network, netip.MustParsePrefix("10.244.1.0/24"))
	want := Route{Dst: netip.MustParsePrefix("10.244.2.0/24"), Gw: netip.MustParseAddr("10.244.2.0"), LinkIndex: 5, OnLink: true, Proto: ProtoWeft}
	plan := map[netip.Prefix]Route{want.Dst: want}
	with := func(f func(*Route)) Route { r := want; f(&r); return r }
	for _, c := range []struct {
		name string
		e    RouteEvent
		want string
	}{
		{"the planned route (our own write echoed)", RouteEvent{Route: want}, ""},
		{"a route at another destination", RouteEvent{Route: with(func(r *Route) { r.Dst = netip.MustParsePrefix("10.244.9.0/24") })}, ""},
		{"another gateway", RouteEvent{Route: with(func(r *Route) {
			r.Gw = netip.MustParseAddr("192.168.70.9")
			r.LinkIndex = 2
			r.OnLink = false
			r.Proto = 3
		})},
			"route 10.244.2.0/24 had via 192.168.70.9 dev eth0 proto boot onlink no, want via 10.244.2.0 dev flannel.1 proto weft onlink yes"},
		{"no gateway", RouteEvent{Route: with(func(r *Route) { r.Gw = netip.Addr{}; r.OnLink = false })},
			"route 10.244.2.0/24 had via none onlink no, want via 10.244.2.0 onlink yes"},
		{"only the protocol", RouteEvent{Route: with(func(r *Route) { r.Proto = 4 })},
			"route 10.244.2.0/24 had proto static, want proto weft"},
		{"an owned route at another metric", RouteEvent{Route: with(func(r *Route) { r.Metric = 100 })},
			"route 10.244.2.0/24 via 10.244.2.0 dev flannel.1 proto weft metric 100 onlink added beside the planned 10.244.2.0/24 via 10.244.2.0 dev flannel.1 proto weft onlink"},
		{"an unowned route at another metric", RouteEvent{Route: Route{Dst: want.Dst, LinkIndex: 2, Metric: 100}}, ""},
		{"the planned route deleted", RouteEvent{Route: want, Deleted: true}, "route 10.244.2.0/24 via 10.244.2.0 dev flannel.1 proto weft onlink deleted"},
		{"a wrong route at the planned key deleted", RouteEvent{Route: with(func(r *Route) { r.Gw = netip.MustParseAddr("192.168.70.9") }), Deleted: true},
			"route 10.244.2.0/24 via 192.168.70.9 dev flannel.1 proto weft onlink deleted"},
		{"a route at another metric deleted (ours were extra)", RouteEvent{Route: with(func(r *Route) { r.Metric = 100 }), Deleted: true}, ""},
		{"a route at another destination deleted (a stale one we removed)", RouteEvent{Route: Route{Dst: netip.MustParsePrefix("10.244.9.0/24"), Gw: want.Gw}, Deleted: true}, ""},
	} {
		if got := RouteDrift(plan, c.e, owned, names); got != c.want {
			t.Errorf("%s:\ngot  %q\nwant %q", c.name, got, c.want)
		}
	}
}

func TestNeighDrift(t *testing.T) {
	names := map[int]string{5: "flannel.1"}
	want := Neigh{LinkIndex: 5, IP: netip.MustParseAddr("10.244.2.0"), MAC: MAC{0x0a, 0, 0, 0, 0, 2}, Permanent: true}
	plan := map[netip.Addr]Neigh{want.IP: want}
	ev := func(f func(*NeighEvent)) NeighEvent {
		e := NeighEvent{LinkIndex: want.LinkIndex, IP: want.IP, MAC: want.MAC, Permanent: true}
		f(&e)
		return e
	}
	for _, c := range []struct {
		name string
		e    NeighEvent
		want string
	}{
		{"the planned entry (our own write echoed)", ev(func(*NeighEvent) {}), ""},
		{"another MAC", ev(func(e *NeighEvent) { e.MAC = MAC{0x0e, 0, 0, 0, 0, 0x99} }),
			"neighbour 10.244.2.0 on flannel.1 had lladdr 0e:00:00:00:00:99, want lladdr 0a:00:00:00:00:02"},
		{"not permanent", ev(func(e *NeighEvent) { e.Permanent = false }),
			"neighbour 10.244.2.0 on flannel.1 had nud not-permanent, want nud permanent"},
		// What `ip neigh del` sends first.
		{"failed, without lladdr", ev(func(e *NeighEvent) { e.MAC = MAC{}; e.Permanent = false }),
			"neighbour 10.244.2.0 on flannel.1 had lladdr 00:00:00:00:00:00 nud not-permanent, want lladdr 0a:00:00:00:00:02 nud permanent"},
		{"deleted", ev(func(e *NeighEvent) { e.Deleted = true; e.MAC = MAC{}; e.Permanent = false }), "neighbour 10.244.2.0 on flannel.1 deleted"},
		{"on another link", ev(func(e *NeighEvent) { e.LinkIndex = 2; e.MAC = MAC{1} }), ""},
		{"an IP not planned", ev(func(e *NeighEvent) { e.IP = netip.MustParseAddr("10.244.9.0") }), ""},
		{"an FDB event", ev(func(e *NeighEvent) { e.FDB = true }), ""},
	} {
		if got := NeighDrift(plan, c.e, names); got != c.want {
			t.Errorf("%s:\ngot  %q\nwant %q", c.name, got, c.want)
		}
	}
}

func TestFDBDrift(t *testing.T) {
	names := map[int]string{5: "flannel.1"}
	want := FDB{LinkIndex: 5, MAC: MAC{0x0a, 0, 0, 0, 0, 2}, Dst: netip.MustParseAddr("192.168.70.2"), Permanent: true}
	plan := map[MAC]FDB{want.MAC: want}
	ev := func(f func(*NeighEvent)) NeighEvent {
		e := NeighEvent{FDB: true, LinkIndex: want.LinkIndex, IP: want.Dst, MAC: want.MAC, Permanent: true}
		f(&e)
		return e
	}
	for _, c := range []struct {
		name string
		e    NeighEvent
		want string
	}{
		{"the planned entry (our own write echoed)", ev(func(*NeighEvent) {}), ""},
		{"another dst", ev(func(e *NeighEvent) { e.IP = netip.MustParseAddr("192.168.70.99") }),
			"fdb entry 0a:00:00:00:00:02 on flannel.1 had dst 192.168.70.99, want dst 192.168.70.2"},
		{"another VNI, not permanent", ev(func(e *NeighEvent) { e.VNI = 7; e.Permanent = false }),
			"fdb entry 0a:00:00:00:00:02 on flannel.1 had vni 7 state not-permanent, want vni device's state permanent"},
		{"deleted", ev(func(e *NeighEvent) { e.Deleted = true }), "fdb entry 0a:00:00:00:00:02 dst 192.168.70.2 on flannel.1 deleted"},
		{"on another link", ev(func(e *NeighEvent) { e.LinkIndex = 2; e.IP = netip.MustParseAddr("192.168.70.99") }), ""},
		{"a MAC not planned", ev(func(e *NeighEvent) { e.MAC = MAC{0x0a, 0, 0, 0, 0, 9} }), ""},
		{"a neighbour event", ev(func(e *NeighEvent) { e.FDB = false }), ""},
	} {
		if got := FDBDrift(plan, c.e, names); got != c.want {
			t.Errorf("%s:\ngot  %q\nwant %q", c.name, got, c.want)
		}
	}
}
