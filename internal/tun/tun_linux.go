package tun

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
	wgconn "golang.zx2c4.com/wireguard/conn"
)

// cloneDevice is the TUN/TAP clone device.
const cloneDevice = "/dev/net/tun"

// Open attaches to the TUN device called name in the calling thread's
// network namespace, creating it if it does not exist (ip tuntap add dev
// NAME mode tun). A name with "%d" lets the kernel pick the first free
// number, as flannel's "flannel%d" does; Name reports the result.
//
// The device is opened with IFF_TUN | IFF_NO_PI (packets carry no header),
// and with IFF_VNET_HDR when o.Offload asks for offloads. Attaching fails
// with EBUSY when another process holds the device, and with EINVAL when
// the name belongs to a device that is not a single-queue TUN device.
//
// The returned Device works from any goroutine and thread: the namespace
// is fixed when the device is opened.
func Open(name string, o Options) (Device, error) {
	ds, err := open(name, 1, o)
	if err != nil {
		return nil, err
	}
	return ds[0], nil
}

// OpenQueues attaches n queues (n >= 2) to the multi-queue TUN device
// called name (ip tuntap add dev NAME mode tun multi_queue), creating it
// if it does not exist, as Open does for one queue. Each queue is a Device
// of its own; the kernel hands each flow's packets to one queue, by the
// flow's hash. Attaching fails with EINVAL when a device of that name
// exists and is not a multi-queue TUN device (a single-queue flannel0
// from an older agent or flannel, say): delete it, or use Open.
func OpenQueues(name string, n int, o Options) ([]Device, error) {
	if n < 2 {
		return nil, fmt.Errorf("tun device %s: %d queues asked of OpenQueues, want at least 2 (Open opens one)", name, n)
	}
	return open(name, n, o)
}

// open attaches n queues (a single-queue device when n is 1), with
// offloads on all of them or on none.
func open(name string, n int, o Options) ([]Device, error) {
	var refused error
	if o.Offload {
		ds, err := openN(name, n, o.Persist, true)
		if err == nil {
			return ds, nil
		}
		if !errors.Is(err, errOffloadRefused) {
			return nil, err
		}
		refused = err
	}
	ds, err := openN(name, n, o.Persist, false)
	if err != nil {
		return nil, err
	}
	for _, d := range ds {
		d.(*linuxDevice).refused = refused
	}
	return ds, nil
}

// errOffloadRefused marks the errors that make Open fall back to the
// plain device.
var errOffloadRefused = errors.New("offloads refused")

// openN attaches n queues, closing those it attached when a later one
// fails: a multi-queue device whose queues differ in offloads would hand
// super-packets to a reader that cannot split them.
func openN(name string, n int, persist, offload bool) ([]Device, error) {
	ds := make([]Device, 0, n)
	for range n {
		d, err := openOne(name, n > 1, persist, offload)
		if err != nil {
			for _, d := range ds {
				d.Close()
			}
			return nil, err
		}
		ds = append(ds, d)
		// The kernel's pick for "flannel%d" names the device the other
		// queues attach to.
		name = d.Name()
	}
	return ds, nil
}

// openOne attaches one queue.
func openOne(name string, multi, persist, offload bool) (Device, error) {
	fd, err := unix.Open(cloneDevice, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", cloneDevice, err)
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return nil, fmt.Errorf("tun device name %q: %w", name, err)
	}
	flags := uint16(unix.IFF_TUN | unix.IFF_NO_PI)
	kind := "single-queue"
	if multi {
		flags |= unix.IFF_MULTI_QUEUE
		kind = "multi-queue"
	}
	if offload {
		flags |= unix.IFF_VNET_HDR
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		switch {
		case errors.Is(err, unix.EBUSY):
			return nil, fmt.Errorf("attach to tun device %s: %w (another process holds it: a running flanneld or agent?)", name, err)
		case errors.Is(err, unix.EINVAL) && offload:
			// Either the device is of another kind, or the kernel does
			// not know IFF_VNET_HDR; the plain attach tells which.
			return nil, fmt.Errorf("attach to tun device %s with IFF_VNET_HDR: %w: %w", name, errOffloadRefused, err)
		case errors.Is(err, unix.EINVAL):
			return nil, fmt.Errorf("attach to tun device %s: %w (a device of that name exists and is not a %s tun device)", name, err, kind)
		}
		return nil, fmt.Errorf("attach to tun device %s: %w", name, err)
	}
	name = ifr.Name()
	// Set either way: a device made persistent by an earlier run must lose
	// the flag when this caller does not want it.
	p := 0
	if persist {
		p = 1
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, p); err != nil {
		return nil, fmt.Errorf("set persist=%d on tun device %s: %w", p, name, err)
	}
	if offload {
		// Probe here, before wireguard-go takes the fd: its constructor
		// asks for the same offloads, and on failure leaves the fd to an
		// os.File finalizer, which would keep the queue attached.
		if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tunTCPOffloads); err != nil {
			return nil, fmt.Errorf("TUNSETOFFLOAD csum,tso4,tso6 on tun device %s: %w: %w", name, errOffloadRefused, err)
		}
	}
	// A datagram socket opened now lives in the device's namespace for good,
	// so MTU works from any thread later.
	ctl, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open control socket for tun device %s: %w", name, err)
	}
	if offload {
		d, err := newOffloadDevice(fd, name, ctl)
		if err != nil {
			unix.Close(ctl)
			ok = true // the wrapper's os.File owns fd now
			return nil, err
		}
		ok = true
		return d, nil
	}
	// The fd is non-blocking, so NewFile registers it with the runtime's
	// poller and RawConn callbacks can wait for readiness without a thread.
	f := os.NewFile(uintptr(fd), cloneDevice)
	rc, err := f.SyscallConn()
	if err != nil {
		unix.Close(ctl)
		f.Close()
		ok = true // f owns fd now
		return nil, fmt.Errorf("tun device %s: %w", name, err)
	}
	ok = true
	d := &linuxDevice{name: name, file: f, rc: rc, ctl: ctl}
	// Method values are made once here, so that Read and Write do not
	// allocate a closure per call.
	d.readFn = d.readQueued
	d.writeFn = d.writeBatch
	return d, nil
}

// mtuOf asks the kernel for name's MTU (SIOCGIFMTU, as `ip link show`
// reads it) through ctl, a socket in the device's namespace.
func mtuOf(ctl int, name string) (int, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, err
	}
	if err := unix.IoctlIfreq(ctl, unix.SIOCGIFMTU, ifr); err != nil {
		return 0, fmt.Errorf("mtu of tun device %s: %w", name, err)
	}
	return int(ifr.Uint32()), nil
}

// linuxDevice is a plain TUN queue (no virtio header, one queue).
type linuxDevice struct {
	name   string
	file   *os.File
	rc     syscall.RawConn
	ctl    int // AF_INET datagram socket in the device's namespace, for ioctls
	closed atomic.Bool
	// refused is why offloads were not turned on, when they were asked for.
	refused error

	readFn, writeFn func(fd uintptr) bool

	// Read's state, passed to readFn; only the single reader touches it.
	rbufs  [][]byte
	rsizes []int
	roff   int
	rn     int
	rerr   error

	// wmu serialises writers and guards Write's state below.
	wmu   sync.Mutex
	wbufs [][]byte
	woff  int
	wi    int // next packet to write
	wn    int // packets accepted
	werr  error
}

func (d *linuxDevice) Name() string { return d.name }

// MTU asks the kernel (SIOCGIFMTU, as `ip link show` reads it).
func (d *linuxDevice) MTU() (int, error) {
	if d.closed.Load() {
		return 0, fmt.Errorf("mtu of tun device %s: %w", d.name, os.ErrClosed)
	}
	return mtuOf(d.ctl, d.name)
}

// BatchSize is wireguard-go's batch, so that its device and the udp
// backend hand the plain and the offload device the same number of
// buffers.
func (d *linuxDevice) BatchSize() int { return wgconn.IdealBatchSize }

func (d *linuxDevice) Offload() (bool, error) { return false, d.refused }

func (d *linuxDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	d.rbufs, d.rsizes, d.roff, d.rn, d.rerr = bufs, sizes, offset, 0, nil
	err := d.rc.Read(d.readFn)
	n, rerr := d.rn, d.rerr
	d.rbufs, d.rsizes = nil, nil
	if n > 0 {
		return n, nil
	}
	if err == nil {
		err = rerr
	}
	if err == nil {
		return 0, nil
	}
	if d.closed.Load() {
		return 0, fmt.Errorf("read tun device %s: %w", d.name, os.ErrClosed)
	}
	return 0, fmt.Errorf("read tun device %s: %w", d.name, err)
}

// readQueued reads packets until the queue is empty or the batch is full.
// Returning false makes the runtime wait until the fd is readable again.
func (d *linuxDevice) readQueued(fd uintptr) bool {
	for d.rn < len(d.rbufs) {
		m, err := unix.Read(int(fd), d.rbufs[d.rn][d.roff:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return d.rn > 0
		case err != nil:
			// EBADFD: the device was deleted (ip link del) under the fd.
			d.rerr = err
			return true
		}
		d.rsizes[d.rn] = m
		d.rn++
	}
	return true
}

func (d *linuxDevice) Write(bufs [][]byte, offset int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	d.wmu.Lock()
	defer d.wmu.Unlock()
	d.wbufs, d.woff, d.wi, d.wn, d.werr = bufs, offset, 0, 0, nil
	err := d.rc.Write(d.writeFn)
	n, werr := d.wn, d.werr
	d.wbufs = nil
	if err != nil {
		if d.closed.Load() {
			err = os.ErrClosed
		}
		return n, fmt.Errorf("write tun device %s: %w", d.name, err)
	}
	if werr != nil {
		return n, fmt.Errorf("write tun device %s: %w", d.name, werr)
	}
	return n, nil
}

// writeBatch writes one packet per write(2); the kernel takes each whole or
// not at all. Callers hold wmu.
func (d *linuxDevice) writeBatch(fd uintptr) bool {
	for d.wi < len(d.wbufs) {
		_, err := unix.Write(int(fd), d.wbufs[d.wi][d.woff:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return false
		case err != nil:
			// EIO: the device is down. Skip the packet, keep the rest.
			if d.werr == nil {
				d.werr = err
			}
		default:
			d.wn++
		}
		d.wi++
	}
	return true
}

func (d *linuxDevice) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	err := d.file.Close()
	if cerr := unix.Close(d.ctl); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("close tun device %s: %w", d.name, err)
	}
	return nil
}
