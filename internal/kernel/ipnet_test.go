package kernel

import (
	"net"
	"net/netip"
	"testing"
)

func TestIPNetRoundTrip(t *testing.T) {
	for _, s := range []string{"10.244.1.0/24", "10.244.1.0/32", "0.0.0.0/0", "fd00:10:244:1::/64", "::/0", "fd00::1/128"} {
		p := netip.MustParsePrefix(s)
		n := IPNet(p)
		if n.String() != s {
			t.Errorf("IPNet(%s) = %s", s, n)
		}
		back, ok := PrefixOf(n)
		if !ok || back != p {
			t.Errorf("PrefixOf(IPNet(%s)) = %s, %v", s, back, ok)
		}
	}
	// netlink reports IPv4 addresses in 16 bytes at times.
	mapped := &net.IPNet{IP: net.ParseIP("10.1.2.3"), Mask: net.CIDRMask(24, 32)}
	if p, ok := PrefixOf(mapped); !ok || p != netip.MustParsePrefix("10.1.2.3/24") {
		t.Errorf("PrefixOf(16-byte IPv4) = %s, %v", p, ok)
	}
	if _, ok := PrefixOf(nil); ok {
		t.Error("PrefixOf(nil) is ok")
	}
	if _, ok := PrefixOf(&net.IPNet{IP: []byte{1, 2, 3}}); ok {
		t.Error("PrefixOf(3-byte address) is ok")
	}
}
