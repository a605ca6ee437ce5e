package admit

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/backend/hostgw"
	"github.com/weftnet/weft/internal/backend/vxlan"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
)

func config(t testing.TB, backendJSON string) *netconf.Config {
	t.Helper()
	cfg, err := netconf.Parse([]byte(`{"Network":"172.7.0.0/16","SubnetLen":24,"SubnetMin":"172.7.10.0","SubnetMax":"172.7.200.0","Backend":` + backendJSON + `}`))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// mk builds a lease: subnet in key form or CIDR, PublicIP, age, and for
// vxlan the MAC and VNI ("" mac: host-gw).
func mk(subnet, pub string, created int64, mac string, vni int) lease.Lease {
	l := lease.Lease{Subnet: netip.MustParsePrefix(subnet), Created: created, Expiration: time.Unix(1e9, 0)}
	if pub != "" {
		l.Attrs.PublicIP = netip.MustParseAddr(pub)
	}
	l.Attrs.BackendType = "host-gw"
	if mac != "" {
		l.Attrs.BackendType = "vxlan"
		l.Attrs.BackendData = json.RawMessage(fmt.Sprintf(`{"VNI":%d,"VtepMAC":%q}`, vni, mac))
	}
	return l
}

const (
	macOwn = "0a:00:00:00:00:01"
	macA   = "0a:00:00:00:00:0a"
	macB   = "0a:00:00:00:00:0b"
)

var (
	ownHG = mk("172.7.1.0/24", "10.4.7.21", 5, "", 0)
	ownVX = mk("172.7.1.0/24", "10.4.7.21", 5, macOwn, 1)
	me    = netip.MustParseAddr("10.4.7.21")
)

func TestDecide(t *testing.T) {
	live := mk("172.7.138.0/24", "10.4.7.22", 10, "", 0)
	liveVX := mk("172.7.138.0/24", "10.4.7.22", 10, macA, 1)
	type want struct {
		subnet, kind string
		reason       []string // substrings of the reason
	}
	for _, tc := range []struct {
		name    string
		vxlan   bool
		leases  []lease.Lease
		refused []want // every refusal, in input order
	}{
		{name: "good peers", leases: []lease.Lease{ownHG, live, mk("172.7.139.0/24", "10.4.7.23", 11, "", 0)}},
		{name: "smaller overlapping, newer", leases: []lease.Lease{ownHG, mk("172.7.138.0/25", "10.4.7.99", 20, "", 0), live},
			refused: []want{{"172.7.138.0/25", KindOverlap, []string{"172.7.138.0-25 (PublicIP 10.4.7.99) overlaps 172.7.138.0-24 (PublicIP 10.4.7.22), which was there first", "not a /24"}}}},
		{name: "smaller overlapping, older: still refused, live one kept", leases: []lease.Lease{ownHG, mk("172.7.138.0/25", "10.4.7.99", 1, "", 0), live},
			refused: []want{{"172.7.138.0/25", KindOverlap, []string{"172.7.138.0-25 (PublicIP 10.4.7.99) overlaps 172.7.138.0-24 (PublicIP 10.4.7.22), and is not a /24"}}}},
		{name: "/32", leases: []lease.Lease{ownHG, live, mk("172.7.138.7/32", "10.4.7.99", 20, "", 0)},
			refused: []want{{"172.7.138.7/32", KindOverlap, []string{"172.7.138.7-32 (PublicIP 10.4.7.99) overlaps 172.7.138.0-24"}}}},
		{name: "/17 over two peers", leases: []lease.Lease{ownHG, mk("172.7.128.0/17", "10.4.7.99", 20, "", 0), live, mk("172.7.139.0/24", "10.4.7.23", 11, "", 0)},
			refused: []want{{"172.7.128.0/17", KindOverlap, []string{"172.7.128.0-17 (PublicIP 10.4.7.99) overlaps 172.7.138.0-24 (PublicIP 10.4.7.22)"}}}},
		{name: "/17 over nothing", leases: []lease.Lease{ownHG, mk("172.7.128.0/17", "10.4.7.99", 20, "", 0)},
			refused: []want{{"172.7.128.0/17", KindLength, []string{"172.7.128.0-17 (PublicIP 10.4.7.99) is not a /24 subnet"}}}},
		{name: "larger overlapping own", leases: []lease.Lease{mk("172.7.0.0/23", "10.4.7.99", 1, "", 0), ownHG},
			refused: []want{{"172.7.0.0/23", KindOverlap, []string{"overlaps 172.7.1.0-24 (PublicIP 10.4.7.21), which was there first"}}}},
		{name: "wrong length, no overlap", leases: []lease.Lease{ownHG, mk("172.7.50.0/26", "10.4.7.30", 1, "", 0)},
			refused: []want{{"172.7.50.0/26", KindLength, []string{"not a /24"}}}},
		{name: "host bits set", leases: []lease.Lease{ownHG, {Subnet: netip.PrefixFrom(netip.MustParseAddr("172.7.50.3"), 24), Attrs: lease.Attrs{PublicIP: netip.MustParseAddr("10.4.7.30")}}},
			refused: []want{{"172.7.50.0/24", KindLength, []string{"not a /24"}}}},
		{name: "outside Network", leases: []lease.Lease{ownHG, mk("10.9.0.0/24", "10.4.7.30", 1, "", 0)},
			refused: []want{{"10.9.0.0/24", KindMalformed, []string{"not inside the network 172.7.0.0/16"}}}},
		{name: "the whole Network", leases: []lease.Lease{ownHG, mk("172.7.0.0/16", "10.4.7.30", 1, "", 0)},
			refused: []want{{"172.7.0.0/16", KindMalformed, []string{"not inside the network"}}}},
		{name: "no PublicIP", leases: []lease.Lease{ownHG, mk("172.7.50.0/24", "", 1, "", 0)},
			refused: []want{{"172.7.50.0/24", KindMalformed, []string{"172.7.50.0-24 (PublicIP none)", "no IPv4 PublicIP"}}}},
		{name: "equal subnet (two Nodes, one podCIDR): older wins whatever the order", leases: []lease.Lease{ownHG, mk("172.7.138.0/24", "10.4.7.99", 30, "", 0), live},
			refused: []want{{"172.7.138.0/24", KindOverlap, []string{"172.7.138.0-24 (PublicIP 10.4.7.99) overlaps 172.7.138.0-24 (PublicIP 10.4.7.22), which was there first"}}}},
		{name: "own subnet under another PublicIP is the own lease", leases: []lease.Lease{mk("172.7.1.0/24", "10.4.7.99", 1, "", 0), ownHG}},
		{name: "overlaps own", leases: []lease.Lease{ownHG, mk("172.7.1.128/25", "10.4.7.99", 1, "", 0)},
			refused: []want{{"172.7.1.128/25", KindOverlap, []string{"overlaps 172.7.1.0-24 (PublicIP 10.4.7.21), which was there first"}}}},
		{name: "own PublicIP on another subnet", leases: []lease.Lease{ownHG, mk("172.7.60.0/24", "10.4.7.21", 1, "", 0)},
			refused: []want{{"172.7.60.0/24", KindOwnPublicIP, []string{"carries this host's PublicIP 10.4.7.21"}}}},
		{name: "reservation outside SubnetMin..SubnetMax is a peer", leases: []lease.Lease{ownHG, {Subnet: netip.MustParsePrefix("172.7.250.0/24"), Attrs: lease.Attrs{PublicIP: netip.MustParseAddr("10.4.7.50"), BackendType: "host-gw"}}}},
		{name: "lease outside SubnetMin..SubnetMax is a peer too", leases: []lease.Lease{ownHG, mk("172.7.2.0/24", "10.4.7.50", 1, "", 0)}},
		{name: "reservation of the wrong length", leases: []lease.Lease{ownHG, {Subnet: netip.MustParsePrefix("172.7.250.0/25"), Attrs: lease.Attrs{PublicIP: netip.MustParseAddr("10.4.7.50")}}},
			refused: []want{{"172.7.250.0/25", KindLength, []string{"not a /24"}}}},
		{name: "reservation over an older lease loses", leases: []lease.Lease{ownHG, live, {Subnet: netip.MustParsePrefix("172.7.138.0/25"), Created: 40, Attrs: lease.Attrs{PublicIP: netip.MustParseAddr("10.4.7.50")}}},
			refused: []want{{"172.7.138.0/25", KindOverlap, []string{"overlaps 172.7.138.0-24 (PublicIP 10.4.7.22)"}}}},
		{name: "a refused lease blocks nothing", leases: []lease.Lease{ownHG, mk("172.7.138.0/25", "10.4.7.99", 1, "", 0), mk("172.7.138.0/24", "10.4.7.98", 50, "", 0)},
			refused: []want{{"172.7.138.0/25", KindOverlap, []string{"overlaps 172.7.138.0-24 (PublicIP 10.4.7.98), and"}}}},

		// vxlan identity
		{name: "vxlan good", vxlan: true, leases: []lease.Lease{ownVX, liveVX, mk("172.7.139.0/24", "10.4.7.23", 11, macB, 1)}},
		{name: "duplicate VtepMAC sorting first: older wins", vxlan: true, leases: []lease.Lease{ownVX, mk("172.7.100.0/24", "10.4.7.99", 30, macA, 1), liveVX},
			refused: []want{{"172.7.100.0/24", KindIdentity, []string{"172.7.100.0-24 (PublicIP 10.4.7.99) publishes VtepMAC " + macA + ", like 172.7.138.0-24 (PublicIP 10.4.7.22), which was there first"}}}},
		{name: "duplicate VtepMAC sorting last: older wins", vxlan: true, leases: []lease.Lease{ownVX, liveVX, mk("172.7.200.0/24", "10.4.7.99", 30, macA, 1)},
			refused: []want{{"172.7.200.0/24", KindIdentity, []string{"like 172.7.138.0-24"}}}},
		{name: "this host's VtepMAC", vxlan: true, leases: []lease.Lease{ownVX, mk("172.7.100.0/24", "10.4.7.99", 1, macOwn, 1)},
			refused: []want{{"172.7.100.0/24", KindIdentity, []string{"publishes VtepMAC " + macOwn + ", which is this host's own (172.7.1.0-24 (PublicIP 10.4.7.21))"}}}},
		{name: "wrong VNI", vxlan: true, leases: []lease.Lease{ownVX, mk("172.7.100.0/24", "10.4.7.99", 1, macB, 7)},
			refused: []want{{"172.7.100.0/24", KindBackendData, []string{"VNI 7 but this network uses VNI 1"}}}},
		{name: "wrong VNI loses no identity: a later same-MAC lease is admitted", vxlan: true, leases: []lease.Lease{ownVX, mk("172.7.100.0/24", "10.4.7.99", 1, macB, 7), mk("172.7.101.0/24", "10.4.7.98", 2, macB, 1)},
			refused: []want{{"172.7.100.0/24", KindBackendData, []string{"VNI 7"}}}},
		{name: "garbage BackendData", vxlan: true, leases: []lease.Lease{ownVX, {Subnet: netip.MustParsePrefix("172.7.100.0/24"), Attrs: lease.Attrs{PublicIP: netip.MustParseAddr("10.4.7.99"), BackendType: "vxlan", BackendData: json.RawMessage(`{"VtepMAC":17}`)}}},
			refused: []want{{"172.7.100.0/24", KindBackendData, []string{"is not a vxlan peer"}}}},
		{name: "no BackendData", vxlan: true, leases: []lease.Lease{ownVX, {Subnet: netip.MustParsePrefix("172.7.100.0/24"), Attrs: lease.Attrs{PublicIP: netip.MustParseAddr("10.4.7.99"), BackendType: "vxlan"}}},
			refused: []want{{"172.7.100.0/24", KindBackendData, []string{"no BackendData"}}}},
		{name: "a host-gw lease in a vxlan network is passed on", vxlan: true, leases: []lease.Lease{ownVX, mk("172.7.100.0/24", "10.4.7.99", 1, "", 0)}},
		{name: "own lease with garbage data is never refused", vxlan: true, leases: []lease.Lease{{Subnet: ownVX.Subnet, Attrs: lease.Attrs{PublicIP: me, BackendType: "vxlan", BackendData: json.RawMessage(`"junk"`)}}, liveVX}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{Config: config(t, `{"Type":"host-gw"}`), Backend: hostgw.Descriptor(), Own: ownHG, OwnPublicIP: me, Leases: tc.leases}
			if tc.vxlan {
				in.Config, in.Backend, in.Own = config(t, `{"Type":"vxlan"}`), vxlan.Descriptor(), ownVX
			}
			res := Decide(in)
			if len(res.Refused) != len(tc.refused) {
				t.Fatalf("refused %d, want %d: %+v", len(res.Refused), len(tc.refused), res.Refused)
			}
			for i, w := range tc.refused {
				got := res.Refused[i]
				if got.Lease.Subnet.Masked().String() != w.subnet || got.Kind != w.kind {
					t.Errorf("refusal %d: %s %s, want %s %s (%s)", i, got.Lease.Subnet, got.Kind, w.subnet, w.kind, got.Reason)
				}
				for _, s := range w.reason {
					if !strings.Contains(got.Reason, s) {
						t.Errorf("refusal %d: reason %q lacks %q", i, got.Reason, s)
					}
				}
			}
			if len(res.Admitted)+len(res.Refused) != len(tc.leases) {
				t.Errorf("admitted %d + refused %d != %d leases", len(res.Admitted), len(res.Refused), len(tc.leases))
			}
			if !slices.ContainsFunc(res.Admitted, func(l lease.Lease) bool { return l.Subnet == in.Own.Subnet }) &&
				slices.ContainsFunc(tc.leases, func(l lease.Lease) bool { return l.Subnet == in.Own.Subnet }) {
				t.Errorf("own lease refused")
			}
		})
	}
}

// The decision does not depend on the order the store lists leases in.
func TestDecideOrderIndependent(t *testing.T) {
	leases := []lease.Lease{
		ownVX,
		mk("172.7.138.0/24", "10.4.7.22", 10, macA, 1),
		mk("172.7.138.0/25", "10.4.7.99", 20, macB, 1),
		mk("172.7.100.0/24", "10.4.7.98", 30, macA, 1),
		mk("172.7.139.0/24", "10.4.7.23", 11, macB, 1),
		mk("172.7.139.0/24", "10.4.7.97", 11, "0a:00:00:00:00:0c", 1),
	}
	in := Input{Config: config(t, `{"Type":"vxlan"}`), Backend: vxlan.Descriptor(), Own: ownVX, OwnPublicIP: me}
	key := func(r Result) []string {
		var out []string
		for _, l := range r.Admitted {
			out = append(out, "+"+Name(l))
		}
		for _, f := range r.Refused {
			out = append(out, "-"+f.Reason)
		}
		slices.Sort(out)
		return out
	}
	in.Leases = leases
	want := key(Decide(in))
	perm := slices.Clone(leases)
	in.Memo = NewMemo() // as the agent decides, snapshot after snapshot
	for k := 0; k < 50; k++ {
		// A fixed sequence of swaps walks through many orders.
		i, j := (k*7)%len(perm), (k*3+1)%len(perm)
		perm[i], perm[j] = perm[j], perm[i]
		in.Leases = perm
		if got := key(Decide(in)); !slices.Equal(got, want) {
			t.Fatalf("order %v:\n got %q\nwant %q", perm, got, want)
		}
	}
	// The genuine peers of 172.7.138.0/24 and 172.7.139.0/24 (the lower
	// PublicIP settles the tie of equal ages) are admitted.
	if !slices.Contains(want, "+172.7.138.0-24 (PublicIP 10.4.7.22)") || !slices.Contains(want, "+172.7.139.0-24 (PublicIP 10.4.7.23)") {
		t.Errorf("genuine peers not admitted: %q", want)
	}
}

// Without the own lease (status on a host whose lease is gone), peers are
// still judged among themselves.
func TestDecideWithoutOwn(t *testing.T) {
	in := Input{Config: config(t, `{"Type":"host-gw"}`), Backend: hostgw.Descriptor(),
		Leases: []lease.Lease{mk("172.7.138.0/24", "10.4.7.22", 10, "", 0), mk("172.7.138.0/25", "10.4.7.99", 20, "", 0)}}
	res := Decide(in)
	if len(res.Admitted) != 1 || len(res.Refused) != 1 || res.Refused[0].Kind != KindOverlap {
		t.Fatalf("%+v", res)
	}
	if _, ok := res.RefusedSubnet(netip.MustParsePrefix("172.7.138.0/25"), netip.MustParseAddr("10.4.7.99")); !ok {
		t.Error("RefusedSubnet does not find the refusal")
	}
}

// BenchmarkDecide5000 is one snapshot of a 5000-host vxlan cluster, as the
// agent decides it on every change.
func BenchmarkDecide5000(b *testing.B) {
	cfg, err := netconf.Parse([]byte(`{"Network":"10.0.0.0/8","SubnetLen":24,"Backend":{"Type":"vxlan"}}`))
	if err != nil {
		b.Fatal(err)
	}
	leases := make([]lease.Lease, 5000)
	for i := range leases {
		sub := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)
		leases[i] = mk(sub.String(), fmt.Sprintf("192.168.%d.%d", i>>8, i&0xff), int64(i), fmt.Sprintf("0a:00:00:00:%02x:%02x", i>>8, i&0xff), 1)
	}
	in := Input{Config: cfg, Backend: vxlan.Descriptor(), Own: leases[7], OwnPublicIP: leases[7].Attrs.PublicIP, Leases: leases}
	for _, memo := range []bool{false, true} {
		b.Run(fmt.Sprintf("memo=%v", memo), func(b *testing.B) {
			in.Memo = nil
			if memo {
				in.Memo = NewMemo()
			}
			for b.Loop() {
				if res := Decide(in); len(res.Refused) != 0 {
					b.Fatal(res.Refused[0].Reason)
				}
			}
		})
	}
}

// The IPv6 half of a dual-stack lease is judged by the same rules as the
// IPv4 half, against IPv6Network and IPv6SubnetLen; a bad IPv6 half is
// refused alone, and the lease stays a peer over IPv4 without it.
func TestDecideIPv6Half(t *testing.T) {
	cfg, err := netconf.Parse([]byte(`{"Network":"172.7.0.0/16","SubnetLen":24,"EnableIPv6":true,"IPv6Network":"fd00:50::/56","IPv6SubnetLen":64,"Backend":{"Type":"host-gw"}}`))
	if err != nil {
		t.Fatal(err)
	}
	dual := func(subnet, pub string, created int64, subnet6, pub6 string) lease.Lease {
		l := mk(subnet, pub, created, "", 0)
		if subnet6 != "" {
			l.IPv6Subnet = netip.MustParsePrefix(subnet6)
		}
		if pub6 != "" {
			l.Attrs.PublicIPv6 = netip.MustParseAddr(pub6)
		}
		return l
	}
	own := dual("172.7.1.0/24", "10.4.7.21", 5, "fd00:50:0:1::/64", "fd00:4:7::21")
	for _, tc := range []struct {
		name   string
		lease  lease.Lease
		kind   string // "" admitted with its IPv6 half
		reason string
	}{
		{"good", dual("172.7.2.0/24", "10.4.7.22", 10, "fd00:50:0:2::/64", "fd00:4:7::22"), "", ""},
		{"IPv4-only config", dual("172.7.2.0/24", "10.4.7.22", 10, "", ""), "", ""},
		{"no PublicIPv6", dual("172.7.2.0/24", "10.4.7.22", 10, "fd00:50:0:2::/64", ""), KindMalformed, "no PublicIPv6"},
		{"outside IPv6Network", dual("172.7.2.0/24", "10.4.7.22", 10, "fd00:99:0:2::/64", "fd00:4:7::22"), KindMalformed, "not inside the IPv6Network fd00:50::/56"},
		{"wrong length", dual("172.7.2.0/24", "10.4.7.22", 10, "fd00:50:0:2::/80", "fd00:4:7::22"), KindLength, "not a /64 subnet (the network's IPv6SubnetLen)"},
		{"unaligned", dual("172.7.2.0/24", "10.4.7.22", 10, "fd00:50:0:2::1/64", "fd00:4:7::22"), KindLength, "IPv6SubnetLen"},
		{"own IPv6 subnet", dual("172.7.2.0/24", "10.4.7.22", 10, "fd00:50:0:1::/64", "fd00:4:7::22"), KindOwnSubnet, "overlaps this host's own fd00:50:0:1::/64"},
		{"own PublicIPv6", dual("172.7.2.0/24", "10.4.7.22", 10, "fd00:50:0:2::/64", "fd00:4:7::21"), KindOwnPublicIP, "PublicIPv6 fd00:4:7::21"},
	} {
		res := Decide(Input{Config: cfg, Backend: hostgw.Descriptor(), Own: own, OwnPublicIP: me, Leases: []lease.Lease{own, tc.lease}})
		if len(res.Refused) != 0 || len(res.Admitted) != 2 {
			t.Errorf("%s: the IPv4 half is not admitted: %+v", tc.name, res)
			continue
		}
		got := res.Admitted[1]
		if tc.kind == "" {
			if len(res.RefusedV6) != 0 || got.IPv6Subnet != tc.lease.IPv6Subnet || got.Attrs.PublicIPv6 != tc.lease.Attrs.PublicIPv6 {
				t.Errorf("%s: admitted %+v, IPv6 refusals %+v; want the lease as it is", tc.name, got, res.RefusedV6)
			}
			continue
		}
		if len(res.RefusedV6) != 1 || res.RefusedV6[0].Kind != tc.kind || !res.RefusedV6[0].IPv6 ||
			!strings.Contains(res.RefusedV6[0].Reason, tc.reason) || !strings.Contains(res.RefusedV6[0].Reason, "stays a peer over IPv4") {
			t.Errorf("%s: IPv6 refusals %+v, want one of kind %s saying %q", tc.name, res.RefusedV6, tc.kind, tc.reason)
		}
		if got.Subnet != tc.lease.Subnet || got.IPv6Subnet.IsValid() || got.Attrs.PublicIPv6.IsValid() {
			t.Errorf("%s: admitted %+v, want the IPv4 half alone", tc.name, got)
		}
	}

	// Two leases with one IPv6 subnet: the older keeps it, the newer keeps
	// its IPv4 route only.
	older := dual("172.7.2.0/24", "10.4.7.22", 10, "fd00:50:0:2::/64", "fd00:4:7::22")
	newer := dual("172.7.3.0/24", "10.4.7.23", 20, "fd00:50:0:2::/64", "fd00:4:7::23")
	res := Decide(Input{Config: cfg, Backend: hostgw.Descriptor(), Own: own, OwnPublicIP: me, Leases: []lease.Lease{own, newer, older}})
	if len(res.Admitted) != 3 || len(res.RefusedV6) != 1 || res.RefusedV6[0].Lease.Subnet != newer.Subnet ||
		res.RefusedV6[0].Kind != KindOverlap || !strings.Contains(res.RefusedV6[0].Reason, "172.7.2.0-24&fd00:50:0:2::-64 (PublicIP 10.4.7.22), which was there first") {
		t.Errorf("shared IPv6 subnet: %+v", res)
	}
	// Without EnableIPv6 nothing about IPv6 is judged.
	v4 := config(t, `{"Type":"host-gw"}`)
	res = Decide(Input{Config: v4, Backend: hostgw.Descriptor(), Own: own, OwnPublicIP: me, Leases: []lease.Lease{own, newer, older}})
	if len(res.RefusedV6) != 0 || len(res.Admitted) != 3 {
		t.Errorf("IPv4-only config: %+v", res)
	}
}

// An IPv6-only network ("EnableIPv4": false, Kubernetes mode): leases
// have an IPv6 half alone, which the IPv6 rules judge as the whole lease.
func TestDecideIPv6Only(t *testing.T) {
	cfg, err := netconf.Parse([]byte(`{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"host-gw"}}`))
	if err != nil {
		t.Fatal(err)
	}
	v6 := func(subnet6, pub6 string, created int64) lease.Lease {
		l := lease.Lease{IPv6Subnet: netip.MustParsePrefix(subnet6), Created: created, Expiration: time.Unix(1e9, 0)}
		l.Attrs.BackendType = "host-gw"
		if pub6 != "" {
			l.Attrs.PublicIPv6 = netip.MustParseAddr(pub6)
		}
		return l
	}
	own := v6("fd00:10:244:1::/64", "fd00:4:7::1", 5)
	good := v6("fd00:10:244:2::/64", "fd00:4:7::2", 10)
	older := v6("fd00:10:244:3::/64", "fd00:4:7::3", 1)
	for _, tc := range []struct {
		name   string
		lease  lease.Lease
		kind   string // "" admitted
		reason string
	}{
		{"good", good, "", ""},
		{"no PublicIPv6", v6("fd00:10:244:2::/64", "", 10), KindMalformed, "fd00:10:244:2::/64 (PublicIP none) has an IPv6 half that is not a peer: it has no PublicIPv6"},
		{"outside IPv6Network", v6("fd00:99:0:2::/64", "fd00:4:7::2", 10), KindMalformed, "not inside the IPv6Network fd00:10:244::/56"},
		{"wrong length", v6("fd00:10:244:2::/80", "fd00:4:7::2", 10), KindLength, "not a /64 subnet"},
		{"own PublicIPv6", v6("fd00:10:244:2::/64", "fd00:4:7::1", 10), KindOwnPublicIP, "PublicIPv6 fd00:4:7::1"},
		{"shares an older lease's subnet", v6("fd00:10:244:3::/64", "fd00:4:7::4", 10), KindOverlap, "fd00:10:244:3::/64 (PublicIP fd00:4:7::3), which was there first"},
	} {
		res := Decide(Input{Config: cfg, Backend: hostgw.Descriptor(), Own: own, Leases: []lease.Lease{own, older, tc.lease}})
		if len(res.RefusedV6) != 0 {
			t.Errorf("%s: IPv6 halves refused apart from their lease: %+v", tc.name, res.RefusedV6)
		}
		if tc.kind == "" {
			if len(res.Refused) != 0 || len(res.Admitted) != 3 || res.Admitted[2].IPv6Subnet != tc.lease.IPv6Subnet || res.Admitted[2].Attrs.PublicIPv6 != tc.lease.Attrs.PublicIPv6 {
				t.Errorf("%s: %+v; want all three admitted as they are", tc.name, res)
			}
			continue
		}
		if len(res.Refused) != 1 || res.Refused[0].Kind != tc.kind || !strings.Contains(res.Refused[0].Reason, tc.reason) || len(res.Admitted) != 2 {
			t.Errorf("%s: refused %+v, admitted %d; want one refusal of kind %s saying %q", tc.name, res.Refused, len(res.Admitted), tc.kind, tc.reason)
			continue
		}
		if _, ok := res.RefusedSubnet(tc.lease.IPv6Subnet, tc.lease.Attrs.PublicIPv6); !ok {
			t.Errorf("%s: RefusedSubnet does not find the refusal by the IPv6 subnet", tc.name)
		}
	}
}

// An IPv6-only vxlan network: a lease's identity is the VtepMAC of its
// BackendV6Data (it has no BackendData), so of two leases with one MAC
// the older wins and one with this host's MAC or without BackendV6Data is
// refused; a Memo keeps these verdicts apart although every lease's
// BackendData is the same (none).
func TestDecideIPv6OnlyVXLANIdentity(t *testing.T) {
	cfg, err := netconf.Parse([]byte(`{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"vxlan"}}`))
	if err != nil {
		t.Fatal(err)
	}
	v6 := func(i int, mac string, created int64) lease.Lease {
		l := lease.Lease{IPv6Subnet: netip.MustParsePrefix(fmt.Sprintf("fd00:10:244:%d::/64", i)), Created: created, Expiration: time.Unix(1e9, 0)}
		l.Attrs.BackendType, l.Attrs.PublicIPv6 = "vxlan", netip.MustParseAddr(fmt.Sprintf("fd00:4:7::%d", i))
		if mac != "" {
			l.Attrs.BackendV6Data = json.RawMessage(`{"VNI":1,"VtepMAC":"` + mac + `"}`)
		}
		return l
	}
	own := v6(1, "0e:00:00:00:06:01", 5)
	older := v6(2, "0e:00:00:00:06:02", 1)
	memo := NewMemo()
	for _, tc := range []struct {
		name   string
		lease  lease.Lease
		kind   string // "" admitted
		reason string
	}{
		{"good", v6(3, "0e:00:00:00:06:03", 10), "", ""},
		{"an older lease's MAC", v6(3, "0e:00:00:00:06:02", 10), KindIdentity, "publishes VtepMAC 0e:00:00:00:06:02, like fd00:10:244:2::/64 (PublicIP fd00:4:7::2), which was there first"},
		{"this host's MAC", v6(3, "0e:00:00:00:06:01", 10), KindIdentity, "which is this host's own"},
		{"no BackendV6Data", v6(3, "", 10), KindBackendData, "BackendV6Data: it has no BackendData"},
		{"good again", v6(3, "0e:00:00:00:06:03", 10), "", ""},
	} {
		res := Decide(Input{Config: cfg, Backend: vxlan.Descriptor(), Own: own, Leases: []lease.Lease{own, older, tc.lease}, Memo: memo})
		if tc.kind == "" {
			if len(res.Refused) != 0 || len(res.Admitted) != 3 {
				t.Errorf("%s: %+v; want all three admitted", tc.name, res)
			}
			continue
		}
		if len(res.Refused) != 1 || res.Refused[0].Kind != tc.kind || !strings.Contains(res.Refused[0].Reason, tc.reason) || len(res.Admitted) != 2 {
			t.Errorf("%s: refused %+v, admitted %d; want one refusal of kind %s saying %q", tc.name, res.Refused, len(res.Admitted), tc.kind, tc.reason)
		}
	}
}
