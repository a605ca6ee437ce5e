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
	"golang.org/x/net/ipv6"
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

// Echo implements Prober with a raw ICMP socket (ICMPv6 for an IPv6 dst),
// which sees every ICMP packet of the namespace: replies are matched on
// identifier and source, and an ICMP error quoting one of our requests
// ends the wait at once with what it says.
func (p NetProber) Echo(ctx context.Context, dst netip.Addr, size int) (time.Duration, error) {
	f := icmpV4
	if dst.Is6() {
		f = icmpV6
	}
	minSize := f.ipHeader + 8 // IP + ICMP headers
	if size != 0 && size < minSize {
		return 0, fmt.Errorf("echo of %d bytes: smaller than the headers", size)
	}
	c, err := net.ListenPacket(f.network, f.any)
	if err != nil {
		return 0, fmt.Errorf("open %s socket: %w", f.name, err)
	}
	conn := c.(*net.IPConn)
	defer conn.Close()
	data := []byte("weft-status")
	if size != 0 {
		// PMTUDISC_PROBE sets don't-fragment (IPv6 never fragments on
		// the way) without the kernel refusing the send from a cached
		// path MTU: the packet must really go out.
		if err := setSockoptInt(conn, f.level, f.mtuDiscover, f.pmtudProbe); err != nil {
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
		// The kernel fills in an ICMPv6 checksum (RFC 3542).
		msg := icmp.Message{Type: f.echo, Body: &icmp.Echo{ID: id, Seq: seq, Data: data}}
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
			m, err := icmp.ParseMessage(f.proto, buf[:n])
			if err != nil {
				continue
			}
			fromIP, _ := from.(*net.IPAddr)
			switch body := m.Body.(type) {
			case *icmp.Echo:
				if m.Type != f.echoReply || body.ID != id || fromIP == nil || !fromIP.IP.Equal(dst.AsSlice()) {
					continue
				}
				if at, ok := sent[body.Seq]; ok {
					return got.Sub(at), nil
				}
			case *icmp.DstUnreach:
				if f.quotesEcho(body.Data, dst, id) {
					return 0, f.unreach(m.Code, buf[:n], fromIP, dst)
				}
			case *icmp.PacketTooBig:
				if f.quotesEcho(body.Data, dst, id) {
					return 0, fmt.Errorf("packet too big on the way to %s: %s has an MTU of %d", dst, reporter(fromIP), body.MTU)
				}
			case *icmp.TimeExceeded:
				if f.quotesEcho(body.Data, dst, id) {
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

// icmpFamily is what Echo does differently over IPv4 and IPv6.
type icmpFamily struct {
	name, network, any     string
	proto                  int // for icmp.ParseMessage: 1 ICMP, 58 ICMPv6
	ipHeader               int
	echo, echoReply        icmp.Type
	level, mtuDiscover     int
	pmtudProbe             int
	dstOff, protoOff, ping int // in a quoted IP header: destination, next protocol; the echo request's type
	unreach                func(code int, raw []byte, from *net.IPAddr, dst netip.Addr) error
}

var (
	icmpV4 = icmpFamily{name: "ICMP", network: "ip4:icmp", any: "0.0.0.0", proto: 1, ipHeader: 20,
		echo: ipv4.ICMPTypeEcho, echoReply: ipv4.ICMPTypeEchoReply,
		level: unix.IPPROTO_IP, mtuDiscover: unix.IP_MTU_DISCOVER, pmtudProbe: unix.IP_PMTUDISC_PROBE,
		dstOff: 16, protoOff: 9, ping: 8, unreach: unreachError}
	icmpV6 = icmpFamily{name: "ICMPv6", network: "ip6:ipv6-icmp", any: "::", proto: 58, ipHeader: 40,
		echo: ipv6.ICMPTypeEchoRequest, echoReply: ipv6.ICMPTypeEchoReply,
		level: unix.IPPROTO_IPV6, mtuDiscover: unix.IPV6_MTU_DISCOVER, pmtudProbe: unix.IPV6_PMTUDISC_PROBE,
		dstOff: 24, protoOff: 6, ping: 128, unreach: unreachError6}
)

// quotesEcho reports whether an ICMP error's quoted datagram is one of our
// echo requests to dst.
func (f icmpFamily) quotesEcho(quoted []byte, dst netip.Addr, id int) bool {
	if len(quoted) < f.ipHeader {
		return false
	}
	hdr := f.ipHeader
	if f.proto == 1 {
		hdr = int(quoted[0]&0x0f) * 4
		if hdr < 20 {
			return false
		}
	}
	want := byte(1) // ICMP
	if f.proto == 58 {
		want = 58
	}
	if len(quoted) < hdr+8 || quoted[f.protoOff] != want {
		return false
	}
	qdst, _ := netip.AddrFromSlice(quoted[f.dstOff : f.dstOff+dst.BitLen()/8])
	return qdst == dst && int(quoted[hdr]) == f.ping && int(binary.BigEndian.Uint16(quoted[hdr+4:])) == id
}

func reporter(from *net.IPAddr) string {
	if from != nil {
		return from.IP.String()
	}
	return "a router"
}

// unreachError6 says what an ICMPv6 destination unreachable message with
// code means for traffic to dst (RFC 4443).
func unreachError6(code int, _ []byte, from *net.IPAddr, dst netip.Addr) error {
	by := reporter(from)
	switch code {
	case 0:
		return fmt.Errorf("%s reports no route to %s", by, dst)
	case 1, 5, 6:
		return fmt.Errorf("%s reports that traffic to %s is administratively prohibited (a firewall)", by, dst)
	case 3:
		return fmt.Errorf("%s reports address unreachable for %s (no neighbour answer on its last hop)", by, dst)
	case 4:
		return fmt.Errorf("%s reports port unreachable for %s", by, dst)
	}
	return fmt.Errorf("%s reports %s unreachable (ICMPv6 code %d)", by, dst, code)
}

// unreachError says what an ICMP destination unreachable message with
// code and raw bytes (header included) means for traffic to dst.
func unreachError(code int, raw []byte, from *net.IPAddr, dst netip.Addr) error {
	by := reporter(from)
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
	c, err := d.DialContext(ctx, "udp", dst.String())
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
