package status

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/backend/wireguard"
	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
)

func wgKey(t *testing.T, b byte) wireguard.Key {
	t.Helper()
	var k wireguard.Key
	for i := range k {
		k[i] = b
	}
	return k
}

func wgStatusLease(subnet, pub string, key wireguard.Key) lease.Lease {
	return lease.Lease{Subnet: netip.MustParsePrefix(subnet), Attrs: lease.Attrs{
		PublicIP: netip.MustParseAddr(pub), BackendType: "wireguard",
		BackendData: json.RawMessage(`{"PublicKey":"` + key.String() + `","Port":51820}`)}}
}

// --check explains a silent wireguard peer with what the device knows: no
// handshake (a blocked port or a wrong key; nothing listening when the
// port probe said so), a key the device does not hold yet, and this
// host's own key differing from its lease.
func TestAddWireGuard(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	no, yes := false, true
	leases := []lease.Lease{
		wgStatusLease("10.244.1.0/24", "192.168.0.1", wgKey(t, 1)), // self
		wgStatusLease("10.244.2.0/24", "192.168.0.2", wgKey(t, 2)), // silent, port open: no handshake
		wgStatusLease("10.244.3.0/24", "192.168.0.3", wgKey(t, 3)), // silent, port closed
		wgStatusLease("10.244.4.0/24", "192.168.0.4", wgKey(t, 4)), // silent, device has its old key
		wgStatusLease("10.244.5.0/24", "192.168.0.5", wgKey(t, 5)), // answers
	}
	gw := Problem{Code: CodeGatewayNoAnswer, Message: "pod gateway silent"}
	r := Report{Leases: []Row{
		{Subnet: "10.244.1.0/24", Self: true},
		{Subnet: "10.244.2.0/24", Check: &Check{PortUnreachable: &no}, Problems: []Problem{gw}},
		{Subnet: "10.244.3.0/24", Check: &Check{PortUnreachable: &yes}, Problems: []Problem{{Code: CodeUDPPortClosed}}},
		{Subnet: "10.244.4.0/24", Check: &Check{}, Problems: []Problem{gw}},
		{Subnet: "10.244.5.0/24", Check: &Check{Reply: true}},
	}}
	ownPub := wgKey(t, 9) // not what the lease publishes
	dev := wireguard.DeviceStatus{PublicKey: ownPub, ListenPort: 51820, Peers: []wireguard.PeerStatus{
		{Key: wgKey(t, 2), Endpoint: netip.MustParseAddrPort("192.168.0.2:51820"), TxBytes: 888, LastHandshake: now.Add(-10 * time.Minute)},
		{Key: wgKey(t, 3), Endpoint: netip.MustParseAddrPort("192.168.0.3:51820"), TxBytes: 148},
		{Key: wgKey(t, 7), Endpoint: netip.MustParseAddrPort("192.168.0.4:51820"), AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.244.4.0/24")}},
		{Key: wgKey(t, 5), Endpoint: netip.MustParseAddrPort("192.168.0.5:51820")},
	}}
	addWireGuard(&r, leases, []wgDevice{{name: "flannel-wg", sock: "/run/flannel/flannel-wg.sock", probed: true, st: dev}}, now)

	if len(r.Problems) != 1 || r.Problems[0].Code != CodeWGOwnKey || !strings.Contains(r.Problems[0].Message, ownPub.String()) {
		t.Errorf("host problems = %+v", r.Problems)
	}
	codes := func(row Row) (out []string) {
		for _, p := range row.Problems {
			out = append(out, p.Code)
		}
		return out
	}
	if got := codes(r.Leases[1]); len(got) != 1 || got[0] != CodeWGNoHandshake ||
		!strings.Contains(r.Leases[1].Problems[0].Message, "UDP port 51820 is blocked") ||
		!strings.Contains(r.Leases[1].Problems[0].Message, "does not hold the public key "+wgKey(t, 2).String()) ||
		!strings.Contains(r.Leases[1].Problems[0].Message, "last: 10m0s ago") {
		t.Errorf("no handshake, port open: %+v", r.Leases[1].Problems)
	}
	if got := codes(r.Leases[2]); len(got) != 2 || got[1] != CodeWGNoHandshake || !strings.Contains(r.Leases[2].Problems[1].Message, "nothing receives on UDP port 51820") {
		t.Errorf("no handshake, port closed: %+v", r.Leases[2].Problems)
	}
	if got := codes(r.Leases[3]); len(got) != 1 || got[0] != CodeWGPeerKey || !strings.Contains(r.Leases[3].Problems[0].Message, wgKey(t, 7).String()) {
		t.Errorf("old key: %+v", r.Leases[3].Problems)
	}
	if len(r.Leases[4].Problems) != 0 || r.Leases[4].Status != "ok" {
		t.Errorf("answering peer: %+v", r.Leases[4])
	}
	if r.OK || r.ProblemCount != 5 {
		t.Errorf("report OK %v with %d problems", r.OK, r.ProblemCount)
	}

	// The device cannot be asked: one host problem naming the socket.
	r = Report{}
	addWireGuard(&r, nil, []wgDevice{{name: "flannel-wg", sock: "/run/x/flannel-wg.sock", probed: true, err: errors.New("connection refused")}}, now)
	if len(r.Problems) != 1 || r.Problems[0].Code != CodeWGDevice || !strings.Contains(r.Problems[0].Message, "/run/x/flannel-wg.sock") {
		t.Errorf("no device: %+v", r.Problems)
	}
}

// A dual-stack host in Mode separate has two devices, each asked through
// its own socket: flannel-wg, which --check's probes go through, and
// flannel-wg-v6, whose peers' keys are their leases' BackendV6Data. A
// peer's key missing from flannel-wg-v6 is reported, unless the peer is
// on an IPv4-only config or its IPv6 half is refused; this host's own
// BackendV6Data key is compared with flannel-wg-v6's.
func TestAddWireGuardDualStack(t *testing.T) {
	dual := &netconf.Config{EnableIPv4: true, EnableIPv6: true, Network: netip.MustParsePrefix("10.244.0.0/16"),
		IPv6Network: netip.MustParsePrefix("fd00:10:244::/56"), BackendType: "wireguard"}
	devs := wireguardDevices(dual, "/run/flannel/subnet.env")
	if len(devs) != 2 || devs[0].name != "flannel-wg" || devs[0].sock != "/run/flannel/flannel-wg.sock" || !devs[0].probed || devs[0].v6key ||
		devs[1].name != "flannel-wg-v6" || devs[1].sock != "/run/flannel/flannel-wg-v6.sock" || devs[1].probed || !devs[1].v6key {
		t.Fatalf("dual-stack devices: %+v", devs)
	}
	v6only := &netconf.Config{EnableIPv6: true, IPv6Network: dual.IPv6Network, BackendType: "wireguard"}
	if d := wireguardDevices(v6only, "/run/flannel/subnet.env"); len(d) != 1 || d[0].name != "flannel-wg-v6" || !d[0].probed || !d[0].v6key {
		t.Errorf("IPv6-only devices: %+v", d)
	}
	auto := *dual
	auto.Backend = json.RawMessage(`{"Mode":"auto"}`)
	if d := wireguardDevices(&auto, "/run/flannel/subnet.env"); len(d) != 1 || d[0].name != "flannel-wg" || !d[0].probed || d[0].v6key {
		t.Errorf("Mode auto devices: %+v", d)
	}

	dualLease := func(i byte, key wireguard.Key) lease.Lease {
		l := wgStatusLease("10.244."+string('0'+i)+".0/24", "192.168.0."+string('0'+i), key)
		l.IPv6Subnet = netip.MustParsePrefix("fd00:10:244:" + string('0'+i) + "::/64")
		l.Attrs.PublicIPv6 = netip.MustParseAddr("fd70::" + string('0'+i))
		l.Attrs.BackendV6Data = json.RawMessage(`{"PublicKey":"` + key.String() + `","Port":51821}`)
		return l
	}
	leases := []lease.Lease{
		dualLease(1, wgKey(t, 1)),                                  // self
		dualLease(2, wgKey(t, 2)),                                  // on both devices
		dualLease(3, wgKey(t, 3)),                                  // missing from flannel-wg-v6
		wgStatusLease("10.244.4.0/24", "192.168.0.4", wgKey(t, 4)), // IPv4-only config
		dualLease(5, wgKey(t, 5)),                                  // IPv6 half refused
	}
	refusedV6 := Problem{Code: CodeBadLease, Message: "IPv6 half refused"}
	rows := func() []Row {
		var out []Row
		for i, l := range leases {
			row := Row{Subnet: l.Subnet.String(), IPv6Subnet: prefixOrEmpty(l.IPv6Subnet), Self: i == 0}
			if !row.Self {
				row.Check = &Check{Reply: true}
			}
			if i == 4 {
				row.Problems = []Problem{refusedV6}
			}
			out = append(out, row)
		}
		return out
	}
	peer := func(k wireguard.Key) wireguard.PeerStatus { return wireguard.PeerStatus{Key: k} }
	devs[0].st = wireguard.DeviceStatus{PublicKey: wgKey(t, 1), Peers: []wireguard.PeerStatus{peer(wgKey(t, 2)), peer(wgKey(t, 3)), peer(wgKey(t, 4)), peer(wgKey(t, 5))}}
	devs[1].st = wireguard.DeviceStatus{PublicKey: wgKey(t, 9), Peers: []wireguard.PeerStatus{peer(wgKey(t, 2))}}
	r := Report{Leases: rows()}
	addWireGuard(&r, leases, devs, time.Unix(1_800_000_000, 0))
	if len(r.Problems) != 1 || r.Problems[0].Code != CodeWGOwnKey || !strings.Contains(r.Problems[0].Message, "BackendV6Data") ||
		!strings.Contains(r.Problems[0].Message, "flannel-wg-v6 uses "+wgKey(t, 9).String()) {
		t.Errorf("host problems: %+v", r.Problems)
	}
	for i, row := range r.Leases {
		switch {
		case i == 2:
			if len(row.Problems) != 1 || row.Problems[0].Code != CodeWGPeerKey || !strings.Contains(row.Problems[0].Message, "flannel-wg-v6 has no peer with the public key "+wgKey(t, 3).String()) ||
				!strings.Contains(row.Problems[0].Message, "fd00:10:244:3::/64") {
				t.Errorf("peer 3: %+v", row.Problems)
			}
		case i == 4:
			if len(row.Problems) != 1 || row.Problems[0] != refusedV6 {
				t.Errorf("peer 5: %+v", row.Problems)
			}
		case len(row.Problems) != 0:
			t.Errorf("row %d: %+v", i, row.Problems)
		}
	}

	// The IPv6 probe of peer 2 fails while its IPv4 one passes, and
	// flannel-wg-v6 holds peer 2's key without a handshake: the IPv6
	// side's "gateway does not answer" becomes the WireGuard explanation
	// naming port 51821, marked IPv6; the IPv4 side is untouched.
	r = Report{Leases: rows()}
	r.Leases[1].CheckIPv6 = &Check{Family: "IPv6"}
	r.Leases[1].Problems = []Problem{{Code: CodeGatewayNoAnswer, Message: "IPv6: the pod gateway does not answer"}}
	addWireGuard(&r, leases, devs, time.Unix(1_800_000_000, 0))
	if p := r.Leases[1].Problems; len(p) != 1 || p[0].Code != CodeWGNoHandshake || !strings.HasPrefix(p[0].Message, "IPv6: no WireGuard handshake") ||
		!strings.Contains(p[0].Message, "UDP port 51821") {
		t.Errorf("peer 2 with its IPv6 probe failing: %+v", p)
	}

	// flannel-wg-v6 cannot be asked: a host problem naming it; flannel-wg
	// is still read.
	devs[1].err = errors.New("connection refused")
	r = Report{Leases: rows()}
	addWireGuard(&r, leases, devs, time.Unix(1_800_000_000, 0))
	if len(r.Problems) != 1 || r.Problems[0].Code != CodeWGDevice || !strings.Contains(r.Problems[0].Message, "flannel-wg-v6 through /run/flannel/flannel-wg-v6.sock") {
		t.Errorf("no flannel-wg-v6: %+v", r.Problems)
	}
}

// The model of a dual-stack wireguard host in Mode separate: flannel-wg
// and flannel-wg-v6 with MTU 1500 − 80, each with its network's route,
// judged as host entries; a peer's probe goes to its IPv4 pod address by
// flannel-wg's route, not by flannel-wg-v6's. With one device missing,
// the host's entries say which.
func TestBuildWireGuardDualStack(t *testing.T) {
	in := hostgwHealthy(t)
	in.Config = mustConfig(t, `{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"wireguard"}}`)
	for i := range in.Leases {
		l := &in.Leases[i]
		key := wgKey(t, byte(i+1))
		l.IPv6Subnet = netip.MustParsePrefix("fd00:10:244:" + string(rune('1'+i)) + "::/64")
		l.Attrs.PublicIPv6 = netip.MustParseAddr("2001:db8::" + string(rune('1'+i)))
		l.Attrs.BackendType = "wireguard"
		l.Attrs.BackendData = json.RawMessage(`{"PublicKey":"` + key.String() + `","Port":51820}`)
		l.Attrs.BackendV6Data = json.RawMessage(`{"PublicKey":"` + key.String() + `","Port":51821}`)
	}
	in.SubnetEnv.MTU = 1420
	in.SubnetEnv.IPv6Network = []netip.Prefix{pfx("fd00:10:244::/56")}
	in.SubnetEnv.IPv6Subnet = pfx("fd00:10:244:1::/64")
	in.Kernel = hostgwKernel(
		kernel.Route{Dst: pfx("10.244.0.0/16"), LinkIndex: 7, Proto: kernel.ProtoWeft},
		kernel.Route{Dst: pfx("fd00:10:244::/56"), LinkIndex: 8, Proto: kernel.ProtoWeft})
	in.Kernel.Links[2].MTU = 1420 // cni0, as the CNI plugin sets it from FLANNEL_MTU
	in.Kernel.Links = append(in.Kernel.Links,
		Link{Name: "flannel-wg", Index: 7, MTU: 1420, Up: true, Addrs: []netip.Prefix{pfx("10.244.1.0/32")}},
		Link{Name: "flannel-wg-v6", Index: 8, MTU: 1420, Up: true, Addrs: []netip.Prefix{pfx("fd00:10:244:1::/128")}})
	r := Build(in)
	if !r.OK {
		t.Errorf("healthy dual-stack wireguard host not OK: %+v", r.Problems)
	}
	var host []string
	for _, e := range r.Host.Entries {
		host = append(host, e.Want+" "+e.State)
	}
	if got, want := strings.Join(host, "|"), "flannel-wg mtu 1420 up ok|10.244.0.0/16 dev flannel-wg ok|flannel-wg-v6 mtu 1420 up ok|fd00:10:244::/56 dev flannel-wg-v6 ok"; got != want {
		t.Errorf("host entries %s, want %s", got, want)
	}
	row := rowByNet(t, r, "10.244.2.0/24")
	var probes []string
	for _, tg := range row.targets {
		probes = append(probes, tg.addr.String()+" by "+tg.path.String())
	}
	// Each family's probe follows the route of its own device.
	if got, want := strings.Join(probes, "|"), "10.244.2.1 by 10.244.0.0/16 dev flannel-wg|fd00:10:244:2::1 by fd00:10:244::/56 dev flannel-wg-v6"; got != want {
		t.Errorf("probes of peer 2: %s, want %s", got, want)
	}

	in.Kernel.Links = in.Kernel.Links[:len(in.Kernel.Links)-1]
	in.Kernel.Routes = in.Kernel.Routes[:1]
	r = Build(in)
	if r.OK || !strings.Contains(fmt.Sprint(r.Host.Entries), "flannel-wg-v6 mtu 1420 up") {
		t.Errorf("no flannel-wg-v6: %+v", r.Host.Entries)
	}
}
