package backend

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/lease"
)

func TestPeerProblem(t *testing.T) {
	network := netip.MustParsePrefix("10.244.0.0/16")
	own := lease.Lease{Subnet: netip.MustParsePrefix("10.244.1.0/24")}
	me := netip.MustParseAddr("192.168.1.1")
	peer := func(subnet, pub string) lease.Lease {
		l := lease.Lease{Subnet: netip.MustParsePrefix(subnet)}
		if pub != "" {
			l.Attrs.PublicIP = netip.MustParseAddr(pub)
		}
		return l
	}
	for _, tc := range []struct {
		name string
		l    lease.Lease
		want string
	}{
		{"good peer", peer("10.244.2.0/24", "192.168.1.2"), ""},
		{"outside the network", peer("10.9.2.0/24", "192.168.1.2"), "not inside the network 10.244.0.0/16"},
		{"the whole network", peer("10.244.0.0/16", "192.168.1.2"), "not inside the network"},
		{"overlaps own", peer("10.244.1.0/25", "192.168.1.2"), "overlaps this host's 10.244.1.0/24"},
		{"no public IP", peer("10.244.2.0/24", ""), "no IPv4 PublicIP"},
		{"unspecified public IP", peer("10.244.2.0/24", "0.0.0.0"), "no IPv4 PublicIP"},
		{"IPv6 public IP", peer("10.244.2.0/24", "fd00::2"), "no IPv4 PublicIP"},
		{"our own public IP", peer("10.244.2.0/24", "192.168.1.1"), "this host's own PublicIP"},
		{"IPv6 subnet", peer("fd00:1::/64", "192.168.1.2"), "no IPv4 subnet"},
	} {
		got := PeerProblem(tc.l, network, own, me)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: PeerProblem = %q, want %q", tc.name, got, tc.want)
		}
	}
	if n := PeerName(peer("10.244.2.0/24", "")); n != "none" {
		t.Errorf("PeerName without address = %q", n)
	}
}

func TestPeerV6Problem(t *testing.T) {
	network6 := netip.MustParsePrefix("fd00:50::/56")
	own := lease.Lease{Subnet: netip.MustParsePrefix("10.50.1.0/24"), IPv6Subnet: netip.MustParsePrefix("fd00:50:0:1::/64")}
	me := netip.MustParseAddr("fd00:4:7::21")
	peer := func(subnet6, pub6 string) lease.Lease {
		l := lease.Lease{Subnet: netip.MustParsePrefix("10.50.2.0/24")}
		l.Attrs.PublicIP = netip.MustParseAddr("10.4.7.22")
		if subnet6 != "" {
			l.IPv6Subnet = netip.MustParsePrefix(subnet6)
		}
		if pub6 != "" {
			l.Attrs.PublicIPv6 = netip.MustParseAddr(pub6)
		}
		return l
	}
	for _, tc := range []struct {
		name string
		l    lease.Lease
		want string
	}{
		{"good peer", peer("fd00:50:0:2::/64", "fd00:4:7::22"), ""},
		{"no IPv6 subnet", peer("", "fd00:4:7::22"), "no IPv6 subnet"},
		{"outside the IPv6Network", peer("fd00:99:0:2::/64", "fd00:4:7::22"), "not inside the IPv6Network fd00:50::/56"},
		{"the whole IPv6Network", peer("fd00:50::/56", "fd00:4:7::22"), "not inside the IPv6Network"},
		{"no PublicIPv6", peer("fd00:50:0:2::/64", ""), "no PublicIPv6"},
		{"IPv4 PublicIPv6", peer("fd00:50:0:2::/64", "10.4.7.22"), "no PublicIPv6"},
		{"unspecified PublicIPv6", peer("fd00:50:0:2::/64", "::"), "no PublicIPv6"},
		{"overlaps own", peer("fd00:50:0:1::/65", "fd00:4:7::22"), "overlaps this host's fd00:50:0:1::/64"},
		{"our own PublicIPv6", peer("fd00:50:0:2::/64", "fd00:4:7::21"), "this host's own PublicIPv6"},
	} {
		got := PeerV6Problem(tc.l, network6, own, me)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: PeerV6Problem = %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := LeaseV6Problem(peer("fd00:50:0:2::/64", "fd00:4:7::22"), netip.Prefix{}); !strings.Contains(got, "does not enable IPv6") {
		t.Errorf("LeaseV6Problem without an IPv6Network = %q", got)
	}
}
