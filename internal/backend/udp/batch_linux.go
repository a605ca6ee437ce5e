package udp

import (
	"fmt"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Batched datagram I/O on the UDP socket with recvmmsg(2) and sendmmsg(2).
// golang.org/x/net/ipv4's ReadBatch does the same syscall but allocates a
// net.UDPAddr for every datagram it receives; these keep their message
// headers, iovecs, addresses and control buffers in arrays made once, so a
// batch allocates nothing. Each value is used by one goroutine. Where the
// kernel has them, sends use UDP_SEGMENT and receives UDP_GRO (see
// gso_linux.go); the datagrams on the wire are the same either way.

// socketBuffer is the send and receive buffer asked of the kernel, so a
// burst from flannel0 or the wire does not overflow the socket while the
// other side of the loop is busy. As root, the *BUFFORCE options exceed
// net.core.[rw]mem_max.
const socketBuffer = 4 << 20

// tuneSocket enlarges c's buffers; failures leave the kernel's defaults,
// which work, only slower.
func tuneSocket(c *net.UDPConn) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, socketBuffer) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, socketBuffer)
		}
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, socketBuffer) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, socketBuffer)
		}
	})
}

// receiver reads batches of datagrams into fixed buffers.
type receiver struct {
	rc   syscall.RawConn
	bufs [][]byte // one per message
	hdrs []unix.Mmsghdr
	iovs []unix.Iovec
	ctrl []byte // groControlSize per message, with gro
	gro  bool
	fn   func(fd uintptr) bool
	n    int
	// errno is the receive's error
	errno syscall.Errno
	// pkts are the datagrams of the last read, split out of the GRO runs.
	pkts [][]byte
}

// newReceiver reads up to n messages per call, into buffers of size bytes
// each. With gro the socket must have UDP_GRO on: each message is then a
// run of datagrams, split by read.
func newReceiver(c *net.UDPConn, n, size int, gro bool) (*receiver, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("udp socket: %w", err)
	}
	r := &receiver{
		rc:   rc,
		bufs: makeBufs(n, size),
		hdrs: make([]unix.Mmsghdr, n),
		iovs: make([]unix.Iovec, n),
		gro:  gro,
		pkts: make([][]byte, n),
	}
	if gro {
		r.ctrl = make([]byte, n*groControlSize)
		// UDP_GRO joins at most 64 datagrams (UDP_GRO_CNT_MAX) per run.
		r.pkts = make([][]byte, n*64)
	}
	for i := range r.bufs {
		r.iovs[i].Base = &r.bufs[i][0]
		r.iovs[i].SetLen(len(r.bufs[i]))
		r.hdrs[i].Hdr.Iov = &r.iovs[i]
		r.hdrs[i].Hdr.SetIovlen(1)
	}
	r.fn = r.recv
	return r, nil
}

// read waits for at least one datagram and returns how many it read, in
// r.pkts[:n], with sizes[i] = len(r.pkts[i]); sizes has room for
// len(r.pkts). A datagram longer than its buffer is truncated. Runs that
// cannot be split (a control message the kernel would not write) are
// counted in malformed and dropped.
func (r *receiver) read(sizes []int) (n, malformed int, err error) {
	r.n, r.errno = 0, 0
	if r.gro {
		for i := range r.hdrs {
			r.hdrs[i].Hdr.Control = &r.ctrl[i*groControlSize]
			r.hdrs[i].Hdr.SetControllen(groControlSize)
		}
	}
	if err := r.rc.Read(r.fn); err != nil {
		return 0, 0, err
	}
	if r.errno != 0 {
		return 0, 0, fmt.Errorf("recvmmsg: %w", r.errno)
	}
	for i := range r.n {
		b := r.bufs[i][:r.hdrs[i].Len]
		if !r.gro {
			r.pkts[n] = b
			n++
			continue
		}
		size, err := groSize(r.ctrl[i*groControlSize : i*groControlSize+int(r.hdrs[i].Hdr.Controllen)])
		if err != nil {
			malformed++
			continue
		}
		k, dropped := splitGRO(b, size, r.pkts[n:])
		n += k
		malformed += dropped
	}
	for i := range n {
		sizes[i] = len(r.pkts[i])
	}
	return n, malformed, nil
}

func (r *receiver) recv(fd uintptr) bool {
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(len(r.hdrs)),
			unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			r.n = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			r.errno = e
			return true
		}
	}
}

// sender writes batches of datagrams, each to its own destination; with
// gso, each run of same-sized datagrams to one peer goes as one message.
type sender struct {
	rc    syscall.RawConn
	hdrs  []unix.Mmsghdr // one per message
	iovs  []unix.Iovec   // one per datagram
	names []unix.RawSockaddrInet4
	ctrl  []byte // gsoControlSize per message
	first []int  // per message: its first datagram in the batch
	count []int  // per message: its datagrams
	fn    func(fd uintptr) bool

	// gso says whether runs go as UDP_SEGMENT messages. The kernel may
	// refuse them at send time (EIO: the route's device cannot checksum);
	// then gso turns off for good and gsoErr says why.
	gso    bool
	gsoErr error

	// One write's progress, for fn.
	nmsg, next, sent, failed int
	firstErr                 syscall.Errno
	gsoRefused               bool
}

func newSender(c *net.UDPConn, size int, gso bool) (*sender, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("udp socket: %w", err)
	}
	s := &sender{
		rc:    rc,
		hdrs:  make([]unix.Mmsghdr, size),
		iovs:  make([]unix.Iovec, size),
		names: make([]unix.RawSockaddrInet4, size),
		ctrl:  make([]byte, size*gsoControlSize),
		first: make([]int, size),
		count: make([]int, size),
		gso:   gso,
	}
	for i := range s.hdrs {
		s.names[i].Family = unix.AF_INET
		s.hdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&s.names[i]))
		s.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet4
	}
	s.fn = s.send
	return s, nil
}

// build lays out tx's datagrams from index from on as messages: with gso,
// a run of datagrams to one peer, all as long as the first but the last,
// which may be shorter, is one message.
func (s *sender) build(tx *txBatch, from int) {
	s.nmsg = 0
	for i := from; i < tx.n; {
		p := tx.pkts[i]
		s.iovs[i].Base = &p[0]
		s.iovs[i].SetLen(len(p))
		m := s.nmsg
		s.first[m], s.count[m] = i, 1
		h := &s.hdrs[m].Hdr
		h.Iov = &s.iovs[i]
		d := tx.dsts[i]
		s.names[m].Addr = d.ip
		// sin_port is in network byte order in memory.
		pb := (*[2]byte)(unsafe.Pointer(&s.names[m].Port))
		pb[0], pb[1] = byte(d.port>>8), byte(d.port)
		seg, total := len(p), len(p)
		i++
		for s.gso && i < tx.n && s.count[m] < maxGSOSegments && tx.dsts[i] == d {
			q := tx.pkts[i]
			if len(q) > seg || total+len(q) > maxGSOBytes {
				break
			}
			s.iovs[i].Base = &q[0]
			s.iovs[i].SetLen(len(q))
			s.count[m]++
			total += len(q)
			i++
			if len(q) < seg {
				break // only the last may be shorter
			}
		}
		h.SetIovlen(s.count[m])
		if s.count[m] > 1 {
			c := s.ctrl[m*gsoControlSize : (m+1)*gsoControlSize]
			h.Control = &c[0]
			h.SetControllen(putGSOSize(c, seg))
		} else {
			h.Control = nil
			h.SetControllen(0)
		}
		s.nmsg++
	}
}

// write sends tx's datagrams. A datagram the kernel refuses is skipped and
// counted (a whole run with GSO), and the rest are still sent. It returns
// how many were sent and refused, and the first refusal's error. When the
// kernel refuses GSO itself, the rest of the batch and every later one go
// without it: gsoErr is set.
func (s *sender) write(tx *txBatch) (sent, failed int, err error) {
	if tx.n == 0 {
		return 0, 0, nil
	}
	s.sent, s.failed, s.firstErr = 0, 0, 0
	from := 0
	for {
		s.build(tx, from)
		s.next, s.gsoRefused = 0, false
		if err := s.rc.Write(s.fn); err != nil {
			return s.sent, tx.n - s.sent, err
		}
		if !s.gsoRefused {
			break
		}
		s.gso = false
		s.gsoErr = fmt.Errorf("sendmmsg with UDP_SEGMENT: %w", unix.EIO)
		from = s.first[s.next]
	}
	if s.firstErr != 0 {
		err = fmt.Errorf("sendmmsg: %w", s.firstErr)
	}
	return s.sent, s.failed, err
}

func (s *sender) send(fd uintptr) bool {
	for s.next < s.nmsg {
		n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&s.hdrs[s.next])), uintptr(s.nmsg-s.next), 0, 0, 0)
		switch e {
		case 0:
			if n == 0 { // cannot happen with messages left; do not spin
				for _, c := range s.count[s.next:s.nmsg] {
					s.failed += c
				}
				s.next = s.nmsg
				return true
			}
			for _, c := range s.count[s.next : s.next+int(n)] {
				s.sent += c
			}
			s.next += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		case unix.EIO:
			if s.count[s.next] > 1 {
				// udp_send_skb refuses GSO when the route's device
				// cannot checksum: stop here, build the rest again
				// without GSO.
				s.gsoRefused = true
				return true
			}
			fallthrough
		default:
			// sendmmsg reports an error only when the first message of
			// the call failed: skip it and go on with the next.
			if s.firstErr == 0 {
				s.firstErr = e
			}
			s.failed += s.count[s.next]
			s.next++
		}
	}
	return true
}
