// Package tun opens layer-3 TUN devices (flannel0 for the udp backend) and
// moves IP packets through them in batches.
//
// Device is deliberately shaped like a batch pipe, not like an io.Reader,
// so that the faster variants a later speed push needs fit behind the same
// methods without changing the callers:
//
//   - IFF_VNET_HDR with TUNSETOFFLOAD (TSO/GSO): one read returns a 64 KiB
//     TCP super-packet that the device splits into MTU-sized packets across
//     bufs, and Write coalesces consecutive segments of one flow (GRO)
//     before handing them to the kernel. The offset argument reserves the
//     headroom in front of each packet that the 10-byte virtio-net header
//     needs, so neither direction has to copy packets to prepend it.
//   - IFF_MULTI_QUEUE: one Device per queue (one file descriptor each), so
//     that several goroutines read and write in parallel; the caller runs
//     one packet loop per Device.
//
// The plain Linux implementation (IFF_TUN | IFF_NO_PI) reads one packet per
// read(2), as the kernel allows, but drains everything queued in one wake-up
// and writes a whole batch in one call, so the caller's loop already works
// in batches.
package tun

// Device is one queue of a TUN device: every packet is a bare IP packet
// with no header in front (no struct tun_pi, no virtio header).
//
// Read is not safe for concurrent use: one goroutine reads. Write may be
// called from several goroutines; calls are serialised. Close may be called
// at any time, from any goroutine, more than once; it unblocks a pending
// Read, and every later Read or Write returns an error that satisfies
// errors.Is(err, os.ErrClosed).
type Device interface {
	// Name is the kernel's name of the device, e.g. "flannel0".
	Name() string
	// MTU is the device's MTU as the kernel has it now; a packet that Read
	// returns is never longer, unless the MTU was raised after it was
	// queued.
	MTU() (int, error)
	// Read waits for at least one packet, then reads as many as are queued,
	// up to len(bufs). Packet i lands in bufs[i][offset:], its length in
	// sizes[i]; bufs[i][:offset] is headroom the device may use. It returns
	// the number of packets read. A packet longer than its buffer is
	// truncated to it, so buffers should exceed the MTU. An error comes
	// with n == 0: errors after the first packet end the batch early and
	// are reported by the next call.
	Read(bufs [][]byte, sizes []int, offset int) (n int, err error)
	// Write hands the packets bufs[i][offset:] to the kernel, in order; it
	// may overwrite bufs[i][:offset]. A packet the kernel refuses (the
	// device is down, say) is skipped and the rest are still written. It
	// returns how many were accepted and the first refusal's error.
	Write(bufs [][]byte, offset int) (n int, err error)
	// Close detaches from the device. Whether the device itself survives
	// depends on how it was opened (see Options.Persist).
	Close() error
}

// Options are how Open attaches to a device.
type Options struct {
	// Persist marks the device persistent (TUNSETPERSIST): it stays, with
	// its addresses, MTU and routes, after the last file descriptor is
	// closed, and a later Open of the same name attaches to it again. While
	// nobody is attached the kernel drops what is routed into it. Without
	// Persist the device (and every route through it) disappears on Close.
	Persist bool
}
