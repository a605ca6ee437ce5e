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
// headers, iovecs and addresses in arrays made once, so a batch allocates
// nothing. Each value is used by one goroutine.
//
// A later speed push adds UDP GSO here (one sendmsg with a UDP_SEGMENT
// control message per run of same-sized packets to one peer) and UDP GRO on
// the receiving side (one coalesced datagram, split by its segment size);
// the callers' batches stay as they are.

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
	rc    syscall.RawConn
	bufs  [][]byte
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	fn    func(fd uintptr) bool
	n     int
	errno syscall.Errno
}

// newReceiver reads into bufs, whose backing arrays must stay fixed.
func newReceiver(c *net.UDPConn, bufs [][]byte) (*receiver, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("udp socket: %w", err)
	}
	r := &receiver{
		rc:   rc,
		bufs: bufs,
		hdrs: make([]unix.Mmsghdr, len(bufs)),
		iovs: make([]unix.Iovec, len(bufs)),
	}
	for i := range bufs {
		r.iovs[i].Base = &bufs[i][0]
		r.iovs[i].SetLen(len(bufs[i]))
		r.hdrs[i].Hdr.Iov = &r.iovs[i]
		r.hdrs[i].Hdr.SetIovlen(1)
	}
	r.fn = r.recv
	return r, nil
}

// read waits for at least one datagram and returns how many it read, with
// sizes[i] the length of the datagram in bufs[i] (no more than the buffer:
// longer datagrams are truncated).
func (r *receiver) read(sizes []int) (int, error) {
	r.n, r.errno = 0, 0
	if err := r.rc.Read(r.fn); err != nil {
		return 0, err
	}
	if r.errno != 0 {
		return 0, fmt.Errorf("recvmmsg: %w", r.errno)
	}
	for i := range r.n {
		sizes[i] = int(r.hdrs[i].Len)
	}
	return r.n, nil
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

// sender writes batches of datagrams, each to its own destination.
type sender struct {
	rc    syscall.RawConn
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet4
	fn    func(fd uintptr) bool

	// One write's progress, for fn.
	total, next, sent, failed int
	firstErr                  syscall.Errno
}

func newSender(c *net.UDPConn, size int) (*sender, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("udp socket: %w", err)
	}
	s := &sender{
		rc:    rc,
		hdrs:  make([]unix.Mmsghdr, size),
		iovs:  make([]unix.Iovec, size),
		names: make([]unix.RawSockaddrInet4, size),
	}
	for i := range s.hdrs {
		s.names[i].Family = unix.AF_INET
		s.hdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&s.names[i]))
		s.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet4
		s.hdrs[i].Hdr.Iov = &s.iovs[i]
		s.hdrs[i].Hdr.SetIovlen(1)
	}
	s.fn = s.send
	return s, nil
}

// write sends tx's datagrams. A datagram the kernel refuses is skipped and
// counted, and the rest are still sent. It returns how many were sent and
// refused, and the first refusal's error.
func (s *sender) write(tx *txBatch) (sent, failed int, err error) {
	if tx.n == 0 {
		return 0, 0, nil
	}
	for i := range tx.n {
		p := tx.pkts[i]
		s.iovs[i].Base = &p[0]
		s.iovs[i].SetLen(len(p))
		d := tx.dsts[i]
		s.names[i].Addr = d.ip
		// sin_port is in network byte order in memory.
		pb := (*[2]byte)(unsafe.Pointer(&s.names[i].Port))
		pb[0], pb[1] = byte(d.port>>8), byte(d.port)
	}
	s.total, s.next, s.sent, s.failed, s.firstErr = tx.n, 0, 0, 0, 0
	if err := s.rc.Write(s.fn); err != nil {
		return s.sent, s.total - s.sent, err
	}
	if s.firstErr != 0 {
		err = fmt.Errorf("sendmmsg: %w", s.firstErr)
	}
	return s.sent, s.failed, err
}

func (s *sender) send(fd uintptr) bool {
	for s.next < s.total {
		n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&s.hdrs[s.next])), uintptr(s.total-s.next), 0, 0, 0)
		switch e {
		case 0:
			if n == 0 { // cannot happen with messages left; do not spin
				s.failed += s.total - s.next
				return true
			}
			s.sent += int(n)
			s.next += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			// sendmmsg reports an error only when the first message of
			// the call failed: skip it and go on with the next.
			if s.firstErr == 0 {
				s.firstErr = e
			}
			s.failed++
			s.next++
		}
	}
	return true
}
