package extiface

import (
	"fmt"
	"testing"

	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/nstest"
)

// TestSelectInNamespace runs the selection against a real kernel:
//
//	[ ns: lo 127.0.0.1
//	      eth0 10.0.0.5/24 + 10.0.0.6/24 ──veth── eth0p   default via 10.0.0.1
//	      eth1 192.168.50.2/24, mtu 9000 ──veth── eth1p ]
func TestSelectInNamespace(t *testing.T) {
	nstest.RequireRoot(t)
	ns := nstest.NewNS(t, "x")
	for _, args := range [][]string{
		{"link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"},
		{"link", "add", "eth1", "mtu", "9000", "type", "veth", "peer", "name", "eth1p", "mtu", "9000"},
		{"link", "set", "eth0p", "up"},
		{"link", "set", "eth1p", "up"},
		{"link", "set", "eth0", "up"},
		{"link", "set", "eth1", "up"},
		{"addr", "add", "10.0.0.5/24", "dev", "eth0"},
		{"addr", "add", "10.0.0.6/24", "dev", "eth0"},
		{"addr", "add", "192.168.50.2/24", "dev", "eth1"},
		{"route", "add", "default", "via", "10.0.0.1", "dev", "eth0"},
	} {
		nstest.Exec(t, ns, append([]string{"ip"}, args...)...)
	}
	h, err := netns.Handle(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	check := func(o Options, want string) {
		t.Helper()
		e, err := Select(h, o)
		var got string
		if err != nil {
			got = "error: " + err.Error()
		} else {
			got = fmt.Sprintf("%s %d %s %s", e.Name, e.MTU, e.Addr, e.PublicIP)
		}
		if got != want {
			t.Errorf("Select(%+v):\n got  %s\n want %s", o, got, want)
		}
	}
	check(Options{}, "eth0 1500 10.0.0.5 10.0.0.5")
	check(Options{PublicIP: "203.0.113.5"}, "eth0 1500 10.0.0.5 203.0.113.5")
	check(Options{PublicIP: "192.168.50.2"}, "eth1 9000 192.168.50.2 192.168.50.2")
	check(Options{Ifaces: []string{"eth1"}}, "eth1 9000 192.168.50.2 192.168.50.2")
	check(Options{Ifaces: []string{"10.0.0.6"}}, "eth0 1500 10.0.0.6 10.0.0.6")
	check(Options{Ifaces: []string{"eth9"}}, "error: --iface eth9: no such interface")
	check(Options{IfaceRegex: []string{`^192\.`}}, "eth1 9000 192.168.50.2 192.168.50.2")
	check(Options{IfaceRegex: []string{`^eth0p$`}}, "error: interface eth0p has no IPv4 address")
	check(Options{IfaceCanReach: "192.168.50.9"}, "eth1 9000 192.168.50.2 192.168.50.2")
	check(Options{IfaceCanReach: "8.8.8.8"}, "eth0 1500 10.0.0.5 10.0.0.5")

	nstest.Exec(t, ns, "ip", "route", "del", "default")
	check(Options{}, "error: no default route; pass --iface or --public-ip")
	check(Options{PublicIP: "10.0.0.6"}, "eth0 1500 10.0.0.6 10.0.0.6")
	check(Options{IfaceCanReach: "8.8.8.8"}, "error: --iface-can-reach 8.8.8.8: no route: network is unreachable")
}

// TestSelectIPv6InNamespace: the IPv6 address comes from the chosen
// interface, permanent before deprecated, never link-local, and the
// selection flags take IPv6.
func TestSelectIPv6InNamespace(t *testing.T) {
	nstest.RequireRoot(t)
	ns := nstest.NewNS(t, "x6")
	for _, args := range [][]string{
		{"link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"},
		{"link", "add", "eth1", "type", "veth", "peer", "name", "eth1p"},
		{"link", "set", "eth0p", "up"},
		{"link", "set", "eth1p", "up"},
		{"link", "set", "eth0", "up"},
		{"link", "set", "eth1", "up"},
		{"addr", "add", "10.0.0.5/24", "dev", "eth0"},
		{"-6", "addr", "add", "fd00::9/64", "dev", "eth0", "nodad", "preferred_lft", "0"},
		{"-6", "addr", "add", "2001:db8:1::5/64", "dev", "eth0", "nodad"},
		{"addr", "add", "192.168.50.2/24", "dev", "eth1"},
		{"-6", "addr", "add", "2001:db8:50::2/64", "dev", "eth1", "nodad"},
		{"route", "add", "default", "via", "10.0.0.1", "dev", "eth0"},
	} {
		nstest.Exec(t, ns, append([]string{"ip"}, args...)...)
	}
	h, err := netns.Handle(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	check := func(o Options, want string) {
		t.Helper()
		e, err := Select(h, o)
		var got string
		if err != nil {
			got = "error: " + err.Error()
		} else {
			got = fmt.Sprintf("%s %s %s %s", e.Name, e.Addr, e.Addr6, e.PublicIPv6)
		}
		if got != want {
			t.Errorf("Select(%+v):\n got  %s\n want %s", o, got, want)
		}
	}
	check(Options{}, "eth0 10.0.0.5 2001:db8:1::5 2001:db8:1::5")
	check(Options{PublicIPv6: "fd00::9"}, "eth0 10.0.0.5 fd00::9 fd00::9")
	check(Options{PublicIPv6: "2001:db8:50::2"}, "eth1 192.168.50.2 2001:db8:50::2 2001:db8:50::2")
	check(Options{Ifaces: []string{"2001:db8:50::2"}}, "eth1 192.168.50.2 2001:db8:50::2 2001:db8:50::2")
	check(Options{IfaceRegex: []string{`^2001:db8:50:`}}, "eth1 192.168.50.2 2001:db8:50::2 2001:db8:50::2")
	check(Options{IfaceCanReach: "2001:db8:50::9"}, "eth1 192.168.50.2 2001:db8:50::2 2001:db8:50::2")
	check(Options{IfaceRegex: []string{`^fe80:`}}, `error: no interface matches --iface-regex "^fe80:"`)
}
