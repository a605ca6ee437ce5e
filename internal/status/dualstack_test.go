package status

import (
	"bytes"
	"net/netip"
	"testing"
)

// A dual-stack cluster: the table and the JSON show each lease's IPv6
// subnet and PublicIPv6 beside the IPv4 ones, and the IPv6 network in the
// header; the IPv4 checks are unchanged.
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
