package udp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// UDP segmentation offloads on the socket, the host's side of the wire:
//
//   - GSO (UDP_SEGMENT, Linux 4.18): one sendmsg carries a run of datagrams
//     to one peer, all of one size but the last, which may be shorter; the
//     kernel cuts them apart as late as it can (on the wire they are the
//     same datagrams sendmmsg would send).
//   - GRO (UDP_GRO, Linux 5.0): the kernel hands one receive a run of
//     datagrams from one sender, concatenated, with their size in a
//     control message; splitGRO cuts them apart again.
//
// wireguard-go's conn package has both, but only inside its StdNetBind,
// which binds the wildcard address on both families; the udp backend binds
// its socket to the external address, as flannel does, so it asks the
// kernel itself. The kernel does the segmenting; the only parsing here is
// of the control message and the split, both fuzzed (FuzzSplitGRO) and
// compared with what the kernel delivers without GRO
// (TestGROSplitMatchesKernel).

const (
	// maxGSOSegments is the most datagrams one UDP_SEGMENT send may carry
	// (UDP_MAX_SEGMENTS was 64 until Linux 6.9 raised it to 128).
	maxGSOSegments = 64
	// maxGSOBytes is the most payload one UDP_SEGMENT send may carry: one
	// IPv4 datagram's worth.
	maxGSOBytes = 65535 - 20 - 8
	// groBufSize holds the longest run UDP_GRO hands one receive.
	groBufSize = 65535
	// gsoControlSize is the control buffer of one send: a UDP_SEGMENT
	// message with its uint16.
	gsoControlSize = 24 // unix.CmsgSpace(2)
	// groControlSize is the control buffer of one receive: a UDP_GRO
	// message with its int, and room to spare for one more.
	groControlSize = 64
)

// probeSock turns on and reports the socket's offloads, through the test
// seam when one is set.
func (b *Backend) probeSock(c *net.UDPConn) sockOffloads {
	if b.fast.off {
		return sockOffloads{}
	}
	if b.fast.probeSock != nil {
		return b.fast.probeSock(c)
	}
	return probeSocket(c)
}

// probeSocket asks the kernel for UDP_GRO on c, and whether it knows
// UDP_SEGMENT (it refuses the option outright when it does not).
func probeSocket(c *net.UDPConn) sockOffloads {
	var o sockOffloads
	rc, err := c.SyscallConn()
	if err != nil {
		o.gsoErr, o.groErr = err, err
		return o
	}
	cerr := rc.Control(func(fd uintptr) {
		if _, err := unix.GetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT); err != nil {
			o.gsoErr = fmt.Errorf("getsockopt UDP_SEGMENT: %w", err)
		} else {
			o.gso = true
		}
		if err := unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO, 1); err != nil {
			o.groErr = fmt.Errorf("setsockopt UDP_GRO: %w", err)
		} else {
			o.gro = true
		}
	})
	if cerr != nil {
		o.gso, o.gro, o.gsoErr, o.groErr = false, false, cerr, cerr
	}
	return o
}

// putGSOSize writes a UDP_SEGMENT control message for segments of size
// into b (gsoControlSize bytes) and returns its length.
func putGSOSize(b []byte, size int) int {
	putCmsgHeader(b, unix.CmsgLen(2), unix.SOL_UDP, unix.UDP_SEGMENT)
	binary.NativeEndian.PutUint16(b[unix.SizeofCmsghdr:], uint16(size))
	return unix.CmsgSpace(2)
}

// The control messages are read and written field by field, not through
// a *unix.Cmsghdr, so that a buffer at any alignment (a fuzzer's) is fine.
// struct cmsghdr is {size_t len; int level; int type}.

func putCmsgHeader(b []byte, l, level, typ int) {
	if unix.SizeofPtr == 8 {
		binary.NativeEndian.PutUint64(b, uint64(l))
	} else {
		binary.NativeEndian.PutUint32(b, uint32(l))
	}
	binary.NativeEndian.PutUint32(b[unix.SizeofPtr:], uint32(int32(level)))
	binary.NativeEndian.PutUint32(b[unix.SizeofPtr+4:], uint32(int32(typ)))
}

func cmsgHeader(b []byte) (l uint64, level, typ int32) {
	if unix.SizeofPtr == 8 {
		l = binary.NativeEndian.Uint64(b)
	} else {
		l = uint64(binary.NativeEndian.Uint32(b))
	}
	return l, int32(binary.NativeEndian.Uint32(b[unix.SizeofPtr:])), int32(binary.NativeEndian.Uint32(b[unix.SizeofPtr+4:]))
}

// errBadControl is a control message the kernel would not write.
var errBadControl = errors.New("malformed control message")

// groSize returns the segment size of a UDP_GRO control message in
// control, 0 when there is none (the datagram arrived alone).
func groSize(control []byte) (int, error) {
	for len(control) > 0 {
		if len(control) < unix.SizeofCmsghdr {
			return 0, fmt.Errorf("%w: %d bytes left, less than a header", errBadControl, len(control))
		}
		ul, level, typ := cmsgHeader(control)
		if ul < unix.SizeofCmsghdr || ul > uint64(len(control)) {
			return 0, fmt.Errorf("%w: length %d with %d bytes left", errBadControl, ul, len(control))
		}
		l := int(ul)
		if level == unix.SOL_UDP && typ == unix.UDP_GRO {
			if l < unix.CmsgLen(4) {
				return 0, fmt.Errorf("%w: UDP_GRO of %d bytes", errBadControl, l)
			}
			size := int(int32(binary.NativeEndian.Uint32(control[unix.SizeofCmsghdr:])))
			if size <= 0 {
				return 0, fmt.Errorf("%w: UDP_GRO segment size %d", errBadControl, size)
			}
			return size, nil
		}
		next := cmsgAlign(l)
		if next >= len(control) {
			break
		}
		control = control[next:]
	}
	return 0, nil
}

// splitGRO cuts the run of datagrams in b, each of size bytes but the
// last, into out and returns how many it wrote there; a size of 0 (or one
// covering b) is one datagram. A run longer than out fills out and the
// rest is dropped: dropped counts those datagrams.
func splitGRO(b []byte, size int, out [][]byte) (n, dropped int) {
	if len(b) == 0 {
		return 0, 0
	}
	if size <= 0 || size >= len(b) {
		size = len(b)
	}
	for len(b) > 0 {
		m := min(size, len(b))
		if n == len(out) {
			dropped++
		} else {
			out[n] = b[:m:m]
			n++
		}
		b = b[m:]
	}
	return n, dropped
}

func cmsgAlign(l int) int {
	const a = unix.SizeofPtr
	return (l + a - 1) &^ (a - 1)
}
