package bench

import (
	"net/netip"
	"testing"
)

func TestNthSubnetAndAddr(t *testing.T) {
	n := netip.MustParsePrefix("100.64.0.0/10")
	for _, c := range []struct {
		i    int
		want string
	}{{0, "100.64.0.0/24"}, {1, "100.64.1.0/24"}, {256, "100.65.0.0/24"}, {16383, "100.127.255.0/24"}} {
		if got := nthSubnet(n, 24, c.i).String(); got != c.want {
			t.Errorf("nthSubnet(%d) = %s, want %s", c.i, got, c.want)
		}
	}
	p := netip.MustParsePrefix("10.64.0.0/16")
	if got := nthAddr(p, 1).String(); got != "10.64.0.1" {
		t.Errorf("nthAddr(1) = %s", got)
	}
	if got := nthAddr(p, 5000).String(); got != "10.64.19.136" {
		t.Errorf("nthAddr(5000) = %s", got)
	}
}
