package tun

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/nstest"
)

// Each test runs in its own namespace:
//
//	 [ test process ] --- fd --- tunX (10.9.0.1/24, up) --- kernel of netns "tt"
//
// Packets the kernel routes to 10.9.0.0/24 come out of Read; packets given
// to Write enter the namespace's stack as if received on tunX.

func openIn(t *testing.T, ns, name string, o Options) Device {
	t.Helper()
	var d Device
	if err := netns.Do(ns, func() (err error) {
		d, err = Open(name, o)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func setup(t *testing.T, o Options) (string, Device) {
	t.Helper()
	nstest.RequireRoot(t)
	ns := nstest.NewNS(t, "tt")
	d := openIn(t, ns, "wtun%d", o)
	if d.Name() != "wtun0" {
		t.Fatalf("Name = %q, want the kernel's pick wtun0", d.Name())
	}
	nstest.Exec(t, ns, "ip", "addr", "add", "10.9.0.1/24", "dev", "wtun0")
	nstest.Exec(t, ns, "ip", "link", "set", "wtun0", "up")
	return ns, d
}

func makeBufs(n, size int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	return bufs, make([]int, n)
}

// udpPacket is an IPv4/UDP packet with a valid header checksum and no UDP
// checksum (optional over IPv4).
func udpPacket(src, dst netip.AddrPort, payload string) []byte {
	p := make([]byte, 28+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8] = 64
	p[9] = 17
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(p[12:16], s[:])
	copy(p[16:20], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(p[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(p[20:], src.Port())
	binary.BigEndian.PutUint16(p[22:], dst.Port())
	binary.BigEndian.PutUint16(p[24:], uint16(8+len(payload)))
	copy(p[28:], payload)
	return p
}

func TestReadDrainsQueueInOneBatch(t *testing.T) {
	ns, d := setup(t, Options{})
	if err := netns.Do(ns, func() error {
		c, err := net.Dial("udp4", "10.9.0.2:9999")
		if err != nil {
			return err
		}
		defer c.Close()
		for i := range 10 {
			if _, err := c.Write([]byte{byte('a' + i)}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	bufs, sizes := makeBufs(16, 2048)
	const off = 4
	var got []byte
	// The kernel may queue other packets (IPv6 router solicitations) too;
	// keep the UDP ones.
	for len(got) < 10 {
		n, err := d.Read(bufs, sizes, off)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			p := bufs[i][off : off+sizes[i]]
			if p[0]>>4 == 4 && p[9] == 17 {
				if dst := netip.AddrFrom4([4]byte(p[16:20])); dst != netip.MustParseAddr("10.9.0.2") {
					t.Errorf("packet %d to %v", i, dst)
				}
				got = append(got, p[28])
			}
		}
		if len(got) > 0 && len(got) < 10 {
			t.Fatalf("one Read returned %d of the 10 queued datagrams", len(got))
		}
	}
	if string(got) != "abcdefghij" {
		t.Errorf("payloads %q, want abcdefghij in order", got)
	}
}

func TestWriteDeliversBatch(t *testing.T) {
	ns, d := setup(t, Options{})
	var c *net.UDPConn
	if err := netns.Do(ns, func() (err error) {
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("10.9.0.1:7000")))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	src := netip.MustParseAddrPort("10.9.0.2:5000")
	dst := netip.MustParseAddrPort("10.9.0.1:7000")
	const off = 10
	var bufs [][]byte
	for _, s := range []string{"one", "two", "three"} {
		bufs = append(bufs, append(make([]byte, off), udpPacket(src, dst, s)...))
	}
	n, err := d.Write(bufs, off)
	if err != nil || n != 3 {
		t.Fatalf("Write = %d, %v; want 3, nil", n, err)
	}
	buf := make([]byte, 100)
	for _, want := range []string{"one", "two", "three"} {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		m, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		if string(buf[:m]) != want || from != src {
			t.Errorf("got %q from %v, want %q from %v", buf[:m], from, want, src)
		}
	}
}

func TestWriteToDownDeviceSkipsAndReports(t *testing.T) {
	ns, d := setup(t, Options{})
	nstest.Exec(t, ns, "ip", "link", "set", "wtun0", "down")
	p := udpPacket(netip.MustParseAddrPort("10.9.0.2:1"), netip.MustParseAddrPort("10.9.0.1:2"), "x")
	n, err := d.Write([][]byte{p, p}, 0)
	if n != 0 || err == nil || !strings.Contains(err.Error(), "input/output error") {
		t.Errorf("Write to a down device = %d, %v; want 0 and EIO", n, err)
	}
}

func TestMTU(t *testing.T) {
	ns, d := setup(t, Options{})
	nstest.Exec(t, ns, "ip", "link", "set", "wtun0", "mtu", "1400")
	if m, err := d.MTU(); err != nil || m != 1400 {
		t.Errorf("MTU = %d, %v; want 1400", m, err)
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	ns, d := setup(t, Options{})
	errc := make(chan error, 1)
	got := make(chan struct{}, 16)
	go func() {
		bufs, sizes := makeBufs(1, 2048)
		for {
			if _, err := d.Read(bufs, sizes, 0); err != nil {
				errc <- err
				return
			}
			select {
			case got <- struct{}{}:
			default:
			}
		}
	}()
	// Once a packet came through, the reader is back in Read with an empty
	// queue, where Close must wake it.
	if err := netns.Do(ns, func() error {
		c, err := net.Dial("udp4", "10.9.0.2:9999")
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("x"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(2 * time.Second):
		t.Fatal("no packet read")
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrClosed) {
			t.Errorf("Read after Close: %v, want os.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Read still blocked 2s after Close")
	}
	if _, err := d.Write([][]byte{{0x45}}, 0); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Close: %v, want os.ErrClosed", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func linkExists(t *testing.T, ns, name string) bool {
	_, err := nstest.ExecErr(ns, "ip", "link", "show", name)
	return err == nil
}

func TestPersistKeepsDeviceAndRoutesAcrossReopen(t *testing.T) {
	ns, d := setup(t, Options{Persist: true})
	nstest.Exec(t, ns, "ip", "route", "add", "10.10.0.0/16", "dev", "wtun0")
	if out := nstest.Exec(t, ns, "ip", "-d", "link", "show", "wtun0"); !strings.Contains(out, "tun type tun") || !strings.Contains(out, "persist on") {
		t.Errorf("ip -d link show wtun0:\n%s\nwant a persistent tun device", out)
	}
	d.Close()
	if !linkExists(t, ns, "wtun0") {
		t.Fatal("persistent device gone after Close")
	}
	if out := nstest.Exec(t, ns, "ip", "route", "show", "10.10.0.0/16"); !strings.Contains(out, "dev wtun0") {
		t.Errorf("route through the persistent device gone after Close: %q", out)
	}
	// Reattach without Persist: the flag is cleared, so closing deletes it.
	d2 := openIn(t, ns, "wtun0", Options{})
	if out := nstest.Exec(t, ns, "ip", "-d", "link", "show", "wtun0"); !strings.Contains(out, "persist off") {
		t.Errorf("after reopening without Persist:\n%s", out)
	}
	d2.Close()
	nstest.Eventually(t, 2*time.Second, func() error {
		if linkExists(t, ns, "wtun0") {
			return errors.New("non-persistent device still there after Close")
		}
		return nil
	})
}

func TestOpenRefusesDeviceHeldByAnother(t *testing.T) {
	ns, _ := setup(t, Options{})
	err := netns.Do(ns, func() error {
		d, err := Open("wtun0", Options{})
		if err == nil {
			d.Close()
		}
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "device or resource busy") {
		t.Errorf("second Open of a held device: %v, want EBUSY", err)
	}
}

func TestOpenRefusesOtherDeviceKind(t *testing.T) {
	nstest.RequireRoot(t)
	ns := nstest.NewNS(t, "tt")
	nstest.Exec(t, ns, "ip", "link", "add", "wtun0", "type", "bridge")
	err := netns.Do(ns, func() error {
		d, err := Open("wtun0", Options{})
		if err == nil {
			d.Close()
		}
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "not a single-queue tun device") {
		t.Errorf("Open over a bridge: %v", err)
	}
}

// TestDeletedDeviceFailsRead shows that a device can be deleted while it
// is held (ip link del works on TUN devices), and that the holder learns
// of it from Read instead of blocking forever.
func TestDeletedDeviceFailsRead(t *testing.T) {
	ns, d := setup(t, Options{Persist: true})
	errc := make(chan error, 1)
	go func() {
		bufs, sizes := makeBufs(4, 2048)
		for {
			if _, err := d.Read(bufs, sizes, 0); err != nil {
				errc <- err
				return
			}
		}
	}()
	nstest.Exec(t, ns, "ip", "link", "del", "wtun0")
	select {
	case err := <-errc:
		if errors.Is(err, os.ErrClosed) || !strings.Contains(err.Error(), "read tun device wtun0") {
			t.Errorf("Read after deletion: %v", err)
		}
		t.Logf("Read after deletion: %v", err)
	case <-time.After(2 * time.Second):
		t.Fatal("Read still blocked 2s after the device was deleted")
	}
}
