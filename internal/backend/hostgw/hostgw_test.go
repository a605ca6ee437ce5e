package hostgw

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/backend/backendtest"
	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
)

var (
	testNetwork = netip.MustParsePrefix("10.244.0.0/16")
	testExt     = backend.ExternalInterface{
		Name: "eth0", Index: 2, MTU: 1500,
		Addr: netip.MustParseAddr("192.168.1.1"), PublicIP: netip.MustParseAddr("192.168.1.1"),
	}
)

func testConfig() backend.Config {
	return backend.Config{Ext: testExt, Network: &netconf.Config{EnableIPv4: true, Network: testNetwork, SubnetLen: 24}}
}

func hgLease(subnet, publicIP string) lease.Lease {
	return typedLease(subnet, publicIP, BackendType)
}

func typedLease(subnet, publicIP, typ string) lease.Lease {
	l := lease.Lease{Subnet: netip.MustParsePrefix(subnet), Attrs: lease.Attrs{BackendType: typ}}
	if publicIP != "" {
		l.Attrs.PublicIP = netip.MustParseAddr(publicIP)
	}
	return l
}

func TestNewRefusesPublicIPOffInterface(t *testing.T) {
	cfg := testConfig()
	cfg.Ext.Addr = netip.MustParseAddr("10.0.0.5")
	cfg.Ext.PublicIP = netip.MustParseAddr("203.0.113.5")
	_, err := New(cfg)
	want := "host-gw needs --public-ip 203.0.113.5 to be an address of interface eth0 (it has 10.0.0.5): " +
		"peers route pod subnets straight to this address, so it must be reachable on the same L2 segment; " +
		"this host is probably behind NAT — use vxlan"
	if err == nil || err.Error() != want {
		t.Errorf("New: %v\nwant: %s", err, want)
	}
}

func TestNewChecksConfig(t *testing.T) {
	for name, mod := range map[string]func(*backend.Config){
		"no network":        func(c *backend.Config) { c.Network = nil },
		"IPv6 network only": func(c *backend.Config) { c.Network.Network = netip.Prefix{} },
		"no interface":      func(c *backend.Config) { c.Ext = backend.ExternalInterface{} },
		"no address":        func(c *backend.Config) { c.Ext.Addr, c.Ext.PublicIP = netip.Addr{}, netip.Addr{} },
	} {
		cfg := testConfig()
		mod(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	if _, err := NewWithOptions(testConfig(), Options{Handle: nil, NoSubscribe: true}); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

func TestLeaseAttrsAndMTU(t *testing.T) {
	b, err := New(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	typ, data := b.LeaseAttrs()
	if typ != "host-gw" || data != nil {
		t.Errorf("LeaseAttrs = %q, %s; want host-gw, nil", typ, data)
	}
	if b.MTU() != 1500 {
		t.Errorf("MTU = %d, want the interface's 1500", b.MTU())
	}
}

func TestDesire(t *testing.T) {
	own := hgLease("10.244.1.0/24", "192.168.1.1")
	leases := []lease.Lease{
		own,
		hgLease("10.244.3.0/24", "192.168.1.3"),
		hgLease("10.244.2.0/24", "192.168.1.2"),
		typedLease("10.244.4.0/24", "192.168.1.4", "vxlan"),
		typedLease("10.244.5.0/24", "192.168.1.5", ""), // udp/alloc publish no type
		hgLease("10.245.0.0/24", "192.168.1.6"),        // outside the network
		hgLease("10.244.7.0/24", ""),                   // no PublicIP
		hgLease("10.244.8.0/24", "192.168.1.1"),        // our own address, someone else's subnet
		hgLease("10.244.1.128/25", "192.168.1.9"),      // overlaps our subnet
		hgLease("10.244.10.0/24", "10.99.0.10"),        // not on our segment: still desired; the kernel decides
		{Subnet: netip.MustParsePrefix("10.244.11.0/24"), Attrs: lease.Attrs{BackendType: "host-gw", PublicIP: netip.IPv4Unspecified()}},
	}
	st := desire(testNetwork, netip.Prefix{}, own, testExt, leases)
	checkRoutes(t, st, []string{
		"10.244.3.0/24 via 192.168.1.3 dev eth0 proto weft",
		"10.244.2.0/24 via 192.168.1.2 dev eth0 proto weft",
		"10.244.10.0/24 via 10.99.0.10 dev eth0 proto weft",
	})
	if p := st.peerOf[netip.MustParsePrefix("10.244.3.0/24")]; p != netip.MustParseAddr("192.168.1.3") {
		t.Errorf("peerOf 10.244.3.0/24 = %v", p)
	}
	if len(st.ignored) != 2 || st.ignored[netip.MustParsePrefix("10.244.4.0/24")].BackendType != "vxlan" {
		t.Errorf("ignored = %v, want the vxlan and the untyped lease", st.ignored)
	}
	checkErrs(t, st, []string{
		"peer 192.168.1.6 (subnet 10.245.0.0/24): no route: its subnet is not inside the network 10.244.0.0/16",
		"peer none (subnet 10.244.7.0/24): no route: it has no IPv4 PublicIP",
		"peer 192.168.1.1 (subnet 10.244.8.0/24): no route: it carries this host's own PublicIP but is not this host's lease",
		"peer 192.168.1.9 (subnet 10.244.1.128/25): no route: its subnet overlaps this host's 10.244.1.0/24",
		"peer 0.0.0.0 (subnet 10.244.11.0/24): no route: it has no IPv4 PublicIP",
	})
}

// checkRoutes compares the routes st plans, in `ip route` form, with want.
func checkRoutes(t *testing.T, st desiredState, want []string) {
	t.Helper()
	var got []string
	for _, r := range st.routes {
		got = append(got, r.Format(map[int]string{2: "eth0"}))
	}
	sameLines(t, "routes", got, want)
}

// checkErrs compares the errors st gives for the leases it plans no route
// for with want.
func checkErrs(t *testing.T, st desiredState, want []string) {
	t.Helper()
	var got []string
	for _, e := range st.errs {
		got = append(got, e.Error())
	}
	sameLines(t, "errors", got, want)
}

func sameLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if g, w := strings.Join(got, "\n"), strings.Join(want, "\n"); g != w {
		t.Errorf("%s:\n%s\nwant:\n%s", what, g, w)
	}
}

func TestOwns(t *testing.T) {
	own := netip.MustParsePrefix("10.244.1.0/24")
	gw := netip.MustParseAddr("192.168.1.9")
	for _, c := range []struct {
		r    kernel.Route
		want bool
	}{
		{kernel.Route{Dst: netip.MustParsePrefix("10.244.9.0/24"), Gw: gw}, true},
		{kernel.Route{Dst: netip.MustParsePrefix("10.244.9.0/26"), Gw: gw}, true},  // an old SubnetLen
		{kernel.Route{Dst: netip.MustParsePrefix("10.244.9.0/24")}, false},         // no gateway
		{kernel.Route{Dst: netip.MustParsePrefix("10.244.0.0/16"), Gw: gw}, false}, // the network itself
		{kernel.Route{Dst: netip.MustParsePrefix("10.244.0.0/15"), Gw: gw}, false},
		{kernel.Route{Dst: netip.MustParsePrefix("10.245.9.0/24"), Gw: gw}, false},
		{kernel.Route{Dst: netip.MustParsePrefix("10.244.1.0/24"), Gw: gw}, false}, // own subnet
		{kernel.Route{Dst: netip.MustParsePrefix("10.244.1.64/26"), Gw: gw}, false},
		{kernel.Route{Dst: netip.MustParsePrefix("10.244.0.0/23"), Gw: gw}, false}, // covers own subnet
		{kernel.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: gw}, false},
	} {
		if got := owns(testNetwork, netip.Prefix{}, lease.Lease{Subnet: own}, c.r); got != c.want {
			t.Errorf("owns(%v) = %v, want %v", c.r, got, c.want)
		}
	}
}

var (
	testNetwork6 = netip.MustParsePrefix("fd00:50::/56")
	testExt6     = func() backend.ExternalInterface {
		e := testExt
		e.Addr6, e.PublicIPv6 = netip.MustParseAddr("fd00:4:7::1"), netip.MustParseAddr("fd00:4:7::1")
		return e
	}()
)

func dualLease(subnet, publicIP, subnet6, publicIPv6 string) lease.Lease {
	l := hgLease(subnet, publicIP)
	if subnet6 != "" {
		l.IPv6Subnet = netip.MustParsePrefix(subnet6)
	}
	if publicIPv6 != "" {
		l.Attrs.PublicIPv6 = netip.MustParseAddr(publicIPv6)
	}
	return l
}

// Dual-stack: each peer gets its IPv4 route and, when its lease has a
// usable IPv6 half, a route to its IPv6Subnet via its PublicIPv6 on the
// same interface. A bad IPv6 half costs the peer its IPv6 route only; a
// lease without an IPv6 subnet (a host on an IPv4-only config) is noted.
func TestDesireDualStack(t *testing.T) {
	own := dualLease("10.244.1.0/24", "192.168.1.1", "fd00:50:0:1::/64", "fd00:4:7::1")
	leases := []lease.Lease{
		own,
		dualLease("10.244.2.0/24", "192.168.1.2", "fd00:50:0:2::/64", "fd00:4:7::2"),
		dualLease("10.244.3.0/24", "192.168.1.3", "", ""),                              // IPv4-only config
		dualLease("10.244.4.0/24", "192.168.1.4", "fd00:50:0:4::/64", ""),              // no PublicIPv6
		dualLease("10.244.5.0/24", "192.168.1.5", "fd00:99:0:5::/64", "fd00:4:7::5"),   // outside the IPv6Network
		dualLease("10.244.6.0/24", "192.168.1.6", "fd00:50:0:1::/64", "fd00:4:7::6"),   // the own IPv6 subnet
		dualLease("10.244.7.0/24", "192.168.1.7", "fd00:50:0:7::/64", "fd00:4:7::1"),   // the own PublicIPv6
		dualLease("10.244.8.0/24", "192.168.1.8", "fd00:50:0:8::/64", "2001:db8:9::8"), // off-segment: still desired; the kernel decides
	}
	st := desire(testNetwork, testNetwork6, own, testExt6, leases)
	checkRoutes(t, st, []string{
		"10.244.2.0/24 via 192.168.1.2 dev eth0 proto weft",
		"fd00:50:0:2::/64 via fd00:4:7::2 dev eth0 proto weft",
		"10.244.3.0/24 via 192.168.1.3 dev eth0 proto weft",
		"10.244.4.0/24 via 192.168.1.4 dev eth0 proto weft",
		"10.244.5.0/24 via 192.168.1.5 dev eth0 proto weft",
		"10.244.6.0/24 via 192.168.1.6 dev eth0 proto weft",
		"10.244.7.0/24 via 192.168.1.7 dev eth0 proto weft",
		"10.244.8.0/24 via 192.168.1.8 dev eth0 proto weft",
		"fd00:50:0:8::/64 via 2001:db8:9::8 dev eth0 proto weft",
	})
	if p := st.peerOf[netip.MustParsePrefix("fd00:50:0:2::/64")]; p != netip.MustParseAddr("fd00:4:7::2") {
		t.Errorf("peerOf fd00:50:0:2::/64 = %v", p)
	}
	if len(st.noV6) != 1 || st.noV6[netip.MustParsePrefix("10.244.3.0/24")] != netip.MustParseAddr("192.168.1.3") {
		t.Errorf("noV6 = %v, want the IPv4-only peer", st.noV6)
	}
	checkErrs(t, st, []string{
		"peer 192.168.1.4 (subnet 10.244.4.0/24, IPv6 subnet fd00:50:0:4::/64): no IPv6 route: it has no PublicIPv6, which IPv6 routes to it need (its host has no global IPv6 address and no --public-ipv6)",
		"peer 192.168.1.5 (subnet 10.244.5.0/24, IPv6 subnet fd00:99:0:5::/64): no IPv6 route: its IPv6 subnet is not inside the IPv6Network fd00:50::/56",
		"peer 192.168.1.6 (subnet 10.244.6.0/24, IPv6 subnet fd00:50:0:1::/64): no IPv6 route: its IPv6 subnet overlaps this host's fd00:50:0:1::/64",
		"peer 192.168.1.7 (subnet 10.244.7.0/24, IPv6 subnet fd00:50:0:7::/64): no IPv6 route: it carries this host's own PublicIPv6 but is not this host's lease",
	})

	// status sees the same: both routes under the peer's subnet, and why
	// an IPv6 half gets none.
	w := wants(testNetwork, testNetwork6, testExt, own, own.Attrs.PublicIP, leases)
	p2 := w.Peers[netip.MustParsePrefix("10.244.2.0/24")]
	if len(p2.Entries) != 2 || p2.Entries[0].String() != "10.244.2.0/24 via 192.168.1.2 dev eth0" ||
		p2.Entries[1].String() != "fd00:50:0:2::/64 via fd00:4:7::2 dev eth0" || p2.RefusedV6 != "" {
		t.Errorf("wants for a dual-stack peer: %+v", p2)
	}
	if p4 := w.Peers[netip.MustParsePrefix("10.244.4.0/24")]; len(p4.Entries) != 1 || !strings.Contains(p4.RefusedV6, "no PublicIPv6") {
		t.Errorf("wants for a peer without PublicIPv6: %+v", p4)
	}
	if p3 := w.Peers[netip.MustParsePrefix("10.244.3.0/24")]; len(p3.Entries) != 1 || p3.RefusedV6 != "" {
		t.Errorf("wants for an IPv4-only peer: %+v", p3)
	}
	// Without EnableIPv6 the same leases get IPv4 routes only.
	if st := desire(testNetwork, netip.Prefix{}, own, testExt6, leases); len(st.routes) != 7 || len(st.errs) != 0 || len(st.noV6) != 0 {
		t.Errorf("IPv4-only config: routes %v, errors %v, noV6 %v", st.routes, st.errs, st.noV6)
	}
}

// Dual-stack ownership: the IPv6 routes with a gateway inside the
// IPv6Network, apart from the own IPv6 subnet — which is also what
// flannel's host-gw leaves behind — and the IPv4 ones as before.
func TestOwnsIPv6(t *testing.T) {
	own := dualLease("10.244.1.0/24", "192.168.1.1", "fd00:50:0:1::/64", "fd00:4:7::1")
	gw := netip.MustParseAddr("fd00:4:7::9")
	for _, c := range []struct {
		r    kernel.Route
		want bool
	}{
		{kernel.Route{Dst: netip.MustParsePrefix("fd00:50:0:9::/64"), Gw: gw}, true},
		{kernel.Route{Dst: netip.MustParsePrefix("fd00:50:0:9::/64"), Gw: gw, Proto: 3}, true}, // flannel's, proto boot
		{kernel.Route{Dst: netip.MustParsePrefix("fd00:50:0:9::/64")}, false},
		{kernel.Route{Dst: netip.MustParsePrefix("fd00:50:0:1::/64"), Gw: gw}, false},
		{kernel.Route{Dst: netip.MustParsePrefix("fd00:50::/56"), Gw: gw}, false},
		{kernel.Route{Dst: netip.MustParsePrefix("fd00:51::/64"), Gw: gw}, false},
		{kernel.Route{Dst: netip.MustParsePrefix("::/0"), Gw: gw}, false},
		{kernel.Route{Dst: netip.MustParsePrefix("10.244.9.0/24"), Gw: netip.MustParseAddr("192.168.1.9")}, true},
	} {
		if got := owns(testNetwork, testNetwork6, own, c.r); got != c.want {
			t.Errorf("owns(%v) = %v, want %v", c.r, got, c.want)
		}
		if c.r.Dst.Addr().Is6() && owns(testNetwork, netip.Prefix{}, own, c.r) {
			t.Errorf("owns(%v) without an IPv6Network", c.r)
		}
	}
}

// For any set of leases, the Wants status gets are exactly the routes
// desire plans, each on the external interface, and a lease PeerProblem
// refuses contributes none.
func TestWantsAreThePlan(t *testing.T) {
	ext := testExt
	own := backendtest.Own
	own.Attrs.BackendType = BackendType
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 1))
		leases := append(backendtest.RandomLeases(r, 1+r.IntN(40), []string{BackendType, BackendType, "vxlan", ""}), own)
		r.Shuffle(len(leases), func(i, j int) { leases[i], leases[j] = leases[j], leases[i] })

		w := wants(testNetwork, netip.Prefix{}, ext, own, ext.PublicIP, leases)
		st := desire(testNetwork, netip.Prefix{}, own, ext, leases)
		if len(w.Host) != 0 {
			t.Fatalf("seed %d: host-gw asks for host entries %v", seed, w.Host)
		}
		got, err := backendtest.PeerWants(w, leases, own.Subnet, []string{BackendType}, func(subnet netip.Prefix, e backend.Want) bool {
			return e.Dst == subnet && e.Dev == ext.Name && usable(leases, own, ext, subnet, e.Gw)
		})
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		want := backend.EntryWants(map[int]string{ext.Index: ext.Name}, st.routes, nil, nil)
		if !backendtest.SameWants(got, want) {
			t.Fatalf("seed %d: wants\n%v\nplan\n%v", seed, got, want)
		}
	}
}

// usable reports whether a host-gw lease for subnet at gw passes
// PeerProblem.
func usable(leases []lease.Lease, own lease.Lease, ext backend.ExternalInterface, subnet netip.Prefix, gw netip.Addr) bool {
	for _, l := range leases {
		if l.Attrs.BackendType == BackendType && l.Subnet.Masked() == subnet && l.Attrs.PublicIP == gw &&
			backend.PeerProblem(l, testNetwork, own, ext.PublicIP) == "" {
			return true
		}
	}
	return false
}

func TestParseSettings(t *testing.T) {
	for _, raw := range []string{``, `{}`, `{"Type":"host-gw","Whatever":1}`} {
		if _, err := ParseSettings(json.RawMessage(raw)); err != nil {
			t.Errorf("%s: %v", raw, err)
		}
	}
	for _, raw := range []string{`[1]`, `"host-gw"`, `{"Type":`} {
		if _, err := ParseSettings(json.RawMessage(raw)); err == nil || !strings.Contains(err.Error(), "host-gw options") {
			t.Errorf("%s: err %v, want one naming the host-gw options", raw, err)
		}
	}
}

func FuzzParseSettings(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"Type":"host-gw"}`, `[1]`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		_, err := ParseSettings(raw)
		var obj map[string]any
		if (err == nil) != (len(bytes.TrimSpace(raw)) == 0 || json.Unmarshal(raw, &obj) == nil) {
			t.Errorf("ParseSettings(%q) = %v, but the input is a JSON object (or empty): %v", raw, err, err == nil)
		}
	})
}

// An IPv6-only network: no IPv4 network, leases with an IPv6 half alone;
// each peer gets its IPv6 route, keyed by its IPv6 subnet, and a peer
// whose IPv6 half is unusable is refused as a whole.
func TestDesireIPv6Only(t *testing.T) {
	v6 := func(subnet6, pub6 string) lease.Lease {
		l := lease.Lease{IPv6Subnet: netip.MustParsePrefix(subnet6), Attrs: lease.Attrs{BackendType: BackendType}}
		if pub6 != "" {
			l.Attrs.PublicIPv6 = netip.MustParseAddr(pub6)
		}
		return l
	}
	ext := testExt6
	ext.Addr, ext.PublicIP = netip.Addr{}, netip.Addr{}
	own := v6("fd00:50:0:1::/64", "fd00:4:7::1")
	leases := []lease.Lease{own, v6("fd00:50:0:2::/64", "fd00:4:7::2"), v6("fd00:50:0:3::/64", "fd00:4:7::3"), v6("fd00:50:0:4::/64", "")}
	st := desire(netip.Prefix{}, testNetwork6, own, ext, leases)
	checkRoutes(t, st, []string{
		"fd00:50:0:2::/64 via fd00:4:7::2 dev eth0 proto weft",
		"fd00:50:0:3::/64 via fd00:4:7::3 dev eth0 proto weft",
	})
	checkErrs(t, st, []string{
		"peer none (IPv6 subnet fd00:50:0:4::/64): no route: it has no PublicIPv6, which IPv6 routes to it need (its host has no global IPv6 address and no --public-ipv6)",
	})
	if r := st.refused[netip.MustParsePrefix("fd00:50:0:4::/64")]; !strings.Contains(r, "no PublicIPv6") || len(st.refusedV6) != 0 || len(st.noV6) != 0 {
		t.Errorf("refused %v, refusedV6 %v, noV6 %v; want the peer without PublicIPv6 refused whole", st.refused, st.refusedV6, st.noV6)
	}
	w := wants(netip.Prefix{}, testNetwork6, ext, own, netip.Addr{}, leases)
	if p := w.Peers[netip.MustParsePrefix("fd00:50:0:2::/64")]; len(p.Entries) != 1 || p.Entries[0].String() != "fd00:50:0:2::/64 via fd00:4:7::2 dev eth0" {
		t.Errorf("wants for an IPv6-only peer: %+v", p)
	}

	// New takes the IPv6-only config without any IPv4, and Start the own
	// lease without an IPv4 subnet.
	cfg := backend.Config{Ext: ext, Network: &netconf.Config{EnableIPv6: true, IPv6Network: testNetwork6, IPv6SubnetLen: 64}}
	b, err := NewWithOptions(cfg, Options{NoSubscribe: true})
	if err != nil {
		t.Fatalf("New with an IPv6-only config: %v", err)
	}
	if err := b.Start(t.Context(), own); err != nil {
		t.Errorf("Start with an IPv6-only lease: %v", err)
	}
	if err := b.Start(t.Context(), v6("fd00:99:0:1::/64", "fd00:4:7::1")); err == nil {
		t.Error("Start with a lease outside the IPv6Network succeeded")
	}
	cfg.Ext.Addr6, cfg.Ext.PublicIPv6 = netip.Addr{}, netip.Addr{}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "needs a global IPv6 address on interface eth0") {
		t.Errorf("New without an IPv6 address: %v", err)
	}
}
