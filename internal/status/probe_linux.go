package status

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// Probe timing: an echo gets EchoTimeout in all, with a request every
// echoInterval, so one lost packet is not a verdict; a port probe waits
// portWait for the ICMP error.
const (
	EchoTimeout  = time.Second
	echoInterval = 300 * time.Millisecond
	portWait     = 600 * time.Millisecond
)

// NetProber probes from the network namespace the calling process runs in.
// Echo needs a raw ICMP socket, so root (CAP_NET_RAW).
type NetProber struct {
	// Handle answers route lookups; nil means the process's namespace.
	Handle *netlink.Handle
}

var _ Prober = NetProber{}

func (p NetProber) handle() *netlink.Handle {
	if p.Handle == nil {
		return &netlink.Handle{}
	}
	return p.Handle
}

// Lookup implements Prober: ip route get dst.
func (p NetProber) Lookup(dst netip.Addr) (Path, error) { return lookup(p.handle(), dst) }

// Echo implements Prober with a raw ICMP socket, which sees every ICMP
// packet of the namespace: replies are matched on identifier and source,
// and an ICMP error quoting one of our requests ends the wait at once with
// what it says.
func (p NetProber) Echo(ctx context.Context, dst netip.Addr, size int) (time.Duration, error) {
	const minSize = 20 + 8 // IPv4 + ICMP headers
	if size != 0 && size < minSize {
		return 0, fmt.Errorf("echo of %d bytes: smaller than the headers", size)
	}
	c, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		return 0, fmt.Errorf("open ICMP socket: %w", err)
	}
	conn := c.(*net.IPConn)
	defer conn.Close()
	data := []byte("weft-status")
	if size != 0 {
		// PMTUDISC_PROBE sets don't-fragment without the kernel refusing
		// the send from a cached path MTU: the packet must really go out.
		if err := setSockoptInt(conn, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_PROBE); err != nil {
			return 0, fmt.Errorf("set don't-fragment: %w", err)
		}
		data = make([]byte, size-minSize)
	}

	id := rand.IntN(0xffff) + 1
	deadline := time.Now().Add(EchoTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	sent := map[int]time.Time{}
	buf := make([]byte, 65536)
	var lastErr error
	for seq := 1; time.Now().Before(deadline); seq++ {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq, Data: data}}
		b, err := msg.Marshal(nil)
		if err != nil {
			return 0, fmt.Errorf("marshal echo: %w", err)
		}
		sent[seq] = time.Now()
		if _, err := conn.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			if errors.Is(err, unix.EMSGSIZE) {
				return 0, fmt.Errorf("send %d bytes to %s: the route's MTU is smaller: %w", size, dst, err)
			}
			if errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.EHOSTUNREACH) {
				return 0, fmt.Errorf("send echo to %s: %w", dst, err)
			}
			lastErr = err
		}
		wait := earlier(time.Now().Add(echoInterval), deadline)
		for {
			_ = conn.SetReadDeadline(wait)
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				break // this attempt timed out; send the next one
			}
			got := time.Now()
			m, err := icmp.ParseMessage(1, buf[:n]) // 1: ICMP for IPv4
			if err != nil {
				continue
			}
			fromIP, _ := from.(*net.IPAddr)
			switch body := m.Body.(type) {
			case *icmp.Echo:
				if m.Type != ipv4.ICMPTypeEchoReply || body.ID != id || fromIP == nil || !fromIP.IP.Equal(dst.AsSlice()) {
					continue
				}
				if at, ok := sent[body.Seq]; ok {
					return got.Sub(at), nil
				}
			case *icmp.DstUnreach:
				if quotesEcho(body.Data, dst, id) {
					return 0, unreachError(m.Code, buf[:n], fromIP, dst)
				}
			case *icmp.TimeExceeded:
				if quotesEcho(body.Data, dst, id) {
					return 0, fmt.Errorf("time to live exceeded on the way to %s (reported by %v): a routing loop", dst, fromIP)
				}
			}
		}
	}
	if lastErr != nil {
		return 0, fmt.Errorf("no echo reply from %s within %v: %w", dst, EchoTimeout, lastErr)
	}
	return 0, fmt.Errorf("no echo reply from %s within %v", dst, EchoTimeout)
}

// quotesEcho reports whether an ICMP error's quoted datagram is one of our
// echo requests to dst.
func quotesEcho(quoted []byte, dst netip.Addr, id int) bool {
	if len(quoted) < 20 {
		return false
	}
	ihl := int(quoted[0]&0x0f) * 4
	if ihl < 20 || len(quoted) < ihl+8 || quoted[9] != 1 { // protocol ICMP
		return false
	}
	qdst, _ := netip.AddrFromSlice(quoted[16:20])
	return qdst == dst && quoted[ihl] == 8 && int(binary.BigEndian.Uint16(quoted[ihl+4:])) == id
}

// unreachError says what an ICMP destination unreachable message with
// code and raw bytes (header included) means for traffic to dst.
func unreachError(code int, raw []byte, from *net.IPAddr, dst netip.Addr) error {
	by := "a router"
	if from != nil {
		by = from.IP.String()
	}
	switch code {
	case 4:
		mtu := 0
		if len(raw) >= 8 {
			mtu = int(binary.BigEndian.Uint16(raw[6:8])) // RFC 1191's next-hop MTU
		}
		return fmt.Errorf("fragmentation needed on the way to %s: %s has a next-hop MTU of %d", dst, by, mtu)
	case 0:
		return fmt.Errorf("%s reports network unreachable for %s", by, dst)
	case 1:
		return fmt.Errorf("%s reports host unreachable for %s (no ARP answer on its last hop)", by, dst)
	case 3:
		return fmt.Errorf("%s reports port unreachable for %s", by, dst)
	case 9, 10, 13:
		return fmt.Errorf("%s reports that traffic to %s is administratively prohibited (a firewall)", by, dst)
	}
	return fmt.Errorf("%s reports %s unreachable (ICMP code %d)", by, dst, code)
}

// PortUnreachable implements Prober: it sends zero-filled datagrams (a
// VXLAN header without the valid-VNI flag, which the receiver drops
// silently) on a connected UDP socket; the kernel turns an ICMP port
// unreachable for it into ECONNREFUSED on the next read.
func (p NetProber) PortUnreachable(ctx context.Context, dst netip.AddrPort) (bool, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp4", dst.String())
	if err != nil {
		return false, fmt.Errorf("probe UDP %s: %w", dst, err)
	}
	defer c.Close()
	deadline := time.Now().Add(portWait)
	buf := make([]byte, 64)
	for range 2 {
		if _, err := c.Write(make([]byte, 8)); err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) {
				return true, nil
			}
			return false, fmt.Errorf("probe UDP %s: %w", dst, err)
		}
		_ = c.SetReadDeadline(earlier(time.Now().Add(portWait/2), deadline))
		_, err := c.Read(buf)
		if errors.Is(err, syscall.ECONNREFUSED) {
			return true, nil
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) && !isTimeout(err) {
			return false, fmt.Errorf("probe UDP %s: %w", dst, err)
		}
	}
	return false, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func setSockoptInt(c *net.IPConn, level, opt, val int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, val) }); err != nil {
		return err
	}
	return serr
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
