package lab

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// 4 hosts on 2 segments, vxlan with DirectRouting, as the integration
// test and the README's example build it:
//
//	sw0 10.4.7.0/24: ul .12 (etcd), rt seg1 .1, h1 .21, h2 .22
//	sw1 10.4.8.0/24:                rt seg2 .1, h3 .23, h4 .24
func TestPlanTwoSegments(t *testing.T) {
	topo, err := Plan(Spec{Hosts: 4, Pods: 1, Segments: 2, Backend: "vxlan", DirectRouting: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := topo.Etcd.Config, `{"Network": "172.7.0.0/16", "Backend": {"Type": "vxlan", "DirectRouting": true}}`; got != want {
		t.Errorf("network config = %s, want %s", got, want)
	}
	if got, want := topo.Etcd.ClientURL, "http://10.4.7.12:2379"; got != want {
		t.Errorf("etcd client URL = %s, want %s (etcd stays on segment 1)", got, want)
	}
	u := topo.Underlay
	if got, want := fmt.Sprintf("%s %s %s via %s", u.NS, u.Bridge, u.Addr, u.Gateway), "weft-ul sw0 10.4.7.12/24 via 10.4.7.1"; got != want {
		t.Errorf("underlay = %s, want %s", got, want)
	}

	var segs []string
	for _, sg := range topo.Segments {
		segs = append(segs, fmt.Sprintf("%d:%s:%s:%s", sg.Index, sg.Net, sg.Bridge, sg.Gateway))
	}
	if got, want := strings.Join(segs, " "), "1:10.4.7.0/24:sw0:10.4.7.1 2:10.4.8.0/24:sw1:10.4.8.1"; got != want {
		t.Errorf("segments = %s, want %s", got, want)
	}

	if got, want := topo.Router.NS, "weft-rt"; got != want {
		t.Errorf("router netns = %q, want %q", got, want)
	}
	var legs []string
	for _, l := range topo.Router.Legs {
		legs = append(legs, fmt.Sprintf("%d:%s<->%s@%s:%s", l.Segment, l.Iface, l.Wire, l.Bridge, l.Addr))
	}
	if got, want := strings.Join(legs, " "), "1:seg1<->rt-s1@sw0:10.4.7.1/24 2:seg2<->rt-s2@sw1:10.4.8.1/24"; got != want {
		t.Errorf("router legs = %s, want %s", got, want)
	}

	var hosts []string
	for _, h := range topo.Hosts {
		hosts = append(hosts, fmt.Sprintf("%s:%d:%s:%s:%s via %s", h.NS, h.Segment, h.Bridge, h.Wire, h.Addr, h.Gateway))
	}
	want := "weft-h1:1:sw0:ve-h1:10.4.7.21/24 via 10.4.7.1 weft-h2:1:sw0:ve-h2:10.4.7.22/24 via 10.4.7.1 " +
		"weft-h3:2:sw1:ve-h3:10.4.8.23/24 via 10.4.8.1 weft-h4:2:sw1:ve-h4:10.4.8.24/24 via 10.4.8.1"
	if got := strings.Join(hosts, " "); got != want {
		t.Errorf("hosts:\n got %s\nwant %s", got, want)
	}
	if got, want := strings.Join(topo.Namespaces(), " "),
		"weft-h1p1 weft-h2p1 weft-h3p1 weft-h4p1 weft-h1 weft-h2 weft-h3 weft-h4 weft-rt weft-ul"; got != want {
		t.Errorf("namespaces (teardown order) = %s, want %s", got, want)
	}
	h3, _ := topo.Host("h3")
	if args := topo.AgentArgs(h3); !slices.Contains(args, "--public-ip=10.4.8.23") || !slices.Contains(args, "--etcd-endpoints=http://10.4.7.12:2379") {
		t.Errorf("h3 agent args = %q, want its segment-2 address and etcd on segment 1", args)
	}
}

// One segment is the classic lab: no router, no gateways, sw0 for all.
func TestPlanOneSegmentHasNoRouter(t *testing.T) {
	for _, spec := range []Spec{{Hosts: 3}, {Hosts: 3, Segments: 1, Backend: "vxlan"}} {
		topo, err := Plan(spec)
		if err != nil {
			t.Fatal(err)
		}
		if topo.Router.NS != "" || len(topo.Router.Legs) != 0 {
			t.Errorf("%+v: router %+v, want none", spec, topo.Router)
		}
		if topo.Underlay.Gateway.IsValid() {
			t.Errorf("%+v: underlay gateway %s, want none", spec, topo.Underlay.Gateway)
		}
		if len(topo.Segments) != 1 || topo.Segments[0].Net != underlayNet || topo.Segments[0].Bridge != "sw0" || topo.Segments[0].Gateway.IsValid() {
			t.Errorf("%+v: segments %+v, want only 10.4.7.0/24 on sw0", spec, topo.Segments)
		}
		for _, h := range topo.Hosts {
			if h.Segment != 1 || h.Bridge != "sw0" || h.Gateway.IsValid() {
				t.Errorf("%s: segment %d bridge %s gateway %s, want 1, sw0, none", h.Name, h.Segment, h.Bridge, h.Gateway)
			}
		}
		if strings.Contains(topo.Etcd.Config, "DirectRouting") {
			t.Errorf("config %s names DirectRouting", topo.Etcd.Config)
		}
	}
}

// The largest layout: every interface name fits IFNAMSIZ, every address
// is unique and on its segment, and every segment has hosts.
func TestPlanSegmentsNamesAndAddresses(t *testing.T) {
	topo, err := Plan(Spec{Prefix: "abcdefghijkl", Hosts: MaxHosts, Pods: 1, Segments: MaxSegments, Backend: "vxlan"})
	if err != nil {
		t.Fatal(err)
	}
	if len(topo.Segments) != MaxSegments || len(topo.Router.Legs) != MaxSegments {
		t.Fatalf("%d segments and %d router legs, want %d", len(topo.Segments), len(topo.Router.Legs), MaxSegments)
	}
	seenIP := map[netip.Addr]string{topo.Underlay.Addr.Addr(): "etcd"}
	seenIf := map[string]string{} // names in the underlay namespace
	use := func(who string, a netip.Addr) {
		if prev, ok := seenIP[a]; ok {
			t.Errorf("%s: address %s also used by %s", who, a, prev)
		}
		seenIP[a] = who
	}
	useIf := func(who, name string) {
		if len(name) > 15 {
			t.Errorf("%s: interface name %q is longer than IFNAMSIZ-1", who, name)
		}
		if prev, ok := seenIf[name]; ok {
			t.Errorf("%s: interface %s in the underlay also used by %s", who, name, prev)
		}
		seenIf[name] = who
	}
	for i, sg := range topo.Segments {
		useIf(fmt.Sprintf("segment %d", sg.Index), sg.Bridge)
		if sg.Index != i+1 || sg.Net.Bits() != 24 || !sg.Net.Contains(sg.Gateway) {
			t.Errorf("segment %+v malformed", sg)
		}
		for _, other := range topo.Segments[:i] {
			if other.Net.Overlaps(sg.Net) {
				t.Errorf("segments %d and %d overlap", other.Index, sg.Index)
			}
		}
		if sg.Net.Overlaps(topo.Spec.Network) {
			t.Errorf("segment %s overlaps the cluster network", sg.Net)
		}
	}
	for _, l := range topo.Router.Legs {
		useIf("router leg "+l.Iface, l.Wire)
		if len(l.Iface) > 15 {
			t.Errorf("router interface %q too long", l.Iface)
		}
		sg := topo.Segments[l.Segment-1]
		if l.Bridge != sg.Bridge || l.Addr.Addr() != sg.Gateway || l.Addr.Masked() != sg.Net {
			t.Errorf("leg %+v does not sit on segment %+v", l, sg)
		}
		use("router "+l.Iface, l.Addr.Addr())
	}
	perSeg := map[int]int{}
	last := 0
	for _, h := range topo.Hosts {
		useIf(h.Name, h.Wire)
		use(h.Name, h.Addr.Addr())
		sg := topo.Segments[h.Segment-1]
		if h.Addr.Masked() != sg.Net || h.Bridge != sg.Bridge || h.Gateway != sg.Gateway {
			t.Errorf("%s: %s on %s via %s, want on segment %+v", h.Name, h.Addr, h.Bridge, h.Gateway, sg)
		}
		if b := h.Addr.Addr().As4()[3]; b == 0 || b == 255 {
			t.Errorf("%s: address %s is a network or broadcast address", h.Name, h.Addr)
		}
		if h.Segment < last {
			t.Errorf("%s on segment %d after a host on segment %d: blocks are not contiguous", h.Name, h.Segment, last)
		}
		last = h.Segment
		perSeg[h.Segment]++
	}
	for k := 1; k <= MaxSegments; k++ {
		if n := perSeg[k]; n != MaxHosts/MaxSegments {
			t.Errorf("segment %d has %d hosts, want %d", k, n, MaxHosts/MaxSegments)
		}
	}
	seenNS := map[string]bool{}
	for _, ns := range topo.Namespaces() {
		if seenNS[ns] || !IsLabNS(topo.Spec.Prefix, ns) {
			t.Errorf("namespace %s planned twice or not recognised as the lab's", ns)
		}
		seenNS[ns] = true
	}
}

// Blocks of near-equal size, none empty, for every hosts/segments mix.
func TestSegmentOfSpreadsHostsInBlocks(t *testing.T) {
	for hosts := 1; hosts <= 20; hosts++ {
		for n := 1; n <= min(hosts, MaxSegments); n++ {
			count := make([]int, n+1)
			prev := 1
			for i := 1; i <= hosts; i++ {
				k := segmentOf(i, hosts, n)
				if k < prev || k > prev+1 || k < 1 || k > n {
					t.Fatalf("hosts %d segments %d: host %d on segment %d after %d", hosts, n, i, k, prev)
				}
				prev = k
				count[k]++
			}
			lo, hi := slices.Min(count[1:]), slices.Max(count[1:])
			if lo == 0 || hi-lo > 1 {
				t.Errorf("hosts %d segments %d: sizes %v", hosts, n, count[1:])
			}
		}
	}
	if got := []int{segmentOf(1, 3, 2), segmentOf(2, 3, 2), segmentOf(3, 3, 2)}; !slices.Equal(got, []int{1, 1, 2}) {
		t.Errorf("3 hosts on 2 segments: %v, want h1 h2 | h3", got)
	}
}

func TestPlanRejectsBadSegmentSpecs(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		want []string
	}{
		{"negative", Spec{Hosts: 3, Segments: -1, Backend: "vxlan"}, []string{"segments -1"}},
		{"too many", Spec{Hosts: 20, Segments: MaxSegments + 1, Backend: "vxlan"}, []string{"segments"}},
		{"more segments than hosts", Spec{Hosts: 2, Segments: 3, Backend: "vxlan"}, []string{"segments 3", "2 hosts"}},
		{"host-gw across a router", Spec{Hosts: 4, Segments: 2, Backend: "host-gw"},
			[]string{"host-gw with 2 segments", "same L2 segment", "vxlan", "DirectRouting"}},
		{"host-gw by default", Spec{Hosts: 4, Segments: 2}, []string{"host-gw"}},
		{"direct routing on udp", Spec{Hosts: 2, Backend: "udp", DirectRouting: true}, []string{"direct routing", "udp"}},
		{"network over segment 2", Spec{Hosts: 2, Segments: 2, Backend: "vxlan", Network: netip.MustParsePrefix("10.4.8.0/22")},
			[]string{"overlaps the underlay 10.4.8.0/24"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Plan(tc.spec)
			if err == nil {
				t.Fatalf("Plan(%+v) succeeded", tc.spec)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Plan(%+v) error = %v, want it to mention %q", tc.spec, err, w)
				}
			}
		})
	}
	// The same network is fine when there is no segment 2 to overlap.
	if _, err := Plan(Spec{Hosts: 2, Network: netip.MustParsePrefix("10.4.8.0/22")}); err != nil {
		t.Errorf("one segment, network 10.4.8.0/22: %v", err)
	}
}

func TestRouterNamespaceIsTheLabs(t *testing.T) {
	for _, tc := range []struct {
		name string
		want bool
	}{{"weft-rt", true}, {"weft-rt1", false}, {"weft-rth1", false}, {"weftx-rt", false}} {
		if got := IsLabNS("weft", tc.name); got != tc.want {
			t.Errorf("IsLabNS(weft, %s) = %v, want %v", tc.name, got, tc.want)
		}
	}
	if got, err := ResolveNS("weft", "rt"); err != nil || got != "weft-rt" {
		t.Errorf("ResolveNS(weft, rt) = %q, %v; want weft-rt", got, err)
	}
}

func TestRecordedSpecKeepsTheLayout(t *testing.T) {
	built := Spec{Prefix: "x", Hosts: 4, Pods: 1, Segments: 2, Backend: "vxlan", DirectRouting: true, StateRoot: "/run/weft-lab", AgentArgs: []string{"--ip-masq"}}
	got := recordedSpec(Spec{Prefix: "x", StateRoot: "/run/weft-lab"}, state{Spec: built})
	if !reflect.DeepEqual(got, built) {
		t.Errorf("recordedSpec = %+v, want %+v", got, built)
	}
	topo, err := Plan(got)
	if err != nil || topo.Router.NS != "x-rt" {
		t.Errorf("re-planned lab: router %q, err %v; want x-rt", topo.Router.NS, err)
	}
}
