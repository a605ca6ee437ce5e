package kernel

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func mac(s string) MAC {
	m, err := ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func TestMAC(t *testing.T) {
	m, err := ParseMAC("0E:AB:cd:00:11:FF")
	if err != nil || m.String() != "0e:ab:cd:00:11:ff" {
		t.Errorf("ParseMAC = %s, %v", m, err)
	}
	if _, err := ParseMAC("00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01"); err == nil {
		t.Error("ParseMAC accepted a 20-byte address")
	}
	if _, ok := MACFrom(net.HardwareAddr{1, 2, 3}); ok {
		t.Error("MACFrom accepted 3 bytes")
	}
	hw := m.HardwareAddr()
	hw[0] = 0xff
	if m[0] != 0x0e {
		t.Error("HardwareAddr shares memory with the MAC")
	}
	for s, want := range map[string]bool{
		"0e:ab:cd:00:11:ff": true,
		"00:00:00:00:00:00": false,
		"01:00:5e:00:00:01": false,
		"ff:ff:ff:ff:ff:ff": false,
	} {
		if got := mac(s).Unicast(); got != want {
			t.Errorf("%s.Unicast() = %v", s, got)
		}
	}
}

func neighStrings(ops []NeighOp) []string {
	var out []string
	for _, o := range ops {
		s := o.String()
		if o.Prev != (Neigh{}) {
			s += " (was " + o.Prev.String() + ")"
		}
		out = append(out, s)
	}
	return out
}

func fdbStrings(ops []FDBOp) []string {
	var out []string
	for _, o := range ops {
		s := o.String()
		if o.Prev != (FDB{}) {
			s += " (was " + o.Prev.String() + ")"
		}
		out = append(out, s)
	}
	return out
}

func wantOps(t *testing.T, name string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n%s\nwant:\n%s", name, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestPlanNeighs(t *testing.T) {
	n := func(ip, m string, perm bool) Neigh {
		return Neigh{LinkIndex: 5, IP: netip.MustParseAddr(ip), MAC: mac(m), Permanent: perm}
	}
	permanent := func(n Neigh) bool { return n.Permanent }
	desired := []Neigh{
		n("10.244.2.0", "0e:00:00:00:00:02", true),
		n("10.244.3.0", "0e:00:00:00:00:03", true),
		n("10.244.4.0", "0e:00:00:00:00:04", true),
		n("10.244.5.0", "0e:00:00:00:00:05", true),
	}
	installed := []Neigh{
		n("10.244.2.0", "0e:00:00:00:00:02", true),  // as wanted
		n("10.244.3.0", "0e:00:00:00:00:99", true),  // other MAC
		n("10.244.4.0", "0e:00:00:00:00:04", false), // learned, not permanent
		n("10.244.9.0", "0e:00:00:00:00:09", true),  // departed peer
		n("224.0.0.22", "01:00:5e:00:00:16", false), // the kernel's own
	}
	wantOps(t, "plan", neighStrings(PlanNeighs(desired, installed, permanent)), []string{
		"replace 10.244.3.0 lladdr 0e:00:00:00:00:03 dev if5 nud permanent (was 10.244.3.0 lladdr 0e:00:00:00:00:99 dev if5 nud permanent)",
		"replace 10.244.4.0 lladdr 0e:00:00:00:00:04 dev if5 nud permanent (was 10.244.4.0 lladdr 0e:00:00:00:00:04 dev if5)",
		"replace 10.244.5.0 lladdr 0e:00:00:00:00:05 dev if5 nud permanent",
		"del 10.244.9.0 lladdr 0e:00:00:00:00:09 dev if5 nud permanent",
	})
	if ops := PlanNeighs(desired, desired, permanent); len(ops) != 0 {
		t.Errorf("installed == desired planned %v", ops)
	}
}

// TestPlanNeighsIPv6 plans NDP entries as ARP ones, in one list with
// them (IPv4 sorts first), and by both of PlanNeighs's paths alike; an
// IPv6 FDB remote (a VXLAN device over an IPv6 underlay) is planned as an
// IPv4 one.
func TestPlanNeighsIPv6(t *testing.T) {
	n := func(ip, m string, perm bool) Neigh {
		return Neigh{LinkIndex: 6, IP: netip.MustParseAddr(ip), MAC: mac(m), Permanent: perm}
	}
	permanent := func(n Neigh) bool { return n.Permanent }
	desired := []Neigh{
		n("10.244.2.0", "0e:00:00:00:00:02", true),
		n("fd00:10:244:2::", "0e:00:00:00:06:02", true),
		n("fd00:10:244:3::", "0e:00:00:00:06:03", true),
	}
	installed := []Neigh{
		n("10.244.2.0", "0e:00:00:00:00:02", true),
		n("fd00:10:244:3::", "0e:00:00:00:06:99", true),    // other MAC
		n("fd00:10:244:9::", "0e:00:00:00:06:09", true),    // departed peer
		n("fe80::c:ff:fe00:1", "0e:00:00:00:00:01", false), // the kernel's own
	}
	want := []string{
		"replace fd00:10:244:2:: lladdr 0e:00:00:00:06:02 dev if6 nud permanent",
		"replace fd00:10:244:3:: lladdr 0e:00:00:00:06:03 dev if6 nud permanent (was fd00:10:244:3:: lladdr 0e:00:00:00:06:99 dev if6 nud permanent)",
		"del fd00:10:244:9:: lladdr 0e:00:00:00:06:09 dev if6 nud permanent",
	}
	wantOps(t, "sorted plan", neighStrings(PlanNeighs(desired, installed, permanent)), want)
	// The kernel dumps the ARP and NDP tables in hash order.
	shuffled := []Neigh{installed[3], installed[1], installed[0], installed[2]}
	wantOps(t, "unsorted plan", neighStrings(PlanNeighs(desired, shuffled, permanent)), want)

	f := func(m, dst string) FDB {
		return FDB{LinkIndex: 6, MAC: mac(m), Dst: netip.MustParseAddr(dst), Permanent: true}
	}
	wantOps(t, "fdb plan", fdbStrings(PlanFDB(
		[]FDB{f("0e:00:00:00:06:02", "fd70::2")},
		[]FDB{f("0e:00:00:00:06:02", "fd70::99"), f("0e:00:00:00:06:09", "fd70::9")},
		func(FDB) bool { return true })), []string{
		"replace 0e:00:00:00:06:02 dev if6 dst fd70::2 self permanent (was 0e:00:00:00:06:02 dev if6 dst fd70::99 self permanent)",
		"del 0e:00:00:00:06:09 dev if6 dst fd70::9 self permanent",
	})
}

func TestPlanFDB(t *testing.T) {
	f := func(m, dst string, perm bool) FDB {
		return FDB{LinkIndex: 5, MAC: mac(m), Dst: netip.MustParseAddr(dst), Permanent: perm}
	}
	permanent := func(f FDB) bool { return f.Permanent }
	desired := []FDB{
		f("0e:00:00:00:00:02", "192.168.1.2", true),
		f("0e:00:00:00:00:03", "192.168.1.3", true),
		f("0e:00:00:00:00:04", "192.168.1.4", true),
		f("0e:00:00:00:00:05", "192.168.1.5", true),
		f("0e:00:00:00:00:06", "192.168.1.6", true),
		f("0e:00:00:00:00:07", "192.168.1.7", true),
	}
	otherVNI := f("0e:00:00:00:00:07", "192.168.1.7", true)
	otherVNI.VNI = 99
	installed := []FDB{
		f("0e:00:00:00:00:02", "192.168.1.2", true),  // as wanted
		f("0e:00:00:00:00:03", "192.168.1.99", true), // peer moved
		f("0e:00:00:00:00:04", "192.168.1.40", true), // appended remotes, the wanted one second
		f("0e:00:00:00:00:04", "192.168.1.4", true),
		f("0e:00:00:00:00:05", "192.168.1.50", true), // two wrong remotes
		f("0e:00:00:00:00:05", "192.168.1.51", true),
		f("0e:00:00:00:00:06", "192.168.1.6", false), // learned
		otherVNI,
		f("0e:00:00:00:00:09", "192.168.1.9", true),   // departed peer
		f("0e:00:00:00:00:10", "192.168.1.10", false), // learned, someone else's
	}
	wantOps(t, "plan", fdbStrings(PlanFDB(desired, installed, permanent)), []string{
		"replace 0e:00:00:00:00:03 dev if5 dst 192.168.1.3 self permanent (was 0e:00:00:00:00:03 dev if5 dst 192.168.1.99 self permanent)",
		"replace 0e:00:00:00:00:05 dev if5 dst 192.168.1.5 self permanent (was 0e:00:00:00:00:05 dev if5 dst 192.168.1.50 self permanent)",
		"replace 0e:00:00:00:00:06 dev if5 dst 192.168.1.6 self permanent (was 0e:00:00:00:00:06 dev if5 dst 192.168.1.6 self)",
		"replace 0e:00:00:00:00:07 dev if5 dst 192.168.1.7 self permanent (was 0e:00:00:00:00:07 dev if5 dst 192.168.1.7 vni 99 self permanent)",
		"del 0e:00:00:00:00:04 dev if5 dst 192.168.1.40 self permanent",
		"del 0e:00:00:00:00:05 dev if5 dst 192.168.1.51 self permanent",
		"del 0e:00:00:00:00:09 dev if5 dst 192.168.1.9 self permanent",
	})
	if ops := PlanFDB(desired, desired, permanent); len(ops) != 0 {
		t.Errorf("installed == desired planned %v", ops)
	}
}

func TestPeerRouteOwner(t *testing.T) {
	owns := PeerRouteOwner(netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.244.1.0/24"))
	r := func(dst, gw string, onlink bool) Route {
		rt := Route{Dst: netip.MustParsePrefix(dst), LinkIndex: 3, OnLink: onlink}
		if gw != "" {
			rt.Gw = netip.MustParseAddr(gw)
		}
		return rt
	}
	for _, tc := range []struct {
		r    Route
		want bool
	}{
		{r("10.244.2.0/24", "10.244.2.0", true), true},   // vxlan
		{r("10.244.2.0/24", "192.168.1.2", false), true}, // host-gw, direct
		{r("10.244.2.0/24", "", false), false},           // connected
		{r("10.244.1.0/24", "192.168.1.9", false), false},
		{r("10.244.1.128/25", "192.168.1.9", false), false},
		{r("10.244.0.0/16", "192.168.1.9", false), false},
		{r("10.99.0.0/24", "192.168.1.9", false), false},
		{r("0.0.0.0/0", "192.168.1.254", false), false},
		{r("fd00:50:0:2::/64", "fd00:4:7::22", false), false}, // the other family's rule owns it
	} {
		if got := owns(tc.r); got != tc.want {
			t.Errorf("owns(%s) = %v", tc.r, got)
		}
	}
	// The IPv6Network's rule: the same shape, IPv6 routes only.
	owns6 := PeerRouteOwner(netip.MustParsePrefix("fd00:50::/56"), netip.MustParsePrefix("fd00:50:0:1::/64"))
	for _, tc := range []struct {
		r    Route
		want bool
	}{
		{r("fd00:50:0:2::/64", "fd00:4:7::22", false), true},
		{r("fd00:50:0:2::/64", "fe80::2", false), true}, // flannel's, via a link-local gateway
		{r("fd00:50:0:2::/64", "", false), false},
		{r("fd00:50:0:1::/64", "fd00:4:7::29", false), false},
		{r("fd00:50::/56", "fd00:4:7::29", false), false},
		{r("fd00:99::/64", "fd00:4:7::29", false), false},
		{r("::/0", "fd00:4:7::1", false), false},
		{r("10.244.2.0/24", "192.168.1.2", false), false},
	} {
		if got := owns6(tc.r); got != tc.want {
			t.Errorf("owns6(%s) = %v", tc.r, got)
		}
	}
	// A config without IPv6 has no IPv6Network: that rule owns nothing.
	if PeerRouteOwner(netip.Prefix{}, netip.Prefix{})(r("fd00:50:0:2::/64", "fd00:4:7::22", false)) {
		t.Error("the zero network's rule owns an IPv6 route")
	}
}
