package extiface

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
)

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// testHost: lo, eth0 (default route, two addresses), eth1, ens5 without
// IPv4, and a link-local-only interface.
func testHost() snapshot {
	return snapshot{
		ifaces: []ifaceInfo{
			{Name: "lo", Index: 1, MTU: 65536, Loopback: true, Addrs: addrs("127.0.0.1")},
			{Name: "eth0", Index: 2, MTU: 1500, Addrs: addrs("10.0.0.5", "10.0.0.6")},
			{Name: "eth1", Index: 3, MTU: 9000, Addrs: addrs("192.168.50.2")},
			{Name: "ens5", Index: 4, MTU: 1500},
			{Name: "ll0", Index: 5, MTU: 1500, Addrs: addrs("169.254.3.3")},
			{Name: "nomtu", Index: 6, Addrs: addrs("172.16.0.1")},
		},
		defaultIndex: 2,
		reach: func(dst netip.Addr) (int, netip.Addr, error) {
			switch {
			case netip.MustParsePrefix("192.168.50.0/24").Contains(dst):
				return 3, netip.MustParseAddr("192.168.50.2"), nil
			case netip.MustParsePrefix("203.0.113.0/24").Contains(dst):
				return 0, netip.Addr{}, errors.New("network is unreachable")
			}
			return 2, netip.MustParseAddr("10.0.0.5"), nil
		},
	}
}

func TestChoose(t *testing.T) {
	cases := []struct {
		name string
		host func(*snapshot)
		o    Options
		want string // "name index mtu addr public", or "error: <message>"
	}{
		{name: "default route", want: "eth0 2 1500 10.0.0.5 10.0.0.5"},
		{name: "public IP on the default interface", o: Options{PublicIP: "10.0.0.6"}, want: "eth0 2 1500 10.0.0.6 10.0.0.6"},
		{name: "public IP picks its interface", o: Options{PublicIP: "192.168.50.2"}, want: "eth1 3 9000 192.168.50.2 192.168.50.2"},
		{name: "public IP behind NAT falls back to the default route", o: Options{PublicIP: "203.0.113.5"}, want: "eth0 2 1500 10.0.0.5 203.0.113.5"},
		{name: "no default route", host: func(s *snapshot) { s.defaultIndex = 0 }, want: "error: no default route; pass --iface or --public-ip"},
		{name: "bad public IP", o: Options{PublicIP: "eth0"}, want: `error: --public-ip "eth0": not an IPv4 address`},
		{name: "IPv6 public IP", o: Options{PublicIP: "2001:db8::1"}, want: `error: --public-ip "2001:db8::1": not an IPv4 address`},

		{name: "iface by name", o: Options{Ifaces: []string{"eth1"}}, want: "eth1 3 9000 192.168.50.2 192.168.50.2"},
		{name: "iface by IP takes that IP", o: Options{Ifaces: []string{"10.0.0.6"}}, want: "eth0 2 1500 10.0.0.6 10.0.0.6"},
		{name: "iface: first usable wins", o: Options{Ifaces: []string{"eth9", "eth1", "eth0"}}, want: "eth1 3 9000 192.168.50.2 192.168.50.2"},
		{name: "iface missing", o: Options{Ifaces: []string{"eth9"}}, want: "error: --iface eth9: no such interface"},
		{name: "iface: every one missing", o: Options{Ifaces: []string{"eth9", "10.9.9.9"}},
			want: "error: --iface eth9: no such interface\n--iface 10.9.9.9: no interface has this address"},
		{name: "iface wins over regex and public IP", o: Options{Ifaces: []string{"eth1"}, IfaceRegex: []string{"eth0"}, PublicIP: "10.0.0.5"},
			want: "eth1 3 9000 192.168.50.2 10.0.0.5"},
		{name: "iface without IPv4", o: Options{Ifaces: []string{"ens5"}}, want: "error: interface ens5 has no IPv4 address"},
		{name: "iface with only link-local", o: Options{Ifaces: []string{"ll0"}}, want: "error: interface ll0 has no IPv4 address"},
		{name: "iface with MTU 0", o: Options{Ifaces: []string{"nomtu"}}, want: "error: interface nomtu has MTU 0"},

		{name: "regex matches an address first", o: Options{IfaceRegex: []string{`^192\.168\.`}}, want: "eth1 3 9000 192.168.50.2 192.168.50.2"},
		{name: "regex picks the matching address of a multi-address interface", o: Options{IfaceRegex: []string{`\.6$`}},
			want: "eth0 2 1500 10.0.0.6 10.0.0.6"},
		{name: "regex matches a name", o: Options{IfaceRegex: []string{"^eth1$"}}, want: "eth1 3 9000 192.168.50.2 192.168.50.2"},
		{name: "regexes in order", o: Options{IfaceRegex: []string{"^wlan", "^eth"}}, want: "eth0 2 1500 10.0.0.5 10.0.0.5"},
		{name: "regex never picks loopback", o: Options{IfaceRegex: []string{"^127\\.", "^lo$"}},
			want: `error: no interface matches --iface-regex "^127\\.", "^lo$"`},
		{name: "regex matches nothing", o: Options{IfaceRegex: []string{"^wlan", "^bond"}}, want: `error: no interface matches --iface-regex "^wlan", "^bond"`},
		{name: "bad regex", o: Options{IfaceRegex: []string{"("}}, want: "error: --iface-regex \"(\": error parsing regexp: missing closing ): `(`"},

		{name: "can-reach", o: Options{IfaceCanReach: "192.168.50.77"}, want: "eth1 3 9000 192.168.50.2 192.168.50.2"},
		{name: "can-reach via default", o: Options{IfaceCanReach: "8.8.8.8"}, want: "eth0 2 1500 10.0.0.5 10.0.0.5"},
		{name: "can-reach unreachable", o: Options{IfaceCanReach: "203.0.113.9"}, want: "error: --iface-can-reach 203.0.113.9: no route: network is unreachable"},
		{name: "can-reach not an IP", o: Options{IfaceCanReach: "gateway"}, want: `error: --iface-can-reach "gateway": not an IP address`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := testHost()
			if c.host != nil {
				c.host(&s)
			}
			e, err := choose(s, c.o)
			var got string
			if err != nil {
				got = "error: " + err.Error()
			} else {
				got = fmt.Sprintf("%s %d %d %s %s", e.Name, e.Index, e.MTU, e.Addr, e.PublicIP)
			}
			if got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}
