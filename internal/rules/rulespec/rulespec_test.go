package rulespec

import (
	"net/netip"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	p := netip.MustParsePrefix
	cases := []struct {
		name string
		s    Spec
		err  string // "" = valid
	}{
		{"empty", Spec{}, ""},
		{"ipv4", Spec{Network: p("10.244.0.0/16"), Subnet: p("10.244.1.0/24")}, ""},
		{"subnet.env style host bits", Spec{Network: p("10.244.0.0/16"), Subnet: p("10.244.1.1/24")}, ""},
		{"dual stack", Spec{Network: p("10.244.0.0/16"), Subnet: p("10.244.1.0/24"),
			IPv6Network: p("fd10::/48"), IPv6Subnet: p("fd10:0:0:1::/64")}, ""},
		{"outside", Spec{Network: p("10.244.0.0/16"), Subnet: p("10.245.1.0/24")}, "not inside"},
		{"wider than network", Spec{Network: p("10.244.0.0/16"), Subnet: p("10.0.0.0/8")}, "not inside"},
		{"no subnet", Spec{Network: p("10.244.0.0/16")}, "without a subnet"},
		{"no network", Spec{Subnet: p("10.244.1.0/24")}, "without a network"},
		{"v6 in v4 slot", Spec{Network: p("fd10::/48"), Subnet: p("fd10:0:0:1::/64")}, "must both be ipv4"},
	}
	for _, tc := range cases {
		err := tc.s.Validate()
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: Validate() = %v, want %q", tc.name, err, tc.err)
		}
	}
}

func TestFamilies(t *testing.T) {
	s := Spec{Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix("10.244.1.1/24")}.Normalized()
	f := s.Families()
	if !f[0].Enabled() || f[1].Enabled() || f[0].Subnet.String() != "10.244.1.0/24" {
		t.Errorf("families = %+v", f)
	}
	if f[0].Name() != "ipv4" || f[1].Name() != "ipv6" || f[0].Multicast().String() != "224.0.0.0/4" || f[1].Multicast().String() != "ff00::/8" {
		t.Errorf("names/multicast wrong: %+v", f)
	}
}

func TestKeepSourceFor(t *testing.T) {
	s := Spec{Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix("10.244.1.0/24"),
		IPv6Network: netip.MustParsePrefix("fd10::/48"), IPv6Subnet: netip.MustParsePrefix("fd10:0:0:1::/64")}
	v4, v6 := s.Families()[0], s.Families()[1]
	if v4.Index() != 0 || v6.Index() != 1 {
		t.Fatalf("Index: %d %d", v4.Index(), v6.Index())
	}
	if s.KeepSourceFor(v4) || s.AnyNAT() {
		t.Error("keep-source without being asked for")
	}
	s.KeepSource = true
	if !s.KeepSourceFor(v4) || !s.KeepSourceFor(v6) || !s.AnyNAT() {
		t.Error("asked for, not deferred: want keep-source in both families")
	}
	s.KeepSourceDeferred = [2]bool{true, false}
	if s.KeepSourceFor(v4) || !s.KeepSourceFor(v6) || !s.AnyNAT() {
		t.Error("IPv4 deferred: want keep-source in IPv6 only")
	}
	s.KeepSourceDeferred = [2]bool{true, true}
	if s.AnyNAT() {
		t.Error("both deferred, no --ip-masq: AnyNAT")
	}
	s.Masq = true
	if !s.AnyNAT() {
		t.Error("--ip-masq: no AnyNAT")
	}
}
