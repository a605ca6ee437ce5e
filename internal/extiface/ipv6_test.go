package extiface

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
)

// dualHost: eth0 (default route) and eth1 are dual-stack, eth2 has IPv4
// only; routes to 2001:db8:50::/48 leave by eth1.
func dualHost() snapshot {
	s := testHost()
	s.ifaces[1].Addrs6 = addrs("2001:db8:0:1::5", "fd00::5")
	s.ifaces[2].Addrs6 = addrs("2001:db8:50::2")
	s.ifaces = append(s.ifaces, ifaceInfo{Name: "v6only", Index: 9, MTU: 1500, Addrs6: addrs("2001:db8:66::1")})
	inner := s.reach
	s.reach = func(dst netip.Addr) (int, netip.Addr, error) {
		switch {
		case netip.MustParsePrefix("2001:db8:50::/48").Contains(dst):
			return 3, netip.MustParseAddr("2001:db8:50::2"), nil
		case netip.MustParsePrefix("2001:db8:99::/48").Contains(dst):
			return 0, netip.Addr{}, errors.New("network is unreachable")
		case dst.Is6():
			return 2, netip.MustParseAddr("2001:db8:0:1::5"), nil
		}
		return inner(dst)
	}
	return s
}

// Both families' addresses come from the one chosen interface: the
// selection flags take IPv6 (flannel-io/flannel#2081) and --public-ip and
// --public-ipv6 never pick two interfaces (flannel-io/flannel#1596).
func TestChooseIPv6(t *testing.T) {
	cases := []struct {
		name string
		o    Options
		want string // "name addr public addr6 public6" or "error: ..."
	}{
		{name: "default route: first IPv6 address", want: "eth0 10.0.0.5 10.0.0.5 2001:db8:0:1::5 2001:db8:0:1::5"},
		{name: "public-ipv6 on the interface is its IPv6 address", o: Options{PublicIPv6: "fd00::5"}, want: "eth0 10.0.0.5 10.0.0.5 fd00::5 fd00::5"},
		{name: "public-ipv6 picks its interface", o: Options{PublicIPv6: "2001:db8:50::2"}, want: "eth1 192.168.50.2 192.168.50.2 2001:db8:50::2 2001:db8:50::2"},
		{name: "public-ip wins the interface over public-ipv6", o: Options{PublicIP: "192.168.50.2", PublicIPv6: "fd00::5"},
			want: "eth1 192.168.50.2 192.168.50.2 2001:db8:50::2 fd00::5"},
		{name: "public-ipv6 behind NAT", o: Options{PublicIPv6: "2001:db8:77::1"}, want: "eth0 10.0.0.5 10.0.0.5 2001:db8:0:1::5 2001:db8:77::1"},
		{name: "iface by IPv6 address", o: Options{Ifaces: []string{"2001:db8:50::2"}}, want: "eth1 192.168.50.2 192.168.50.2 2001:db8:50::2 2001:db8:50::2"},
		{name: "regex on an IPv6 address", o: Options{IfaceRegex: []string{`^fd00:`}}, want: "eth0 10.0.0.5 10.0.0.5 fd00::5 fd00::5"},
		{name: "can-reach an IPv6 destination", o: Options{IfaceCanReach: "2001:db8:50::9"}, want: "eth1 192.168.50.2 192.168.50.2 2001:db8:50::2 2001:db8:50::2"},
		{name: "can-reach IPv6 unreachable", o: Options{IfaceCanReach: "2001:db8:99::1"}, want: "error: --iface-can-reach 2001:db8:99::1: no route: network is unreachable"},
		{name: "interface without IPv6", o: Options{Ifaces: []string{"ll0"}, PublicIP: "169.254.3.3"}, want: "ll0 169.254.3.3 169.254.3.3 invalid IP invalid IP"},
		{name: "bad public-ipv6", o: Options{PublicIPv6: "10.0.0.5"}, want: `error: --public-ipv6 "10.0.0.5": not an IPv6 address`},
		{name: "IPv6-only interface (the agent decides whether IPv4 is needed)", o: Options{Ifaces: []string{"v6only"}}, want: "v6only invalid IP invalid IP 2001:db8:66::1 2001:db8:66::1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, err := choose(dualHost(), c.o)
			got := ""
			if err != nil {
				got = "error: " + err.Error()
			} else {
				got = fmt.Sprintf("%s %s %s %s %s", e.Name, e.Addr, e.PublicIP, e.Addr6, e.PublicIPv6)
			}
			if got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}
