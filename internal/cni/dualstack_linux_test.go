package cni_test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/nstest"
)

const (
	network6 = "fd00:10:244::/56"
	subnet6  = "fd00:10:244:11::/64"
	gw6      = "fd00:10:244:11::1"
)

// setEnv writes subnet.env text as is.
func (n *node) setEnv(text string) {
	n.t.Helper()
	if err := os.MkdirAll(filepath.Dir(n.subnetFile), 0o755); err != nil {
		n.t.Fatal(err)
	}
	if err := os.WriteFile(n.subnetFile, []byte(text), 0o644); err != nil {
		n.t.Fatal(err)
	}
}

// noDAD turns duplicate address detection off in a netns, so that IPv6
// addresses are usable at once instead of after a second or two of
// "tentative" (the test's namespaces have no duplicates to detect).
func noDAD(t *testing.T, ns string) {
	t.Helper()
	for _, k := range []string{"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"} {
		nstest.Exec(t, ns, "sysctl", "-q", "-w", k)
	}
}

func podIPs(r *types100.Result) (v4, v6 []netip.Prefix) {
	for _, c := range r.IPs {
		a, _ := netip.AddrFromSlice(c.Address.IP)
		ones, _ := c.Address.Mask.Size()
		p := netip.PrefixFrom(a.Unmap(), ones)
		if p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	return v4, v6
}

// hasRoute reports whether link in h has a route to dst via gw.
func hasRoute(t *testing.T, h *netlink.Handle, link, dst, gw string, family int) bool {
	t.Helper()
	l, err := h.LinkByName(link)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := h.RouteList(l, family)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Dst != nil && r.Dst.String() == dst && r.Gw.String() == gw {
			return true
		}
	}
	return false
}

// TestDualStackPods: with both families in subnet.env the real bridge and
// host-local plugins give each pod one address of each family (IPv4
// range set first, as flannel orders them), routes to both cluster
// networks via the bridge, and pods reach each other over both.
func TestDualStackPods(t *testing.T) {
	n := newNode(t)
	noDAD(t, n.ns)
	n.setEnv(fmt.Sprintf("FLANNEL_NETWORK=%s\nFLANNEL_SUBNET=%s\nFLANNEL_IPV6_NETWORK=%s\nFLANNEL_IPV6_SUBNET=%s\nFLANNEL_MTU=%d\nFLANNEL_IPMASQ=true\n",
		network, gwA, network6, gw6+"/64", mtu))
	l := n.conflist("1.0.0")
	podA, podB := nstest.NewNS(t, "p"), nstest.NewNS(t, "p")
	noDAD(t, podA)
	noDAD(t, podB)
	resA := n.mustAdd(l, podA, "ctr-a")
	resB := n.mustAdd(l, podB, "ctr-b")

	a4, a6 := podIPs(resA)
	b4, b6 := podIPs(resB)
	if len(a4) != 1 || len(a6) != 1 || len(b4) != 1 || len(b6) != 1 {
		t.Fatalf("pod addresses A %v %v, B %v %v: want one of each family", a4, a6, b4, b6)
	}
	if !netip.MustParsePrefix(subnetA).Contains(a4[0].Addr()) || !netip.MustParsePrefix(subnet6).Contains(a6[0].Addr()) || a6[0].Bits() != 64 {
		t.Errorf("pod A got %s and %s, want addresses of %s and %s", a4[0], a6[0], subnetA, subnet6)
	}
	if resA.IPs[0].Address.IP.To4() == nil {
		t.Errorf("first address of the result is %s: the IPv4 range set must come first", resA.IPs[0].Address.IP)
	}
	hA := handle(t, podA)
	if !hasRoute(t, hA, "eth0", network, "10.1.17.1", netlink.FAMILY_V4) || !hasRoute(t, hA, "eth0", network6, gw6, netlink.FAMILY_V6) {
		t.Errorf("pod A lacks a route to %s via 10.1.17.1 or to %s via %s", network, network6, gw6)
	}
	// The saved delegate: one range set per family, routes for both.
	b, err := os.ReadFile(filepath.Join(n.dataDir, "ctr-a"))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`{"cniVersion":"1.0.0","hairpinMode":true,"ipMasq":false,"ipam":{"dataDir":%q,"ranges":[[{"subnet":"10.1.17.0/24"}],[{"subnet":"fd00:10:244:11::/64"}]],"routes":[{"dst":"10.1.0.0/16"},{"dst":"fd00:10:244::/56"}],"type":"host-local"},"isDefaultGateway":true,"isGateway":true,"mtu":1472,"name":"cbr0","type":"bridge"}`, n.ipamDir)
	if string(b) != want {
		t.Errorf("saved delegate config:\n got %s\nwant %s", b, want)
	}

	tcpConnect(t, podA, podB, a4[0].Addr())
	tcpConnect(t, podA, podB, a6[0].Addr())

	if err := n.del(l, podA, "ctr-a"); err != nil {
		t.Fatal(err)
	}
	for _, ip := range []netip.Addr{a4[0].Addr(), a6[0].Addr()} {
		if _, err := os.Stat(filepath.Join(n.ipamDir, "cbr0", ip.String())); !os.IsNotExist(err) {
			t.Errorf("address %s still reserved after DEL: %v", ip, err)
		}
	}
}

// TestIPv6OnlyPods: with only the IPv6 lines in subnet.env pods get an
// IPv6 address and route, and no IPv4.
func TestIPv6OnlyPods(t *testing.T) {
	n := newNode(t)
	noDAD(t, n.ns)
	n.setEnv(fmt.Sprintf("FLANNEL_IPV6_NETWORK=%s\nFLANNEL_IPV6_SUBNET=%s\nFLANNEL_MTU=%d\nFLANNEL_IPMASQ=true\n", network6, gw6+"/64", mtu))
	l := n.conflist("1.0.0")
	podA, podB := nstest.NewNS(t, "p"), nstest.NewNS(t, "p")
	noDAD(t, podA)
	noDAD(t, podB)
	resA := n.mustAdd(l, podA, "ctr-a")
	n.mustAdd(l, podB, "ctr-b")
	a4, a6 := podIPs(resA)
	if len(a4) != 0 || len(a6) != 1 || !netip.MustParsePrefix(subnet6).Contains(a6[0].Addr()) {
		t.Fatalf("pod addresses %v %v: want only one of %s", a4, a6, subnet6)
	}
	if !hasRoute(t, handle(t, podA), "eth0", network6, gw6, netlink.FAMILY_V6) {
		t.Errorf("pod lacks a route to %s via %s", network6, gw6)
	}
	tcpConnect(t, podA, podB, a6[0].Addr())
}
