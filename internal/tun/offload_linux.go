package tun

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
	wgtun "golang.zx2c4.com/wireguard/tun"
)

// The offloads openOne probes before handing the fd to wireguard-go, which
// asks for the same ones (and adds USO where the kernel has it).
const tunTCPOffloads = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6

// virtioNetHdrLen is the header in front of every packet on an
// IFF_VNET_HDR device (struct virtio_net_hdr).
const virtioNetHdrLen = 10

// offloadDevice is one queue opened with IFF_VNET_HDR. The virtio-net
// header handling, the splitting of super-packets (with the segments' IP and
// TCP/UDP checksums) and the coalescing on write are wireguard-go's
// NativeTun, "unmonitored": it runs no netlink or status goroutines of its
// own (the backends watch the kernel themselves) and leaves the MTU alone.
type offloadDevice struct {
	name   string
	nt     wgtun.Device
	ctl    int // AF_INET datagram socket in the device's namespace, for ioctls
	closed atomic.Bool
}

// newOffloadDevice wraps fd, on which TUNSETIFF with IFF_VNET_HDR and
// TUNSETOFFLOAD succeeded. On success and on failure the fd belongs to
// the wrapper's os.File.
func newOffloadDevice(fd int, name string, ctl int) (Device, error) {
	nt, _, err := wgtun.CreateUnmonitoredTUNFromFD(fd)
	if err != nil {
		return nil, fmt.Errorf("tun device %s with offloads: %w", name, err)
	}
	if nt.BatchSize() < 2 {
		// wireguard-go saw no IFF_VNET_HDR on the fd: it would read
		// super-packets' headers as packets.
		nt.Close()
		return nil, fmt.Errorf("tun device %s: wireguard-go found no virtio-net header on the fd", name)
	}
	return &offloadDevice{name: name, nt: nt, ctl: ctl}, nil
}

func (d *offloadDevice) Name() string { return d.name }

func (d *offloadDevice) MTU() (int, error) {
	if d.closed.Load() {
		return 0, fmt.Errorf("mtu of tun device %s: %w", d.name, os.ErrClosed)
	}
	return mtuOf(d.ctl, d.name)
}

func (d *offloadDevice) BatchSize() int { return d.nt.BatchSize() }

func (d *offloadDevice) Offload() (bool, error) { return true, nil }

func (d *offloadDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	if d.closed.Load() {
		return 0, d.wrap("read", os.ErrClosed)
	}
	for i, b := range bufs {
		// wireguard-go slices without checking.
		if offset >= len(b) {
			return 0, fmt.Errorf("read tun device %s: buffer %d of %d bytes has no room past offset %d", d.name, i, len(b), offset)
		}
	}
	n, err := d.nt.Read(bufs, sizes, offset)
	if err != nil {
		return 0, d.wrap("read", err)
	}
	return n, nil
}

func (d *offloadDevice) Write(bufs [][]byte, offset int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	if d.closed.Load() {
		return 0, d.wrap("write", os.ErrClosed)
	}
	if offset < virtioNetHdrLen {
		return 0, fmt.Errorf("write tun device %s: offset %d leaves no room for the %d-byte virtio-net header", d.name, offset, virtioNetHdrLen)
	}
	// wireguard-go returns the bytes written; callers count packets.
	_, err := d.nt.Write(bufs, offset)
	if err == nil {
		return len(bufs), nil
	}
	failed := 1
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		failed = len(j.Unwrap())
	}
	return max(len(bufs)-failed, 0), d.wrap("write", err)
}

// wrap names the device and the operation. wireguard-go reports EBADFD (the
// device was deleted under the fd) as os.ErrClosed; callers take that for
// their own Close, so it is reported as what it is unless Close ran.
func (d *offloadDevice) wrap(op string, err error) error {
	if d.closed.Load() {
		return fmt.Errorf("%s tun device %s: %w", op, d.name, os.ErrClosed)
	}
	if errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("%s tun device %s: %w (the device was deleted)", op, d.name, unix.EBADFD)
	}
	return fmt.Errorf("%s tun device %s: %w", op, d.name, err)
}

func (d *offloadDevice) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	err := d.nt.Close()
	if cerr := unix.Close(d.ctl); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("close tun device %s: %w", d.name, err)
	}
	return nil
}
