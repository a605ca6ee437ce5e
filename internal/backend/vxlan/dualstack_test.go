package vxlan

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
)

var testNetwork6 = netip.MustParsePrefix("fd00:10:244::/56")

// dualLease is vxLease with an IPv6 half: subnet6, publicIPv6 and a
// BackendV6Data naming mac6 ("" for none of each).
func dualLease(subnet, publicIP, mac, subnet6, publicIPv6, mac6 string) lease.Lease {
	l := vxLease(subnet, publicIP, mac)
	if subnet6 != "" {
		l.IPv6Subnet = netip.MustParsePrefix(subnet6)
	}
	if publicIPv6 != "" {
		l.Attrs.PublicIPv6 = netip.MustParseAddr(publicIPv6)
	}
	if mac6 != "" {
		l.Attrs.BackendV6Data = leaseData(1, mustMAC(mac6))
	}
	return l
}

// TestDualStackLeaseIsFlannelsExactForm: a dual-stack vxlan lease encodes
// byte for byte as flannel's, BackendV6Data in BackendData's form.
func TestDualStackLeaseIsFlannelsExactForm(t *testing.T) {
	l := dualLease("10.244.1.0/24", "192.168.1.1", "aa:bb:cc:dd:ee:ff", "fd00:10:244:1::/64", "fd70::1", "aa:bb:cc:dd:ee:fe")
	got, err := json.Marshal(l.Attrs)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"PublicIP":"192.168.1.1","PublicIPv6":"fd70::1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"},"BackendV6Data":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:fe"}}`
	if string(got) != want {
		t.Errorf("lease attrs = %s\nwant %s", got, want)
	}
}

// TestV6Half: the IPv6 side sees a lease's IPv6 half as a lease of its
// own, and a lease without one not at all.
func TestV6Half(t *testing.T) {
	l := dualLease("10.244.2.0/24", "192.168.1.2", "0e:00:00:00:00:02", "fd00:10:244:2::/64", "fd70::2", "0e:00:00:00:06:02")
	h, ok := v6Half(l)
	if !ok || h.Subnet != l.IPv6Subnet || h.Attrs.PublicIP != l.Attrs.PublicIPv6 || string(h.Attrs.BackendData) != string(l.Attrs.BackendV6Data) ||
		h.IPv6Subnet.IsValid() || h.Attrs.PublicIPv6.IsValid() || h.Attrs.BackendV6Data != nil || h.Attrs.BackendType != BackendType {
		t.Errorf("v6Half = %+v, %v", h, ok)
	}
	v4only := vxLease("10.244.3.0/24", "192.168.1.3", "0e:00:00:00:00:03")
	if _, ok := v6Half(v4only); ok {
		t.Error("v6Half of a lease without an IPv6 subnet")
	}
	if got := v6Halves([]lease.Lease{l, v4only}); len(got) != 1 || got[0].Subnet != l.IPv6Subnet {
		t.Errorf("v6Halves = %+v", got)
	}
}

// TestDesireIPv6: the IPv6 side's rules are the IPv4 side's, on the IPv6
// halves: a half without PublicIPv6 or BackendV6Data, outside the
// IPv6Network, or with the own IPv6 VtepMAC is skipped with the reason.
func TestDesireIPv6(t *testing.T) {
	own := dualLease("10.244.1.0/24", "192.168.1.1", "0e:00:00:00:00:01", "fd00:10:244:1::/64", "fd70::1", "0e:00:00:00:06:01")
	leases := []lease.Lease{
		own,
		dualLease("10.244.2.0/24", "192.168.1.2", "0e:00:00:00:00:02", "fd00:10:244:2::/64", "fd70::2", "0e:00:00:00:06:02"),
		dualLease("10.244.3.0/24", "192.168.1.3", "0e:00:00:00:00:03", "fd00:10:244:3::/64", "", "0e:00:00:00:06:03"),
		dualLease("10.244.4.0/24", "192.168.1.4", "0e:00:00:00:00:04", "fd00:10:244:4::/64", "fd70::4", ""),
		dualLease("10.244.5.0/24", "192.168.1.5", "0e:00:00:00:00:05", "fd00:99::/64", "fd70::5", "0e:00:00:00:06:05"),
		dualLease("10.244.6.0/24", "192.168.1.6", "0e:00:00:00:00:06", "fd00:10:244:6::/64", "fd70::6", "0e:00:00:00:06:01"),
		vxLease("10.244.7.0/24", "192.168.1.7", "0e:00:00:00:00:07"),
	}
	own6, _ := v6Half(own)
	st := desire(testNetwork6, own6, netip.MustParseAddr("fd70::1"), mustMAC("0e:00:00:00:06:01"), v6Halves(leases))
	want := []peer{{Subnet: netip.MustParsePrefix("fd00:10:244:2::/64"), PublicIP: netip.MustParseAddr("fd70::2"), MAC: mustMAC("0e:00:00:00:06:02")}}
	if !slices.Equal(st.peers, want) {
		t.Errorf("peers = %+v\nwant %+v", st.peers, want)
	}
	var errs []string
	for _, e := range st.errs {
		errs = append(errs, e.Error())
	}
	wantErrs := []string{
		"peer none (subnet fd00:10:244:3::/64): skipped: it has no PublicIPv6, which IPv6 routes to it need (its host has no global IPv6 address and no --public-ipv6)",
		"peer fd70::4 (subnet fd00:10:244:4::/64): skipped: it has no BackendData",
		"peer fd70::6 (subnet fd00:10:244:6::/64): skipped: its VtepMAC 0e:00:00:00:06:01 is this host's own",
		"peer fd70::5 (subnet fd00:99::/64): skipped: its IPv6 subnet is not inside the IPv6Network fd00:10:244::/56",
	}
	slices.Sort(errs)
	slices.Sort(wantErrs)
	if !slices.Equal(errs, wantErrs) {
		t.Errorf("errs:\n%s\nwant:\n%s", strings.Join(errs, "\n"), strings.Join(wantErrs, "\n"))
	}
	neighs, fdbs, routes := entries(st.peers, 9, nil)
	if len(neighs) != 1 || neighs[0].String() != "fd00:10:244:2:: lladdr 0e:00:00:00:06:02 dev if9 nud permanent" ||
		len(fdbs) != 1 || fdbs[0].String() != "0e:00:00:00:06:02 dev if9 dst fd70::2 self permanent" ||
		len(routes) != 1 || routes[0].String() != "fd00:10:244:2::/64 via fd00:10:244:2:: dev if9 proto weft onlink" {
		t.Errorf("entries: %v %v %v", neighs, fdbs, routes)
	}
}

func dualConfig(t *testing.T, backendJSON string) *netconf.Config {
	t.Helper()
	return mustConfig(t, `{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":`+backendJSON+`}`)
}

func mustConfig(t *testing.T, raw string) *netconf.Config {
	t.Helper()
	cfg, err := netconf.Parse([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestLeaseCheckIPv6: with IPv6 enabled, a BackendV6Data is judged as
// BackendData is; a lease without one is admitted for its IPv4 side.
func TestLeaseCheckIPv6(t *testing.T) {
	check, err := leaseCheck(dualConfig(t, `{"Type":"vxlan"}`))
	if err != nil {
		t.Fatal(err)
	}
	ok := dualLease("10.244.2.0/24", "192.168.1.2", "0e:00:00:00:00:02", "fd00:10:244:2::/64", "fd70::2", "0e:00:00:00:06:02")
	noV6Data := dualLease("10.244.2.0/24", "192.168.1.2", "0e:00:00:00:00:02", "fd00:10:244:2::/64", "fd70::2", "")
	for _, l := range []lease.Lease{ok, noV6Data} {
		if id, err := check(l); err != nil || id != "VtepMAC 0e:00:00:00:00:02" {
			t.Errorf("check(%s) = %q, %v", l.Attrs.BackendV6Data, id, err)
		}
	}
	for raw, want := range map[string]string{
		`{"VNI":2,"VtepMAC":"0e:00:00:00:06:02"}`: "BackendV6Data: it publishes VNI 2 but this network uses VNI 1",
		`{"VNI":1,"VtepMAC":"01:00:5e:00:00:01"}`: "BackendV6Data: BackendData {\"VNI\":1,\"VtepMAC\":\"01:00:5e:00:00:01\"}: VtepMAC 01:00:5e:00:00:01 is not a unicast address",
	} {
		l := ok
		l.Attrs.BackendV6Data = json.RawMessage(raw)
		if _, err := check(l); err == nil || err.Error() != want {
			t.Errorf("check(%s) = %v, want %s", raw, err, want)
		}
	}
}

// TestExpectDualStack: with IPv6 enabled, status expects flannel-v6.1 too
// (MTU of VXLAN over IPv6, the IPv6 VTEP MAC, its /128), pods get that MTU,
// and each peer's IPv6 entries follow its IPv4 ones in its row; a peer
// without an IPv6 half keeps its IPv4 entries alone.
func TestExpectDualStack(t *testing.T) {
	exp, err := expect(dualConfig(t, `{"Type":"vxlan"}`), backend.ExternalInterface{Name: "eth0", MTU: 1500})
	if err != nil {
		t.Fatal(err)
	}
	if exp.PodMTU != 1430 || !slices.Equal(exp.Overlays, []string{"flannel.1", "flannel-v6.1"}) || !strings.Contains(exp.MTUBasis, "minus 70 for VXLAN over IPv6") {
		t.Errorf("PodMTU %d, Overlays %v, MTUBasis %q", exp.PodMTU, exp.Overlays, exp.MTUBasis)
	}
	own := dualLease("10.244.1.0/24", "192.168.1.1", "0e:00:00:00:00:01", "fd00:10:244:1::/64", "fd70::1", "0e:00:00:00:06:01")
	dual := dualLease("10.244.2.0/24", "192.168.1.2", "0e:00:00:00:00:02", "fd00:10:244:2::/64", "fd70::2", "0e:00:00:00:06:02")
	v4only := vxLease("10.244.3.0/24", "192.168.1.3", "0e:00:00:00:00:03")
	w := exp.Wants(own, own.Attrs.PublicIP, []lease.Lease{own, dual, v4only}, nil)
	var host []string
	for _, e := range w.Host {
		host = append(host, e.String())
	}
	wantHost := []string{
		"flannel.1 mtu 1450 lladdr 0e:00:00:00:00:01 up",
		"10.244.1.0/32 dev flannel.1",
		"flannel-v6.1 mtu 1430 lladdr 0e:00:00:00:06:01 up",
		"fd00:10:244:1::/128 dev flannel-v6.1",
	}
	if !slices.Equal(host, wantHost) {
		t.Errorf("host wants:\n%s\nwant:\n%s", strings.Join(host, "\n"), strings.Join(wantHost, "\n"))
	}
	row := func(subnet string) []string {
		var out []string
		for _, e := range w.Peers[netip.MustParsePrefix(subnet)].Entries {
			out = append(out, e.String())
		}
		return out
	}
	wantDual := []string{
		"10.244.2.0 dev flannel.1 lladdr 0e:00:00:00:00:02 PERMANENT",
		"0e:00:00:00:00:02 dev flannel.1 dst 192.168.1.2 self permanent",
		"10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink",
		"fd00:10:244:2:: dev flannel-v6.1 lladdr 0e:00:00:00:06:02 PERMANENT",
		"0e:00:00:00:06:02 dev flannel-v6.1 dst fd70::2 self permanent",
		"fd00:10:244:2::/64 via fd00:10:244:2:: dev flannel-v6.1 onlink",
	}
	if got := row("10.244.2.0/24"); !slices.Equal(got, wantDual) {
		t.Errorf("dual-stack peer's wants:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantDual, "\n"))
	}
	if got := row("10.244.3.0/24"); len(got) != 3 || strings.Contains(strings.Join(got, " "), "flannel-v6") {
		t.Errorf("IPv4-only peer's wants: %v", got)
	}
	if _, ok := w.Peers[netip.MustParsePrefix("fd00:10:244:2::/64")]; ok {
		t.Error("an IPv6 half has a row of its own")
	}
}

// TestIPv6MTUFloor: with IPv6 enabled the configured MTU must leave
// flannel-v6 IPv6's minimum after VXLAN over IPv6.
func TestIPv6MTUFloor(t *testing.T) {
	cfg := dualConfig(t, `{"Type":"vxlan","MTU":1340}`)
	_, err := newIPv6Side(backend.Config{Network: cfg}, backend.ExternalInterface{Name: "eth0", Index: 2, Addr6: netip.MustParseAddr("fd70::1")},
		Settings{VNI: 1, MTU: 1340}, Options{}, nil)
	if err == nil || !strings.Contains(err.Error(), "at least 1350") {
		t.Errorf("newIPv6Side with MTU 1340 = %v, want an error naming 1350", err)
	}
}
