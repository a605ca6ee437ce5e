package rules

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestClassifyNAT(t *testing.T) {
	postrouting := 4
	cases := []struct {
		name    string
		chains  []nftChain
		legacy  [2][]string
		keep    [2]bool
		foreign [2][]string
	}{
		{name: "nothing"},
		{
			name: "filter chains only, weft's and iptables-nft's",
			chains: []nftChain{
				{family: nfprotoIPv4, table: "flannel-ipv4", name: "forward", typ: "filter", hook: 2},
				{family: nfprotoIPv4, table: "filter", name: "FORWARD", typ: "filter", hook: 2},
				{family: nfprotoIPv4, table: "filter", name: "FLANNEL-FWD", hook: -1},
			},
			legacy: [2][]string{{"filter", "mangle"}, {"raw"}},
		},
		{
			name: "weft's own nat chains are not foreign",
			chains: []nftChain{
				{family: nfprotoIPv4, table: "flannel-ipv4", name: "postrtg", typ: "nat", hook: postrouting},
				{family: nfprotoIPv6, table: "flannel-ipv6", name: "keepsrc", typ: "nat", hook: postrouting},
			},
			keep: [2]bool{false, true},
		},
		{
			name: "weft's table name in the wrong family is someone else's",
			chains: []nftChain{
				{family: nfprotoInet, table: "flannel-ipv4", name: "keepsrc", typ: "nat", hook: postrouting},
			},
			foreign: [2][]string{
				{"nft table inet flannel-ipv4 chain keepsrc (type nat hook postrouting)"},
				{"nft table inet flannel-ipv4 chain keepsrc (type nat hook postrouting)"},
			},
		},
		{
			name: "iptables-nft nat table, named once for all its base chains",
			chains: []nftChain{
				{family: nfprotoIPv4, table: "nat", name: "PREROUTING", typ: "nat", hook: 0},
				{family: nfprotoIPv4, table: "nat", name: "POSTROUTING", typ: "nat", hook: postrouting},
				{family: nfprotoIPv4, table: "nat", name: "DOCKER", hook: -1},
			},
			foreign: [2][]string{{"iptables-nft nat table (nft table ip nat)"}},
		},
		{
			name: "weft's WEFT-KEEPSRC in iptables-nft: installed, and the nat table hooks NAT",
			chains: []nftChain{
				{family: nfprotoIPv6, table: "nat", name: "POSTROUTING", typ: "nat", hook: postrouting},
				{family: nfprotoIPv6, table: "nat", name: "WEFT-KEEPSRC", hook: -1},
			},
			keep:    [2]bool{false, true},
			foreign: [2][]string{nil, {"ip6tables-nft nat table (nft table ip6 nat)"}},
		},
		{
			name: "Docker's nftables firewall and an inet nat chain",
			chains: []nftChain{
				{family: nfprotoIPv4, table: "docker-bridges", name: "nat-postrouting-out", typ: "nat", hook: postrouting},
				{family: nfprotoInet, table: "kube-proxy", name: "nat-prerouting", typ: "nat", hook: 0},
				{family: nfprotoInet, table: "kube-proxy", name: "filter-forward", typ: "filter", hook: 2},
			},
			foreign: [2][]string{
				{"nft table ip docker-bridges chain nat-postrouting-out (type nat hook postrouting)", "nft table inet kube-proxy chain nat-prerouting (type nat hook prerouting)"},
				{"nft table inet kube-proxy chain nat-prerouting (type nat hook prerouting)"},
			},
		},
		{
			name:    "iptables-legacy nat tables",
			legacy:  [2][]string{{"filter", "nat"}, {"nat"}},
			foreign: [2][]string{{"iptables-legacy nat table"}, {"ip6tables-legacy nat table"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := classifyNAT(tc.chains, tc.legacy)
			if got.keepSource != tc.keep {
				t.Errorf("keepSource = %v, want %v", got.keepSource, tc.keep)
			}
			for i := range got.foreign {
				if !slices.Equal(got.foreign[i], tc.foreign[i]) {
					t.Errorf("foreign[%d] = %q, want %q", i, got.foreign[i], tc.foreign[i])
				}
			}
		})
	}
}

func TestDecideKeepSource(t *testing.T) {
	dual := Spec{
		Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix("10.244.1.0/24"),
		IPv6Network: netip.MustParsePrefix("fd10::/48"), IPv6Subnet: netip.MustParsePrefix("fd10:0:0:1::/64"),
		Forward: true, KeepSource: true,
	}
	with := func(f func(*Spec)) Spec { s := dual; f(&s); return s }
	docker4 := natFound{foreign: [2][]string{{"iptables-nft nat table (nft table ip nat)"}}}
	cases := []struct {
		name      string
		spec      Spec
		installed [2]bool
		found     natFound
		scanErr   error
		on        [2]bool
		reason    string // in the IPv4 decision
		scan      [2]bool
	}{
		{"no NAT anywhere: deferred in both families", dual, [2]bool{}, natFound{}, nil,
			[2]bool{}, "no NAT", [2]bool{true, true}},
		{"not asked for", with(func(s *Spec) { s.KeepSource = false }), [2]bool{}, docker4, nil,
			[2]bool{}, "not asked", [2]bool{}},
		{"--ip-masq: NAT chains anyway, no look needed", with(func(s *Spec) { s.Masq = true }), [2]bool{}, natFound{}, nil,
			[2]bool{true, true}, "--ip-masq", [2]bool{}},
		{"Docker's IPv4 NAT: IPv4 only", dual, [2]bool{}, docker4, nil,
			[2]bool{true, false}, "NAT is in use", [2]bool{true, true}},
		{"sticky: installed before, NAT gone", dual, [2]bool{true, false}, natFound{}, nil,
			[2]bool{true, false}, "already installed", [2]bool{false, true}},
		{"found installed in the ruleset (agent restarted)", dual, [2]bool{}, natFound{keepSource: [2]bool{false, true}}, nil,
			[2]bool{false, true}, "no NAT", [2]bool{true, true}},
		{"cannot look: keep sources safe", dual, [2]bool{}, natFound{}, errors.New("netlink: permission denied"),
			[2]bool{true, true}, "cannot tell", [2]bool{true, true}},
		{"IPv6 not configured", with(func(s *Spec) { s.IPv6Network, s.IPv6Subnet = netip.Prefix{}, netip.Prefix{} }), [2]bool{}, natFound{foreign: [2][]string{nil, {"ip6tables-legacy nat table"}}}, nil,
			[2]bool{}, "no NAT", [2]bool{true, false}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for fam := range 2 {
				if got := needsScan(tc.spec, fam, tc.installed[fam]); got != tc.scan[fam] {
					t.Errorf("family %d: needsScan = %v, want %v", fam, got, tc.scan[fam])
				}
				d := decideKeepSource(tc.spec, fam, tc.installed[fam], tc.found, tc.scanErr)
				if d.on != tc.on[fam] {
					t.Errorf("family %d: on = %v (%s), want %v", fam, d.on, d.reason, tc.on[fam])
				}
				if fam == 0 && !strings.Contains(d.reason, tc.reason) {
					t.Errorf("reason %q, want it to mention %q", d.reason, tc.reason)
				}
				if d.on && len(tc.found.foreign[fam]) > 0 && !tc.installed[fam] && !tc.spec.Masq && !slices.Equal(d.found, tc.found.foreign[fam]) {
					t.Errorf("family %d: found = %q, want %q", fam, d.found, tc.found.foreign[fam])
				}
			}
		})
	}
}
