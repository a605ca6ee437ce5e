package udp

import (
	"encoding/binary"
	"time"

	"github.com/weftnet/weft/internal/tun"
)

// The packet functions below are the data path's decisions, kept pure and
// free of allocations so that they are tested and benchmarked without a
// kernel: encap sorts a batch read from flannel0, decap one received from
// the socket. The Linux loops only move bytes in and out.

const (
	ipv4MinHeader = 20
	icmpHeader    = 8
	// maxUnreachable is the longest ICMP error netUnreachable builds: our
	// IPv4 header, the ICMP header, the offender's header with the most
	// options (60 bytes) and 8 bytes of its payload.
	maxUnreachable = ipv4MinHeader + icmpHeader + 60 + 8
	// icmpTTL is the TTL of the ICMP errors we originate, the kernel's
	// default for its own.
	icmpTTL = 64
)

// ipv4HeaderLen returns the header length of the IPv4 packet p, or 0 when
// p is not a well-formed IPv4 packet (wrong version, header shorter than
// 20 bytes or longer than p).
func ipv4HeaderLen(p []byte) int {
	if len(p) < ipv4MinHeader || p[0]>>4 != 4 {
		return 0
	}
	ihl := int(p[0]&0x0f) * 4
	if ihl < ipv4MinHeader || ihl > len(p) {
		return 0
	}
	return ihl
}

// checksum is the Internet checksum (RFC 1071) of b.
func checksum(b []byte) uint16 {
	var sum uint32
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// decTTL decrements the TTL of the IPv4 packet p (header already checked)
// and patches its header checksum incrementally, as RFC 1624 eqn. 3 does:
// HC' = ~(~HC + ~m + m'), where m is the 16-bit word holding TTL and
// protocol. It reports false, leaving p alone, when the TTL would reach
// zero: the packet must be dropped. Flannel's proxy wraps a TTL of 0 to
// 255 and forwards it; a TTL of 0 is dropped here.
func decTTL(p []byte) bool {
	ttl := p[8]
	if ttl <= 1 {
		return false
	}
	m := uint16(ttl)<<8 | uint16(p[9])
	m2 := m - 0x0100
	p[8] = ttl - 1
	hc := binary.BigEndian.Uint16(p[10:12])
	sum := uint32(^hc) + uint32(^m) + uint32(m2)
	sum = sum>>16 + sum&0xffff
	sum = sum>>16 + sum&0xffff
	binary.BigEndian.PutUint16(p[10:12], ^uint16(sum))
	return true
}

// isICMPError reports whether an ICMP message of this type is an error
// message, about which no ICMP error may be sent (RFC 1122 3.2.2).
func isICMPError(typ byte) bool {
	switch typ {
	case 3, 4, 5, 11, 12: // dest unreachable, source quench, redirect, time exceeded, parameter problem
		return true
	}
	return false
}

// unicastHost reports whether a is an address a single host can send from
// or be reached at: not 0/8, 127/8, multicast, class E or broadcast.
func unicastHost(a [4]byte) bool {
	return a[0] != 0 && a[0] != 127 && a[0] < 224
}

// netUnreachable writes into out (at least maxUnreachable bytes) the ICMP
// destination unreachable, code 0 (net unreachable), that answers the IPv4
// packet p (header checked), and returns its length. It returns 0 when no
// ICMP error may be sent (RFC 1122 3.2.2, RFC 1812 4.3.2.7): p is itself an
// ICMP error, a fragment other than the first, or has a source or
// destination that is not a single unicast host.
//
// The message quotes p's header and the first 8 bytes of its payload, as
// flannel's does. Its source is p's destination, the address that cannot be
// reached: flannel's sources it from the flannel0 address, which is local,
// and the kernel drops a packet with a local source that arrives on
// flannel0 as a martian, so the sender never sees it.
func netUnreachable(out, p []byte) int {
	ihl := ipv4HeaderLen(p)
	if ihl == 0 || len(out) < maxUnreachable {
		return 0
	}
	if binary.BigEndian.Uint16(p[6:8])&0x1fff != 0 {
		return 0
	}
	src, dst := [4]byte(p[12:16]), [4]byte(p[16:20])
	if !unicastHost(src) || !unicastHost(dst) {
		return 0
	}
	if p[9] == 1 && (len(p) <= ihl || isICMPError(p[ihl])) {
		return 0
	}
	quote := min(len(p), ihl+8)
	n := ipv4MinHeader + icmpHeader + quote
	ip := out[:ipv4MinHeader]
	clear(ip)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:4], uint16(n))
	ip[8] = icmpTTL
	ip[9] = 1 // ICMP
	copy(ip[12:16], dst[:])
	copy(ip[16:20], src[:])
	binary.BigEndian.PutUint16(ip[10:12], checksum(ip))

	ic := out[ipv4MinHeader:n]
	clear(ic[:icmpHeader])
	ic[0] = 3 // destination unreachable
	ic[1] = 0 // net unreachable
	copy(ic[icmpHeader:], p[:quote])
	binary.BigEndian.PutUint16(ic[2:4], checksum(ic))
	return n
}

// endpoint is where one peer's packets go: its PublicIP and the udp port.
type endpoint struct {
	ip   [4]byte
	port uint16
}

// Stats counts what the data path did with packets. Each direction's loop
// adds its counts once per batch.
type Stats struct {
	// From flannel0 to peers.
	TunPackets uint64 // packets read from flannel0
	Sent       uint64 // datagrams the socket accepted
	SendErrors uint64 // datagrams the socket refused (peer unroutable, say)
	NoLease    uint64 // packets to a subnet without a lease
	ICMPSent   uint64 // net-unreachable errors written back into flannel0
	// From peers to flannel0.
	Received      uint64 // datagrams read from the socket
	Delivered     uint64 // packets flannel0 accepted
	DeliverErrors uint64 // packets flannel0 refused (down, or replaced)
	// Drops, either direction.
	TTLExpired uint64 // TTL would have reached zero
	Oversized  uint64 // longer than flannel0's MTU
	Malformed  uint64 // not an IPv4 packet with a sane header
}

// icmpLimiter is a token bucket for the ICMP errors one loop originates:
// the kernel limits its own (net.ipv4.icmp_msgs_per_sec), and a sender
// flooding an unleased subnet must not get a flood back.
type icmpLimiter struct {
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
}

func newICMPLimiter(perSecond, burst int) icmpLimiter {
	return icmpLimiter{rate: float64(perSecond), burst: float64(burst), tokens: float64(burst)}
}

func (l *icmpLimiter) allow(now time.Time) bool {
	if !l.last.IsZero() {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}

// txBatch is one batch of datagrams for the socket, preallocated.
type txBatch struct {
	pkts [][]byte // slices of the read buffers
	dsts []endpoint
	n    int
}

func newTxBatch(size int) *txBatch {
	return &txBatch{pkts: make([][]byte, size), dsts: make([]endpoint, size)}
}

// icmpBatch is the ICMP errors one batch produces, preallocated.
type icmpBatch struct {
	room  [][]byte // tun.Headroom + maxUnreachable bytes each, for writing
	bufs  [][]byte // room[i][tun.Headroom:]
	out   [][]byte // bufs[i][:len]
	n     int
	limit icmpLimiter
	now   func() time.Time
}

func newICMPBatch(size int) *icmpBatch {
	b := &icmpBatch{
		room:  make([][]byte, size),
		bufs:  make([][]byte, size),
		out:   make([][]byte, size),
		limit: newICMPLimiter(1000, 100),
		now:   time.Now,
	}
	const stride = tun.Headroom + maxUnreachable
	back := make([]byte, size*stride)
	for i := range b.bufs {
		b.room[i] = back[i*stride : (i+1)*stride : (i+1)*stride]
		b.bufs[i] = b.room[i][tun.Headroom:]
	}
	return b
}

// encap sorts packets bufs[i][off:off+sizes[i]], i < n, read from flannel0:
// a packet for a leased subnet has its TTL decremented and goes into tx,
// addressed to the peer; one for a subnet without a lease is answered with
// an ICMP net unreachable in ic (rate-limited); the rest are dropped. The
// order is flannel's: look up, answer, then decrement.
func encap(tbl *peerTable, bufs [][]byte, sizes []int, n, off, mtu int, tx *txBatch, ic *icmpBatch, st *Stats) {
	tx.n, ic.n = 0, 0
	st.TunPackets += uint64(n)
	for i := range n {
		p := bufs[i][off : off+sizes[i]]
		if len(p) > mtu {
			st.Oversized++
			continue
		}
		if ipv4HeaderLen(p) == 0 {
			st.Malformed++
			continue
		}
		ep, ok := tbl.lookup(binary.BigEndian.Uint32(p[16:20]))
		if !ok {
			st.NoLease++
			if ic.n < len(ic.bufs) && ic.limit.allow(ic.now()) {
				if m := netUnreachable(ic.bufs[ic.n], p); m > 0 {
					ic.out[ic.n] = ic.bufs[ic.n][:m]
					ic.n++
				}
			}
			continue
		}
		if !decTTL(p) {
			st.TTLExpired++
			continue
		}
		tx.pkts[tx.n] = p
		tx.dsts[tx.n] = ep
		tx.n++
	}
}

// decap checks datagrams bufs[i][:sizes[i]], i < n, received from peers and
// puts the packets flannel0 should get into out, returning how many. A
// datagram longer than mtu, which a buffer longer than mtu reveals even when
// it was truncated, is dropped: flannel0 would pass it to a pod interface
// that cannot take it.
func decap(bufs [][]byte, sizes []int, n, mtu int, out [][]byte, st *Stats) int {
	st.Received += uint64(n)
	k := 0
	for i := range n {
		p := bufs[i][:sizes[i]]
		if len(p) > mtu {
			st.Oversized++
			continue
		}
		if ipv4HeaderLen(p) == 0 {
			st.Malformed++
			continue
		}
		if !decTTL(p) {
			st.TTLExpired++
			continue
		}
		out[k] = p
		k++
	}
	return k
}
