package udp

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/backend/backendtest"
	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/tun"
)

// transferTCP sends size random bytes over TCP from a's pod address to a
// listener on b's pod address and fails unless the SHA-256 of what b
// received is that of what a sent.
func transferTCP(t *testing.T, a, b *host, size int) {
	t.Helper()
	var ln net.Listener
	if err := netns.Do(b.NS, func() (err error) {
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(b.PodIP, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		sum [32]byte
		n   int64
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		h := sha256.New()
		n, err := io.Copy(h, c)
		got <- result{sum: [32]byte(h.Sum(nil)), n: n, err: err}
	}()
	data := make([]byte, size)
	_, _ = rand.NewChaCha8([32]byte{15}).Read(data)
	want := sha256.Sum256(data)
	if err := netns.Do(a.NS, func() error {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(a.PodIP, 0))}
		c, err := d.Dial("tcp4", ln.Addr().String())
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		_, err = c.Write(data)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.n != int64(size) || r.sum != want {
			t.Fatalf("received %d bytes with sha256 %x; sent %d with %x", r.n, r.sum, size, want)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("transfer did not finish in 90 s")
	}
}

// sendUDP sends count datagrams of size bytes from a's pod address to a
// socket on b's pod address and returns how many arrived intact.
func sendUDP(t *testing.T, a, b *host, count, size int) int {
	t.Helper()
	var rc *net.UDPConn
	if err := netns.Do(b.NS, func() (err error) {
		rc, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(b.PodIP, 0)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	msg := make([]byte, size)
	for i := range msg {
		msg[i] = byte(i)
	}
	// The receiver reads while the sender sends, so that its socket
	// buffer never overflows.
	got := make(chan int, 1)
	go func() {
		buf := make([]byte, 65536)
		good := 0
		for good < count {
			_ = rc.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, err := rc.Read(buf)
			if err != nil {
				break
			}
			if n == size && string(buf[:n]) == string(msg) {
				good++
			}
		}
		got <- good
	}()
	if err := netns.Do(a.NS, func() error {
		c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a.PodIP, 0)), rc.LocalAddr().(*net.UDPAddr))
		if err != nil {
			return err
		}
		defer c.Close()
		for range count {
			if _, err := c.Write(msg); err != nil {
				return err
			}
			// Paced so that no queue on the way overflows: the test is
			// about the packets' integrity, not the path's capacity.
			time.Sleep(100 * time.Microsecond)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return <-got
}

func TestOffloadPathCarriesTCPIntact(t *testing.T) {
	hs := segment(t, 2)
	bs := cluster(t, hs)
	for i, b := range bs {
		// Run reports the socket's offloads when its loops start.
		nstest.Eventually(t, 3*time.Second, func() error {
			path, on := b.Path()
			if path != metrics.UDPPathOffload || !on[metrics.UDPOffloadTun] || !on[metrics.UDPOffloadGSO] || !on[metrics.UDPOffloadGRO] {
				return fmt.Errorf("host %d: path %s %v, want offload with every offload on (this kernel has them all)", i, path, on)
			}
			return nil
		})
	}
	before := bs[0].Stats()
	transferTCP(t, hs[0], hs[1], 64<<20)
	transferTCP(t, hs[1], hs[0], 8<<20)
	after := bs[0].Stats()
	if sent := after.Sent - before.Sent; sent < (64<<20)/1500 {
		t.Errorf("A sent %d datagrams for 64 MiB: the transfer did not go through the backend", sent)
	}
	// On the wire each datagram is one packet of at most flannel0's MTU,
	// whatever the offloads did on either side.
	if after.Oversized != 0 || after.Malformed != 0 || bs[1].Stats().Oversized != 0 || bs[1].Stats().Malformed != 0 {
		t.Errorf("drops: A %+v, B %+v", after, bs[1].Stats())
	}
}

func TestOffloadPathCarriesUDP(t *testing.T) {
	hs := segment(t, 2)
	cluster(t, hs)
	for _, size := range []int{1, 1400, 1472 - 28} {
		if got := sendUDP(t, hs[0], hs[1], 200, size); got != 200 {
			t.Errorf("%d of 200 datagrams of %d bytes arrived", got, size)
		}
	}
}

// refusingTun opens flannel0 without offloads and says the kernel refused
// them, as tun.Open does when TUNSETOFFLOAD fails.
type refusingTun struct {
	tun.Device
}

var errInjected = errors.New("TUNSETOFFLOAD: operation not supported (injected by the test)")

func (refusingTun) Offload() (bool, error) { return false, errInjected }

func TestFallbackWhenKernelRefusesOffloads(t *testing.T) {
	hs := segment(t, 2)
	m := metrics.New()
	var bs []*Backend
	for _, hg := range hs {
		b := hg.startWith(t, Options{
			openTun: func(name string, o tun.Options) (tun.Device, error) {
				if !o.Offload {
					t.Error("flannel0 opened without asking for offloads")
				}
				o.Offload = false
				d, err := tun.Open(name, o)
				if err != nil {
					return nil, err
				}
				return refusingTun{d}, nil
			},
			probeSock: func(c *net.UDPConn) sockOffloads {
				return sockOffloads{gsoErr: errors.New("getsockopt UDP_SEGMENT: protocol not available (injected)"),
					groErr: errors.New("setsockopt UDP_GRO: protocol not available (injected)")}
			},
		}, m)
		if err := b.Apply(t.Context(), leases(hs...)); err != nil {
			t.Fatal(err)
		}
		backendtest.Run(t, b.Run)
		bs = append(bs, b)
	}
	// The path is recorded, then published as metrics: wait for both.
	nstest.Eventually(t, 3*time.Second, func() error {
		if path, on := bs[0].Path(); path != metrics.UDPPathBatch || on[metrics.UDPOffloadTun] || on[metrics.UDPOffloadGSO] || on[metrics.UDPOffloadGRO] {
			return errors.New("path " + path)
		}
		if got, want := gauges(t, m, "weft_udp_path"), "path=batch 1, path=offload 0"; got != want {
			return fmt.Errorf("weft_udp_path: %s, want %s", got, want)
		}
		if got, want := gauges(t, m, "weft_udp_offload"), "feature=tun_tso 0, feature=udp_gro 0, feature=udp_gso 0"; got != want {
			return fmt.Errorf("weft_udp_offload: %s, want %s", got, want)
		}
		return nil
	})
	transferTCP(t, hs[0], hs[1], 16<<20)
	if got := sendUDP(t, hs[0], hs[1], 100, 1400); got != 100 {
		t.Errorf("%d of 100 datagrams arrived on the batched path", got)
	}
	log := hs[0].logBuf.String()
	if n := strings.Count(log, "the kernel refused flannel0's offloads"); n != 1 {
		t.Errorf("fallback logged %d times, want once:\n%s", n, log)
	}
	for _, want := range []string{"path=batch", "injected by the test", "UDP_SEGMENT"} {
		if !strings.Contains(log, want) {
			t.Errorf("fallback log line lacks %q:\n%s", want, log)
		}
	}
}

// gauges renders the gauge family name from m as "label=value v, ...",
// sorted as the registry gathers them.
func gauges(t *testing.T, m *metrics.Metrics, name string) string {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, mt := range f.GetMetric() {
			var labels []string
			for _, l := range mt.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			parts = append(parts, fmt.Sprintf("%s %g", strings.Join(labels, ","), mt.GetGauge().GetValue()))
		}
	}
	return strings.Join(parts, ", ")
}

// flannelPeer plays a flannel udp host on hg, as flannel's proxy works: a
// plain flannel0 (no offloads), one read(2) of it per packet sent as one
// datagram to the peer's port 8285, and one datagram per write(2) into
// flannel0. It checks what arrives from the weft host against flannel's
// wire format: every datagram one whole IPv4 packet (its total length is
// the datagram's) of at most flannel0's MTU. It returns the count of
// datagrams received and of those that broke the format.
func flannelPeer(t *testing.T, hg *host, peer netip.Addr) (datagrams, bad *atomic.Int64) {
	t.Helper()
	var dev tun.Device
	var sock *net.UDPConn
	if err := netns.Do(hg.NS, func() (err error) {
		if dev, err = tun.Open(DeviceName, tun.Options{}); err != nil {
			return err
		}
		sock, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(hg.Ext.Addr, DefaultPort)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"ip", "link", "set", DeviceName, "mtu", "1472", "up"},
		{"ip", "addr", "add", hg.Subnet.Addr().String() + "/32", "dev", DeviceName},
		{"ip", "route", "add", network.String(), "dev", DeviceName},
	} {
		nstest.Exec(t, hg.NS, args...)
	}
	datagrams, bad = new(atomic.Int64), new(atomic.Int64)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		dev.Close()
		sock.Close()
		wg.Wait()
	})
	to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(peer, DefaultPort))
	wg.Go(func() {
		bufs, sizes := [][]byte{make([]byte, 2048)}, []int{0}
		for {
			if _, err := dev.Read(bufs, sizes, 0); err != nil {
				return
			}
			_, _ = sock.WriteToUDP(bufs[0][:sizes[0]], to)
		}
	})
	wg.Go(func() {
		buf := make([]byte, 65536)
		for {
			n, err := sock.Read(buf)
			if err != nil {
				return
			}
			datagrams.Add(1)
			p := buf[:n]
			if n > 1472 || ipv4HeaderLen(p) == 0 || int(binary.BigEndian.Uint16(p[2:4])) != n {
				bad.Add(1)
				continue
			}
			_, _ = dev.Write([][]byte{p}, 0)
		}
	})
	return datagrams, bad
}

// TestOffloadHostInteroperatesWithFlannelPeer runs weft's offload path on
// A against a host that works as flannel's udp backend does: TCP both ways
// arrives intact, and every datagram A sent is one flannel-sized packet.
func TestOffloadHostInteroperatesWithFlannelPeer(t *testing.T) {
	hs := segment(t, 2)
	a, fl := hs[0], hs[1]
	datagrams, bad := flannelPeer(t, fl, a.Ext.Addr)
	b := a.start(t, Options{})
	if err := b.Apply(t.Context(), leases(hs...)); err != nil {
		t.Fatal(err)
	}
	backendtest.Run(t, b.Run)
	nstest.Eventually(t, 3*time.Second, func() error {
		if path, _ := b.Path(); path != metrics.UDPPathOffload {
			return fmt.Errorf("path %s", path)
		}
		return nil
	})
	transferTCP(t, a, fl, 32<<20)
	transferTCP(t, fl, a, 8<<20)
	if datagrams.Load() < (32<<20)/1500 || bad.Load() != 0 {
		t.Errorf("the flannel peer received %d datagrams, %d not one IPv4 packet of at most 1472 bytes", datagrams.Load(), bad.Load())
	}
}

// TestNoOffloadRunsBatchedPath turns the offloads off (--udp-offload=false):
// flannel0 has no virtio header, the path is the batched one, and it is
// said to be chosen, not refused.
func TestNoOffloadRunsBatchedPath(t *testing.T) {
	hs := segment(t, 2)
	var bs []*Backend
	for _, hg := range hs {
		b := hg.start(t, Options{NoOffload: true})
		if err := b.Apply(t.Context(), leases(hs...)); err != nil {
			t.Fatal(err)
		}
		backendtest.Run(t, b.Run)
		bs = append(bs, b)
	}
	nstest.Eventually(t, 3*time.Second, func() error {
		if path, on := bs[0].Path(); path != metrics.UDPPathBatch || on[metrics.UDPOffloadGSO] || on[metrics.UDPOffloadGRO] {
			return fmt.Errorf("path %s %v", path, on)
		}
		return nil
	})
	if out := nstest.Exec(t, hs[0].NS, "ip", "-d", "link", "show", DeviceName); !strings.Contains(out, "vnet_hdr off") {
		t.Errorf("flannel0 with offloads off:\n%s", out)
	}
	transferTCP(t, hs[0], hs[1], 16<<20)
	log := hs[0].logBuf.String()
	if !strings.Contains(log, "offloads turned off (--udp-offload=false)") || strings.Contains(log, "refused") {
		t.Errorf("log with offloads off:\n%s", log)
	}
}

func TestMultiQueueFlannel0CarriesTCP(t *testing.T) {
	hs := segment(t, 2)
	var bs []*Backend
	for _, hg := range hs {
		b := hg.start(t, Options{Queues: 2})
		if err := b.Apply(t.Context(), leases(hs...)); err != nil {
			t.Fatal(err)
		}
		backendtest.Run(t, b.Run)
		bs = append(bs, b)
	}
	if out := nstest.Exec(t, hs[0].NS, "ip", "-d", "link", "show", DeviceName); !strings.Contains(out, "multi_queue") {
		t.Errorf("flannel0 with Queues 2:\n%s", out)
	}
	transferTCP(t, hs[0], hs[1], 32<<20)
	transferTCP(t, hs[1], hs[0], 8<<20)
	if len(bs[0].extra) != 1 {
		t.Errorf("%d extra queues attached, want 1", len(bs[0].extra))
	}
}

// TestMultiQueueOverSingleQueueDevice starts with Queues 2 over the
// persistent single-queue flannel0 an older agent (or flannel) left: one
// queue is attached, with a warning, and traffic flows.
func TestMultiQueueOverSingleQueueDevice(t *testing.T) {
	hs := segment(t, 2)
	nstest.Exec(t, hs[0].NS, "ip", "tuntap", "add", "dev", DeviceName, "mode", "tun")
	var bs []*Backend
	for i, hg := range hs {
		o := Options{}
		if i == 0 {
			o.Queues = 2
		}
		b := hg.start(t, o)
		if err := b.Apply(t.Context(), leases(hs...)); err != nil {
			t.Fatal(err)
		}
		backendtest.Run(t, b.Run)
		bs = append(bs, b)
	}
	if len(bs[0].extra) != 0 {
		t.Errorf("%d extra queues on a single-queue device", len(bs[0].extra))
	}
	if !strings.Contains(hs[0].logBuf.String(), "flannel0 is a single-queue device; attaching one queue") {
		t.Errorf("no warning about the single-queue device:\n%s", hs[0].logBuf.String())
	}
	transferTCP(t, hs[0], hs[1], 8<<20)
}
