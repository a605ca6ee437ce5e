package status

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/lease"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ip(s string) netip.Addr    { return netip.MustParseAddr(s) }
func mac(s string) kernel.MAC {
	m, err := kernel.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func hostgwLease(subnet, pub string, ttl time.Duration) lease.Lease {
	l := lease.Lease{Subnet: pfx(subnet), Attrs: lease.Attrs{PublicIP: ip(pub), BackendType: "host-gw"}}
	if ttl != 0 {
		l.Expiration = t0.Add(ttl)
	}
	return l
}

func vxlanLease(subnet, pub, vtep string, vni int, ttl time.Duration) lease.Lease {
	data, _ := json.Marshal(map[string]any{"VNI": vni, "VtepMAC": vtep})
	l := lease.Lease{Subnet: pfx(subnet), Attrs: lease.Attrs{PublicIP: ip(pub), BackendType: "vxlan", BackendData: data}}
	if ttl != 0 {
		l.Expiration = t0.Add(ttl)
	}
	return l
}

func texts(ws []Want) string {
	s := make([]string, len(ws))
	for i, w := range ws {
		s[i] = w.Kind + ": " + w.String()
	}
	return strings.Join(s, "\n")
}

// What status expects, through each backend's descriptor, as the
// iproute2 text an operator compares with `ip route`, `ip neigh` and
// `bridge fdb`. The backends' own tests hold the derivation to their
// planners; this pins the words status shows.
func TestExpectationTexts(t *testing.T) {
	ext := eth0()
	own := vxlanLease("10.244.1.0/24", "192.168.1.1", "aa:bb:cc:dd:ee:01", 1, time.Hour)
	peer3 := vxlanLease("10.244.3.0/24", "192.168.1.3", "aa:bb:cc:dd:ee:03", 1, time.Hour)
	direct := map[netip.Addr]string{ip("192.168.1.3"): "eth0"}
	cases := []struct {
		name   string
		config string
		ext    backend.ExternalInterface
		own    lease.Lease
		peer   lease.Lease
		direct map[netip.Addr]string
		host   string
		want   string // the peer's entries, or "refused: ..." / "mismatch: ..."
	}{
		{"host-gw", hostgwConfig, ext, hostgwLease("10.244.1.0/24", "192.168.1.1", 0), hostgwLease("10.244.3.0/24", "192.168.1.3", time.Hour), nil,
			"", "route: 10.244.3.0/24 via 192.168.1.3 dev eth0"},
		{"host-gw without known interface matches any device", hostgwConfig, backend.ExternalInterface{}, lease.Lease{},
			hostgwLease("10.244.3.0/24", "192.168.1.3", 0), nil, "", "route: 10.244.3.0/24 via 192.168.1.3"},
		{"vxlan", vxlanConfig, ext, own, peer3, nil,
			"device: flannel.1 mtu 1450 lladdr aa:bb:cc:dd:ee:01 up\naddr: 10.244.1.0/32 dev flannel.1",
			"neigh: 10.244.3.0 dev flannel.1 lladdr aa:bb:cc:dd:ee:03 PERMANENT\n" +
				"fdb: aa:bb:cc:dd:ee:03 dev flannel.1 dst 192.168.1.3 self permanent\n" +
				"route: 10.244.3.0/24 via 10.244.3.0 dev flannel.1 onlink"},
		{"vxlan with its own MTU", `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":4,"MTU":1400}}`, ext,
			vxlanLease("10.244.1.0/24", "192.168.1.1", "aa:bb:cc:dd:ee:01", 4, time.Hour),
			vxlanLease("10.244.3.0/24", "192.168.1.3", "aa:bb:cc:dd:ee:03", 4, time.Hour), nil,
			"device: flannel.4 mtu 1350 lladdr aa:bb:cc:dd:ee:01 up\naddr: 10.244.1.0/32 dev flannel.4",
			"neigh: 10.244.3.0 dev flannel.4 lladdr aa:bb:cc:dd:ee:03 PERMANENT\n" +
				"fdb: aa:bb:cc:dd:ee:03 dev flannel.4 dst 192.168.1.3 self permanent\n" +
				"route: 10.244.3.0/24 via 10.244.3.0 dev flannel.4 onlink"},
		{"vxlan direct routing, peer on the same segment", `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","DirectRouting":true}}`,
			ext, own, peer3, direct,
			"device: flannel.1 mtu 1450 lladdr aa:bb:cc:dd:ee:01 up\naddr: 10.244.1.0/32 dev flannel.1",
			"route: 10.244.3.0/24 via 192.168.1.3 dev eth0"},
		{"vxlan direct routing, peer behind a router", `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","DirectRouting":true}}`,
			ext, own, vxlanLease("10.244.4.0/24", "192.168.9.4", "aa:bb:cc:dd:ee:04", 1, time.Hour), direct,
			"device: flannel.1 mtu 1450 lladdr aa:bb:cc:dd:ee:01 up\naddr: 10.244.1.0/32 dev flannel.1",
			"neigh: 10.244.4.0 dev flannel.1 lladdr aa:bb:cc:dd:ee:04 PERMANENT\n" +
				"fdb: aa:bb:cc:dd:ee:04 dev flannel.1 dst 192.168.9.4 self permanent\n" +
				"route: 10.244.4.0/24 via 10.244.4.0 dev flannel.1 onlink"},
		{"vxlan with another VNI", vxlanConfig, ext, own, vxlanLease("10.244.3.0/24", "192.168.1.3", "aa:bb:cc:dd:ee:03", 7, time.Hour), nil,
			"device: flannel.1 mtu 1450 lladdr aa:bb:cc:dd:ee:01 up\naddr: 10.244.1.0/32 dev flannel.1",
			"mismatch: the lease publishes VNI 7 but the network uses VNI 1"},
		{"vxlan without VtepMAC", vxlanConfig, ext, own, lease.Lease{Subnet: pfx("10.244.3.0/24"), Attrs: lease.Attrs{PublicIP: ip("192.168.1.3"), BackendType: "vxlan"}}, nil,
			"device: flannel.1 mtu 1450 lladdr aa:bb:cc:dd:ee:01 up\naddr: 10.244.1.0/32 dev flannel.1",
			"refused: it has no BackendData"},
		{"udp: nothing per peer", `{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}`, ext, lease.Lease{Subnet: pfx("10.244.1.0/24")},
			lease.Lease{Subnet: pfx("10.244.3.0/24"), Attrs: lease.Attrs{PublicIP: ip("192.168.1.3")}}, nil,
			"device: flannel0 mtu 1472 up\nroute: 10.244.0.0/16 dev flannel0", ""},
		{"subnet outside the network", hostgwConfig, ext, lease.Lease{}, hostgwLease("10.9.3.0/24", "192.168.1.3", time.Hour), nil,
			"", "refused: its subnet is not inside the network 10.244.0.0/16"},
		{"no PublicIP", hostgwConfig, ext, lease.Lease{}, lease.Lease{Subnet: pfx("10.244.3.0/24"), Attrs: lease.Attrs{BackendType: "host-gw"}}, nil,
			"", "refused: it has no IPv4 PublicIP"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, exp, bad := expectation(mustConfig(t, c.config), c.ext)
			if bad != nil {
				t.Fatal(bad.Message)
			}
			ws := exp.Wants(c.own, c.ext.PublicIP, []lease.Lease{c.own, c.peer}, c.direct)
			if got := texts(ws.Host); got != c.host {
				t.Errorf("host entries:\n%s\nwant\n%s", got, c.host)
			}
			pw, ok := ws.Peers[c.peer.Subnet.Masked()]
			if !ok {
				t.Fatalf("no answer for the peer: %+v", ws.Peers)
			}
			got := texts(pw.Entries)
			switch {
			case pw.Refused != "":
				got = "refused: " + pw.Refused
			case pw.Mismatch != "":
				got = "mismatch: " + pw.Mismatch
			}
			if got != c.want {
				t.Errorf("peer entries:\n%s\nwant\n%s", got, c.want)
			}
		})
	}
}

// A backend this build lacks, or invalid options, is a config problem
// in the words of the backend table, and no kernel entry is compared.
func TestExpectationOfBadConfig(t *testing.T) {
	for _, c := range []struct{ config, want string }{
		{`{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":10000000}}`, "device name flannel.10000000 would be longer"},
		{`{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","MTU":100}}`, "vxlan MTU 100"},
		{`{"Network":"10.244.0.0/16","Backend":{"Type":"udp","Port":70000}}`, "udp backend option Port 70000"},
		{`{"Network":"10.244.0.0/16","Backend":{"Type":"ipip"}}`, `Backend.Type "ipip" is a flannel backend that this build of weft does not implement (it has host-gw, vxlan, udp, wireguard)`},
		{`{"Network":"10.244.0.0/16","Backend":{"Type":"vxlann"}}`, `Backend.Type "vxlann" is not a backend of this build of weft`},
	} {
		in := hostgwHealthy(t)
		in.Config = mustConfig(t, c.config)
		r := Build(in)
		if len(r.Problems) == 0 || r.Problems[0].Code != CodeConfig || !strings.Contains(r.Problems[0].Message, c.want) {
			t.Errorf("%s: problems %+v, want a config problem naming %q", c.config, r.Problems, c.want)
		}
		for _, row := range r.Leases {
			if len(row.Entries) != 0 {
				t.Errorf("%s: row %s compared entries %+v", c.config, row.Subnet, row.Entries)
			}
		}
	}
}

// testKernel is host h1 of a vxlan network: eth0 (index 2), flannel.1
// (index 5, MAC ...:01), cni0 (index 6).
func testKernel() Kernel {
	return Kernel{
		Links: []Link{
			{Name: "lo", Index: 1, MTU: 65536, Up: true},
			{Name: "eth0", Index: 2, MTU: 1500, MAC: mac("52:54:00:00:00:01"), Up: true, Addrs: []netip.Prefix{pfx("192.168.1.1/24")}},
			{Name: "flannel.1", Index: 5, MTU: 1450, MAC: mac("aa:bb:cc:dd:ee:01"), Up: true, Addrs: []netip.Prefix{pfx("10.244.1.0/32")}},
			{Name: "cni0", Index: 6, MTU: 1450, MAC: mac("52:54:00:00:01:01"), Up: true, Addrs: []netip.Prefix{pfx("10.244.1.1/24")}},
		},
		Routes: []kernel.Route{
			{Dst: pfx("192.168.1.0/24"), LinkIndex: 2, Proto: 2},
			{Dst: pfx("10.244.2.0/24"), Gw: ip("10.244.2.0"), LinkIndex: 5, OnLink: true, Proto: kernel.ProtoWeft},
			{Dst: pfx("10.244.3.0/24"), Gw: ip("10.244.3.0"), LinkIndex: 5, Proto: kernel.ProtoWeft},
			{Dst: pfx("10.244.4.0/24"), Gw: ip("192.168.1.4"), LinkIndex: 2, Proto: 4},
			{Dst: pfx("10.244.4.0/24"), Gw: ip("192.168.1.9"), LinkIndex: 2, Metric: 100},
		},
		Neighs: []kernel.Neigh{
			{LinkIndex: 5, IP: ip("10.244.2.0"), MAC: mac("aa:bb:cc:dd:ee:02"), Permanent: true},
			{LinkIndex: 5, IP: ip("10.244.3.0"), MAC: mac("aa:bb:cc:dd:ee:99"), Permanent: true},
			{LinkIndex: 5, IP: ip("10.244.4.0"), MAC: mac("aa:bb:cc:dd:ee:04")},
		},
		FDB: []kernel.FDB{
			{LinkIndex: 5, MAC: mac("aa:bb:cc:dd:ee:02"), Dst: ip("192.168.1.2"), Permanent: true},
			{LinkIndex: 5, MAC: mac("aa:bb:cc:dd:ee:99"), Dst: ip("192.168.1.3"), Permanent: true},
			{LinkIndex: 5, MAC: mac("aa:bb:cc:dd:ee:04"), Dst: ip("192.168.1.40"), Permanent: true},
		},
	}
}

func TestCompare(t *testing.T) {
	k := testKernel()
	cases := []struct {
		name  string
		want  Want
		state string
		have  string
	}{
		{"onlink route in place", Want{Kind: KindRoute, Dst: pfx("10.244.2.0/24"), Gw: ip("10.244.2.0"), Dev: "flannel.1", OnLink: true},
			StateOK, "10.244.2.0/24 via 10.244.2.0 dev flannel.1 proto weft onlink"},
		{"route without the onlink flag", Want{Kind: KindRoute, Dst: pfx("10.244.3.0/24"), Gw: ip("10.244.3.0"), Dev: "flannel.1", OnLink: true},
			StateWrong, "10.244.3.0/24 via 10.244.3.0 dev flannel.1 proto weft"},
		{"lowest metric decides", Want{Kind: KindRoute, Dst: pfx("10.244.4.0/24"), Gw: ip("192.168.1.4"), Dev: "eth0"},
			StateOK, "10.244.4.0/24 via 192.168.1.4 dev eth0 proto static"},
		{"route via another gateway", Want{Kind: KindRoute, Dst: pfx("10.244.4.0/24"), Gw: ip("192.168.1.5"), Dev: "eth0"},
			StateWrong, "10.244.4.0/24 via 192.168.1.4 dev eth0 proto static"},
		{"route on another device", Want{Kind: KindRoute, Dst: pfx("10.244.4.0/24"), Gw: ip("192.168.1.4"), Dev: "eth1"},
			StateWrong, "10.244.4.0/24 via 192.168.1.4 dev eth0 proto static"},
		{"no route", Want{Kind: KindRoute, Dst: pfx("10.244.9.0/24"), Gw: ip("192.168.1.9"), Dev: "eth0"}, StateMissing, ""},
		{"neighbour in place", Want{Kind: KindNeigh, IP: ip("10.244.2.0"), MAC: mac("aa:bb:cc:dd:ee:02"), Dev: "flannel.1"},
			StateOK, "10.244.2.0 dev flannel.1 lladdr aa:bb:cc:dd:ee:02 PERMANENT"},
		{"neighbour with a stale MAC", Want{Kind: KindNeigh, IP: ip("10.244.3.0"), MAC: mac("aa:bb:cc:dd:ee:03"), Dev: "flannel.1"},
			StateWrong, "10.244.3.0 dev flannel.1 lladdr aa:bb:cc:dd:ee:99 PERMANENT"},
		{"neighbour not permanent", Want{Kind: KindNeigh, IP: ip("10.244.4.0"), MAC: mac("aa:bb:cc:dd:ee:04"), Dev: "flannel.1"},
			StateWrong, "10.244.4.0 dev flannel.1 lladdr aa:bb:cc:dd:ee:04"},
		{"no neighbour", Want{Kind: KindNeigh, IP: ip("10.244.9.0"), MAC: mac("aa:bb:cc:dd:ee:09"), Dev: "flannel.1"}, StateMissing, ""},
		{"neighbour on a missing device", Want{Kind: KindNeigh, IP: ip("10.244.2.0"), MAC: mac("aa:bb:cc:dd:ee:02"), Dev: "flannel.9"}, StateMissing, ""},
		{"fdb in place", Want{Kind: KindFDB, MAC: mac("aa:bb:cc:dd:ee:02"), IP: ip("192.168.1.2"), Dev: "flannel.1"},
			StateOK, "aa:bb:cc:dd:ee:02 dev flannel.1 dst 192.168.1.2 self permanent"},
		{"fdb to the PublicIP under a stale MAC", Want{Kind: KindFDB, MAC: mac("aa:bb:cc:dd:ee:03"), IP: ip("192.168.1.3"), Dev: "flannel.1"},
			StateWrong, "aa:bb:cc:dd:ee:99 dev flannel.1 dst 192.168.1.3 self permanent"},
		{"fdb of the MAC to another address", Want{Kind: KindFDB, MAC: mac("aa:bb:cc:dd:ee:04"), IP: ip("192.168.1.4"), Dev: "flannel.1"},
			StateWrong, "aa:bb:cc:dd:ee:04 dev flannel.1 dst 192.168.1.40 self permanent"},
		{"no fdb", Want{Kind: KindFDB, MAC: mac("aa:bb:cc:dd:ee:09"), IP: ip("192.168.1.9"), Dev: "flannel.1"}, StateMissing, ""},
		{"device in place", Want{Kind: KindDevice, Dev: "flannel.1", MTU: 1450, MAC: mac("aa:bb:cc:dd:ee:01")},
			StateOK, "flannel.1 mtu 1450 lladdr aa:bb:cc:dd:ee:01 up"},
		{"device with another MAC", Want{Kind: KindDevice, Dev: "flannel.1", MTU: 1450, MAC: mac("aa:bb:cc:dd:ee:10")},
			StateWrong, "flannel.1 mtu 1450 lladdr aa:bb:cc:dd:ee:01 up"},
		{"device with another MTU", Want{Kind: KindDevice, Dev: "flannel.1", MTU: 1400}, StateWrong, "flannel.1 mtu 1450 lladdr aa:bb:cc:dd:ee:01 up"},
		{"no device", Want{Kind: KindDevice, Dev: "flannel0"}, StateMissing, ""},
		{"address in place", Want{Kind: KindAddr, Dev: "flannel.1", Dst: pfx("10.244.1.0/32")}, StateOK, "10.244.1.0/32 dev flannel.1"},
		{"address missing", Want{Kind: KindAddr, Dev: "cni0", Dst: pfx("10.244.7.1/24")}, StateMissing, "10.244.1.1/24 dev cni0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := Compare(c.want, &k)
			if e.State != c.state || e.Have != c.have {
				t.Errorf("Compare = %s, have %q; want %s, have %q", e.State, e.Have, c.state, c.have)
			}
			if e.Want != c.want.String() {
				t.Errorf("Want text %q, want %q", e.Want, c.want.String())
			}
		})
	}
}

// A lease the backend refuses is a bad lease, in the backend's words, and
// nothing is compared or probed for it.
func TestRefusedLeaseIsBadLease(t *testing.T) {
	in := hostgwHealthy(t)
	in.Leases = append(in.Leases,
		lease.Lease{Subnet: pfx("10.244.8.0/24"), Attrs: lease.Attrs{BackendType: "host-gw"}},
		hostgwLease("10.9.0.0/24", "192.168.1.9", 0))
	r := Build(in)
	want := map[string]string{
		"10.244.8.0/24": "refused: 10.244.8.0-24 (PublicIP none) is not a peer: it has no IPv4 PublicIP",
		"10.9.0.0/24":   "refused: 10.9.0.0-24 (PublicIP 192.168.1.9) is not a peer: its subnet is not inside the network 10.244.0.0/16",
	}
	for _, row := range r.Leases {
		msg, ok := want[row.Subnet]
		if !ok {
			continue
		}
		if len(row.Problems) != 1 || row.Problems[0].Code != CodeBadLease || !strings.HasPrefix(row.Problems[0].Message, msg) {
			t.Errorf("row %s: problems %+v, want %s %q", row.Subnet, row.Problems, CodeBadLease, msg)
		}
		if row.Status != "refused" || !strings.HasPrefix("refused: "+row.Refused, msg) {
			t.Errorf("row %s: status %q, refused %q", row.Subnet, row.Status, row.Refused)
		}
		if len(row.Entries) != 0 || len(row.targets) != 0 {
			t.Errorf("row %s: entries %v, probe targets %v; want none", row.Subnet, row.Entries, row.targets)
		}
	}
}

// Without an own lease, a lease without a subnet is still a bad lease.
func TestLeaseWithoutSubnetWithoutOwnLease(t *testing.T) {
	in := noLease(t)
	in.PublicIP = netip.Addr{}
	in.Leases = append(in.Leases, lease.Lease{Attrs: lease.Attrs{PublicIP: ip("192.168.1.8"), BackendType: "host-gw"}})
	r := Build(in)
	row := r.Leases[len(r.Leases)-1]
	if len(row.Problems) != 1 || row.Problems[0].Code != CodeBadLease || !strings.Contains(row.Problems[0].Message, "no IPv4 subnet") {
		t.Errorf("problems %+v, want a bad lease without subnet", row.Problems)
	}
}
