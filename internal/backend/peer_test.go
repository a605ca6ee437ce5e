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
