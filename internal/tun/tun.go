// Package tun opens layer-3 TUN devices (flannel0 for the udp backend,
// flannel-wg for the wireguard backend) and moves IP packets through them
// in batches.
//
// Device is shaped like a batch pipe, as wireguard-go's tun.Device is, so
// that both backends share one fast TUN path:
//
//   - The plain device (IFF_TUN | IFF_NO_PI) reads one packet per read(2),
//     as the kernel allows, but drains everything queued in one wake-up and
//     writes a whole batch in one call.
//   - With Options.Offload the device is opened with IFF_VNET_HDR and
//     TUNSETOFFLOAD (checksum, TSO4/6 and, on Linux 6.2+, USO): one read
//     returns a TCP or UDP super-packet of up to 64 KiB, which Read splits
//     into MTU-sized packets across bufs, and Write coalesces consecutive
//     segments of one flow (GRO) into super-packets before handing them to
//     the kernel. The splitting and coalescing is wireguard-go's
//     (golang.zx2c4.com/wireguard/tun), not weft's own. The offset argument
//     reserves the headroom in front of each packet that the 10-byte
//     virtio-net header needs, so neither direction copies packets to
//     prepend it: callers pass at least Headroom.
//   - OpenQueues opens several queues of one IFF_MULTI_QUEUE device, one
//     Device (file descriptor) each, so several goroutines move packets in
//     parallel; the kernel spreads flows over the queues by their hash.
//
// WireGuard adapts a Device to wireguard-go's tun.Device, for
// wireguard-go's device package.
package tun

// Headroom is the offset callers pass to Read and Write: the bytes each
// buffer keeps in front of its packet. The offload device writes its
// 10-byte virtio-net header there; 16 leaves room for wireguard-go's
// 16-byte transport header, so its device can use the same buffers.
const Headroom = 16

// Device is one queue of a TUN device: every packet that Read returns and
// Write takes is a bare IP packet with no header in front (no struct
// tun_pi; the virtio-net header of the offload device stays inside).
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
	// BatchSize is how many buffers Read should be given: the offload
	// device splits one super-packet into up to this many packets and
	// fails a Read whose bufs cannot hold them all.
	BatchSize() int
	// Offload reports whether the device carries super-packets (it was
	// opened with Options.Offload and the kernel accepted IFF_VNET_HDR and
	// TUNSETOFFLOAD). When Options.Offload asked for them and the kernel
	// refused, the device is the plain one and refused says what the
	// kernel refused; refused is nil when offloads are on or were not
	// asked for.
	Offload() (on bool, refused error)
	// Read waits for at least one packet, then reads as many as are queued
	// (the plain device) or the segments of one super-packet (the offload
	// device), up to len(bufs). Packet i lands in bufs[i][offset:], its
	// length in sizes[i]; bufs[i][:offset] is headroom the device may use.
	// Every buffer should hold offset + MTU bytes: the plain device
	// truncates a longer packet to its buffer, the offload device fails
	// the read. It returns the number of packets read. An error comes with
	// n == 0: errors after the first packet end the batch early and are
	// reported by the next call. A device deleted under the reader (ip link
	// del) fails with an error that is not os.ErrClosed.
	Read(bufs [][]byte, sizes []int, offset int) (n int, err error)
	// Write hands the packets bufs[i][offset:] to the kernel, in order; it
	// may overwrite bufs[i][:offset] and, on the offload device, the
	// packets themselves and the bytes past them up to cap(bufs[i]), where
	// it coalesces the segments of one flow into the first one's buffer:
	// give each packet its own buffer, with capacity for a 64 KiB
	// super-packet where coalescing should happen (offset must be at least
	// Headroom there). A packet the kernel refuses (the device is down,
	// say) is skipped and the rest are still written. It returns how many
	// were accepted and the first refusal's error (on the offload device,
	// the refusals' errors joined, counting each refused super-packet as
	// one packet).
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
	// Offload asks for IFF_VNET_HDR with checksum, TSO and (where the
	// kernel has it) USO offloads. When the kernel refuses, Open returns
	// the plain device instead and says why in Device.Offload.
	Offload bool
}
