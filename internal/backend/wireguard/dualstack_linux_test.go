package wireguard

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/backend/backendtest"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/nstest"
)

// The dual-stack root tests run on backendtest.Hosts: host i has eth0
// 192.168.78.i and fd70::i (its PublicIP and PublicIPv6), cni0 10.244.i.1
// and fd00:10:244:i::1 standing in for pods, and leases 10.244.i.0/24 and
// fd00:10:244:i::/64.

// echoVia waits until from's pod reaches an echo server on to's pod over
// the family of target, then checks that the kernel routes it into dev
// and that dev's peer for to has received something: the traffic went
// through that WireGuard device.
func echoVia(t *testing.T, from, to *host, target, dev string) {
	t.Helper()
	// The greetings make a session within a second; the deadline leaves
	// room for WireGuard's own retries on a loaded machine.
	nstest.Eventually(t, 30*time.Second, func() error { return from.Echo(target, time.Second) })
	ap := netip.MustParseAddrPort(target)
	if got := nstest.Exec(t, from.NS, "ip", "route", "get", ap.Addr().String(), "from", podIPFor(from, ap.Addr()).String()); !strings.Contains(got, "dev "+dev+" ") {
		t.Errorf("%s routes %s not into %s: %s", from.NS, ap.Addr(), dev, got)
	}
	st, err := from.b.DeviceStatus(dev)
	if err != nil {
		t.Fatal(err)
	}
	key := to.b.PublicKey()
	i := slices.IndexFunc(st.Peers, func(p PeerStatus) bool { return p.Key == key })
	if i < 0 || st.Peers[i].RxBytes == 0 || st.Peers[i].LastHandshake.IsZero() {
		t.Errorf("%s's %s has no session with %s carrying traffic: %+v", from.NS, dev, to.NS, st.Peers)
	}
}

func podIPFor(h *host, dst netip.Addr) netip.Addr {
	if dst.Is6() {
		return h.PodIP6
	}
	return h.PodIP
}

// peersOfDev is dev's peers on h by key: endpoint and allowed IPs, as
// "endpoint allowed,allowed".
func peersOfDev(t *testing.T, h *host, dev string) map[Key]string {
	t.Helper()
	st, err := h.b.DeviceStatus(dev)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[Key]string)
	for _, p := range st.Peers {
		var allowed []string
		for _, a := range p.AllowedIPs {
			allowed = append(allowed, a.String())
		}
		out[p.Key] = p.Endpoint.String() + " " + strings.Join(allowed, ",")
	}
	return out
}

// Mode separate, in a mixed cluster: two dual-stack hosts carry each
// other's pods' IPv4 through flannel-wg and IPv6 through flannel-wg-v6
// (over the IPv6 underlay, to [PublicIPv6]:51821), and both reach the pods
// of a third host still on an IPv4-only config through flannel-wg, which
// has no flannel-wg-v6. A lease whose IPv6 half is bad costs the peer its
// IPv6 alone. Each dual-stack host repairs its IPv6 route and
// flannel-wg-v6 when they are deleted.
func TestDualStackSeparate(t *testing.T) {
	dual := hostSpec{v4: true, v6: true}
	hosts := startHostsSpec(t, []hostSpec{dual, dual, v4host})
	h1, h2, h3 := hosts[0], hosts[1], hosts[2]

	echoVia(t, h1, h2, h2.EchoServer(t), DeviceName)
	echoVia(t, h1, h2, h2.EchoServer6(t), DeviceNameV6)
	echoVia(t, h2, h1, h1.EchoServer6(t), DeviceNameV6)
	echoVia(t, h1, h3, h3.EchoServer(t), DeviceName)
	echoVia(t, h3, h2, h2.EchoServer(t), DeviceName)

	if got := nstest.Exec(t, h1.NS, "ip", "-6", "addr", "show", "dev", DeviceNameV6); !strings.Contains(got, "inet6 fd00:10:244:1::/128") {
		t.Errorf("flannel-wg-v6's addresses:\n%s", got)
	}
	if got := nstest.Exec(t, h1.NS, "ip", "-d", "link", "show", DeviceNameV6); !strings.Contains(got, "mtu 1420") || !strings.Contains(got, "tun type tun") {
		t.Errorf("flannel-wg-v6 is not a tun with MTU 1420:\n%s", got)
	}
	if got := nstest.Exec(t, h1.NS, "ip", "-6", "route", "show", backendtest.Network6.String()); !strings.Contains(got, "dev "+DeviceNameV6) || !strings.Contains(got, "proto 87") {
		t.Errorf("IPv6Network route: %s", got)
	}
	if v6 := peersOfDev(t, h1, DeviceNameV6); len(v6) != 1 || v6[h2.b.PublicKey()] != "[fd70::2]:51821 fd00:10:244:2::/64" {
		t.Errorf("h1's flannel-wg-v6 peers: %v", v6)
	}
	if v4 := peersOfDev(t, h1, DeviceName); len(v4) != 2 || v4[h2.b.PublicKey()] != "192.168.78.2:51820 10.244.2.0/24" || v4[h3.b.PublicKey()] != "192.168.78.3:51820 10.244.3.0/24" {
		t.Errorf("h1's flannel-wg peers: %v", v4)
	}
	if _, err := h3.Handle.LinkByName(DeviceNameV6); err == nil {
		t.Errorf("the IPv4-only host has %s", DeviceNameV6)
	}

	// h2 republished without a PublicIPv6: h1 keeps it over IPv4 only.
	bad := h2.lease
	bad.Attrs.PublicIPv6 = netip.Addr{}
	err := h1.b.Apply(t.Context(), []lease.Lease{h1.lease, bad, h3.lease})
	if err == nil || !strings.Contains(err.Error(), "no IPv6 over wireguard") || !strings.Contains(err.Error(), "no PublicIPv6") {
		t.Errorf("Apply with a bad IPv6 half: %v", err)
	}
	if v6 := peersOfDev(t, h1, DeviceNameV6); len(v6) != 0 {
		t.Errorf("flannel-wg-v6 kept a peer with a bad IPv6 half: %v", v6)
	}
	if err := h1.Echo(h2.EchoServer(t), 5*time.Second); err != nil {
		t.Errorf("IPv4 to the peer with a bad IPv6 half: %v", err)
	}
	applyAll(t, hosts)

	before := h1.b.Repairs()
	nstest.Exec(t, h1.NS, "ip", "-6", "route", "del", backendtest.Network6.String(), "dev", DeviceNameV6)
	target6 := h2.EchoServer6(t)
	nstest.Eventually(t, 10*time.Second, func() error {
		if h1.b.Repairs() == before {
			return errNotYet("IPv6 route repair")
		}
		return h1.Echo(target6, time.Second)
	})
	before = h1.b.Repairs()
	nstest.Exec(t, h1.NS, "ip", "link", "del", DeviceNameV6)
	nstest.Eventually(t, 30*time.Second, func() error {
		if h1.b.Repairs() == before {
			return errNotYet("flannel-wg-v6 repair")
		}
		return h1.Echo(target6, time.Second)
	})
	if err := h1.Echo(h2.EchoServer(t), 5*time.Second); err != nil {
		t.Errorf("IPv4 after flannel-wg-v6 was made again: %v", err)
	}

	// A peer removed behind the agent's back (wg set ... peer K remove,
	// through the status socket) is put back by the next repair; a peer
	// added there that no lease has is removed.
	before = h1.b.Repairs()
	stranger := mustKey(t, 99)
	sock := filepath.Join(h1.dir, StatusSocketNameV6)
	if err := SetSocket(sock, fmt.Sprintf("public_key=%s\nremove=true\npublic_key=%s\nallowed_ip=fd00:10:244:99::/64\n", h2.b.PublicKey().hex(), stranger.hex()), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	h1.b.reconcile("test")
	nstest.Eventually(t, 30*time.Second, func() error { return h1.Echo(target6, time.Second) })
	if v6 := peersOfDev(t, h1, DeviceNameV6); len(v6) != 1 || v6[h2.b.PublicKey()] != "[fd70::2]:51821 fd00:10:244:2::/64" || h1.b.Repairs() == before {
		t.Errorf("flannel-wg-v6's peers after a drift: %v (repairs %d, before %d)", v6, h1.b.Repairs(), before)
	}
	if n := backendtest.LogLines(h1.logs.String(), "peers repaired", DeviceNameV6, "set=1", "removed=1"); n == 0 {
		t.Errorf("no peer repair logged:\n%s", h1.logs.String())
	}
}

// Mode auto: one device, flannel-wg, carries both families: each peer has
// both subnets as allowed IPs and one endpoint, its IPv4 one here (the
// lab's addresses are private), and the IPv6Network is routed into
// flannel-wg. No flannel-wg-v6 is made, and one an earlier agent in Mode
// separate left is deleted.
func TestDualStackAuto(t *testing.T) {
	auto := hostSpec{v4: true, v6: true, backend: `{"Mode":"auto"}`}
	// h1 first runs Mode separate, then restarts in auto.
	hosts := startHostsSpec(t, []hostSpec{{v4: true, v6: true}, auto})
	h1, h2 := hosts[0], hosts[1]
	h1.stop()
	h1.spec = auto
	h1.start(t)
	applyAll(t, hosts)
	h1.stop = backendtest.Run(t, h1.b.Run)

	echoVia(t, h1, h2, h2.EchoServer6(t), DeviceName)
	echoVia(t, h2, h1, h1.EchoServer6(t), DeviceName)
	echoVia(t, h1, h2, h2.EchoServer(t), DeviceName)
	if p := peersOfDev(t, h1, DeviceName); len(p) != 1 || p[h2.b.PublicKey()] != "192.168.78.2:51820 10.244.2.0/24,fd00:10:244:2::/64" {
		t.Errorf("h1's flannel-wg peers: %v", p)
	}
	for _, h := range hosts {
		if _, err := h.Handle.LinkByName(DeviceNameV6); err == nil {
			t.Errorf("%s has %s in Mode auto", h.NS, DeviceNameV6)
		}
		if got := nstest.Exec(t, h.NS, "ip", "-6", "addr", "show", "dev", DeviceName); !strings.Contains(got, "inet6 "+h.Subnet6.Addr().String()+"/128") {
			t.Errorf("%s's flannel-wg has no IPv6 subnet address:\n%s", h.NS, got)
		}
	}
	if got := nstest.Exec(t, h1.NS, "ip", "-6", "route", "show", backendtest.Network6.String()); !strings.Contains(got, "dev "+DeviceName+" ") {
		t.Errorf("IPv6Network route: %s", got)
	}
	if n := backendtest.LogLines(h1.logs.String(), "deleted a device this mode does not use", DeviceNameV6); n != 1 {
		t.Errorf("h1 did not say it deleted the Mode separate device:\n%s", h1.logs.String())
	}
}

// Mode ipv6: flannel-wg reaches each peer at [PublicIPv6]:ListenPort and
// carries both families over the IPv6 underlay.
func TestDualStackModeIPv6(t *testing.T) {
	spec := hostSpec{v4: true, v6: true, backend: `{"Mode":"ipv6"}`}
	hosts := startHostsSpec(t, []hostSpec{spec, spec})
	h1, h2 := hosts[0], hosts[1]
	echoVia(t, h1, h2, h2.EchoServer(t), DeviceName)
	echoVia(t, h1, h2, h2.EchoServer6(t), DeviceName)
	if p := peersOfDev(t, h1, DeviceName); p[h2.b.PublicKey()] != "[fd70::2]:51820 10.244.2.0/24,fd00:10:244:2::/64" {
		t.Errorf("h1's flannel-wg peers: %v", p)
	}
}

// An IPv6-only network (Kubernetes mode): flannel-wg-v6 alone, on an
// IPv6 underlay, and no flannel-wg.
func TestIPv6Only(t *testing.T) {
	v6only := hostSpec{v6: true}
	hosts := startHostsSpec(t, []hostSpec{v6only, v6only})
	h1, h2 := hosts[0], hosts[1]
	echoVia(t, h1, h2, h2.EchoServer6(t), DeviceNameV6)
	echoVia(t, h2, h1, h1.EchoServer6(t), DeviceNameV6)
	if _, err := h1.Handle.LinkByName(DeviceName); err == nil {
		t.Errorf("an IPv6-only host has %s", DeviceName)
	}
	if _, data := h1.b.LeaseAttrs(); data != nil {
		t.Errorf("an IPv6-only host publishes BackendData %s", data)
	}
}

// A restarted agent keeps its key (the key file) and its IPv6 peers: the
// new backend attaches to the TUN devices the old one left, publishes
// the same BackendV6Data, and IPv6 flows again without the peer changing
// anything.
func TestDualStackRestartKeepsKeyAndIPv6Peers(t *testing.T) {
	dual := hostSpec{v4: true, v6: true}
	hosts := startHostsSpec(t, []hostSpec{dual, dual})
	h1, h2 := hosts[0], hosts[1]
	target6 := h2.EchoServer6(t)
	echoVia(t, h1, h2, target6, DeviceNameV6)

	key, data6 := h1.b.PublicKey(), string(h1.lease.Attrs.BackendV6Data)
	h1.stop()
	// While no agent runs, the route stays and leads into the TUN device
	// nobody reads: pod traffic is dropped, never sent in the clear.
	if got := nstest.Exec(t, h1.NS, "ip", "-6", "route", "show", backendtest.Network6.String()); !strings.Contains(got, "dev "+DeviceNameV6) {
		t.Errorf("the IPv6Network route went with the agent: %q", got)
	}
	h1.start(t)
	if h1.b.PublicKey() != key || string(h1.lease.Attrs.BackendV6Data) != data6 {
		t.Fatalf("restart changed the key or BackendV6Data: %s → %s, %s → %s", key, h1.b.PublicKey(), data6, h1.lease.Attrs.BackendV6Data)
	}
	applyAll(t, hosts)
	h1.stop = backendtest.Run(t, h1.b.Run)
	echoVia(t, h1, h2, target6, DeviceNameV6)
	if n := backendtest.LogLines(h1.logs.String(), "device running", DeviceNameV6, "attached=true"); n == 0 {
		t.Errorf("the restarted backend did not attach to flannel-wg-v6:\n%s", h1.logs.String())
	}
	if err := h2.Echo(h1.EchoServer6(t), 30*time.Second); err != nil {
		t.Errorf("h2 to h1 over IPv6 after h1's restart: %v", err)
	}
}
