package status

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

// A dual-stack cluster: the table and the JSON show each lease's IPv6
// subnet and PublicIPv6 beside the IPv4 ones, and the IPv6 network in the
// header; a dual-stack peer's IPv6 route is judged beside its IPv4 one,
// and a peer still on IPv4 only has none to judge.
func TestBuildDualStackGolden(t *testing.T) {
	in := hostgwHealthy(t)
	in.Config = mustConfig(t, `{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"host-gw"}}`)
	for i := range in.Leases {
		in.Leases[i].IPv6Subnet = netip.MustParsePrefix("fd00:10:244:" + string(rune('1'+i)) + "::/64")
		in.Leases[i].Attrs.PublicIPv6 = netip.MustParseAddr("2001:db8::" + string(rune('1'+i)))
	}
	in.Leases[2].IPv6Subnet, in.Leases[2].Attrs.PublicIPv6 = netip.Prefix{}, netip.Addr{} // a host still on IPv4 only
	in.SubnetEnv.IPv6Network = []netip.Prefix{pfx("fd00:10:244::/56")}
	in.SubnetEnv.IPv6Subnet = pfx("fd00:10:244:1::/64")
	in.Kernel.Routes = append(in.Kernel.Routes, via("fd00:10:244:2::/64", "2001:db8::2"))
	r := Build(in)
	if !r.OK {
		t.Errorf("dual-stack report not OK: %+v", r)
	}
	if r.Host.IPv6Subnet != "fd00:10:244:1::/64" || r.Leases[1].PublicIPv6 != "2001:db8::2" || r.Leases[2].IPv6Subnet != "" {
		t.Errorf("host %+v, leases %+v", r.Host, r.Leases)
	}
	var b bytes.Buffer
	if err := WriteTable(&b, r); err != nil {
		t.Fatal(err)
	}
	golden(t, "hostgw-dual.txt", b.Bytes())
	b.Reset()
	if err := WriteJSON(&b, r); err != nil {
		t.Fatal(err)
	}
	golden(t, "hostgw-dual.json", b.Bytes())
}

// Both families per peer: a dual-stack peer whose IPv6 route is gone, or
// goes through another host, is a problem even though its IPv4 route is
// fine; a peer whose IPv6 half the agent refuses is one too, with its IPv4
// route still checked.
func TestBuildDualStackPerFamily(t *testing.T) {
	dual := func() Inputs {
		in := hostgwHealthy(t)
		in.Config = mustConfig(t, `{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"host-gw"}}`)
		for i := range in.Leases {
			in.Leases[i].IPv6Subnet = netip.MustParsePrefix("fd00:10:244:" + string(rune('1'+i)) + "::/64")
			in.Leases[i].Attrs.PublicIPv6 = netip.MustParseAddr("2001:db8::" + string(rune('1'+i)))
		}
		return in
	}
	in := dual()
	in.Kernel.Routes = append(in.Kernel.Routes, via("fd00:10:244:3::/64", "2001:db8::9"))
	r := Build(in)
	for _, tc := range []struct{ subnet, code, want string }{
		{"10.244.2.0/24", CodeNoRoute, "no route to fd00:10:244:2::/64"},
		{"10.244.3.0/24", "", "fd00:10:244:3::/64 via 2001:db8::3 dev eth0"},
	} {
		row := rowByNet(t, r, tc.subnet)
		if row.Status != "problem" || len(row.Problems) != 1 || (tc.code != "" && row.Problems[0].Code != tc.code) ||
			!strings.Contains(row.Problems[0].Message+" "+row.Problems[0].Want, tc.want) {
			t.Errorf("%s: %+v; want one problem about its IPv6 route (%q)", tc.subnet, row, tc.want)
		}
		if len(row.Entries) != 2 || row.Entries[0].State != StateOK {
			t.Errorf("%s: entries %+v; want its IPv4 route ok beside the IPv6 one", tc.subnet, row.Entries)
		}
	}

	in = dual()
	in.Leases[1].IPv6Subnet = netip.MustParsePrefix("fd00:99::/64") // outside the IPv6Network
	r = Build(in)
	row := rowByNet(t, r, "10.244.2.0/24")
	if row.Refused != "" || len(row.Problems) != 1 || row.Problems[0].Code != CodeBadLease ||
		!strings.Contains(row.Problems[0].Message, "IPv6 half refused") || !strings.Contains(row.Problems[0].Message, "not inside the IPv6Network") {
		t.Errorf("refused IPv6 half: %+v", row)
	}
	if len(row.Entries) != 1 || row.Entries[0].State != StateOK {
		t.Errorf("refused IPv6 half: entries %+v; want the IPv4 route alone, ok", row.Entries)
	}
}

func rowByNet(t *testing.T, r Report, subnet string) Row {
	t.Helper()
	for _, row := range r.Leases {
		if row.Subnet == subnet {
			return row
		}
	}
	t.Fatalf("no row for %s", subnet)
	return Row{}
}
