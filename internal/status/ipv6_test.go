package status

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/subnetenv"
)

const vxlanV6OnlyConfig = `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"vxlan"}}`

// v6onlyVXLANLease is an IPv6-only vxlan lease (a Node's podCIDR): its
// IPv6 subnet, PublicIPv6 and BackendV6Data, nothing of IPv4.
func v6onlyVXLANLease(subnet6, pub6, vtep string, created int64) lease.Lease {
	data, _ := json.Marshal(map[string]any{"VNI": 1, "VtepMAC": vtep})
	return lease.Lease{IPv6Subnet: pfx(subnet6), Created: created,
		Attrs: lease.Attrs{PublicIPv6: ip(pub6), BackendType: "vxlan", BackendV6Data: data}}
}

// vxlanV6Only is h1 of an IPv6-only vxlan cluster in Kubernetes mode,
// healthy: flannel-v6.1 with its address, and h2's three entries on it.
func vxlanV6Only(t *testing.T) Inputs {
	return Inputs{
		Now:    t0,
		Config: mustConfig(t, vxlanV6OnlyConfig),
		Leases: []lease.Lease{
			v6onlyVXLANLease("fd00:10:244:1::/64", "2001:db8::1", "aa:bb:cc:dd:06:01", 1),
			v6onlyVXLANLease("fd00:10:244:2::/64", "2001:db8::2", "aa:bb:cc:dd:06:02", 2),
		},
		Store:      "kubernetes https://10.96.0.1:443",
		Kubernetes: true,
		SubnetFile: "/run/flannel/subnet.env",
		SubnetEnv: subnetenv.Env{IPv6Network: []netip.Prefix{pfx("fd00:10:244::/56")}, IPv6Subnet: pfx("fd00:10:244:1::/64"),
			MTU: 1430},
		Ext:        backend.ExternalInterface{Name: "eth0", Index: 2, MTU: 1500, Addr6: ip("2001:db8::1"), PublicIPv6: ip("2001:db8::1")},
		PublicIPv6: ip("2001:db8::1"),
		Kernel: Kernel{
			Links: []Link{
				{Name: "lo", Index: 1, MTU: 65536, Up: true},
				{Name: "eth0", Index: 2, MTU: 1500, Up: true, Addrs: []netip.Prefix{pfx("2001:db8::1/64"), pfx("fe80::1/64")}},
				{Name: "flannel-v6.1", Index: 5, MTU: 1430, MAC: mac("aa:bb:cc:dd:06:01"), Up: true,
					Addrs: []netip.Prefix{pfx("fd00:10:244:1::/128"), pfx("fe80::a8bb:ccff:fedd:601/64")}},
			},
			Routes: []kernel.Route{
				{Dst: pfx("fd00:10:244:2::/64"), Gw: ip("fd00:10:244:2::"), LinkIndex: 5, OnLink: true, Proto: kernel.ProtoWeft},
			},
			Neighs: []kernel.Neigh{{LinkIndex: 5, IP: ip("fd00:10:244:2::"), MAC: mac("aa:bb:cc:dd:06:02"), Permanent: true}},
			FDB:    []kernel.FDB{{LinkIndex: 5, MAC: mac("aa:bb:cc:dd:06:02"), Dst: ip("2001:db8::2"), Permanent: true}},
		},
	}
}

// An IPv6-only vxlan host: its own lease is found by FLANNEL_IPV6_SUBNET
// (and, without the file, by its PublicIPv6), rows name each lease by
// its IPv6 subnet and PublicIPv6, flannel-v6.1 and the peer's IPv6
// entries are judged, and --check probes the peer over IPv6.
func TestBuildIPv6OnlyGolden(t *testing.T) {
	in := vxlanV6Only(t)
	r := Build(in)
	if !r.OK || r.Network != "" || r.IPv6Network != "fd00:10:244::/56" || r.Host.Subnet != "fd00:10:244:1::/64" || r.Host.PublicIP != "2001:db8::1" {
		t.Errorf("report: OK %v, network %q & %q, host %+v, problems %+v", r.OK, r.Network, r.IPv6Network, r.Host, r.Problems)
	}
	if !r.Leases[0].Self || r.Leases[1].Self || r.Leases[1].Subnet != "fd00:10:244:2::/64" || r.Leases[1].PublicIP != "2001:db8::2" ||
		r.Leases[1].VtepMAC != "aa:bb:cc:dd:06:02" || len(r.Leases[1].Entries) != 3 {
		t.Errorf("rows: %+v", r.Leases)
	}
	f := &fakeProber{
		paths: map[netip.Addr]Path{ip("fd00:10:244:2::1"): {Dst: ip("fd00:10:244:2::1"), Gw: ip("fd00:10:244:2::"), Dev: "flannel-v6.1"}},
		rtt:   map[netip.Addr]time.Duration{ip("fd00:10:244:2::1"): 400 * time.Microsecond},
	}
	Probe(context.Background(), &r, f)
	if c := r.Leases[1].Check; !r.OK || c == nil || c.Family != "IPv6" || c.Target != "fd00:10:244:2::1" || !c.Reply || c.FullSizeMTU != 1430 || r.Leases[1].CheckIPv6 != nil {
		t.Errorf("check: OK %v, %+v, %+v", r.OK, r.Leases[1].Check, r.Leases[1].Problems)
	}
	var b bytes.Buffer
	if err := WriteTable(&b, r); err != nil {
		t.Fatal(err)
	}
	golden(t, "vxlan-ipv6only.txt", b.Bytes())

	// Without subnet.env the lease carrying this host's PublicIPv6 is its own.
	in.SubnetErr, in.SubnetEnv = errors.New("open /run/flannel/subnet.env: no such file or directory"), subnetenv.Env{}
	r = Build(in)
	if !r.Leases[0].Self || r.Host.Subnet != "fd00:10:244:1::/64" || !slices.Equal(allCodes(r), []string{CodeSubnetFile}) {
		t.Errorf("without subnet.env: host %+v, self %v, codes %v", r.Host, r.Leases[0].Self, allCodes(r))
	}
	in.PublicIPv6 = ip("2001:db8::9")
	r = Build(in)
	var codes []string
	for _, p := range r.Problems {
		codes = append(codes, p.Code)
	}
	if r.Host.Subnet != "" || !slices.Equal(codes, []string{CodeSubnetFile, CodeNoLease}) || !strings.Contains(r.Problems[1].Message, "PublicIPv6 2001:db8::9") {
		t.Errorf("another PublicIPv6: host %+v, problems %+v", r.Host, r.Problems)
	}
}

// Duplicates are found per family: of two IPv6-only leases with one IPv6
// subnet the newer is refused and the older stays a peer; two leases with
// one PublicIPv6 claim one host.
func TestBuildIPv6Duplicates(t *testing.T) {
	in := vxlanV6Only(t)
	in.Leases = append(in.Leases, v6onlyVXLANLease("fd00:10:244:2::/64", "2001:db8::3", "aa:bb:cc:dd:06:03", 3))
	r := Build(in)
	older, newer := r.Leases[1], r.Leases[2]
	if older.Refused != "" || older.Status != "ok" {
		t.Errorf("the older lease of fd00:10:244:2::/64: %+v; want an ok peer", older)
	}
	if newer.Status != "refused" || !strings.Contains(newer.Refused, "IPv6 subnet fd00:10:244:2::/64 that is also in fd00:10:244:2::/64 (PublicIP 2001:db8::2)") {
		t.Errorf("the newer lease of fd00:10:244:2::/64: %+v; want it refused naming the older", newer)
	}

	in = vxlanV6Only(t)
	in.Leases = append(in.Leases, v6onlyVXLANLease("fd00:10:244:3::/64", "2001:db8::2", "aa:bb:cc:dd:06:03", 3))
	r = Build(in)
	for _, i := range []int{1, 2} {
		ps := r.Leases[i].Problems
		if !slices.ContainsFunc(ps, func(p Problem) bool {
			return p.Code == CodeDuplicateIP && strings.HasPrefix(p.Message, "PublicIPv6 2001:db8::2 is also in the lease of") && strings.Contains(p.Message, "--public-ipv6")
		}) {
			t.Errorf("row %s: problems %+v; want duplicate_public_ip naming PublicIPv6", r.Leases[i].Subnet, ps)
		}
	}

	// In dual-stack too: one PublicIPv6 in two leases with distinct IPv4 halves.
	in = hostgwHealthy(t)
	in.Config = mustConfig(t, `{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"host-gw"}}`)
	for i := range in.Leases {
		in.Leases[i].IPv6Subnet = pfx("fd00:10:244:" + string(rune('1'+i)) + "::/64")
		in.Leases[i].Attrs.PublicIPv6 = ip("2001:db8::" + string(rune('1'+i)))
	}
	in.Leases[2].Attrs.PublicIPv6 = ip("2001:db8::2")
	r = Build(in)
	if got := allCodes(r); !slices.Contains(got, CodeDuplicateIP) {
		t.Errorf("dual-stack leases sharing a PublicIPv6: codes %v", got)
	}
}

// --check probes a dual-stack peer over each family: an IPv6 side that
// fails is explained with its family named while IPv4 is ok, and the
// table shows both; an IPv4 route problem does not silence the IPv6
// side's own explanation.
func TestProbeDualStackPerFamily(t *testing.T) {
	in := hostgwHealthy(t)
	in.Config = mustConfig(t, `{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"host-gw"}}`)
	for i := range in.Leases {
		in.Leases[i].IPv6Subnet = pfx("fd00:10:244:" + string(rune('1'+i)) + "::/64")
		in.Leases[i].Attrs.PublicIPv6 = ip("2001:db8::" + string(rune('1'+i)))
	}
	in.SubnetEnv.IPv6Network = []netip.Prefix{pfx("fd00:10:244::/56")}
	in.SubnetEnv.IPv6Subnet = pfx("fd00:10:244:1::/64")
	// h2: both routes in place; h3: its IPv4 route is gone.
	in.Kernel = hostgwKernel(via("10.244.2.0/24", "192.168.1.2"), via("fd00:10:244:2::/64", "2001:db8::2"), via("fd00:10:244:3::/64", "2001:db8::3"))
	r := Build(in)
	f := &fakeProber{
		paths: map[netip.Addr]Path{
			ip("10.244.2.1"):       pathVia("10.244.2.1", "192.168.1.2", "eth0"),
			ip("fd00:10:244:2::1"): {Dst: ip("fd00:10:244:2::1"), Gw: ip("2001:db8::2"), Dev: "eth0"},
			ip("fd00:10:244:3::1"): {Dst: ip("fd00:10:244:3::1"), Gw: ip("2001:db8::3"), Dev: "eth0"},
		},
		rtt: map[netip.Addr]time.Duration{
			ip("10.244.2.1"): 250 * time.Microsecond, ip("192.168.1.3"): 100 * time.Microsecond,
			ip("2001:db8::2"): 90 * time.Microsecond, ip("2001:db8::3"): 80 * time.Microsecond,
		},
	}
	Probe(context.Background(), &r, f)
	h2, h3 := r.Leases[1], r.Leases[2]
	if h2.Check == nil || h2.Check.Family != "IPv4" || !h2.Check.Reply || h2.CheckIPv6 == nil || h2.CheckIPv6.Family != "IPv6" || h2.CheckIPv6.Reply {
		t.Errorf("h2 checks: %+v, %+v", h2.Check, h2.CheckIPv6)
	}
	if len(h2.Problems) != 1 || h2.Problems[0].Code != CodeGatewayNoAnswer || !strings.HasPrefix(h2.Problems[0].Message, "IPv6: 2001:db8::2 answers ping, but fd00:10:244:2::1") ||
		!strings.Contains(h2.Problems[0].Message, "net.ipv6.conf.all.forwarding") {
		t.Errorf("h2 problems: %+v; want the IPv6 pod gateway's silence, named IPv6", h2.Problems)
	}
	if h3.CheckIPv6 == nil || !h3.CheckIPv6.Reply && !slices.ContainsFunc(h3.Problems, func(p Problem) bool { return strings.HasPrefix(p.Message, "IPv6: ") }) {
		t.Errorf("h3: the IPv6 side's silence is not explained although only IPv4's route is gone: %+v", h3.Problems)
	}
	if h3.Check == nil || !h3.Check.NoRoute {
		t.Errorf("h3 IPv4 check: %+v", h3.Check)
	}
	var b bytes.Buffer
	if err := WriteTable(&b, r); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); !strings.Contains(out, "ok 0.25ms & no reply") {
		t.Errorf("table lacks both families' checks for h2:\n%s", out)
	}
	golden(t, "hostgw-dual-check.txt", b.Bytes())
}
