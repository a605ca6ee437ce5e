package lease

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

func dual(subnet, v6 string, pub netip.Addr) Lease {
	l := lease(subnet, pub, soon)
	l.IPv6Subnet = pfx(v6)
	return l
}

func TestPickSubnetDualStack(t *testing.T) {
	cfg := `{"Network": "172.7.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56", "Backend": {"Type": "host-gw"}}`
	v4only := `{"Network": "172.7.0.0/16", "Backend": {"Type": "host-gw"}}`
	tests := []struct {
		name       string
		config     string
		existing   []Lease
		prev, prv6 string
		want4      string
		want6      string // "" with anyV6 false: no IPv6 subnet
		anyV6      bool   // any free IPv6 subnet (checked for fit and overlap)
		wantReuse  bool
		reason     string
		warning    string
	}{
		{
			name:   "both previous subnets from subnet.env are reused",
			config: cfg, prev: "172.7.21.1/24", prv6: "fd00:10:244:21::1/64",
			want4: "172.7.21.0/24", want6: "fd00:10:244:21::/64",
			reason: "previous IPv6 subnet fd00:10:244:21::/64 from subnet.env is free",
		},
		{
			name:   "own dual-stack lease is reused with its IPv6 subnet",
			config: cfg, existing: []Lease{dual("172.7.21.0/24", "fd00:10:244:5::/64", ourIP)}, prv6: "fd00:10:244:21::/64",
			want4: "172.7.21.0/24", want6: "fd00:10:244:5::/64", wantReuse: true,
		},
		{
			name:   "own IPv4 lease gains an IPv6 subnet when the config enables IPv6",
			config: cfg, existing: []Lease{lease("172.7.21.0/24", ourIP, soon)},
			want4: "172.7.21.0/24", anyV6: true, wantReuse: true,
			reason: "random free IPv6 subnet (255 of 255 in the pool are free)",
		},
		{
			name:   "own lease's IPv6 subnet outside the IPv6Network is replaced, IPv4 kept",
			config: cfg, existing: []Lease{dual("172.7.21.0/24", "fd00:99::/64", ourIP)}, prv6: "fd00:10:244:7::/64",
			want4: "172.7.21.0/24", want6: "fd00:10:244:7::/64", wantReuse: true,
			reason: "IPv6 subnet fd00:99::/64 of the lease not kept: outside IPv6Network fd00:10:244::/56",
		},
		{
			name:   "IPv6 subnet dropped when the config no longer enables IPv6",
			config: v4only, existing: []Lease{dual("172.7.21.0/24", "fd00:10:244:5::/64", ourIP)},
			want4: "172.7.21.0/24", wantReuse: true,
			reason: "IPv6 subnet fd00:10:244:5::/64 dropped",
		},
		{
			name:   "previous IPv6 subnet held by another host is not reused",
			config: cfg, existing: []Lease{dual("172.7.5.0/24", "fd00:10:244:21::/64", otherIP)}, prev: "172.7.21.0/24", prv6: "fd00:10:244:21::/64",
			want4: "172.7.21.0/24", anyV6: true,
			reason: "previous IPv6 subnet fd00:10:244:21::/64 from subnet.env not reused: taken by 172.7.5.0/24&fd00:10:244:21::/64",
		},
		{
			name:   "reservation without IPv6 subnet keeps its key and warns",
			config: cfg, existing: []Lease{reservation("172.7.99.0/24", ourIP)},
			want4: "172.7.99.0/24", wantReuse: true,
			warning: "reservation 172.7.99.0/24 has no IPv6 subnet, so this host gets none: add one to the reservation's key (172.7.99.0-24&fd00:10:244:1::-64)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := PickInput{Config: mustConfig(t, tt.config), Existing: tt.existing, PublicIP: ourIP,
				Previous: pfx(tt.prev), PreviousIPv6: pfx(tt.prv6), Rand: rand.New(rand.NewPCG(1, 2))}
			p, err := PickSubnet(in)
			if err != nil {
				t.Fatal(err)
			}
			if p.Subnet != pfx(tt.want4) {
				t.Errorf("Subnet = %s, want %s", p.Subnet, tt.want4)
			}
			switch {
			case tt.anyV6:
				checkFreeV6(t, in, p.IPv6Subnet)
			case p.IPv6Subnet != pfx(tt.want6):
				t.Errorf("IPv6Subnet = %s, want %q", p.IPv6Subnet, tt.want6)
			}
			if (p.Existing != nil) != tt.wantReuse {
				t.Errorf("Existing = %v, want reuse %v", p.Existing, tt.wantReuse)
			}
			if !strings.Contains(p.Reason, tt.reason) {
				t.Errorf("Reason = %q, want it to contain %q", p.Reason, tt.reason)
			}
			if p.Warning != tt.warning {
				t.Errorf("Warning = %q, want %q", p.Warning, tt.warning)
			}
		})
	}
}

func checkFreeV6(t *testing.T, in PickInput, sn netip.Prefix) {
	t.Helper()
	c := in.Config
	if !sn.IsValid() || sn.Bits() != c.IPv6SubnetLen || sn.Masked() != sn || !c.IPv6Network.Contains(sn.Addr()) ||
		sn.Addr().Less(c.IPv6SubnetMin) || c.IPv6SubnetMax.Less(sn.Addr()) {
		t.Fatalf("IPv6 subnet %s is not a /%d between %s and %s", sn, c.IPv6SubnetLen, c.IPv6SubnetMin, c.IPv6SubnetMax)
	}
	for _, l := range in.Existing {
		if l.Attrs.PublicIP != in.PublicIP && l.IPv6Subnet.IsValid() && l.IPv6Subnet.Overlaps(sn) {
			t.Fatalf("IPv6 subnet %s overlaps %s", sn, l)
		}
	}
}

// Every free IPv6 subnet is reachable, and only free ones are picked.
func TestPickSubnetIPv6FillsThePool(t *testing.T) {
	// /60 of /64: 16 subnets, the first skipped: 15 in the pool.
	cfg := mustConfig(t, `{"Network": "10.0.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00::/60", "Backend": {"Type": "vxlan"}}`)
	r := rand.New(rand.NewPCG(5, 6))
	var existing []Lease
	seen := map[netip.Prefix]bool{}
	for i := range 15 {
		pub := netip.AddrFrom4([4]byte{192, 168, 0, byte(i + 1)})
		p, err := PickSubnet(PickInput{Config: cfg, Existing: existing, PublicIP: pub, Rand: r})
		if err != nil {
			t.Fatalf("host %d: %v", i, err)
		}
		if seen[p.IPv6Subnet] || p.IPv6Subnet.Addr() == netip.MustParseAddr("fd00::") {
			t.Fatalf("host %d got %s: taken or the network's first subnet", i, p.IPv6Subnet)
		}
		seen[p.IPv6Subnet] = true
		existing = append(existing, Lease{Subnet: p.Subnet, IPv6Subnet: p.IPv6Subnet, Attrs: Attrs{PublicIP: pub}, Expiration: soon})
	}
	_, err := PickSubnet(PickInput{Config: cfg, Existing: existing, PublicIP: netip.MustParseAddr("192.168.1.1"), Rand: r})
	if !errors.Is(err, ErrPoolExhausted) || !strings.Contains(err.Error(), "all 15 IPv6 subnets of fd00::/60 between fd00:0:0:1:: and fd00:0:0:f:: are leased (15 leases, 0 reservations)") {
		t.Errorf("full IPv6 pool: err = %v", err)
	}
}

// A pool with more subnets than a uint64 counts still picks valid ones.
func TestPickSubnetHugeIPv6Pool(t *testing.T) {
	cfg := mustConfig(t, `{"Network": "10.0.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00::/16", "IPv6SubnetLen": 126, "Backend": {"Type": "vxlan"}}`)
	taken := dual("10.0.1.0/24", "fd00::4/126", otherIP)
	for i := range 50 {
		in := PickInput{Config: cfg, Existing: []Lease{taken}, PublicIP: ourIP, Rand: rand.New(rand.NewPCG(uint64(i), 9))}
		p, err := PickSubnet(in)
		if err != nil {
			t.Fatal(err)
		}
		checkFreeV6(t, in, p.IPv6Subnet)
	}
}

func TestU128(t *testing.T) {
	for _, s := range []string{"::", "fd00:10:244:1::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db8::8000:0:0:1"} {
		a := netip.MustParseAddr(s)
		if got := fromAddr(a).toAddr(128); got != a {
			t.Errorf("round trip of %s = %s", a, got)
		}
	}
	a := netip.MustParseAddr("10.1.2.3")
	if got := fromAddr(a).toAddr(32); got != a {
		t.Errorf("round trip of %s = %s", a, got)
	}
	x := fromAddr(netip.MustParseAddr("::ffff:ffff:ffff:ffff"))
	if got := x.add(u128{lo: 1}).toAddr(128); got != netip.MustParseAddr("0:0:0:1::") {
		t.Errorf("carry: %s", got)
	}
	if got := x.shl(4).shr(4); got != x {
		t.Errorf("shl(4).shr(4) = %#v", got)
	}
	if got := x.shl(68).shr(64); got != (u128{lo: 0xfffffffffffffff0}) {
		t.Errorf("shl(68).shr(64) = %#v", got)
	}
	if got := ones(128); got != (u128{^uint64(0), ^uint64(0)}) {
		t.Errorf("ones(128) = %#v", got)
	}
}

func BenchmarkPickSubnetDualStack(b *testing.B) {
	cfg := mustConfig(b, `{"Network": "10.0.0.0/8", "EnableIPv6": true, "IPv6Network": "fd00::/40", "Backend": {"Type": "vxlan"}}`)
	existing := bigStore(5000)
	for i := range existing {
		existing[i].IPv6Subnet = netip.PrefixFrom(fromAddr(netip.MustParseAddr("fd00::")).add(u128{lo: uint64(i + 1)}.shl(64)).toAddr(128), 64)
	}
	r := rand.New(rand.NewPCG(3, 4))
	for b.Loop() {
		if _, err := PickSubnet(PickInput{Config: cfg, Existing: existing, PublicIP: ourIP, Rand: r}); err != nil {
			b.Fatal(err)
		}
	}
}
