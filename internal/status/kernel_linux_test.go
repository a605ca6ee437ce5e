package status

import (
	"context"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/nstest"
)

// A real kernel holding what a vxlan host has after a peer rebooted: the
// snapshot sees the device, neighbours and FDB entries, and Build tells the
// up-to-date peer from the one with a stale VtepMAC, and notices that this
// host's own device MAC is not the one its lease publishes.
//
//	netns wtst<hex>: eth0 (a veth) 192.168.1.1/24
//	                  flannel.1 (vxlan 1 dev eth0) 10.244.1.0/32, MAC aa:bb:cc:dd:ee:01
//	peer 10.244.2.0/24 at 192.168.1.2: entries match its lease
//	peer 10.244.3.0/24 at 192.168.1.3: entries carry its old MAC ...:99
func TestSnapshotAndBuildVXLANInNamespace(t *testing.T) {
	nstest.RequireRoot(t)
	ns := nstest.NewNS(t, "st")
	for _, cmd := range []string{
		"ip link add eth0 type veth peer name eth0p",
		"ip link set eth0p up",
		"ip addr add 192.168.1.1/24 dev eth0",
		"ip link set eth0 up",
		"ip link add flannel.1 address aa:bb:cc:dd:ee:01 mtu 1450 type vxlan id 1 dev eth0 local 192.168.1.1 dstport 8472 nolearning",
		"ip addr add 10.244.1.0/32 dev flannel.1",
		"ip link set flannel.1 up",
		"ip neigh replace 10.244.2.0 lladdr aa:bb:cc:dd:ee:02 dev flannel.1 nud permanent",
		"bridge fdb replace aa:bb:cc:dd:ee:02 dev flannel.1 dst 192.168.1.2 self permanent",
		"ip route replace 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink proto 87",
		"ip neigh replace 10.244.3.0 lladdr aa:bb:cc:dd:ee:99 dev flannel.1 nud permanent",
		"bridge fdb replace aa:bb:cc:dd:ee:99 dev flannel.1 dst 192.168.1.3 self permanent",
		"ip route replace 10.244.3.0/24 via 10.244.3.0 dev flannel.1 onlink proto 87",
	} {
		nstest.Exec(t, ns, strings.Fields(cmd)...)
	}
	h, err := netns.Handle(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	k, err := Snapshot(h, []string{"flannel.1", "flannel.9"})
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	dev, ok := k.Link("flannel.1")
	if !ok || dev.MAC != mac("aa:bb:cc:dd:ee:01") || dev.MTU != 1450 || !dev.Up ||
		!slices.Contains(dev.Addrs, pfx("10.244.1.0/32")) {
		t.Fatalf("flannel.1 in snapshot = %+v, %v", dev, ok)
	}
	if len(k.Neighs) != 2 || len(k.FDB) < 2 {
		t.Fatalf("snapshot neighbours %v, fdb %v; want the two of each the test added", k.Neighs, k.FDB)
	}

	in := Inputs{
		Now:    t0,
		Config: mustConfig(t, vxlanConfig),
		Leases: []lease.Lease{
			// The own lease publishes another MAC than flannel.1 has.
			vxlanLease("10.244.1.0/24", "192.168.1.1", "aa:bb:cc:dd:ee:10", 1, time.Hour*24),
			vxlanLease("10.244.2.0/24", "192.168.1.2", "aa:bb:cc:dd:ee:02", 1, time.Hour*24),
			vxlanLease("10.244.3.0/24", "192.168.1.3", "aa:bb:cc:dd:ee:03", 1, time.Hour*24),
		},
		SubnetFile:  "subnet.env",
		SubnetEnv:   subnetEnvFor("10.244.1.0/24", 1450),
		Ext:         eth0(),
		PublicIP:    ip("192.168.1.1"),
		Kernel:      k,
		RenewMargin: time.Hour,
	}
	r := Build(in)
	codes := map[string][]string{"host": nil}
	for _, p := range r.Problems {
		codes["host"] = append(codes["host"], p.Code)
	}
	for _, row := range r.Leases {
		for _, p := range row.Problems {
			codes[row.Subnet] = append(codes[row.Subnet], p.Code)
		}
	}
	if got := codes["host"]; !slices.Equal(got, []string{CodeOwnVtepMAC}) {
		t.Errorf("host problems %v, want own_vtep_mac only", got)
	}
	if got := codes["10.244.2.0/24"]; len(got) != 0 {
		t.Errorf("peer 10.244.2.0/24 problems %v, want none", got)
	}
	if got := codes["10.244.3.0/24"]; !slices.Equal(got, []string{CodeWrongVtepMAC, CodeWrongVtepMAC}) {
		t.Errorf("peer 10.244.3.0/24 problems %v, want wrong_vtep_mac for its neighbour and FDB entries", got)
	}
}

// NetProber from inside a namespace, over each family (--check probes a
// peer over each): route lookup, echo, the don't-fragment echo that a
// smaller MTU on the far side swallows, an absent address, and the port
// probe with and without a listener.
//
//	netns A: va 10.9.0.1/24 fd09::1/64 mtu 1500 ── vb 10.9.0.2/24 fd09::2/64 mtu 1400 :netns B
func TestNetProberInNamespaces(t *testing.T) {
	nstest.RequireRoot(t)
	a, b := nstest.NewNS(t, "pa"), nstest.NewNS(t, "pb")
	nstest.Exec(t, a, "ip", "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b)
	nstest.Exec(t, a, "ip", "addr", "add", "10.9.0.1/24", "dev", "va")
	nstest.Exec(t, a, "ip", "addr", "add", "fd09::1/64", "dev", "va", "nodad")
	nstest.Exec(t, a, "ip", "link", "set", "va", "up")
	nstest.Exec(t, b, "ip", "addr", "add", "10.9.0.2/24", "dev", "vb")
	nstest.Exec(t, b, "ip", "addr", "add", "fd09::2/64", "dev", "vb", "nodad")
	nstest.Exec(t, b, "ip", "link", "set", "vb", "mtu", "1400", "up")

	h, err := netns.Handle(a)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	p := NetProber{Handle: h}
	ctx := context.Background()
	in := func(fn func() error) error { return netns.Do(a, fn) }
	for _, f := range []struct{ name, self, peer, unrouted, absent, udp string }{
		{"IPv4", "10.9.0.1", "10.9.0.2", "172.31.0.1", "10.9.0.77", "udp4"},
		{"IPv6", "fd09::1", "fd09::2", "fd31::1", "fd09::77", "udp6"},
	} {
		t.Run(f.name, func(t *testing.T) {
			peer := ip(f.peer)
			path, err := p.Lookup(peer)
			if err != nil || path.Dev != "va" || path.Gw.IsValid() || path.Src != ip(f.self) {
				t.Errorf("Lookup(%s) = %v, %v; want dev va without gateway, src %s", peer, path, err, f.self)
			}
			if _, err := p.Lookup(ip(f.unrouted)); err == nil || !strings.Contains(err.Error(), ErrNoRoute.Error()) {
				t.Errorf("Lookup of an unrouted address: err = %v, want ErrNoRoute", err)
			}
			// IPv6 neighbour discovery settles with the first echoes; the
			// first reply gets a deadline.
			nstest.Eventually(t, 10*time.Second, func() error {
				return in(func() (err error) { _, err = p.Echo(ctx, peer, 0); return })
			})
			if err := in(func() (err error) { _, err = p.Echo(ctx, peer, 1400); return }); err != nil {
				t.Errorf("1400-byte DF echo across MTU 1400: %v, want a reply", err)
			}
			if err := in(func() (err error) { _, err = p.Echo(ctx, peer, 1500); return }); err == nil {
				t.Error("1500-byte DF echo into an MTU-1400 device got a reply; want it lost")
			}
			if err := in(func() (err error) { _, err = p.Echo(ctx, ip(f.absent), 0); return }); err == nil {
				t.Error("echo to an absent address got a reply")
			}

			port := netip.AddrPortFrom(peer, 8472)
			var closed bool
			if err := in(func() (err error) { closed, err = p.PortUnreachable(ctx, port); return }); err != nil || !closed {
				t.Errorf("PortUnreachable without a listener = %v, %v; want true", closed, err)
			}
			var ln net.PacketConn
			if err := netns.Do(b, func() (err error) { ln, err = net.ListenPacket(f.udp, port.String()); return }); err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			if err := in(func() (err error) { closed, err = p.PortUnreachable(ctx, port); return }); err != nil || closed {
				t.Errorf("PortUnreachable with a listener = %v, %v; want false", closed, err)
			}
		})
	}
}

// routeGetFunc answers ip route get with a function.
type routeGetFunc func(net.IP) ([]netlink.Route, error)

func (f routeGetFunc) RouteGet(dst net.IP) ([]netlink.Route, error) { return f(dst) }

// directPeers names the device of each directly reachable peer from the
// snapshot, and a peer reached through an overlay device is not direct.
func TestDirectPeersNamesLinksAndSkipsOverlays(t *testing.T) {
	k := Kernel{Links: []Link{{Name: "eth0", Index: 2}, {Name: "eth1", Index: 3}, {Name: "flannel.1", Index: 5}}}
	via := map[string]int{"192.168.1.2": 2, "192.168.2.2": 3, "10.9.0.1": 5}
	h := routeGetFunc(func(dst net.IP) ([]netlink.Route, error) {
		return []netlink.Route{{Type: unix.RTN_UNICAST, LinkIndex: via[dst.String()]}}, nil
	})
	ips := []netip.Addr{netip.MustParseAddr("192.168.1.2"), netip.MustParseAddr("192.168.2.2"), netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("10.9.9.9")}
	got := directPeers(h, k, ips, []string{"flannel.1", "flannel.7"})
	want := map[netip.Addr]string{netip.MustParseAddr("192.168.1.2"): "eth0", netip.MustParseAddr("192.168.2.2"): "eth1"}
	if !maps.Equal(got, want) {
		t.Errorf("directPeers = %v, want %v", got, want)
	}
}
