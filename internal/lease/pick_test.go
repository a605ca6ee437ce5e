package lease

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netconf"
)

var (
	ourIP   = netip.MustParseAddr("10.4.7.21")
	otherIP = netip.MustParseAddr("10.4.7.22")
	soon    = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
)

func mustConfig(t testing.TB, s string) *netconf.Config {
	t.Helper()
	c, err := netconf.Parse([]byte(s))
	if err != nil {
		t.Fatalf("netconf.Parse(%s): %v", s, err)
	}
	return c
}

func lease(subnet string, pub netip.Addr, exp time.Time) Lease {
	return Lease{Subnet: netip.MustParsePrefix(subnet), Attrs: Attrs{PublicIP: pub, BackendType: "host-gw"}, Expiration: exp}
}

func reservation(subnet string, pub netip.Addr) Lease { return lease(subnet, pub, time.Time{}) }

func pfx(s string) netip.Prefix {
	if s == "" {
		return netip.Prefix{}
	}
	return netip.MustParsePrefix(s)
}

func TestPickSubnet(t *testing.T) {
	seed := `{"Network": "172.7.0.0/16", "Backend": {"Type": "host-gw"}}`
	narrow := `{"Network": "172.7.0.0/16", "SubnetMin": "172.7.10.0", "SubnetMax": "172.7.20.0", "Backend": {"Type": "host-gw"}}`
	tests := []struct {
		name        string
		config      string
		existing    []Lease
		previous    string
		want        string // chosen subnet; "" means any free one (checked separately)
		wantReuse   bool   // Pick.Existing is set
		wantReserve bool   // and is a reservation
		wantStale   []string
		reason      string
	}{
		{
			name:      "own lease reused",
			config:    seed,
			existing:  []Lease{lease("172.7.5.0/24", otherIP, soon), lease("172.7.21.0/24", ourIP, soon)},
			previous:  "172.7.9.0/24",
			want:      "172.7.21.0/24",
			wantReuse: true,
			reason:    "existing lease 172.7.21.0/24 for 10.4.7.21",
		},
		{
			name:        "own reservation outside SubnetMin..Max but inside Network is reused",
			config:      narrow,
			existing:    []Lease{reservation("172.7.200.0/24", ourIP)},
			previous:    "172.7.12.0/24",
			want:        "172.7.200.0/24",
			wantReuse:   true,
			wantReserve: true,
			reason:      "reservation 172.7.200.0/24 for 10.4.7.21",
		},
		{
			name:        "reservation wins over own lease, which becomes stale",
			config:      seed,
			existing:    []Lease{lease("172.7.21.0/24", ourIP, soon), reservation("172.7.99.0/24", ourIP)},
			previous:    "172.7.21.0/24",
			want:        "172.7.99.0/24",
			wantReuse:   true,
			wantReserve: true,
			wantStale:   []string{"172.7.21.0/24"},
			reason:      "lease 172.7.21.0/24 for 10.4.7.21 is stale: duplicate of the reused lease",
		},
		{
			name:     "own reservation outside Network is ignored, never stale, and stays taken",
			config:   seed,
			existing: []Lease{reservation("172.8.1.0/24", ourIP)},
			previous: "172.7.3.0/24",
			want:     "172.7.3.0/24",
			reason:   "reservation 172.8.1.0/24 for 10.4.7.21 ignored: outside Network 172.7.0.0/16",
		},
		{
			name:     "own reservation of the wrong length is ignored",
			config:   seed,
			existing: []Lease{reservation("172.7.3.0/25", ourIP)},
			previous: "172.7.4.0/24",
			want:     "172.7.4.0/24",
			reason:   "length /25 is not SubnetLen /24",
		},
		{
			name:      "of two own leases the previous one is kept, the other is stale",
			config:    seed,
			existing:  []Lease{lease("172.7.1.0/24", ourIP, soon), lease("172.7.2.0/24", ourIP, soon)},
			previous:  "172.7.2.0/24",
			want:      "172.7.2.0/24",
			wantReuse: true,
			wantStale: []string{"172.7.1.0/24"},
		},
		{
			name:     "another host's reservation equal to previous is not given to us",
			config:   seed,
			existing: []Lease{reservation("172.7.21.0/24", otherIP)},
			previous: "172.7.21.0/24",
			reason:   "previous subnet 172.7.21.0/24 from subnet.env not reused: taken by 172.7.21.0/24 PublicIP=10.4.7.22",
		},
		{
			name:     "previous overlapped by a bigger lease is not reused",
			config:   seed,
			existing: []Lease{lease("172.7.20.0/22", otherIP, soon)},
			previous: "172.7.21.0/24",
			reason:   "taken by 172.7.20.0/22",
		},
		{
			name:     "previous with host bits (as a +1 address) is masked",
			config:   seed,
			previous: "172.7.21.1/24",
			want:     "172.7.21.0/24",
		},
		{
			name:   "random from an empty store",
			config: seed,
			reason: "random free subnet (255 of 255 in the pool are free)",
		},
		{
			name:     "random with the only free subnet",
			config:   `{"Network": "10.1.0.0/28", "Backend": {"Type": "host-gw"}}`,
			existing: []Lease{lease("10.1.0.4/30", otherIP, soon), reservation("10.1.0.12/30", netip.MustParseAddr("10.9.9.9"))},
			want:     "10.1.0.8/30",
			reason:   "random free subnet (1 of 3 in the pool are free)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustConfig(t, tt.config)
			in := PickInput{Config: cfg, Existing: tt.existing, PublicIP: ourIP, Previous: pfx(tt.previous), Rand: rand.New(rand.NewPCG(1, 2))}
			p, err := PickSubnet(in)
			if err != nil {
				t.Fatalf("PickSubnet: %v", err)
			}
			if tt.want != "" && p.Subnet != pfx(tt.want) {
				t.Errorf("Subnet = %s, want %s (reason %q)", p.Subnet, tt.want, p.Reason)
			}
			checkFree(t, cfg, tt.existing, p)
			if (p.Existing != nil) != tt.wantReuse {
				t.Errorf("Existing = %v, want reuse %v", p.Existing, tt.wantReuse)
			}
			if p.Existing != nil {
				if p.Existing.Subnet != p.Subnet {
					t.Errorf("Existing.Subnet = %s, but Subnet = %s", p.Existing.Subnet, p.Subnet)
				}
				if p.Existing.Reservation() != tt.wantReserve {
					t.Errorf("Existing.Reservation() = %v, want %v", p.Existing.Reservation(), tt.wantReserve)
				}
			}
			var stale []string
			for _, l := range p.Stale {
				stale = append(stale, l.Subnet.String())
				if l.Reservation() {
					t.Errorf("reservation %s marked stale", l)
				}
			}
			if fmt.Sprint(stale) != fmt.Sprint(tt.wantStale) {
				t.Errorf("Stale = %v, want %v", stale, tt.wantStale)
			}
			if !strings.Contains(p.Reason, tt.reason) {
				t.Errorf("Reason = %q, want it to contain %q", p.Reason, tt.reason)
			}
		})
	}
}

// checkFree asserts that a newly picked subnet is a legal choice: inside the
// pool, of SubnetLen, and overlapping no existing lease.
func checkFree(t *testing.T, cfg *netconf.Config, existing []Lease, p Pick) {
	t.Helper()
	if p.Existing != nil {
		return
	}
	sn := p.Subnet
	if sn.Bits() != cfg.SubnetLen || sn.Masked() != sn || sn.Addr().Less(cfg.SubnetMin) || cfg.SubnetMax.Less(sn.Addr()) {
		t.Fatalf("picked %s, which is not a /%d between %s and %s", sn, cfg.SubnetLen, cfg.SubnetMin, cfg.SubnetMax)
	}
	for _, l := range existing {
		if l.Subnet.Overlaps(sn) {
			t.Fatalf("picked %s, which overlaps existing %s", sn, l)
		}
	}
}

func TestPickSubnetRandomIsFreeAndSpread(t *testing.T) {
	cfg := mustConfig(t, `{"Network": "10.1.0.0/24", "SubnetLen": 27, "Backend": {"Type": "vxlan"}}`)
	// Pool: .32 .64 .96 .128 .160 .192 .224; take .64 (exact), .128/26
	// (covers .128 and .160) and a /24-sized reservation outside the network.
	existing := []Lease{
		lease("10.1.0.64/27", otherIP, soon),
		lease("10.1.0.128/26", otherIP, soon),
		reservation("10.2.0.0/24", otherIP),
	}
	r := rand.New(rand.NewPCG(7, 7))
	counts := map[netip.Prefix]int{}
	const n = 4000
	for range n {
		p, err := PickSubnet(PickInput{Config: cfg, Existing: existing, PublicIP: ourIP, Rand: r})
		if err != nil {
			t.Fatal(err)
		}
		checkFree(t, cfg, existing, p)
		counts[p.Subnet]++
	}
	want := []string{"10.1.0.32/27", "10.1.0.96/27", "10.1.0.192/27", "10.1.0.224/27"}
	if len(counts) != len(want) {
		t.Errorf("picked %v, want each of %v", counts, want)
	}
	for _, w := range want {
		if c := counts[pfx(w)]; c < n/len(want)*8/10 {
			t.Errorf("%s picked %d times of %d; not uniform: %v", w, c, n, counts)
		}
	}
}

func TestPickSubnetNilRand(t *testing.T) {
	cfg := mustConfig(t, `{"Network": "10.1.0.0/16", "Backend": {"Type": "vxlan"}}`)
	seen := map[netip.Prefix]bool{}
	for range 50 {
		p, err := PickSubnet(PickInput{Config: cfg, PublicIP: ourIP})
		if err != nil {
			t.Fatal(err)
		}
		checkFree(t, cfg, nil, p)
		seen[p.Subnet] = true
	}
	if len(seen) < 10 {
		t.Errorf("50 picks without a Rand gave only %d distinct subnets", len(seen))
	}
}

func TestPickSubnetExhausted(t *testing.T) {
	cfg := mustConfig(t, `{"Network": "172.7.0.0/16", "Backend": {"Type": "host-gw"}}`)
	var existing []Lease
	// The first subnet lies outside the pool and must not be counted.
	existing = append(existing, lease("172.7.0.0/24", otherIP, soon))
	for i := 1; i < 256; i++ {
		pub := netip.AddrFrom4([4]byte{10, 4, 8, byte(i)})
		if i%50 == 0 {
			existing = append(existing, reservation(fmt.Sprintf("172.7.%d.0/24", i), pub))
		} else {
			existing = append(existing, lease(fmt.Sprintf("172.7.%d.0/24", i), pub, soon))
		}
	}
	_, err := PickSubnet(PickInput{Config: cfg, Existing: existing, PublicIP: ourIP, Previous: pfx("172.7.21.0/24")})
	if !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("err = %v, want ErrPoolExhausted", err)
	}
	want := "all 255 subnets of 172.7.0.0/16 between 172.7.1.0 and 172.7.255.0 are leased (250 leases, 5 reservations)"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("err = %q, want it to contain %q", err, want)
	}

	// One big reservation covering the network exhausts it too.
	_, err = PickSubnet(PickInput{Config: cfg, Existing: []Lease{reservation("172.0.0.0/8", otherIP)}, PublicIP: ourIP})
	if !errors.Is(err, ErrPoolExhausted) || !strings.Contains(err.Error(), "(0 leases, 1 reservations)") {
		t.Errorf("err = %v, want ErrPoolExhausted with (0 leases, 1 reservations)", err)
	}

	// But our own lease in a full pool is simply reused.
	existing[21].Attrs.PublicIP = ourIP
	p, err := PickSubnet(PickInput{Config: cfg, Existing: existing, PublicIP: ourIP})
	if err != nil || p.Subnet != pfx("172.7.21.0/24") || p.Existing == nil {
		t.Errorf("full pool with our lease: %+v, %v; want reuse of 172.7.21.0/24", p, err)
	}
}

func TestPickSubnetLargePool(t *testing.T) {
	cfg := mustConfig(t, `{"Network": "10.0.0.0/8", "Backend": {"Type": "vxlan"}}`)
	existing := bigStore(5000)
	r := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		p, err := PickSubnet(PickInput{Config: cfg, Existing: existing, PublicIP: ourIP, Rand: r})
		if err != nil {
			t.Fatal(err)
		}
		checkFreeFast(t, existing, p.Subnet)
	}
	// Leave exactly one subnet free, far from SubnetMin: it must be found.
	full := []Lease{lease("10.0.0.0/9", otherIP, soon), lease("10.128.0.0/10", otherIP, soon), lease("10.192.0.0/11", otherIP, soon),
		lease("10.224.0.0/12", otherIP, soon), lease("10.240.0.0/13", otherIP, soon), lease("10.248.0.0/14", otherIP, soon),
		lease("10.252.0.0/15", otherIP, soon), lease("10.254.0.0/16", otherIP, soon), lease("10.255.0.0/17", otherIP, soon),
		lease("10.255.128.0/18", otherIP, soon), lease("10.255.192.0/19", otherIP, soon), lease("10.255.224.0/20", otherIP, soon),
		lease("10.255.240.0/21", otherIP, soon), lease("10.255.248.0/22", otherIP, soon), lease("10.255.252.0/23", otherIP, soon),
		lease("10.255.254.0/24", otherIP, soon)}
	p, err := PickSubnet(PickInput{Config: cfg, Existing: full, PublicIP: ourIP})
	if err != nil || p.Subnet != pfx("10.255.255.0/24") {
		t.Errorf("one free subnet left: got %s, %v; want 10.255.255.0/24", p.Subnet, err)
	}
}

func bigStore(n int) []Lease {
	r := rand.New(rand.NewPCG(1, 1))
	var ls []Lease
	for _, i := range r.Perm(65535)[:n] {
		i++ // skip the first subnet, outside the pool
		ls = append(ls, lease(fmt.Sprintf("10.%d.%d.0/24", i>>8, i&0xff), netip.AddrFrom4([4]byte{192, 168, byte(i >> 8), byte(i)}), soon))
	}
	return ls
}

func checkFreeFast(t *testing.T, existing []Lease, sn netip.Prefix) {
	t.Helper()
	for _, l := range existing {
		if l.Subnet == sn {
			t.Fatalf("picked %s, which is leased", sn)
		}
	}
}

func TestPickSubnetBadInput(t *testing.T) {
	good := mustConfig(t, `{"Network": "10.1.0.0/16", "Backend": {"Type": "vxlan"}}`)
	v6only := mustConfig(t, `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fc00::/48", "Backend": {"Type": "vxlan"}}`)
	unvalidated := &netconf.Config{EnableIPv4: true, Network: pfx("10.1.0.0/16"), SubnetLen: 24}
	tests := []struct {
		name string
		cfg  *netconf.Config
		want string
	}{
		{"nil config", nil, "no network config"},
		{"IPv6 only", v6only, "does not enable IPv4"},
		{"unvalidated", unvalidated, "SubnetMin invalid IP"},
	}
	for _, tt := range tests {
		_, err := PickSubnet(PickInput{Config: tt.cfg, PublicIP: ourIP})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want one containing %q", tt.name, err, tt.want)
		}
	}
	// No PublicIP: nothing can be ours, but a subnet is still picked.
	p, err := PickSubnet(PickInput{Config: good, Existing: []Lease{lease("10.1.5.0/24", netip.Addr{}, soon)}})
	if err != nil || p.Existing != nil || p.Subnet == pfx("10.1.5.0/24") {
		t.Errorf("without PublicIP: %+v, %v; want a fresh subnet", p, err)
	}
}

func BenchmarkPickSubnet(b *testing.B) {
	cfg := mustConfig(b, `{"Network": "10.0.0.0/8", "Backend": {"Type": "vxlan"}}`)
	existing := bigStore(5000)
	r := rand.New(rand.NewPCG(3, 4))
	for b.Loop() {
		if _, err := PickSubnet(PickInput{Config: cfg, Existing: existing, PublicIP: ourIP, Previous: pfx("10.0.1.0/24"), Rand: r}); err != nil {
			b.Fatal(err)
		}
	}
}
