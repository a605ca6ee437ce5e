package udp

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/tun/tuntest"
)

// The packet loops run here over tuntest's channel devices and real UDP
// sockets on loopback, without root: host A at 127.0.0.1 (10.244.1.0/24)
// and host B at 127.0.0.2 (10.244.2.0/24), one port for both.
//
//	A.dev.Inbound → A's tun loop → UDP 127.0.0.1 → 127.0.0.2 → B's socket loop → B.dev.Outbound

// loopHost is a backend whose packet loops run, but whose kernel side
// (flannel0, its address and route) Start and Run never touched.
func loopHost(t *testing.T, sock *net.UDPConn, subnet string) (*Backend, *tuntest.Device) {
	t.Helper()
	local := sock.LocalAddr().(*net.UDPAddr).AddrPort()
	cfg := testConfig(fmt.Sprintf(`{"Port":%d}`, local.Port()))
	cfg.Ext.Addr, cfg.Ext.PublicIP = local.Addr(), local.Addr()
	b, err := NewWithOptions(cfg, Options{NoSubscribe: true})
	if err != nil {
		t.Fatal(err)
	}
	own := lease.Lease{Subnet: netip.MustParsePrefix(subnet), Attrs: lease.Attrs{PublicIP: local.Addr()}}
	dev := tuntest.New(DeviceName, b.mtu, 64)
	b.mu.Lock()
	b.own, b.started, b.sock, b.dev = own, true, sock, dev
	b.ownLease.Store(&own)
	b.cur.Store(&devRef{dev: dev})
	l := &loops{b: b, devFailed: make(chan string, 1), fatal: make(chan error, 1)}
	b.loops = l
	l.start(sock)
	l.startTun(dev)
	b.mu.Unlock()
	t.Cleanup(func() {
		b.Close()
		l.wg.Wait()
	})
	return b, dev
}

func listenLoopback(t *testing.T, addr string, port int) *net.UDPConn {
	t.Helper()
	s, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(addr), Port: port})
	if err != nil {
		t.Fatalf("listen on %s:%d: %v", addr, port, err)
	}
	return s
}

func receive(t *testing.T, dev *tuntest.Device) []byte {
	t.Helper()
	select {
	case p := <-dev.Outbound:
		return p
	case <-time.After(5 * time.Second):
		t.Fatalf("nothing written into %s within 5s", dev.Name())
		return nil
	}
}

func TestLoopsCarryPacketsBetweenHostsOverUDP(t *testing.T) {
	sa := listenLoopback(t, "127.0.0.1", 0)
	sb := listenLoopback(t, "127.0.0.2", sa.LocalAddr().(*net.UDPAddr).Port)
	a, devA := loopHost(t, sa, "10.244.1.0/24")
	b, devB := loopHost(t, sb, "10.244.2.0/24")
	leases := []lease.Lease{udpLease("10.244.1.0/24", "127.0.0.1"), udpLease("10.244.2.0/24", "127.0.0.2")}
	for _, x := range []*Backend{a, b} {
		if err := x.Apply(t.Context(), leases); err != nil {
			t.Fatal(err)
		}
	}

	devA.Inbound <- pktTo(t, "10.244.2.5", 64)
	got := receive(t, devB)
	// Sender and receiver each count as a hop, as flannel's proxy does.
	if dst := netip.AddrFrom4([4]byte(got[16:20])); dst != netip.MustParseAddr("10.244.2.5") || got[8] != 62 {
		t.Errorf("B received a packet to %s with TTL %d, want 10.244.2.5 with TTL 62", dst, got[8])
	}
	// Each loop adds its batch's counts after the batch, which may be
	// after the other side has the packet.
	nstest.Eventually(t, 5*time.Second, func() error {
		if st := a.Stats(); st.Sent != 1 {
			return fmt.Errorf("A's stats %+v, want one packet sent", st)
		}
		if st := b.Stats(); st.Received != 1 || st.Delivered != 1 {
			return fmt.Errorf("B's stats %+v, want one packet received and delivered", st)
		}
		return nil
	})

	// No lease holds 10.244.9.0: A answers with ICMP net unreachable,
	// written back into its own device.
	devA.Inbound <- pktTo(t, "10.244.9.9", 64)
	icmp := receive(t, devA)
	if icmp[9] != 1 || icmp[20] != 3 || icmp[21] != 0 {
		t.Errorf("A answered with protocol %d type %d code %d, want ICMP (1) net unreachable (3, 0)", icmp[9], icmp[20], icmp[21])
	}
}
